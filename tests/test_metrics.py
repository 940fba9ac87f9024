"""Metric functions against hand-computed cases, scipy and Matterport's reference cases."""

import math

from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.study_map import (
    corrected_detections,
    matterport_ap_range,
    matterport_overlaps,
    matterport_voc_ap,
    pooled_class_ap,
    summarize_corrected,
    summarize_matterport,
)

import numpy as np
import pytest
from scipy import stats
from test_matterport_parity import CASES, rect_masks


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


def test_hungarian_zeroes_pairs_below_the_threshold_first():
    # raw-IoU maximisation picks (0,0)+(1,1) = 1.29 and keeps 1 match; 2 true positives exist
    iou = np.array([[0.99, 0.5], [0.5, 0.3]])
    assert sorted((r, c) for r, c, _ in M.hungarian_match(iou, 0.5)) == [(0, 1), (1, 0)]
    stats_ = M.instance_stats_from_iou(iou, [0, 0], [0, 0], 1)
    assert stats_["tp"][0] == 2 and stats_["fp"][0] == 0 and stats_["fn"][0] == 0
    # a tie in total IoU (1.0 + 0 vs 0.5 + 0.5) still goes to the extra match
    assert len(M.hungarian_match(np.array([[1.0, 0.5], [0.5, 0.0]]), 0.5)) == 2
    # the same count: the larger total IoU wins; nothing admissible: no match
    assert M.hungarian_match(np.array([[0.9, 0.6], [0.6, 0.8]]), 0.5) == [(0, 0, 0.9), (1, 1, 0.8)]
    assert M.hungarian_match(np.array([[0.4, 0.2]]), 0.5) == []


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


def test_boundary_metrics_shifted_square():
    gt = box(40, 40, 10, 20, 10, 20)
    pred = box(40, 40, 10, 20, 13, 23)  # shifted 3 px right
    hd95, assd = M.boundary_metrics(pred, gt)
    assert hd95 == pytest.approx(3.0)
    assert 0 < assd < 3
    assert M.boundary_metrics(gt, gt) == (0.0, 0.0)
    assert all(math.isnan(v) for v in M.boundary_metrics(np.zeros_like(gt), np.zeros_like(gt)))
    assert M.boundary_metrics(pred, np.zeros_like(gt)) == (math.inf, math.inf)


def test_matterport_ap_on_masks_hand_computed():
    g1, g2 = box(12, 12, 0, 4, 0, 4), box(12, 12, 6, 10, 6, 10)
    ov = matterport_overlaps(stack(g1, g2), stack(g1, g2))
    np.testing.assert_allclose(matterport_ap_range(ov, [0, 1], [0, 1], [0.9, 0.8]), 1.0)
    # one correct, one wrong class -> precision [1, .5], recall [.5, .5] -> AP .5
    np.testing.assert_allclose(matterport_ap_range(ov, [0, 1], [0, 0], [0.9, 0.8]), 0.5)
    # a high-scoring false positive first: precision [0, .5], recall [0, .5]; all-point interp -> .25
    assert matterport_voc_ap(np.array([-1, 0]), 2) == pytest.approx(0.25)
    np.testing.assert_allclose(matterport_ap_range(np.zeros((0, 1)), [0], [], []), 0.0)
    assert np.isnan(matterport_ap_range(np.zeros((1, 0)), [], [0], [0.9])).all()
    s = summarize_matterport(np.stack([np.ones(10), np.zeros(10), np.full(10, np.nan)]))
    assert s == {"mAP": 0.5, "mAP50": 0.5, "mAP75": 0.5, "n_images": 2}


def _corrected_ap(case):
    gt, pred = case["gt"], case["pred"]
    pm, gm = rect_masks(pred, case["height"], case["width"]), rect_masks(gt, case["height"], case["width"])
    dets = corrected_detections(M.mask_iou_matrix(pm, gm), [g["class"] for g in gt], [p["class"] for p in pred],
                                [p["score"] for p in pred])
    return pooled_class_ap(dets, np.bincount([g["class"] for g in gt], minlength=4))


def test_corrected_equals_matterport_where_the_definitions_agree():
    # One class, no duplicate of the top detection: one ranked list, no double match, so the corrected
    # per-class AP must be Matterport's (an external check of the matching and the interpolation).
    single = [c for c in CASES if len({g["class"] for g in c["gt"]} | {p["class"] for p in c["pred"]}) == 1
              and c["name"] != "duplicate of the top detection"]
    assert len(single) >= 8
    for case in single:
        ap = np.nanmean(_corrected_ap(case), 0)
        np.testing.assert_allclose(ap, case["ap_per_threshold"], atol=1e-6, err_msg=case["name"])
    # the duplicate: Matterport counts it twice (AP 2), the corrected variant once
    dup = next(c for c in CASES if c["name"] == "duplicate of the top detection")
    np.testing.assert_allclose(np.nanmean(_corrected_ap(dup), 0), 1.0)


