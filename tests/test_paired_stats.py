"""The paired comparison: one class set per frame, empty frames kept, groups (videos) as samples.

The statistics are checked against scipy called directly on the group means.
"""

import math

from fetalheart.evaluation.compare import (
    EvaluatedRun,
    Frame,
    compare,
    load_runs,
    paired_frame_scores,
    paired_group_test,
    rank_biserial,
)
from fetalheart.evaluation.metrics import bootstrap_rng

import numpy as np
import pytest
from _evaluation_helpers import synthetic_record, write_eval
from scipy import stats


def _run(frames: dict, label="m", enhance="original", fold=-1, seed=0):
    return EvaluatedRun(path=None, label=label, enhance=enhance, momentum=0.9, model_id=0, seed=seed, dataset="v",
                        metrics={}, fold=fold, frames=frames)


def test_wilcoxon_and_ci_equal_scipy_on_group_means():
    rng = np.random.default_rng(3)
    groups = np.repeat([f"v{k}" for k in range(9)], 5)  # 9 videos x 5 frames
    a = rng.uniform(0.5, 0.9, 45)
    b = a - rng.normal(0.05, 0.05, 45)
    t = paired_group_test(a, b, groups, n_boot=800, seed=5)
    ma, mb = a.reshape(9, 5).mean(1), b.reshape(9, 5).mean(1)
    ref = stats.wilcoxon(ma, mb, alternative="two-sided")
    assert t["p"] == pytest.approx(ref.pvalue, rel=1e-12) and t["statistic"] == ref.statistic
    ci = stats.bootstrap((ma - mb,), np.mean, n_resamples=800, method="percentile",
                         **bootstrap_rng(5)).confidence_interval
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert t["mean_diff"] == pytest.approx((ma - mb).mean()) and t["n_groups"] == 9 and t["n_frames"] == 45
    assert t["rank_biserial"] == pytest.approx(rank_biserial(ma - mb))


def test_rank_biserial_hand_computed():
    # |d| ranks 1, 2, 3, 4; T+ = 1 + 2 + 4 = 7, T- = 3 -> (7 - 3) / 10
    assert rank_biserial(np.array([1.0, 2.0, -3.0, 4.0])) == pytest.approx(0.4)
    assert rank_biserial(np.array([0.1, 0.2, 0.0])) == 1.0
    assert rank_biserial(np.zeros(3)) == 0.0


def test_few_groups_no_p_value_but_a_cluster_ci():
    # 300 frames of 3 videos: a frame-level test would call this highly significant
    groups = np.repeat(["a", "b", "c"], 100)
    a = np.repeat([0.8, 0.7, 0.75], 100)
    b = a - np.repeat([0.02, 0.01, 0.03], 100)
    t = paired_group_test(a, b, groups, n_boot=200)
    assert math.isnan(t["p"]) and t["n_groups"] == 3
    assert "covers frames of 3 groups only" in t["note"]
    assert t["ci_low"] <= t["mean_diff"] <= t["ci_high"] and t["mean_diff"] == pytest.approx(0.02)
    assert paired_group_test(a, a, groups)["mean_diff"] == 0.0


def test_identical_models_give_p_one():
    groups = np.repeat(np.arange(8), 2)
    a = np.linspace(0.1, 0.9, 16)
    assert paired_group_test(a, a, groups)["p"] == 1.0


def test_frame_scores_share_one_class_set_and_keep_empty_frames():
    gt_frame = {"0": (80, 100, 100)}  # LA: Dice 0.8 for both
    a = _run({"1": Frame("f1", "v1", {0: (80, 100, 100)}),
              "2": Frame("f2", "v1", {}),  # empty frame, A predicts nothing
              "3": Frame("f3", "v2", {0: (80, 100, 100), 4: (0, 0, 50)})})  # A adds an RA false alarm
    b = _run({"1": Frame("f1", "v1", {0: (80, 100, 100)}),
              "2": Frame("f2", "v1", {5: (0, 0, 30)}),  # B false-alarms a PV on the empty frame
              "3": Frame("f3", "v2", {0: (80, 100, 100)})})
    sa, sb, groups = paired_frame_scores([a], [b])
    assert gt_frame and groups == ["v1", "v1", "v2"]
    # frame 1: same class set {LA}; frame 2: set {PV}: A correctly empty = 1, B = 0;
    # frame 3: set {LA, RA} for both: A (0.8 + 0) / 2, B (0.8 + 1) / 2
    np.testing.assert_allclose(sa, [0.8, 1.0, 0.4])
    np.testing.assert_allclose(sb, [0.8, 0.0, 0.9])
    # a frame with nothing anywhere scores 1 for both; frames of only one model are not paired
    c = _run({"9": Frame("f9", "v3", {})})
    assert paired_frame_scores([c], [c])[0].tolist() == [1.0]
    assert len(paired_frame_scores([a], [c])[0]) == 0


def _video_records(n_videos: int, false_alarm: bool, dice_shift: float = 0.0) -> list:
    """Per video: 2 frames with LA and LV (same Dice for both models) and 2 empty frames."""
    recs = []
    for v in range(n_videos):
        inter = 80 + v  # Dice (80 + v) / 100 on the structures, identical for both models
        for k in range(2):
            recs.append(synthetic_record(4 * v + k, f"vid{v}", {0: (inter, 100, 100), 2: (inter, 100, 100)}))
        for k in (2, 3):
            recs.append(synthetic_record(4 * v + k, f"vid{v}", {5: (0, 0, 40)} if false_alarm else {}))
    return recs


def test_model_that_false_alarms_on_empty_frames_loses(tmp_path):
    clean = write_eval(tmp_path / "clean", _video_records(8, False), {"enhance": "original", "momentum": 0.9,
                                                                       "study_model_id": 1, "fold": -1, "seed": 0})
    noisy = write_eval(tmp_path / "noisy", _video_records(8, True), {"enhance": "he", "momentum": 0.9,
                                                                      "study_model_id": 2, "fold": -1, "seed": 0})
    table = compare(load_runs([clean, noisy]), n_boot=500)
    rows = {r["model"]: r for r in table["rows"]}
    t = rows["model 2"]["test"]
    assert rows["model 2"]["baseline"] == "model 1"
    # per video: 2 equal frames and 2 frames where model 2 scores 0 instead of 1 -> mean difference -0.5
    assert t["n_groups"] == 8 and t["n_frames"] == 32 and t["mean_diff"] == pytest.approx(-0.5)
    assert t["ci_high"] < 0 and t["p_holm"] < 0.05 and t["rank_biserial"] == -1.0
    assert rows["model 2"]["verdict"] == "worse"
    # the frames both models evaluated are all there: empty frames were not dropped
    assert rows["model 2"]["n_frames"] == 32 and rows["model 2"]["n_groups"] == 8
