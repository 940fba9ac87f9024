"""run_study stages are keyed by what they depend on (issue 15 item 4).

A changed plan reruns exactly the stages it affects and says why; an unrelated change reruns
nothing; --overwrite reruns stages but keeps a trained model still valid for the plan; stopping for
labelling is a normal exit that prints the next command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = ("convert", "train", "evaluate", "compare")

pytestmark = pytest.mark.slow


def _labelme(folder: Path) -> None:
    """3 'videos' x 2 frames with an LV and an RV each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for video in "abc":
        for i in range(2):
            img = rng.gamma(4.0, 10.0, size=(64, 96)).clip(0, 255).astype(np.uint8)
            shapes = []
            for label, cx, value in (("LV", 30, 180), ("RV", 66, 120)):
                t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
                pts = np.stack([cx + 12 * np.cos(t), 32 + 10 * np.sin(t)], 1)
                cv2.fillPoly(img, [pts.round().astype(np.int32)], value)
                shapes.append({"label": label, "points": pts.round(2).tolist(), "shape_type": "polygon"})
            name = f"{video}_{i:06d}"
            cv2.imwrite(str(folder / f"{name}.png"), img)
            (folder / f"{name}.json").write_text(json.dumps({"shapes": shapes, "imagePath": f"{name}.png"}))


def _config(tmp_path: Path, val_fraction: float, max_parallel: int) -> Path:
    opts = ["SOLVER.EPOCHS", 0, "SOLVER.MAX_ITER", 2, "INPUT.MAX_SIZE_TRAIN", 64, "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TEST", 64, "INPUT.MIN_SIZE_TEST", 64, "INPUT.SQUARE_SIZE", 0, "DATALOADER.NUM_WORKERS", 0,
            "TEST.EVAL_DURING_TRAINING", False, "TEST.VAL_LOSS", False, "EVAL.BOOTSTRAP_SAMPLES", 20]
    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "labelme": str(tmp_path / "labelme"), "output": str(tmp_path / "out"), "grid": "configs/demo_grid.yaml",
        "base": "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml", "overlays": ["configs/overlays/cpu.yaml"],
        "only": [1], "convert": {"val_fraction": val_fraction, "seed": 0}, "max_parallel": max_parallel,
        "opts": [str(x) for x in opts]}))
    return cfg


def _run(cfg: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "tools/run_study.py", "--config-file", str(cfg), "-q", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc.stdout


def _reran(log: str) -> set[str]:
    return {s for s in ("phantom", "extract", *STAGES) if f"[{s}] running" in log}


def test_changed_plan_reruns_exactly_the_affected_stages(tmp_path):
    _labelme(tmp_path / "labelme")
    first = _run(_config(tmp_path, 0.34, 1))
    assert _reran(first) == set(STAGES) and "[convert] running (first run)" in first
    model = tmp_path / "out" / "runs" / "model02" / "model_final.pth"
    stamp = model.stat().st_mtime_ns

    unrelated = _run(_config(tmp_path, 0.34, 2))  # how the work runs, not what it computes
    assert _reran(unrelated) == set() and unrelated.count("] reused ") == len(STAGES)

    same_split = _run(_config(tmp_path, 0.4, 2))  # 0.4 gives the same 1-of-3-videos split: same data
    assert "[convert] running (changed: convert" in same_split and "skip model02: finished" in same_split
    assert model.stat().st_mtime_ns == stamp  # the model is keyed by the data's content, not by the option

    changed = _run(_config(tmp_path, 0.67, 2))
    assert _reran(changed) == set(STAGES)
    assert "[convert] running (changed: convert" in changed and '"val_fraction": 0.67' in changed
    assert "[train] running (changed: stage convert changed)" in changed
    assert "its config or dataset changed" in changed  # the model of the old split is not reused
    assert model.stat().st_mtime_ns != stamp and len(list((tmp_path / "out" / "runs" / ".stale").iterdir())) == 1

    stamp = model.stat().st_mtime_ns
    overwrite = _run(_config(tmp_path, 0.67, 2), "--overwrite")
    assert _reran(overwrite) == set(STAGES) and "skip model02: finished" in overwrite
    assert model.stat().st_mtime_ns == stamp  # a valid trained model survives --overwrite
    forced = _run(_config(tmp_path, 0.67, 2), "--overwrite", "--force")
    assert "--force: training it again" in forced and model.stat().st_mtime_ns != stamp


def test_stop_for_labelling_is_a_normal_exit(tmp_path):
    from fetalheart.phantom import PhantomSpec, make_phantom

    make_phantom(tmp_path / "ph", PhantomSpec(seconds=0.5, size=(160, 96), seed=0), quiet=True)
    (tmp_path / "videos").mkdir()
    for mp4 in (tmp_path / "ph").glob("*.mp4"):
        mp4.rename(tmp_path / "videos" / mp4.name)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(f"videos: {tmp_path / 'videos'}\noutput: {tmp_path / 'out'}\nextract: {{every: 2}}\n")
    log = _run(cfg)
    assert "[extract] running" in log and "label them in LabelMe" in log
    assert f"tools/run_study.py --config-file {cfg}" in log
    assert list((tmp_path / "out" / "frames").glob("*.png"))
