"""compare_runs on evaluation folders with known numbers: folds, seeds, Holm, pooling folds, the CLI."""

import csv
import json

from fetalheart.cli.compare_runs import main
from fetalheart.config import get_cfg
from fetalheart.evaluation import build_evaluators
from fetalheart.evaluation.compare import compare, holm, load_runs
from fetalheart.evaluation.pooling import pool_folds
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest
from _evaluation_helpers import PhantomModel, loader, make_coco_dataset, synthetic_record, write_eval
from detectron2.evaluation import inference_on_dataset
from scipy import stats


def _records(dice_by_video: dict[str, float], frames: int = 3, offset: int = 0) -> list:
    """Per video ``frames`` frames with LA and LV at the given Dice (gt = pred area = 100)."""
    recs = []
    for v, (video, dice) in enumerate(dice_by_video.items()):
        inter = int(round(100 * dice))
        for k in range(frames):
            recs.append(synthetic_record(offset + frames * v + k, video, {0: (inter, 100, 100), 2: (inter, 100, 100)}))
    return recs


def _run(root, name, enhance, dice_by_video, segm_ap, model_id, fold=-1, seed=0, offset=0):
    return write_eval(root / name / "eval" / "val", _records(dice_by_video, offset=offset),
                      {"enhance": enhance, "momentum": 0.9, "study_model_id": model_id, "study_name": "",
                       "fold": fold, "seed": seed}, segm_ap=segm_ap).parent.parent


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    videos = [f"vid{k}" for k in range(10)]
    base = dict(zip(videos, rng.uniform(0.5, 0.7, 10), strict=True))
    better = {v: d + rng.uniform(0.1, 0.2) for v, d in base.items()}
    same = {v: d + rng.choice([-0.01, 0.01]) for v, d in base.items()}
    return [_run(tmp_path, "orig", "original", base, 0.30, 1), _run(tmp_path, "ahe_clahe", "ahe+clahe", better, 0.40, 14),
            _run(tmp_path, "he", "he", same, 0.29, 2)]


def test_holm_hand_computed():
    # sorted p: .01*3=.03, .02*2=.04, .04*1=.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([np.nan, 0.01])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.01)


def test_compare_table(runs):
    table = compare(load_runs(runs), n_boot=300)
    rows = {r["model"]: r for r in table["rows"]}
    assert set(rows) == {"model 1", "model 14", "model 2"}
    # COCO AP is one number per evaluation: the leader is not called best without an interval
    assert table["best"] is None and rows["model 14"]["rank_segm_AP"] == 1
    assert "one number per evaluation" in table["best_vs_runner_up"]["note"]
    by_dice = compare(load_runs(runs), n_boot=300, rank_by="dice")
    assert by_dice["best"] == "model 14" and by_dice["best_vs_runner_up"]["difference"]["ci_low"] > 0
    assert rows["model 14"]["segm_AP"] == pytest.approx(0.40)
    assert rows["model 14"]["baseline"] == "model 1" and rows["model 1"]["baseline"] == "(baseline)"
    t = rows["model 14"]["test"]
    # 10 videos, all better: exact two-sided p = 2 / 2**10, Holm x2
    assert t["n_groups"] == 10 and t["n_frames"] == 30 and t["p"] == pytest.approx(2 / 1024)
    assert t["p_holm"] == pytest.approx(min(1, 2 * t["p"])) and rows["model 14"]["verdict"] == "better"
    assert 0.1 <= t["ci_low"] <= t["mean_diff"] <= t["ci_high"] <= 0.2 and t["rank_biserial"] == 1.0
    assert rows["model 2"]["verdict"] == "n.s." and table["n_comparisons"] == 2
    # pooled Dice of a single run is the run's own macro Dice, CI from 10 groups
    assert rows["model 1"]["dice_pooled"] == pytest.approx(rows["model 1"]["dice"], abs=1e-9)
    assert rows["model 1"]["n_groups"] == 10 and rows["model 1"]["dice_ci_low"] < rows["model 1"]["dice"]


