"""Matterport's mini-masks as mask-target source (``MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE``).

Matterport (``USE_MINI_MASK True``, ``MINI_MASK_SHAPE (56, 56)``) stores each ground-truth mask
cropped to its box and resized to 56 x 56 (``utils.minimize_mask``); a positive RoI's 28 x 28
target is then cut from that mini-mask (``detection_targets_graph``: RoI coordinates moved into
the box's frame, ``tf.image.crop_and_resize``, ``tf.round``). detectron2 cuts the target from
the full-resolution mask (polygons rasterised per RoI). Here: the mini-mask is detectron2's own
``crop_and_resize`` of the mask to its box at MINI_MASK_SIZE, the target a RoIAlign of the
mini-mask in the box frame, thresholded at 0.5. Approximated, not bit-exact: RoIAlign samples bin
centres where TF's crop_and_resize samples corner-aligned points.
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

import torch
from detectron2.layers import ROIAlign
from detectron2.structures import Boxes


class MiniMasks:
    """Ground-truth masks as ``size`` x ``size`` mini-masks in their boxes; duck-types the one method of
    ``PolygonMasks``/``BitMasks`` that ``mask_rcnn_loss`` calls (``crop_and_resize``)."""

    def __init__(self, masks: torch.Tensor, boxes: torch.Tensor):
        self.masks = masks  # (N, S, S) bool: each mask resampled inside its own box
        self.boxes = boxes  # (N, 4) XYXY: the boxes the mini-masks span

    @classmethod
    def from_masks(cls, gt_masks, gt_boxes: Boxes, size: int) -> MiniMasks:
        boxes = gt_boxes.tensor
        return cls(gt_masks.crop_and_resize(boxes, size).to(boxes.device), boxes)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, item) -> MiniMasks:
        if isinstance(item, int):
            item = slice(item, item + 1)
        return MiniMasks(self.masks[item], self.boxes[item])

    def to(self, device) -> MiniMasks:
        return MiniMasks(self.masks.to(device), self.boxes.to(device))

    @property
    def device(self) -> torch.device:
        return self.masks.device

    def crop_and_resize(self, rois: torch.Tensor, mask_size: int) -> torch.Tensor:
        """The ``mask_size`` targets of RoI i from mini-mask i (bool, N x mask_size x mask_size)."""
        assert len(rois) == len(self), f"{len(rois)} RoIs for {len(self)} masks"
        if len(rois) == 0:
            return torch.zeros((0, mask_size, mask_size), dtype=torch.bool, device=rois.device)
        size = self.masks.shape[-1]
        origin = self.boxes[:, :2].repeat(1, 2)
        span = (self.boxes[:, 2:] - self.boxes[:, :2]).clamp(min=1e-6).repeat(1, 2)
        local = (rois.to(self.boxes.device) - origin) / span * size  # RoI in mini-mask pixels
        index = torch.arange(len(rois), device=local.device, dtype=local.dtype)[:, None]
        align = ROIAlign((mask_size, mask_size), 1.0, 0, aligned=True)
        out = align.forward(self.masks[:, None].float(), torch.cat([index, local], dim=1)).squeeze(1)
        return out >= 0.5
