"""The paired comparison: one class set per frame, empty frames kept, groups (videos) as samples.

The statistics are checked against scipy called directly on the group means.
"""


from fetalheart.evaluation.compare import (
    EvaluatedRun,
    Frame,
    compare,
    comparison_markdown,
    holm,
    load_runs,
    paired_frame_scores,
    paired_group_test,
    rank_biserial,
    verdict,
)
from fetalheart.evaluation.metrics import bootstrap_rng
from fetalheart.evaluation.paired import (
    MIN_GROUPS_FOR_BOOTSTRAP,
    groups_needed,
    min_adjusted_p,
    paired_effect,
    reachable_p_table,
    wilcoxon_p,
)

import numpy as np
import pytest
from _evaluation_helpers import synthetic_record, write_eval
from scipy import stats


def _run(frames: dict, label="m", enhance="original", fold=-1, seed=0):
    return EvaluatedRun(path=None, label=label, enhance=enhance, momentum=0.9, model_id=0, seed=seed, dataset="v",
                        metrics={}, fold=fold, frames=frames)


def test_wilcoxon_and_t_interval_equal_scipy_on_group_means():
    rng = np.random.default_rng(3)
    groups = np.repeat([f"v{k}" for k in range(9)], 5)  # 9 videos x 5 frames: below the bootstrap minimum
    a = rng.uniform(0.5, 0.9, 45)
    b = a - rng.normal(0.05, 0.05, 45)
    t = paired_group_test(a, b, groups, n_boot=800, seed=5)
    ma, mb = a.reshape(9, 5).mean(1), b.reshape(9, 5).mean(1)
    ref = stats.wilcoxon(ma, mb, alternative="two-sided", method="exact")
    assert t["p"] == pytest.approx(ref.pvalue, rel=1e-12) and t["statistic"] == ref.statistic
    ci = stats.ttest_rel(ma, mb).confidence_interval(0.95)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert t["ci_method"] == "t over 9 groups (df 8)"
    assert t["mean_diff"] == pytest.approx((ma - mb).mean()) and t["n_groups"] == 9 and t["n_frames"] == 45
    assert t["rank_biserial"] == pytest.approx(rank_biserial(ma - mb))


def test_bootstrap_interval_from_the_documented_number_of_groups():
    rng = np.random.default_rng(4)
    n = MIN_GROUPS_FOR_BOOTSTRAP
    groups = np.repeat(np.arange(n), 3)
    a = rng.uniform(0.5, 0.9, 3 * n)
    b = a - rng.normal(0.03, 0.05, 3 * n)
    t = paired_group_test(a, b, groups, n_boot=800, seed=5)
    d = a.reshape(n, 3).mean(1) - b.reshape(n, 3).mean(1)
    ci = stats.bootstrap((d,), np.mean, n_resamples=800, method="percentile", **bootstrap_rng(5)).confidence_interval
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert t["ci_method"].startswith(f"percentile bootstrap over {n} groups")
    # one group fewer: the t-interval instead
    t9 = paired_group_test(a[:-3], b[:-3], groups[:-3], n_boot=800, seed=5)
    assert t9["ci_method"].startswith("t over") and t9["ci_low"] == pytest.approx(
        stats.ttest_rel(a[:-3].reshape(n - 1, 3).mean(1), b[:-3].reshape(n - 1, 3).mean(1)).confidence_interval().low)


def test_exact_wilcoxon_handles_ties_and_zeros_as_scipy():
    d = np.array([0.05, 0.05, 0.0, 0.05, 0.1, 0.1, 0.05, -0.02])
    p, _ = wilcoxon_p(d)
    assert p == pytest.approx(stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue)
    assert wilcoxon_p(np.full(8, 0.05))[0] == pytest.approx(2 / 2 ** 8) == pytest.approx(stats.wilcoxon(
        np.full(8, 0.05)).pvalue)


def test_rank_biserial_hand_computed():
    # |d| ranks 1, 2, 3, 4; T+ = 1 + 2 + 4 = 7, T- = 3 -> (7 - 3) / 10
    assert rank_biserial(np.array([1.0, 2.0, -3.0, 4.0])) == pytest.approx(0.4)
    assert rank_biserial(np.array([0.1, 0.2, 0.0])) == 1.0
    assert rank_biserial(np.zeros(3)) == 0.0


