"""Grouped K-fold cross-validation end to end (issue 13 item 4): `run_study --demo --folds 3`.

Every model trains on every fold, each fold's model is evaluated on its own validation fold (one
video each), the out-of-fold evaluations are pooled per model (every frame exactly once), and the
report shows per-fold numbers (mean +/- std over folds) and the pooled ones with their n.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_as_three_fold_cross_validation(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "tools/run_study.py", "--demo", "--folds", "3", "--iters", "2", "--size",
                           "96", "--seconds", "1", "-o", str(out), "-q"], cwd=REPO, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    report = json.loads((out / "coco" / "conversion_report.json").read_text())
    per_fold = report["folds"]["per_fold"]
    assert len(per_fold) == 3 and sum(f["val"] for f in per_fold) == report["images"]["total"]
    for model in ("model02", "model14"):
        for k in range(3):  # every model on every fold, evaluated on that fold's own validation videos
            ev = out / "runs" / model / f"fold{k}" / "eval" / f"fetalheart_fold{k}_val" / "report.json"
            assert json.loads(ev.read_text())["run"]["fold"] == k
        pooled = json.loads((out / "evaluations" / model / "pooled" / "report.json").read_text())
        assert pooled["n_images"] == report["images"]["total"] and pooled["n_groups"] == 3  # each frame once
    md = (out / "report.md").read_text()
    assert "(3 folds)" in md and "Pooled out-of-fold evaluation" in md and "frames / groups" in md
    assert "3 folds; out-of-fold predictions pooled per model" in md
