"""Semantic segmentations -> instances: one instance per connected component of each class.

A semantic model (the U-Net family, nnU-Net, any tool that writes label maps or probability maps)
says for every pixel which structures it belongs to, not which object. The evaluation, COCO AP and
the study's mAP need instances with a score. The rule, in one place:

* a pixel belongs to class ``c`` when its probability is ``>= prob_thresh`` (probability maps: one
  channel per class, so structures may overlap) or when its label is ``c`` (label maps: one label per
  pixel);
* each 8-connected component of a class (pixels touching at an edge or a corner) is one instance;
  components smaller than ``min_area`` pixels are dropped;
* its score is the ``mean`` (default) or ``max`` probability of the class over the component's pixels;
  label maps carry no confidence, so every component of a label map scores 1.0 (COCO AP then ranks
  them in file order: only the study's per-image mAP and IoU/Dice are meaningful for label maps).

Instances come out class by class, components in OpenCV's labelling order (top to bottom).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

SCORE_RULES = ("mean", "max")


@dataclass
class SemanticInstances:
    """Instances of one frame: masks (N, H, W) bool, contiguous class ids (N,) and scores (N,)."""

    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def components(mask: np.ndarray, min_area: int = 0) -> list[np.ndarray]:
    """The 8-connected components of a boolean mask with at least ``min_area`` pixels, as bool masks."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [labels == k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= max(1, int(min_area))]


def _empty(h: int, w: int) -> SemanticInstances:
    return SemanticInstances(np.zeros((0, h, w), bool), np.zeros(0, int), np.zeros(0))


def _stack(parts: list[tuple[np.ndarray, int, float]], h: int, w: int) -> SemanticInstances:
    if not parts:
        return _empty(h, w)
    masks, classes, scores = zip(*parts, strict=True)
    return SemanticInstances(np.stack(masks), np.asarray(classes, int), np.asarray(scores, np.float64))


def probabilities_to_instances(probs: np.ndarray, prob_thresh: float = 0.5, min_area: int = 0,
                               score_rule: str = "mean") -> SemanticInstances:
    """(C, H, W) per-class probabilities (sigmoid outputs; channel c = contiguous class c) -> instances."""
    if score_rule not in SCORE_RULES:
        raise ValueError(f"score rule must be one of {', '.join(SCORE_RULES)}, got {score_rule!r}")
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probability maps must be (classes, height, width), got shape {probs.shape}")
    parts = []
    for c, p in enumerate(probs):
        for m in components(p >= prob_thresh, min_area):
            v = p[m]
            parts.append((m, c, float(v.mean() if score_rule == "mean" else v.max())))
    return _stack(parts, *probs.shape[1:])


def label_map_to_instances(labels: np.ndarray, values: Mapping[int, int], min_area: int = 0) -> SemanticInstances:
    """(H, W) integer label map -> instances; ``values`` maps a label value to a contiguous class id
    (values not in it, background 0 included, are not structures). Every component scores 1.0."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label map must be (height, width), got shape {labels.shape}")
    parts = []
    for value, c in sorted(values.items(), key=lambda kv: kv[1]):
        parts += [(m, int(c), 1.0) for m in components(labels == value, min_area)]
    return _stack(parts, *labels.shape)
