"""Load weights into a model: a trained model for evaluation and prediction, or the initial weights
(``MODEL.INIT``) a training run starts from.

Here, not in the trainer: evaluating or predicting with a trained model needs no training engine.
"""

from __future__ import annotations

import logging
import os
import pickle

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import check_weights
from fetalheart.modeling.square_pad import FetalHeartRCNN  # noqa: F401  (registers the meta-architecture)
from fetalheart.utils.errors import FetalHeartError

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

logger = logging.getLogger(__name__)

#: Re-initialised when training starts from COCO weights: the class-specific predictors, as Matterport's
#: samples load COCO weights with exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"].
COCO_HEAD_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_head.predictor.")
DETECTOR_PREFIXES = ("roi_heads.", "proposal_generator.")


def register_meta_architecture(cfg) -> None:
    """Register ``cfg.MODEL.META_ARCHITECTURE`` with detectron2 before ``build_model``: the U-Net family's
    module (and segmentation_models_pytorch) is imported only by configs that use it."""
    from fetalheart.config import is_smp

    if is_smp(cfg):
        import fetalheart.modeling.smp  # noqa: F401  (registers SMPSegmentor)


def load_model_for_inference(cfg):
    """Build the model of ``cfg`` (eval mode) and load ``cfg.MODEL.WEIGHTS`` (local file or detectron2:// URL)."""
    register_meta_architecture(cfg)
    model = build_model(cfg)
    logger.info("Model:\n%s", model)  # as detectron2's DefaultTrainer.build_model logs it
    model.eval()
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise FetalHeartError("MODEL.WEIGHTS is empty: give the trained model, e.g. MODEL.WEIGHTS output/run/model_final.pth")
    if "://" not in weights and not os.path.isfile(weights):
        raise FetalHeartError(f"MODEL.WEIGHTS file not found: {weights}")
    try:
        DetectionCheckpointer(model).load(weights)
    except (OSError, ConnectionError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise FetalHeartError(f"cannot load MODEL.WEIGHTS {weights}: {str(exc).splitlines()[0][:200]}") from None
    return model


class InitCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that checks a file fits its ``MODEL.INIT`` and drops the keys ``drop`` names
    before loading (they keep the values the model was built with)."""

    def __init__(self, model, init: str = "", **kwargs):
        super().__init__(model, save_to_disk=False, **kwargs)
        self.init = init
        self.dropped: list[str] = []

    def _load_model(self, checkpoint):
        state = checkpoint["model"]
        detector = any(k.startswith(DETECTOR_PREFIXES) for k in state)
        if self.init == "coco" and not detector:
            raise FetalHeartError("MODEL.INIT coco needs a whole detector (COCO Mask R-CNN) but the file holds no "
                                  "RPN or RoI-head weights (an ImageNet backbone?): use MODEL.INIT imagenet")
        if self.init == "imagenet" and detector:
            raise FetalHeartError("MODEL.INIT imagenet needs a backbone but the file holds a whole detector: use MODEL.INIT "
                                  "coco (its class-specific predictors are re-initialised) or '' (loaded as it is)")
        if self.init == "coco":
            self.dropped = [k for k in state if k.startswith(COCO_HEAD_PREFIXES)]
            for k in self.dropped:
                del state[k]
            logger.info("MODEL.INIT coco: %d class-specific predictor tensors re-initialised for our classes: %s",
                        len(self.dropped), ", ".join(self.dropped))
        return super()._load_model(checkpoint)


def load_initial_weights(model, cfg) -> list[str]:
    """Load the weights a new training run starts from (``MODEL.INIT``/``MODEL.WEIGHTS``); return the keys
    re-initialised. Nothing to load for ``scratch`` or an empty MODEL.WEIGHTS (detectron2's random init)."""
    check_weights(cfg)  # a missing file is reported here too, whoever calls
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        return []
    checkpointer = InitCheckpointer(model, init=cfg.MODEL.INIT)
    try:
        checkpointer.load(weights, checkpointables=[])
    except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        raise FetalHeartError(f"cannot load MODEL.WEIGHTS {weights}: {str(exc).splitlines()[0][:200]}") from None
    return checkpointer.dropped