def test_folds_and_seeds(tmp_path):
    runs = []
    for fold in range(3):
        videos = {f"f{fold}v{k}": 0.5 + 0.1 * fold + 0.01 * k for k in range(3)}  # each video in one fold
        for seed in (0, 1):
            runs.append(_run(tmp_path, f"b{fold}{seed}", "original", videos, 0.3, 1, fold, seed, offset=100 * fold))
            shifted = {v: d + 0.05 + 0.02 * seed for v, d in videos.items()}
            runs.append(_run(tmp_path, f"m{fold}{seed}", "clahe", shifted, 0.3 + 0.1 * fold + 0.02 * seed, 3, fold,
                             seed, offset=100 * fold))
    table = compare(load_runs(runs), n_boot=200)
    row = next(r for r in table["rows"] if r["model"] == "model 3")
    assert row["n_folds"] == 3 and row["n_seeds"] == 2 and row["n_runs"] == 6
    fold_means = [0.3 + 0.1 * f + 0.01 for f in range(3)]  # seeds averaged within each fold
    assert row["segm_AP"] == pytest.approx(np.mean(fold_means))
    assert row["segm_AP_fold_std"] == pytest.approx(np.std(fold_means, ddof=1))
    assert row["segm_AP_seed_std"] == pytest.approx(np.std([0.0, 0.02], ddof=1))
    t = row["test"]  # paired at fold x video: 3 folds x 3 videos
    assert t["n_groups"] == 9 and t["n_frames"] == 27 and t["mean_diff"] == pytest.approx(0.06, abs=1e-9)
    # 9 groups all better (p alone 2 / 512), but 2 seeds whose means differ by 0.02: the interval has the seed
    # variance with 1 df (Welch-Satterthwaite) and crosses 0, so no verdict of "better"
    assert t["alone"]["p"] == pytest.approx(2 / 512) and t["n_seeds"] == [2, 2] and t["df"] == pytest.approx(1.0)
    half = stats.t.ppf(0.975, 1) * np.sqrt(np.var([0.05, 0.07], ddof=1) / 2)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((0.06 - half, 0.06 + half))
    assert row["verdict"] == "n.s. with seed variation (interval crosses 0)" and row["n_groups"] == 9
    # a model may not mix fold runs with plain runs
    extra = _run(tmp_path, "plain", "clahe", {"x": 0.5}, 0.3, 3)
    with pytest.raises(FetalHeartError, match="mixes fold runs"):
        compare(load_runs([*runs, extra]))


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--bootstrap", "200"]) == 0
    for f in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (out / f).is_file()
    with open(out / "comparison.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert rows["model 14"]["verdict"] == "better" and float(rows["model 14"]["p_holm"]) < 0.01
    md = (out / "comparison.md").read_text()
    assert "Wilcoxon" in md and "| 1 | model 14 |" in md and "**Paired comparison**" in md
    assert "Primary comparisons: each model against its baseline" in md
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--primary", "model 14,model 2",
                 "--rank-by", "study_mAP", "--bootstrap", "0"]) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert table["primary"]["a"] == "model 14" and table["primary"]["tests"]["dice"]["verdict"] == "better"
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--primary", "model 14"]) == 2
    assert "two models" in capsys.readouterr().err
    # refuses to overwrite; one-line error, exit 2
    assert main([*map(str, runs), "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--group-regex", "(["]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err
    # regroup by file name: the synthetic names are /data/vid<k>_<id>.png -> 2 groups: vid0, vid1..vid9
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--group-regex", r"(vid\d)"]) == 0
    table = json.loads((out / "comparison.json").read_text())
    t = next(r for r in table["rows"] if r["model"] == "model 14")["test"]
    assert t["n_groups"] == 10 and t["p"] is not None
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--group-regex", r"(vid[0-2])_"]) == 2
    assert "does not match" in capsys.readouterr().err


def _fold_eval(tmp_path, name, first, n, perturb):
    ds = make_coco_dataset(tmp_path / "data", first=first, n_images=n, empty=(1, 5))
    cfg = get_cfg()
    cfg.EVAL.BOOTSTRAP_SAMPLES = 100
    ev = build_evaluators(cfg, ds, str(tmp_path / name))
    return inference_on_dataset(PhantomModel(ds, **perturb), loader(ds), ev), ev.report


def test_pool_folds_equals_one_evaluation_of_the_union(tmp_path):
    perturb = {"shift": {0: 5}, "extra_fp": True}
    # the same 8 frames, once as two disjoint folds and once as one dataset
    _fold_eval(tmp_path, "fold0", 0, 4, perturb)
    _fold_eval(tmp_path, "fold1", 4, 4, perturb)
    results, union = _fold_eval(tmp_path, "union", 0, 8, perturb)
    pooled = pool_folds([tmp_path / "fold0", tmp_path / "fold1"], tmp_path / "pooled")
    for key in ("overall", "per_class", "study_map", "confusion_matrix"):
        assert json.dumps(pooled[key], sort_keys=True, default=str) == json.dumps(union[key], sort_keys=True,
                                                                                 default=str), key
    for task in ("segm", "bbox"):
        for k in ("AP", "AP50", "AP75", "AP-LA", "AP-LV", "AP-Spine"):
            assert pooled["coco"][task][k] == pytest.approx(results[task][k], abs=1e-9), (task, k)
    assert pooled["coco"]["segm"]["AP"] < 100 and (tmp_path / "pooled" / "report.md").is_file()
    assert pooled["run"]["fold"] == "pooled" and pooled["n_images"] == 8
    # COCO AP ranks detections of 2 models together: labelled so, the folds' own mean +/- std kept beside it
    fold_ap = [json.loads((tmp_path / f / "report.json").read_text())["coco"]["segm"]["AP"] / 100 for f in ("fold0", "fold1")]
    assert pooled["coco_folds"]["segm"]["mean"] == pytest.approx(np.mean(fold_ap))
    assert pooled["coco_folds"]["segm"]["std"] == pytest.approx(np.std(fold_ap, ddof=1))
    md = (tmp_path / "pooled" / "report.md").read_text()
    assert "pooled over 2 models" in md and "mean +/- std over folds" in md
    with pytest.raises(FetalHeartError, match="exists"):
        pool_folds([tmp_path / "fold0", tmp_path / "fold1"], tmp_path / "pooled")
    with pytest.raises(FetalHeartError, match="several folds"):
        pool_folds([tmp_path / "fold0", tmp_path / "union"], tmp_path / "bad")


def test_comparison_figure_has_no_zero_width_whiskers_and_states_n(tmp_path, monkeypatch):
    """One validation video (the demo): no CI, so no whisker at all, and the figure says n = 1 video."""
    from fetalheart.evaluation import plots
    from fetalheart.evaluation.compare import comparison_figure

    one = [_run(tmp_path, "o", "original", {"vid0": 0.6}, 0.3, 1), _run(tmp_path, "a", "ahe+clahe", {"vid0": 0.7}, 0.4, 14)]
    many = [_run(tmp_path, f"m{k}", e, {f"vid{v}": 0.5 + 0.02 * v + 0.05 * k for v in range(12)}, 0.3, k + 1)
            for k, e in enumerate(("original", "clahe"))]
    figs = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, overwrite=True: (figs.append(fig), real_save(fig, path))[1])
    for runs, name in ((one, "one.png"), (many, "many.png")):
        table = compare(load_runs(runs), n_boot=200, rank_by="dice")
        comparison_figure(table, tmp_path / name)
    for fig, n_groups in zip(figs, (1, 12), strict=True):
        ax = fig.axes[0]
        assert f"n = {n_groups} group" in ax.get_title()
        whiskers = [seg for c in ax.containers if hasattr(c, "lines") and c.lines[2]
                    for lc in c.lines[2] for seg in lc.get_segments()]
        assert all(abs(seg[1][1] - seg[0][1]) > 1e-9 for seg in whiskers)  # no zero-width whisker
        texts = [t.get_text() for t in ax.texts]
        if n_groups == 1:
            assert not whiskers and sum("n = 1 video" in t for t in texts) == 2
        else:
            assert len(whiskers) == 4 and not any("no CI" in t for t in texts)  # IoU and Dice of 2 models


