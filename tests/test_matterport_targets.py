"""Matterport's target assignment in FetalHeartRPN / FetalHeartROIHeads, against hand-computed cases.

Matterport (mrcnn/model.py): ``build_rpn_targets`` and ``detection_targets_graph`` never make an anchor
or RoI with crowd IoU >= 0.001 a negative; RoI negatives = int(positives / 0.33) - positives;
``PyramidROIAlign`` level = 4 + tf.round(log2(sqrt(h w) / 224)); ``ProposalLayer`` keeps the top
PRE_NMS_LIMIT anchors of the image and runs one NMS; mask targets come from 56x56 mini-masks.
"""

import math

import fetalheart._compat  # noqa: F401
import fetalheart.modeling  # noqa: F401  (registers the heads)
from fetalheart.config import load_cfg
from fetalheart.modeling.mini_mask import MiniMasks
from fetalheart.modeling.roi_heads import ROUNDING_CANONICAL_BOX_SIZE, ratio_negatives, sample_by_ratio

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

BASE = "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"
#: A small ResNet-18 FPN so building the model takes under a second.
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.INIT", "", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18",
         "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
         "MODEL.ROI_MASK_HEAD.CONV_DIM", "32"]


def _model(*opts):
    return build_model(load_cfg(BASE, [*SMALL, *opts])).train()


@pytest.fixture(scope="module")
def model():
    return _model()


def _square(x0, y0, side):
    return [x0, y0, x0 + side, y0 + side]


def _targets(real, crowd, image_size=(256, 256)):
    """Instances as the training mapper makes them: real structures (class 0) and crowd regions, flagged."""
    boxes = real + crowd
    inst = Instances(image_size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    inst.gt_masks = PolygonMasks([[np.array([b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]], float)] for b in boxes])
    inst.gt_is_crowd = torch.tensor([False] * len(real) + [True] * len(crowd))
    return inst


REAL = [_square(20, 20, 60)]
CROWD = [_square(150, 150, 80)]
ANCHORS = torch.tensor([_square(20, 20, 60),    # 0: the structure itself: positive
                        _square(150, 150, 80),  # 1: the crowd region itself: neither positive nor negative
                        _square(200, 200, 40),  # 2: inside the crowd region (IoU 0.13): never a negative
                        _square(228, 228, 30),  # 3: touches it (IoU 4 / 7,296 = 0.0005 < 0.001): a negative
                        _square(0, 180, 30)],   # 4: far from both: a negative
                       dtype=torch.float32)


def test_rpn_anchor_near_a_crowd_region_is_never_a_negative(model):
    labels, matched = model.proposal_generator.label_and_sample_anchors([Boxes(ANCHORS)], [_targets(REAL, CROWD)])
    assert labels[0].tolist() == [1, -1, -1, 0, 0]
    torch.testing.assert_close(matched[0][0], torch.tensor(REAL[0], dtype=torch.float32))


def test_rpn_without_crowd_awareness_trains_the_region_as_background():
    rpn = _model("MODEL.CROWD_IGNORE_IOU", "0.0").proposal_generator
    labels, _ = rpn.label_and_sample_anchors([Boxes(ANCHORS)], [_targets(REAL, CROWD)])
    assert labels[0].tolist() == [1, 0, 0, 0, 0]  # the crowd box is never a positive either way


def _proposals(boxes, image_size=(256, 256)):
    p = Instances(image_size)
    p.proposal_boxes = Boxes(boxes.clone())
    p.objectness_logits = torch.zeros(len(boxes))
    return p


def test_roi_near_a_crowd_region_is_never_a_negative(model):
    with EventStorage():
        out = model.roi_heads.label_and_sample_proposals([_proposals(ANCHORS)], [_targets(REAL, CROWD)])[0]
    kept = {tuple(b.tolist()): int(c) for b, c in zip(out.proposal_boxes.tensor, out.gt_classes, strict=True)}
    bg = model.roi_heads.num_classes
    # The positive, and ratio sampling's int(1 / 0.33) - 1 = 2 negatives: anchors 3 and 4, never 1 or 2.
    assert kept == {tuple(ANCHORS[0].tolist()): 0, tuple(ANCHORS[3].tolist()): bg, tuple(ANCHORS[4].tolist()): bg}
    assert not out.has("gt_is_crowd")


