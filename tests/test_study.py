"""End to end: the demo chain at a tiny scale, every artifact present and parseable; study configs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_demo_chain_writes_every_artifact(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "tools/run_study.py", "--demo", "--iters", "2", "--size", "96", "--seconds", "1",
           "-o", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert f"Report: {out / 'report.md'}" in proc.stdout
    for stage in ("phantom", "frames", "labelme", "coco", "runs", "evaluations", "compare"):
        assert json.loads((out / stage / "stage.json").read_text())["what"]
    # frames: one phantom video per seed, frames.csv, kept frames with ground truth mapped onto them
    rows = list(csv.DictReader(open(out / "frames" / "frames.csv")))
    kept = [r for r in rows if r["status"] == "kept"]
    assert kept and {Path(r["source"]).stem for r in rows} == {"phantom_s0", "phantom_s1", "phantom_s2"}
    assert len([p for p in (out / "labelme").glob("*.json") if p.name != "stage.json"]) == len(kept)
    # COCO split by video: no video on both sides
    groups = json.loads((out / "coco" / "conversion_report.json").read_text())["split"]["groups"]
    assert sorted(set(groups.values())) == ["train", "val"]
    from pycocotools.coco import COCO

    for split in ("train", "val"):
        COCO(str(out / "coco" / "annotations" / f"{split}.json"))
    # two trained models, each with config, metrics, weights and an evaluation report
    for model, spec in (("model02", "original"), ("model14", "ahe+clahe")):
        run = out / "runs" / model
        assert f'ENHANCE: {spec}' in (run / "config.yaml").read_text()
        assert (run / "model_final.pth").is_file() and (run / "env.json").is_file()
        metrics = [json.loads(x) for x in (run / "metrics.json").read_text().splitlines()]
        assert any("val_total_loss" in m for m in metrics) and any("loss_mask" in m for m in metrics)
        ev = run / "eval" / "fetalheart_val"
        report = json.loads((ev / "report.json").read_text())
        assert report["run"]["enhance"] == spec
        for name in ("report.md", "per_class.csv", "per_image.csv", "plots/per_class.png"):
            assert (ev / name).is_file(), name
        # what the model's enhancement changed: per step, frames changed / total, in env.json and the report
        changes = json.loads((run / "env.json").read_text())["enhancement_changes"]
        assert [st["step"] for st in changes["steps"]] == ([] if spec == "original" else ["ahe", "ahe+clahe"])
        for st in report["enhancement_changes"]["steps"]:
            assert st["frames_total"] == report["n_images"] and 0 <= st["frames_changed"] <= st["frames_total"]
        if spec != "original":
            assert "## Enhancement" in (ev / "report.md").read_text()
    comparison = json.loads((out / "compare" / "comparison.json").read_text())
    assert len(comparison["rows"]) == 2 and (out / "compare" / "comparison.png").is_file()
    assert "Model comparison" in (out / "report.md").read_text()
    # A second run reuses every stage.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("] reused ") == 7, again.stdout
    report = (out / "report.md").read_text()
    assert report.count("comparison.png") == 1 and report.count("per_class.png") == 2  # each figure once


def _study(tmp_path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "tools/run_study.py", "--config-file", str(cfg), "-o", str(tmp_path / "o")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("text, words", [
    ("labelme: /nonexistent/folder\n", "is not a folder"),
    ("labelme: .\nnot_a_key: 1\n", "unknown keys ['not_a_key']"),
    ("output: x\n", "nothing to do"),
    ("labelme: [unclosed\n", "not valid YAML"),
])
def test_bad_study_config_is_one_line(tmp_path, text, words):
    proc = _study(tmp_path, text)
    assert proc.returncode != 0 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_shipped_study_config_parses():
    from argparse import Namespace

    from fetalheart.cli.run_study import config_plan

    plan_text = (REPO / "configs" / "study.yaml").read_text()
    assert "grid: configs/study_grid.yaml" in plan_text
    with pytest.raises(Exception, match="data/labelme is not a folder"):
        config_plan(Namespace(config="configs/study.yaml", output=None, overwrite=False, force=False, quiet=True,
                              folds=None, only=None, max_parallel=None))