def test_runs_scored_differently_are_refused(tmp_path):
    from fetalheart.evaluation.settings import EvalSettings

    recs = _records({"vid0": 0.6, "vid1": 0.7})
    run = {"enhance": "original", "momentum": 0.9, "study_model_id": 1, "study_name": "", "fold": -1, "seed": 0}
    a = write_eval(tmp_path / "a", recs, run)
    b = write_eval(tmp_path / "b", recs, {**run, "enhance": "he", "study_model_id": 2},
                   settings=EvalSettings(bootstrap_samples=200, score_thresh=0.7))
    with pytest.raises(FetalHeartError, match="EVAL.SCORE_THRESH"):
        compare(load_runs([a, b]))
    c = write_eval(tmp_path / "c", recs, {**run, "enhance": "he", "study_model_id": 2})
    assert len(compare(load_runs([a, c]), n_boot=0)["rows"]) == 2


def test_runs_scored_differently_are_compared_when_told_and_the_table_says_so(tmp_path, capsys):
    from fetalheart.evaluation.settings import EvalSettings

    recs = _records({"vid0": 0.6, "vid1": 0.7})
    run = {"enhance": "original", "momentum": 0.9, "study_model_id": 1, "study_name": "", "fold": -1, "seed": 0}
    a = write_eval(tmp_path / "a", recs, run)
    b = write_eval(tmp_path / "b", recs, {**run, "enhance": "he", "study_model_id": 2},
                   settings=EvalSettings(bootstrap_samples=200, score_thresh=0.7))
    assert main([str(a), str(b), "-o", str(tmp_path / "refused"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EVAL.SCORE_THRESH 0.7 vs 0.5" in err and str(a) in err and str(b) in err
    assert not (tmp_path / "refused").exists()
    assert main([str(a), str(b), "-o", str(tmp_path / "anyway"), "--allow-different", "-q", "--bootstrap", "0"]) == 0
    md = (tmp_path / "anyway" / "comparison.md").read_text()
    assert "Compared anyway (--allow-different)" in md and "EVAL.SCORE_THRESH 0.7 vs 0.5" in md
    assert json.loads((tmp_path / "anyway" / "comparison.json").read_text())["differences"]


def _renumbered(recs: list, first: int) -> list:
    """The same frames (names, ground truth) under other image ids, as another conversion may number them."""
    return [{**r, "image_id": first + k} for k, r in enumerate(recs)]


def test_frames_are_paired_by_name_and_other_ground_truth_is_refused(tmp_path):
    run = {"enhance": "original", "momentum": 0.9, "study_model_id": 1, "study_name": "", "fold": -1, "seed": 0}
    he = {**run, "enhance": "he", "study_model_id": 2}
    base = _records({f"vid{k}": 0.6 for k in range(4)})
    better = _records({f"vid{k}": 0.8 for k in range(4)})
    a = write_eval(tmp_path / "a", base, run)
    b = write_eval(tmp_path / "b", _renumbered(better, 500), he)  # other ids, same frames
    t = {r["model"]: r for r in compare(load_runs([a, b]), n_boot=0)["rows"]}["model 2"]["test"]
    assert t["n_frames"] == 12 and t["n_groups"] == 4 and t["mean_diff"] == pytest.approx(0.2)
    assert json.loads((a / "report.json").read_text())["ground_truth"]["n_images"] == 12

    relabelled = [dict(r) for r in better]
    relabelled[4] = {**relabelled[4], "gt": "0" * 32}  # one frame's labels edited between the two runs
    c = write_eval(tmp_path / "c", relabelled, he)
    with pytest.raises(FetalHeartError, match=r"different ground truth: different ground truth on 1 frame, "
                                              r"e\.g\. vid1_4\.png"):
        compare(load_runs([a, c]))
    d = write_eval(tmp_path / "d", better[:9], he)  # the last video not evaluated
    with pytest.raises(FetalHeartError, match=r"3 frames, e\.g\. vid3_10\.png only in .*a"):
        compare(load_runs([a, d]))
    table = compare(load_runs([a, d]), n_boot=0, allow_different=True)
    assert "only in" in table["differences"][0]
    # other folds hold other frames by design: not a difference
    e = write_eval(tmp_path / "e", _records({"vid9": 0.6}, offset=90), {**run, "fold": 1})
    f = write_eval(tmp_path / "f", base, {**run, "fold": 0})
    assert compare(load_runs([f, e]), n_boot=0)["differences"] == []


def test_two_frames_of_one_name_are_refused(tmp_path):
    recs = _records({"vid0": 0.6})
    recs[1] = {**recs[1], "name": recs[0]["name"]}
    a = write_eval(tmp_path / "a", recs, {"enhance": "original", "momentum": 0.9, "study_model_id": 1,
                                          "study_name": "", "fold": -1, "seed": 0})
    with pytest.raises(FetalHeartError, match=r"two evaluated frames are named 'vid0_0\.png'"):
        load_runs([a])
