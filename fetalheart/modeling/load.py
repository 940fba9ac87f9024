"""Build the model of a config and load its trained weights, for evaluation and prediction.

Here, not in the trainer: evaluating or predicting with a trained model needs no training engine.
"""

from __future__ import annotations

import logging
import os

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.modeling.square_pad import FetalHeartRCNN  # noqa: F401  (registers the meta-architecture)
from fetalheart.utils.errors import FetalHeartError

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

logger = logging.getLogger(__name__)


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
    except (OSError, ConnectionError, RuntimeError, ValueError) as exc:
        raise FetalHeartError(f"cannot load MODEL.WEIGHTS {weights}: {str(exc).splitlines()[0][:200]}") from None
    return model
