"""Metric functions against hand-computed cases."""

import math

from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.study_map import image_ap, summarize_study_map, voc_ap

import numpy as np
import pytest


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def stack(*ms):
    return np.stack(ms) if ms else np.zeros((0, 10, 10), bool)


def test_iou_dice_perfect_disjoint_partial_empty():
    assert M.iou_dice(16, 16, 16) == (1.0, 1.0)
    assert M.iou_dice(0, 16, 16) == (0.0, 0.0)
    # A: 4x4=16, B: 4x2=8 inside A -> IoU 8/16, Dice 16/24
    iou, dice = M.iou_dice(8, 16, 8)
    assert iou == pytest.approx(0.5) and dice == pytest.approx(2 / 3)
    assert all(math.isnan(v) for v in M.iou_dice(0, 0, 0))
    assert M.iou_dice(0, 0, 5) == (0.0, 0.0)  # empty ground truth, prediction present
    assert M.iou_dice(0, 5, 0) == (0.0, 0.0)  # empty prediction


def test_semantic_counts_union_of_several_instances():
    # two ground-truth instances of class 0, one prediction covering one of them and half the other
    g1, g2 = box(10, 10, 0, 2, 0, 2), box(10, 10, 5, 7, 5, 7)  # 4 + 4 px
    p = box(10, 10, 0, 2, 0, 2) | box(10, 10, 5, 7, 5, 6)  # 4 + 2 px
    counts = M.semantic_counts(stack(g1, g2), [0, 0], stack(p), [0], num_classes=3)
    assert counts[0].tolist() == [6, 8, 6]
    assert counts[1].tolist() == [0, 0, 0]
    iou, dice = M.semantic_iou_dice(counts)
    assert iou[0] == pytest.approx(6 / 8) and dice[0] == pytest.approx(12 / 14)
    assert np.isnan(iou[1]) and np.isnan(dice[2])


def test_semantic_counts_wrong_class_counts_zero_for_both():
    g = box(8, 8, 0, 4, 0, 4)
    counts = M.semantic_counts(stack(g), [1], stack(g), [2], num_classes=3)
    iou, dice = M.semantic_iou_dice(counts)
    assert iou[1] == 0 and iou[2] == 0 and np.isnan(iou[0])


def test_mask_iou_matrix_and_hungarian():
    a = box(10, 10, 0, 4, 0, 4)
    b = box(10, 10, 0, 4, 0, 2)  # IoU(a,b) = 8/16
    c = box(10, 10, 6, 10, 6, 10)
    iou = M.mask_iou_matrix(stack(a, c), stack(b, c, a))
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(0.5) and iou[0, 2] == 1 and iou[1, 1] == 1 and iou[0, 1] == 0
    matches = M.hungarian_match(iou, 0.5)
    assert sorted((r, c) for r, c, _ in matches) == [(0, 2), (1, 1)]
    assert M.mask_iou_matrix(stack(), stack(a)).shape == (0, 1)


def test_hungarian_beats_greedy():
    # greedy on the best pair (0,0)=0.9 leaves row 1 unmatched; optimal: (0,1)+(1,0)
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted((r, c) for r, c, _ in M.hungarian_match(iou, 0.5)) == [(0, 1), (1, 0)]


def test_instance_stats_tp_fp_fn():
    g1, g2 = box(12, 12, 0, 4, 0, 4), box(12, 12, 6, 10, 6, 10)
    p1 = box(12, 12, 0, 4, 0, 2)  # IoU 0.5 with g1 -> match
    p2 = box(12, 12, 0, 1, 10, 12)  # overlaps nothing -> FP
    s = M.instance_stats(stack(g1, g2), [0, 0], stack(p1, p2), [0, 0], num_classes=2)
    assert (s["tp"][0], s["fp"][0], s["fn"][0]) == (1, 1, 1)
    assert s["iou_sum"][0] == pytest.approx(0.5) and s["dice_sum"][0] == pytest.approx(2 / 3)
    p, r, f = M.precision_recall_f1(1, 1, 1)
    assert (p, r, f) == (0.5, 0.5, 0.5)
    assert all(math.isnan(v) for v in M.precision_recall_f1(0, 0, 0))


def test_confusion_counts_class_swap_and_background():
    g1, g2 = box(12, 12, 0, 4, 0, 4), box(12, 12, 6, 10, 6, 10)
    p1 = g1.copy()  # predicted as class 1 while gt is 0
    p2 = box(12, 12, 0, 2, 8, 12)  # unmatched prediction
    cm = M.confusion_counts(stack(g1, g2), [0, 1], stack(p1, p2), [1, 1], num_classes=2)
    assert cm[0, 1] == 1  # class swap
    assert cm[1, 2] == 1  # g2 missed
    assert cm[2, 1] == 1  # p2 false alarm
    assert cm.sum() == 3


def test_bootstrap_ci_and_summary():
    v = np.array([0.2, 0.4, 0.6, 0.8, np.nan])
    s = M.summarize(v, n_boot=500, seed=1)
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.5)
    assert s["std"] == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8], ddof=1))
    assert 0.2 <= s["ci_low"] < 0.5 < s["ci_high"] <= 0.8
    assert M.bootstrap_ci(np.array([0.3]), 100) == (0.3, 0.3)
    assert all(math.isnan(x) for x in M.bootstrap_ci(np.array([np.nan])))
    # deterministic given the seed
    assert M.bootstrap_ci(v, 200, seed=3) == M.bootstrap_ci(v, 200, seed=3)
    constant = np.tile([[0.7, np.nan]], (5, 1))
    assert M.bootstrap_macro_ci(constant, 100) == pytest.approx((0.7, 0.7))


def test_boundary_metrics_shifted_square():
    gt = box(40, 40, 10, 20, 10, 20)
    pred = box(40, 40, 10, 20, 13, 23)  # shifted 3 px right
    hd95, assd = M.boundary_metrics(pred, gt)
    assert hd95 == pytest.approx(3.0)
    assert 0 < assd < 3
    assert M.boundary_metrics(gt, gt) == (0.0, 0.0)
    assert all(math.isnan(v) for v in M.boundary_metrics(np.zeros_like(gt), np.zeros_like(gt)))
    assert M.boundary_metrics(pred, np.zeros_like(gt)) == (math.inf, math.inf)


def test_study_map_matterport():
    g1, g2 = box(12, 12, 0, 4, 0, 4), box(12, 12, 6, 10, 6, 10)
    ap = image_ap(stack(g1, g2), [0, 1], stack(g1, g2), [0, 1], [0.9, 0.8])
    assert np.allclose(ap, 1.0)
    # one correct, one wrong class -> at each threshold precision [1, .5], recall [.5, .5] -> AP .5
    ap = image_ap(stack(g1, g2), [0, 1], stack(g1, g2), [0, 0], [0.9, 0.8])
    assert np.allclose(ap, 0.5)
    # a high-scoring false positive first: precision [0, .5], recall [0, .5]; all-point interp -> .25
    assert voc_ap(np.array([-1, 0]), 2) == pytest.approx(0.25)
    assert np.allclose(image_ap(stack(g1), [0], stack(), [], []), 0.0)
    assert np.isnan(image_ap(stack(), [], stack(g1), [0], [0.9])).all()
    s = summarize_study_map(np.stack([np.ones(10), np.zeros(10), np.full(10, np.nan)]))
    assert s == {"mAP": 0.5, "mAP50": 0.5, "mAP75": 0.5, "n_images": 2}