def test_corrected_pools_frames_per_class_hand_computed():
    # class 0: frame A has a TP (score .9) and an FP (.8); frame B a TP (.7) -> ranked TP, FP, TP with
    # 2 ground truths: precision 1, .5, .67; recall .5, .5, 1 -> AP = .5 * 1 + .5 * .67 = 5/6.
    # class 1: one ground truth, never predicted -> 0. mAP = (5/6 + 0) / 2.
    a = corrected_detections(np.array([[1.0], [0.0]]), [0], [0, 0], [0.9, 0.8])
    b = corrected_detections(np.array([[1.0]]), [0], [0], [0.7])
    ap = pooled_class_ap(np.concatenate([a, b]), np.array([2, 1, 0]))
    np.testing.assert_allclose(ap[0], 5 / 6)
    np.testing.assert_allclose(ap[1], 0.0)
    assert np.isnan(ap[2]).all()  # no ground truth: not averaged
    s = summarize_corrected(np.concatenate([a, b]), np.array([2, 1, 0]), ["a", "b", "c"])
    assert s["mAP"] == pytest.approx(5 / 12) and s["n_classes"] == 2 and set(s["per_class"]) == {"a", "b"}


# --- Cluster bootstrap ---------------------------------------------------------------------------


def test_cluster_ratio_ci_equals_scipy_on_group_means_when_groups_are_equal():
    # With the same number of frames per group, the frame mean is the mean of group means, and
    # scipy's paired resampling draws the same group indices as resampling the group means.
    rng = np.random.default_rng(0)
    values = rng.uniform(0.3, 0.9, (12, 4))  # 12 groups x 4 frames
    gidx = np.repeat(np.arange(12), 4)
    s = M.summarize_grouped(values.ravel(), gidx, n_boot=500, seed=11)
    ref = stats.bootstrap((values.mean(1),), np.mean, n_resamples=500, method="percentile",
                          **M.bootstrap_rng(11)).confidence_interval
    assert s["ci_low"] == pytest.approx(ref.low, abs=1e-12) and s["ci_high"] == pytest.approx(ref.high, abs=1e-12)
    assert s["n"] == 48 and s["n_groups"] == 12 and s["mean"] == pytest.approx(values.mean())
    # below the documented number of groups: no percentile bootstrap at all (9 groups -> no CI)
    few = M.summarize_grouped(values[:9].ravel(), gidx[:36], n_boot=500, seed=11)
    assert M.MIN_GROUPS_FOR_BOOTSTRAP == 10 and math.isnan(few["ci_low"]) and math.isnan(few["ci_high"])
    assert few["n_groups"] == 9 and few["mean"] == pytest.approx(values[:9].mean())
    assert s["std"] == pytest.approx(values.ravel().std(ddof=1))


def test_cluster_ci_is_wider_than_a_frame_bootstrap_for_near_duplicate_frames():
    # 10 videos x 20 near-identical frames: 200 frames but 10 independent values
    rng = np.random.default_rng(1)
    video = rng.uniform(0.4, 0.9, 10)
    values = np.repeat(video, 20) + rng.normal(0, 0.001, 200)
    gidx = np.repeat(np.arange(10), 20)
    cluster = M.summarize_grouped(values, gidx, n_boot=1000, seed=0)
    frames = M.summarize_grouped(values, np.arange(200), n_boot=1000, seed=0)  # every frame its own group
    assert (cluster["ci_high"] - cluster["ci_low"]) > 3 * (frames["ci_high"] - frames["ci_low"])


def test_grouped_summaries_edge_cases_and_macro_micro():
    one = M.summarize_grouped(np.array([0.2, 0.4, np.nan]), np.array([0, 0, 0]), 100)
    assert one["mean"] == pytest.approx(0.3) and one["n"] == 2 and one["n_groups"] == 1
    assert math.isnan(one["ci_low"])  # one video: no between-video spread to resample
    empty = M.summarize_grouped(np.array([np.nan]), np.array([0]), 100)
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    # macro with one class = the per-class summary; NaN classes are skipped
    x = np.array([[0.5, np.nan], [0.7, np.nan], [0.9, np.nan], [0.1, np.nan]])
    g = np.array([0, 0, 1, 2])
    mac, per = M.macro_summary(x, g, 300, 4), M.summarize_grouped(x[:, 0], g, 300, 4)
    assert mac["mean"] == pytest.approx(per["mean"]) and math.isnan(mac["ci_low"]) and math.isnan(per["ci_low"])
    g12 = np.repeat(np.arange(12), 2)
    x12 = np.column_stack([np.linspace(0.1, 0.9, 24), np.full(24, np.nan)])
    mac, per = M.macro_summary(x12, g12, 300, 4), M.summarize_grouped(x12[:, 0], g12, 300, 4)
    assert (mac["ci_low"], mac["ci_high"]) == pytest.approx((per["ci_low"], per["ci_high"]))
    mac = M.macro_summary(x, g, 300, 4)
    assert mac["n"] == 4 and mac["n_groups"] == 3
    # micro: ratio of pixel sums
    counts = np.zeros((3, 2, 3))
    counts[0, 0] = (10, 10, 10)
    counts[1, 1] = (0, 10, 0)
    counts[2, 0] = (5, 10, 10)
    mic = M.micro_summary(counts, np.array([0, 1, 2]), 200, 0)
    assert mic["dice"]["mean"] == pytest.approx(2 * 15 / 50) and mic["iou"]["mean"] == pytest.approx(15 / 35)
    assert math.isnan(mic["dice"]["ci_low"])  # 3 groups: no CI
    # determinism
    assert M.macro_summary(x12, g12, 300, 4) == M.macro_summary(x12, g12, 300, 4)