def test_no_ground_truth_box_is_appended_to_the_proposals(model):
    far = torch.tensor([_square(0, 180, 30)], dtype=torch.float32)
    with EventStorage():
        out = model.roi_heads.label_and_sample_proposals([_proposals(far)], [_targets(REAL, [])])[0]
    assert len(out) == 0  # no positive proposal -> no negatives either (Matterport); detectron2 would add the GT
    appended = _model("MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "True", "MODEL.ROI_HEADS.SAMPLING", "fill")
    with EventStorage():
        out = appended.roi_heads.label_and_sample_proposals([_proposals(far)], [_targets(REAL, [])])[0]
    assert sorted(out.gt_classes.tolist()) == [0, appended.roi_heads.num_classes]


@pytest.mark.parametrize("positives, negatives", [(66, 134), (33, 67), (10, 20), (1, 2), (0, 0)])
def test_ratio_sampling_keeps_matterports_negative_count(positives, negatives):
    assert ratio_negatives(positives, 0.33) == negatives
    gt = torch.tensor([0] * positives + [10] * 500)
    fg, bg = sample_by_ratio(gt, 10, 200, 0.33)
    assert (len(fg), len(bg)) == (positives, negatives)
    many = sample_by_ratio(torch.tensor([3] * 150 + [10] * 500), 10, 200, 0.33)
    assert (len(many[0]), len(many[1])) == (66, 134)  # int(200 * 0.33) positives at most


def test_roi_levels_are_rounded_as_matterport(model):
    assert model.roi_heads.box_pooler.canonical_box_size == pytest.approx(ROUNDING_CANONICAL_BOX_SIZE)
    assert model.roi_heads.mask_pooler.canonical_box_size == pytest.approx(ROUNDING_CANONICAL_BOX_SIZE)
    sides = [20, 40, 70, 100, 130, 150, 170, 200, 260, 300, 400, 600]
    boxes = [Boxes(torch.tensor([[0.0, 0.0, s, s] for s in sides]))]
    got = assign_boxes_to_levels(boxes, 2, 5, model.roi_heads.box_pooler.canonical_box_size, 4) + 2
    by_hand = [min(5, max(2, 4 + round(math.log2(s / 224)))) for s in sides]  # Matterport's formula
    floor = [min(5, max(2, 4 + math.floor(math.log2(s / 224)))) for s in sides]  # detectron2's
    assert got.tolist() == by_hand and by_hand != floor


def test_mask_targets_come_from_a_mini_mask_in_the_ground_truth_box():
    box = torch.tensor([[10.0, 10.0, 210.0, 110.0]])
    left_half = PolygonMasks([[np.array([10, 10, 110, 10, 110, 110, 10, 110], float)]])
    mini = MiniMasks.from_masks(left_half, Boxes(box), 56)
    assert mini.masks.shape == (1, 56, 56) and mini.masks[0, :, :28].all() and not mini.masks[0, :, 28:].any()
    target = mini.crop_and_resize(box, 28)[0]  # the RoI is the box: the mini-mask resampled
    assert target[:, :14].all() and not target[:, 14:].any()
    right = mini.crop_and_resize(torch.tensor([[110.0, 10.0, 210.0, 110.0]]), 28)[0]
    assert not right.any()  # a RoI over the empty half sees nothing
    direct = left_half.crop_and_resize(torch.tensor([[60.0, 10.0, 160.0, 110.0]]), 28)[0]
    shifted = mini.crop_and_resize(torch.tensor([[60.0, 10.0, 160.0, 110.0]]), 28)[0]
    assert (direct ^ shifted).float().mean() < 0.05  # same target as from the full-resolution polygon


def test_mini_masks_follow_indexing_as_instances_do(model):
    targets = _targets(REAL, [])
    props = _proposals(torch.tensor([REAL[0], _square(22, 22, 60)], dtype=torch.float32))
    with EventStorage():
        out = model.roi_heads.label_and_sample_proposals([props], [targets])[0]
    assert isinstance(out.gt_masks, MiniMasks) and len(out.gt_masks) == len(out)
    assert out.gt_masks.crop_and_resize(out.proposal_boxes.tensor, 28).shape == (len(out), 28, 28)


def _two_level_outputs():
    """Two pyramid levels: identical boxes on both, level 0 scored higher than level 1."""
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 140.0, 140.0]])
    proposals = [boxes[None], boxes[None].clone()]
    logits = [torch.tensor([[5.0, 4.0]]), torch.tensor([[3.0, 2.0]])]
    return proposals, logits


