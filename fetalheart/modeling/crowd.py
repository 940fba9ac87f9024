"""Ignore (iscrowd) regions in training targets, as Matterport handles COCO crowds.

Matterport keeps crowd boxes out of the ground truth and out of the negatives: an anchor
(``build_rpn_targets``) or a RoI (``detection_targets_graph``) whose IoU with a crowd box is
>= 0.001 may still be a positive of a real structure, but is never a negative. detectron2's
DatasetMapper drops iscrowd annotations instead, so an ignore region trains as background.
With ``MODEL.CROWD_IGNORE_IOU`` > 0 fetalheart's mapper keeps them in the training instances,
flagged ``gt_is_crowd``; these helpers take them out again where the targets are assigned.
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.data.mapper import CROWD_FIELD

import torch
from detectron2.structures import Boxes, Instances, pairwise_iou


def split_crowd(instances: Instances) -> tuple[Instances, Boxes]:
    """(the real ground truth without the flag, the crowd boxes) of one image's training instances."""
    if not instances.has(CROWD_FIELD):
        return instances, Boxes(instances.gt_boxes.tensor[:0])
    crowd = instances.get(CROWD_FIELD).bool()
    real = instances[~crowd]
    real.remove(CROWD_FIELD)
    return real, instances.gt_boxes[crowd]


def near_crowd(crowd: Boxes, boxes: Boxes, min_iou: float) -> torch.Tensor:
    """Per box, whether its IoU with some crowd box is >= ``min_iou`` (all False when off or no crowd)."""
    if min_iou <= 0 or len(crowd) == 0 or len(boxes) == 0:
        return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.tensor.device)
    return pairwise_iou(crowd, boxes).max(dim=0).values >= min_iou
