"""``FetalHeartROIHeads``: detectron2's StandardROIHeads with Matterport's target assignment on request.

* ``MODEL.CROWD_IGNORE_IOU`` > 0: a RoI whose IoU with an ignore region reaches it is never a negative
  (Matterport's ``detection_targets_graph``: ``negatives = (iou < 0.5) & (crowd_iou < 0.001)``).
* ``MODEL.ROI_HEADS.SAMPLING "ratio"``: at most BATCH_SIZE_PER_IMAGE * POSITIVE_FRACTION positives
  and ``int(positives / POSITIVE_FRACTION) - positives`` negatives (Matterport: 66 positives and 134
  negatives at most; 10 positives give 20 negatives), where detectron2 fills the batch with negatives.
* ``MODEL.ROI_HEADS.LEVEL_ASSIGNMENT "round"``: a RoI goes to FPN level 4 + round(log2(sqrt(area)/224))
  (Matterport's ``PyramidROIAlign``, ``tf.round``) instead of detectron2's floor. floor(x + 1/2) is
  round(x), so the poolers use detectron2's floor with a canonical box size of 224 / sqrt(2).
* ``MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE`` > 0: mask targets from mini-masks (fetalheart.modeling.mini_mask).
"""

from __future__ import annotations

import math

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.modeling.crowd import near_crowd, split_crowd
from fetalheart.modeling.mini_mask import MiniMasks

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.structures import Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

#: log2-level rounding as a floor: floor(4 + log2(s / (224 / sqrt 2))) = round(4 + log2(s / 224)).
ROUNDING_CANONICAL_BOX_SIZE = 224.0 / math.sqrt(2.0)


def ratio_negatives(positives: int, positive_fraction: float) -> int:
    """Matterport's negative count for a number of positives: int(positives / ratio) - positives (float32)."""
    return int(np.float32(1.0 / positive_fraction) * np.float32(positives)) - positives


def sample_by_ratio(gt_classes: torch.Tensor, bg_label: int, batch_size: int, positive_fraction: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive indices, negative indices) sampled at random, negatives in proportion to the positives."""
    positive = ((gt_classes != -1) & (gt_classes != bg_label)).nonzero().squeeze(1)
    negative = (gt_classes == bg_label).nonzero().squeeze(1)
    n_pos = min(int(batch_size * positive_fraction), positive.numel())
    n_neg = min(max(ratio_negatives(n_pos, positive_fraction), 0), negative.numel())
    pick_pos = torch.randperm(positive.numel(), device=positive.device)[:n_pos]
    pick_neg = torch.randperm(negative.numel(), device=negative.device)[:n_neg]
    return positive[pick_pos], negative[pick_neg]


@ROI_HEADS_REGISTRY.register()
class FetalHeartROIHeads(StandardROIHeads):
    """StandardROIHeads with crowd-aware negatives, ratio sampling, rounded levels and mini-masks (each optional)."""

    @configurable
    def __init__(self, *, crowd_ignore_iou: float = 0.0, sampling: str = "fill", mini_mask_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.crowd_ignore_iou = float(crowd_ignore_iou)
        self.sampling = sampling
        self.mini_mask_size = int(mini_mask_size)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.update(crowd_ignore_iou=cfg.MODEL.get("CROWD_IGNORE_IOU", 0.0),
                   sampling=cfg.MODEL.ROI_HEADS.get("SAMPLING", "fill"),
                   mini_mask_size=cfg.MODEL.ROI_MASK_HEAD.get("MINI_MASK_SIZE", 0))
        if cfg.MODEL.ROI_HEADS.get("LEVEL_ASSIGNMENT", "floor") == "round":
            for key in ("box_pooler", "mask_pooler"):
                if ret.get(key) is not None:
                    ret[key].canonical_box_size = ROUNDING_CANONICAL_BOX_SIZE
        return ret

    def _sample_proposals(self, matched_idxs, matched_labels, gt_classes):
        if self.sampling == "fill":
            return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        if gt_classes.numel() > 0:  # the labels detectron2 gives before sampling
            gt_classes = gt_classes[matched_idxs]
            gt_classes[matched_labels == 0] = self.num_classes
            gt_classes[matched_labels == -1] = -1
        else:
            gt_classes = torch.zeros_like(matched_idxs) + self.num_classes
        fg, bg = sample_by_ratio(gt_classes, self.num_classes, self.batch_size_per_image, self.positive_fraction)
        sampled = torch.cat([fg, bg], dim=0)
        return sampled, gt_classes[sampled]

    def _targets(self, targets: list[Instances]):
        """Per image: the real ground truth (mini-masks when asked) and the crowd boxes."""
        out = []
        for t in targets:
            real, crowd = split_crowd(t)
            if self.mini_mask_size and real.has("gt_masks") and len(real):
                real.gt_masks = MiniMasks.from_masks(real.gt_masks, real.gt_boxes, self.mini_mask_size)
            out.append((real, crowd))
        return out

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: list[Instances], targets: list[Instances]) -> list[Instances]:
        """detectron2's matching and sampling, with crowd boxes out of the ground truth and RoIs near them out
        of the negatives (between matching and sampling)."""
        split = self._targets(targets)
        targets = [real for real, _ in split]
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        out, num_fg, num_bg = [], [], []
        for props, target, (_, crowd) in zip(proposals, targets, split, strict=True):
            matched_idxs, matched_labels = self.proposal_matcher(pairwise_iou(target.gt_boxes, props.proposal_boxes))
            matched_labels[(matched_labels == 0) & near_crowd(crowd, props.proposal_boxes, self.crowd_ignore_iou)] = -1
            sampled, gt_classes = self._sample_proposals(matched_idxs, matched_labels, target.gt_classes)
            props = props[sampled]
            props.gt_classes = gt_classes
            if len(target):
                for name, value in target.get_fields().items():
                    if name.startswith("gt_") and not props.has(name):
                        props.set(name, value[matched_idxs[sampled]])
            num_bg.append(int((gt_classes == self.num_classes).sum()))
            num_fg.append(gt_classes.numel() - num_bg[-1])
            out.append(props)
        storage = get_event_storage()
        storage.put_scalar("roi_head/num_fg_samples", float(np.mean(num_fg)))
        storage.put_scalar("roi_head/num_bg_samples", float(np.mean(num_bg)))
        return out
