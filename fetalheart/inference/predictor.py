"""``Predictor``: a trained model with the test-time preprocessing of its own config, on in-memory frames.

Preprocessing is exactly the evaluation mapper's (``build_test_mapper``): the same augmentation
list (enhancement ``cfg.INPUT.ENHANCE`` on the full-resolution frame, then the test resize),
applied to in-memory frames so videos need no temporary files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import CLASS_NAMES, normalize_label
from fetalheart.utils.errors import FetalHeartError

import numpy as np


@dataclass
class Prediction:
    """Predictions for one frame at its original resolution (score and class filters applied)."""

    masks: np.ndarray  # (N, H, W) bool
    classes: np.ndarray  # (N,) contiguous ids 0..C-1 of the model's class list
    scores: np.ndarray  # (N,)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # XYXY


def parse_classes(text: str | None, class_names: Sequence[str] = CLASS_NAMES) -> list[int] | None:
    """``"LA,RV,aorta"`` -> contiguous ids in the model's ``class_names``; None keeps all classes."""
    if not text:
        return None
    by_key = {n.lower(): i for i, n in enumerate(class_names)}
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        i = by_key.get(part.lower(), by_key.get((normalize_label(part) or "").lower()))
        if i is None:
            raise FetalHeartError(f"--classes: unknown class {part!r}; the model's classes: {', '.join(class_names)}")
        ids.append(i)
    return ids


class Predictor:
    """Model + the test-time preprocessing of its config; call with a list of BGR uint8 frames."""

    def __init__(self, cfg, score_thresh: float = 0.5, classes: Sequence[int] | None = None):
        from fetalheart.config import class_names
        from fetalheart.data.mapper import enhancement_augmentation, needs_full_resolution, test_augmentations
        from fetalheart.modeling.load import load_model_for_inference

        import torch
        from detectron2.data import transforms as T

        self.torch = torch
        cfg = cfg.clone()
        cfg.defrost()
        # The model drops low scores before its mask head and before pasting masks at full
        # resolution: nothing is computed for a detection that would be thrown away here.
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = max(float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), float(score_thresh))
        cfg.freeze()
        self.class_names = class_names(cfg)
        self.model = load_model_for_inference(cfg)
        self.augs = T.AugmentationList(test_augmentations(cfg))
        # Two-step refinement cropping the original frame needs it enhanced at full resolution too.
        self.full_augs = T.AugmentationList(enhancement_augmentation(cfg)) if needs_full_resolution(cfg) else None
        self.AugInput = T.AugInput
        self.input_format = cfg.INPUT.FORMAT
        self.score_thresh = float(score_thresh)
        self.classes = None if classes is None else set(int(c) for c in classes)

    def _input(self, bgr: np.ndarray) -> dict:
        img = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        aug = self.AugInput(np.ascontiguousarray(img))
        self.augs(aug)
        tensor = self.torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        out = {"image": tensor, "height": bgr.shape[0], "width": bgr.shape[1]}
        if self.full_augs is not None:
            full = self.AugInput(np.ascontiguousarray(img))
            self.full_augs(full)
            out["image_full"] = self.torch.as_tensor(np.ascontiguousarray(full.image.transpose(2, 0, 1)))
        return out

    def __call__(self, frames: Sequence[np.ndarray]) -> list[Prediction]:
        with self.torch.inference_mode():
            outputs = self.model([self._input(f) for f in frames])
        preds = []
        for f, out in zip(frames, outputs, strict=True):
            inst = out["instances"].to("cpu")
            scores = inst.scores.numpy() if len(inst) else np.zeros(0)
            classes = inst.pred_classes.numpy() if len(inst) else np.zeros(0, int)
            keep = scores >= self.score_thresh
            if self.classes is not None:
                keep &= np.isin(classes, list(self.classes))
            if len(inst) and inst.has("pred_masks"):
                masks = inst.pred_masks.numpy().astype(bool)[keep]
            else:
                masks = np.zeros((0, *f.shape[:2]), bool)
            boxes = inst.pred_boxes.tensor.numpy()[keep] if len(inst) else np.zeros((0, 4))
            preds.append(Prediction(masks, classes[keep], scores[keep], boxes))
        return preds