@pytest.mark.parametrize("scope, expected", [("image", 2), ("level", 4)])
def test_pre_nms_over_the_image_runs_one_nms_across_levels(scope, expected):
    from detectron2.layers import cat
    from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals

    rpn = _model("MODEL.RPN.PRE_NMS_SCOPE", scope).proposal_generator.eval()
    proposals, logits = _two_level_outputs()
    if scope == "image":  # what FetalHeartRPN.predict_proposals hands detectron2
        proposals, logits = [cat(proposals, dim=1)], [cat(logits, dim=1)]
    out = find_top_rpn_proposals(proposals, logits, [(256, 256)], rpn.nms_thresh, 10, 10, 0.0, False)[0]
    assert len(out) == expected  # one NMS removes each box's twin from the other level


def test_pre_nms_limit_counts_the_whole_image():
    rpn = _model("MODEL.RPN.PRE_NMS_TOPK_TEST", "3").proposal_generator.eval()
    assert rpn.pre_nms_scope == "image" and rpn.pre_nms_topk[False] == 3
    anchors = [Boxes(torch.tensor([[0.0, 0, 20, 20], [40, 0, 60, 20]])), Boxes(torch.tensor([[0.0, 40, 20, 60],
                                                                                         [40, 40, 60, 60]]))]
    deltas = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)]
    logits = [torch.tensor([[4.0, 3.0]]), torch.tensor([[2.0, 1.0]])]
    out = rpn.predict_proposals(anchors, logits, deltas, [(64, 64)])[0]
    assert out.objectness_logits.tolist() == [4.0, 3.0, 2.0]  # 3 over the image, not 3 per level


def test_options_need_the_module_that_implements_them():
    from fetalheart.utils.errors import FetalHeartError

    with pytest.raises(FetalHeartError, match="needs MODEL.ROI_HEADS.NAME FetalHeartROIHeads"):
        load_cfg(BASE, ["MODEL.ROI_HEADS.NAME", "StandardROIHeads"])
    with pytest.raises(FetalHeartError, match="needs MODEL.PROPOSAL_GENERATOR.NAME FetalHeartRPN"):
        load_cfg(BASE, ["MODEL.PROPOSAL_GENERATOR.NAME", "RPN", "MODEL.CROWD_IGNORE_IOU", "0.0"])


@pytest.mark.parametrize("crowd_iou, expected", [("0.001", [False, True]), ("0.0", [False])])
def test_training_mapper_keeps_ignore_regions_flagged_only_when_crowd_aware(tmp_path, crowd_iou, expected):
    from fetalheart.data.mapper import build_train_mapper

    import cv2
    from detectron2.structures import BoxMode

    cv2.imwrite(str(tmp_path / "f.png"), np.full((64, 64, 3), 80, np.uint8))
    poly = lambda x0, y0, s: [[x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]]  # noqa: E731
    annos = [{"bbox": [4, 4, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 0,
              "segmentation": poly(4, 4, 20)},
             {"bbox": [36, 36, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1,
              "segmentation": poly(36, 36, 20)}]
    cfg = load_cfg(BASE, [*SMALL, "MODEL.CROWD_IGNORE_IOU", crowd_iou, "INPUT.MIN_SIZE_TRAIN", "(64,)",
                          "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.SQUARE_SIZE", "0"])
    out = build_train_mapper(cfg)({"file_name": str(tmp_path / "f.png"), "height": 64, "width": 64, "image_id": 1,
                                   "annotations": annos})
    inst = out["instances"]
    assert len(inst) == len(expected)
    if crowd_iou == "0.0":  # detectron2's behaviour: the ignore region is dropped
        assert not inst.has("gt_is_crowd")
    else:
        assert inst.get("gt_is_crowd").tolist() == expected