def test_few_groups_t_interval_and_no_reachable_p():
    # 300 frames of 3 videos: a frame-level test would call this highly significant
    groups = np.repeat(["a", "b", "c"], 100)
    a = np.repeat([0.8, 0.7, 0.75], 100)
    b = a - np.repeat([0.02, 0.01, 0.03], 100)
    t = paired_group_test(a, b, groups, n_boot=200)
    assert t["n_groups"] == 3 and "cannot reach alpha with 3 groups and 1 comparison" in t["note"]
    assert verdict(t, t["p"], 1, 0.05) == "cannot reach alpha with 3 groups and 1 comparison"
    ci = stats.ttest_rel([0.8, 0.7, 0.75], [0.78, 0.69, 0.72]).confidence_interval()
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((ci.low, ci.high)) and t["mean_diff"] == pytest.approx(0.02)
    one = paired_group_test(a[:100], b[:100], groups[:100])
    assert np.isnan(one["ci_low"]) and one["ci_method"] == "none" and "1 group" in one["note"]


def test_holm_worked_example():
    # Holm (1979) step-down by hand: sorted .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a family of 20 with one tested p: m = 20, not 1
    assert holm([2 / 256, np.nan], m=20)[0] == pytest.approx(20 * 2 / 256)


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


# --- Power before p-values, seeds, best (issue 20 acceptance) ---------------------------------


def test_reachable_p_table_and_groups_needed():
    for n in range(3, 13):
        for m in (1, 10, 20):
            assert min_adjusted_p(n, m) == pytest.approx(min(1.0, m * 2 / 2 ** n))
    # the numbers: 20 comparisons, 6 videos -> 0.625, 9 videos -> 0.078
    assert min_adjusted_p(6, 20) == pytest.approx(0.625) and min_adjusted_p(9, 20) == pytest.approx(0.078125)
    assert [groups_needed(m) for m in (1, 10, 20)] == [6, 9, 10]
    table = reachable_p_table()
    assert "| 5 | 0.0625 (cannot reach alpha) |" in table and "| 6 | 0.03125 | 0.3125 (cannot reach alpha) |" in table
    assert "| 10 | 0.001953 | 0.01953 | 0.03906 |" in table
    # scipy's own smallest exact p (all differences positive) is the bound
    for n in (3, 6, 9):
        assert stats.wilcoxon(np.arange(1.0, n + 1), method="exact").pvalue == pytest.approx(min_adjusted_p(n, 1))


@pytest.mark.parametrize("m, n_switch", [(1, 6), (10, 9), (20, 10)])
def test_wording_switches_at_the_right_number_of_groups(m, n_switch):
    for n in (n_switch - 1, n_switch):
        d = np.linspace(0.01, 0.05, n)  # every group favours the model: the smallest p there is
        t = paired_effect(d[:, None], np.zeros((n, 1)), n_boot=0)
        p_adj = min(1.0, m * t["p"])
        words = verdict(t, p_adj, m, 0.05)
        if n < n_switch:
            assert words == f"cannot reach alpha with {n} groups and {m} comparison{'s' * (m > 1)}"
        else:
            assert words == "better" and p_adj < 0.05


def _synthetic_runs(n_videos: int, dice_by_model: dict, seeds: dict | None = None) -> list:
    """One run per model (and seed): per video 2 frames with LA at the model's Dice on that video."""
    runs = []
    for k, (name, dice) in enumerate(dice_by_model.items()):
        for s, offset in (seeds or {0: 0.0}).items():
            frames = {}
            for v in range(n_videos):
                inter = 100 * float(np.clip(dice[v] + (offset[k] if isinstance(offset, list) else 0.0), 0, 1))
                for f in range(2):
                    frames[f"{v}-{f}"] = Frame(f"vid{v}_{f}.png", f"vid{v}", {0: (inter, 100, 100)})
            metrics = {m: np.nan for m in ("segm_AP", "study_mAP", "corrected_mAP", "iou")}
            metrics["dice"] = float(np.mean([f.counts[0][0] / 100 for f in frames.values()]))
            runs.append(EvaluatedRun(path=None, label=name, enhance="original" if k == 0 else f"e{k}", momentum=0.9,
                                     model_id=k + 1, seed=s, dataset="v", metrics=metrics, frames=frames))
    return runs


