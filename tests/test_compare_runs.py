"""compare_runs on fake run folders with known numbers; Holm; the CLI."""

import csv
import json

from fetalheart.cli.compare_runs import main
from fetalheart.evaluation.compare import compare, holm, load_runs, paired_wilcoxon

import numpy as np
import pytest


def fake_run(root, name, enhance, momentum, dice_per_image, segm_ap, model_id=0, seed=0):
    """A run folder as train_net + evaluate leave it: config.yaml, eval/val/{report.json,per_image.csv}."""
    run = root / name
    ev = run / "eval" / "val"
    ev.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"INPUT:\n  ENHANCE: {enhance}\nSOLVER:\n  MOMENTUM: {momentum}\nSTUDY:\n  MODEL_ID: {model_id}\n"
        f"  NAME: ''\nSEED: {seed}\n")
    d = np.asarray(dice_per_image, float)
    report = {
        "dataset": "val",
        "coco": {"segm": {"AP": segm_ap * 100}, "bbox": {"AP": 0.0}},
        "study_map": {"mAP": segm_ap * 0.9},
        "overall": {"iou_macro": {"mean": float(d.mean()) * 0.8, "ci_low": None, "ci_high": None},
                    "dice_macro": {"mean": float(d.mean()), "ci_low": float(d.min()), "ci_high": float(d.max())}},
    }
    (ev / "report.json").write_text(json.dumps(report))
    with open(ev / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "file_name", "class", "iou", "dice"])
        for i, v in enumerate(d):  # two classes per image, mean = v
            w.writerow([i, f"img{i}.png", "LA", 0, v - 0.05])
            w.writerow([i, f"img{i}.png", "RA", 0, v + 0.05])
    return run


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, 20)
    return [
        fake_run(tmp_path, "orig", "original", 0.9, base, 0.30, model_id=1),
        fake_run(tmp_path, "ahe_clahe", "ahe+clahe", 0.9, base + rng.uniform(0.1, 0.2, 20), 0.40, model_id=14),
        fake_run(tmp_path, "he", "he", 0.9, base + rng.normal(0, 0.01, 20), 0.29, model_id=2),
        fake_run(tmp_path, "orig_m99", "original", 0.99, base - 0.1, 0.2, model_id=12),
    ]


def test_holm_hand_computed():
    # sorted p: .01*3=.03, .02*2=.04, .04*1=.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([np.nan, 0.01])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.01)


def test_paired_wilcoxon():
    a = {str(i): 0.5 + 0.01 * i for i in range(12)}
    b = {k: v - 0.1 for k, v in a.items()}
    t = paired_wilcoxon(a, b)
    assert t["n"] == 12 and t["p"] < 0.001 and t["median_diff"] == pytest.approx(0.1)
    assert paired_wilcoxon(a, a)["p"] == 1.0
    assert paired_wilcoxon(a, {"x": 1.0})["n"] == 0


def test_compare_table(runs):
    table = compare(load_runs(runs))
    rows = {r["model"]: r for r in table["rows"]}
    assert set(rows) == {"model 1", "model 14", "model 2", "model 12"}
    assert table["best"] == "model 14" and rows["model 14"]["rank_segm_AP"] == 1
    assert rows["model 14"]["segm_AP"] == pytest.approx(0.40)
    # baseline: Original at the same momentum
    assert rows["model 14"]["baseline"] == "model 1" and rows["model 2"]["baseline"] == "model 1"
    assert rows["model 12"]["baseline"] == "(baseline)" and rows["model 1"]["baseline"] == "(baseline)"
    t = rows["model 14"]["test"]
    assert t["n"] == 20 and t["p_holm"] < 0.001 and rows["model 14"]["verdict"] == "better"
    assert t["p_holm"] == pytest.approx(min(1, 2 * t["p"])) or t["p_holm"] >= t["p"]
    assert rows["model 2"]["verdict"] == "n.s."
    assert table["n_comparisons"] == 2


def test_seeds_grouped(tmp_path):
    base = np.linspace(0.3, 0.7, 10)
    a = fake_run(tmp_path, "s0", "ahe", 0.9, base, 0.30, model_id=3, seed=0)
    b = fake_run(tmp_path, "s1", "ahe", 0.9, base + 0.02, 0.34, model_id=3, seed=1)
    table = compare(load_runs([a, b]))
    (row,) = table["rows"]
    assert row["n_seeds"] == 2
    assert row["segm_AP"] == pytest.approx(0.32)
    assert row["segm_AP_seed_std"] == pytest.approx(np.std([0.30, 0.34], ddof=1))


def test_cli(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([*map(str, runs), "-o", str(out), "--quiet"]) == 0
    for f in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (out / f).is_file()
    with open(out / "comparison.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert rows["model 14"]["verdict"] == "better" and float(rows["model 14"]["p_holm"]) < 0.001
    md = (out / "comparison.md").read_text()
    assert "Wilcoxon" in md and "| 1 | model 14 |" in md
    # refuses to overwrite; one-line error, exit 2
    assert main([*map(str, runs), "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert main([*map(str, runs), "-o", str(out), "--quiet", "--overwrite", "--baseline", "model 2"]) == 0
