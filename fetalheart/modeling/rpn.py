"""``FetalHeartRPN``: detectron2's RPN with two of Matterport's choices available by config.

* ``MODEL.RPN.PRE_NMS_SCOPE "image"``: Matterport's ProposalLayer keeps the ``PRE_NMS_LIMIT`` (6000)
  best anchors of the whole image, all pyramid levels together, then runs one NMS over them;
  detectron2 keeps ``PRE_NMS_TOPK`` per level and suppresses within each level only. Implemented by
  handing detectron2's own ``find_top_rpn_proposals`` the levels concatenated into one.
* ``MODEL.CROWD_IGNORE_IOU`` > 0: an anchor whose IoU with an ignore region reaches it is never a
  negative (Matterport's ``build_rpn_targets``: ``rpn_match[(iou < 0.3) & no_crowd] = -1``).
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.modeling.crowd import near_crowd, split_crowd

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.memory import retry_if_cuda_oom


@PROPOSAL_GENERATOR_REGISTRY.register()
class FetalHeartRPN(RPN):
    """RPN with the pre-NMS limit over the whole image and crowd-aware anchor labels (both optional)."""

    @configurable
    def __init__(self, *, pre_nms_scope: str = "level", crowd_ignore_iou: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.pre_nms_scope = pre_nms_scope
        self.crowd_ignore_iou = float(crowd_ignore_iou)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["pre_nms_scope"] = cfg.MODEL.RPN.get("PRE_NMS_SCOPE", "level")
        ret["crowd_ignore_iou"] = cfg.MODEL.get("CROWD_IGNORE_IOU", 0.0)
        return ret

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        if self.pre_nms_scope == "level":
            return super().predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes)
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            # One "level" holding every anchor: top-k over the image, one NMS across levels.
            return find_top_rpn_proposals([cat(proposals, dim=1)], [cat(pred_objectness_logits, dim=1)], image_sizes,
                                          self.nms_thresh, self.pre_nms_topk[self.training],
                                          self.post_nms_topk[self.training], self.min_box_size, self.training)

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors, gt_instances):
        """detectron2's labels (-1 ignore, 0 negative, 1 positive), crowd boxes out of the ground truth
        and anchors near them out of the negatives, before positives and negatives are sampled."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for instances in gt_instances:
            real, crowd = split_crowd(instances)
            gt_boxes = real.gt_boxes
            matched_idxs, labels = retry_if_cuda_oom(self.anchor_matcher)(
                retry_if_cuda_oom(pairwise_iou)(gt_boxes, anchors))
            labels = labels.to(device=gt_boxes.device)
            if self.anchor_boundary_thresh >= 0:
                labels[~anchors.inside_box(real.image_size, self.anchor_boundary_thresh)] = -1
            labels[(labels == 0) & near_crowd(crowd, anchors, self.crowd_ignore_iou)] = -1
            gt_labels.append(self._subsample_labels(labels))
            matched_gt_boxes.append(gt_boxes[matched_idxs].tensor if len(gt_boxes) else torch.zeros_like(anchors.tensor))
        return gt_labels, matched_gt_boxes