def test_eight_videos_focused_pair_significant_family_of_twenty_cannot():
    rng = np.random.default_rng(20)
    base = rng.uniform(0.6, 0.8, 8)
    models = {"baseline": base, "better": base + 0.05}
    models.update({f"other{k}": base + rng.normal(0, 0.01, 8) for k in range(19)})  # 20 comparisons in all
    table = compare(_synthetic_runs(8, models), rank_by="dice", n_boot=0, primary=("better", "baseline"))
    row = next(r for r in table["rows"] if r["model"] == "better")
    t = row["test"]
    assert table["n_comparisons"] == 20 and t["n_groups"] == 8 and t["mean_diff"] == pytest.approx(0.05)
    ref = stats.wilcoxon(np.full(8, 0.05) + 1e-12 * np.arange(8), method="exact").pvalue
    assert t["alone"]["p"] == pytest.approx(ref) == pytest.approx(2 / 256)
    assert row["verdict_alone"] == "better" and t["alone"]["reachable"]
    assert row["verdict"] == "cannot reach alpha with 8 groups and 20 comparisons" and not t["reachable"]
    assert table["primary"]["tests"]["dice"]["verdict"] == "better"
    md = comparison_markdown(table)
    line = next(x for x in md.splitlines() if x.startswith("| ") and "| better |" in x and "baseline" in x)
    assert "cannot reach alpha with 8 groups and 20 comparisons" in line and "| 0.0078 | better |" in line
    assert "Primary comparison (chosen with --primary" in md
    print("\n".join([line, *[x for x in md.splitlines() if x.startswith("| Dice |")], md.splitlines()[4]]))


def test_three_seeds_four_videos_seed_noise_beats_the_model_difference_no_best():
    base = np.array([0.70, 0.72, 0.68, 0.74])
    models = {"baseline": base, "model": base + 0.02}
    # per seed a whole-model offset (training noise) of +-0.08: larger than the 0.02 difference
    seeds = {0: [0.0, 0.08], 1: [0.0, -0.08], 2: [0.0, 0.03]}
    table = compare(_synthetic_runs(4, models, seeds), rank_by="dice", n_boot=0)
    assert table["best"] is None and "crosses 0" in table["best_vs_runner_up"]["note"]
    t = table["best_vs_runner_up"]["difference"]
    assert t["n_groups"] == 4 and t["n_seeds"] == [3, 3] and t["ci_low"] < 0 < t["ci_high"]
    # the interval by hand: video variance / n + seed variance / seeds, Welch-Satterthwaite df, scipy's t.ppf
    per_seed = np.array([0.02 + o[1] for o in seeds.values()])
    d = np.full(4, per_seed.mean())
    v_seed = per_seed.var(ddof=1) / 3
    v_video = d.var(ddof=1) / 4
    assert v_video == pytest.approx(0.0) and t["df"] == pytest.approx(2.0)  # only the model's seed part (the baseline's seeds agree): 3 - 1 df
    half = stats.t.ppf(0.975, 2) * np.sqrt(v_seed + v_video)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert t["seed_sd"][0] == pytest.approx(per_seed.std(ddof=1)) and t["video_sd"] == pytest.approx(0.0)
    # the same data with seed 0 only: the 0.02 lead on all 4 videos has a t-interval that excludes 0
    one = compare(_synthetic_runs(4, models, {0: [0.0, 0.0]}), rank_by="dice", n_boot=0)
    assert one["best"] == "model"


def test_docs_statistics_table_is_the_code_output():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "statistics.md").read_text(encoding="utf-8")
    block = text.split("<!-- reachable-p-table -->\n")[1].split("\n<!-- /reachable-p-table -->")[0]
    assert block == reachable_p_table()
