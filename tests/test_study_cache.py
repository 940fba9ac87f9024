"""run_study stages are keyed by what they depend on (issue 15 item 4, issue 19 items 2 and 3).

A changed plan reruns exactly the stages it affects and says why; an unrelated change reruns
nothing; an EVAL key or a moved output folder retrains nothing; an edited model file retrains that
model alone; --overwrite reruns stages but keeps a trained model still valid for the plan; stopping
for labelling is a normal exit that prints the next command; labels saved beside the frames survive
--overwrite, a touched video and an edited extract: option byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def _grid(tmp_path: Path) -> Path:
    """A copy of the demo grid whose model files the test may edit (base: the shipped scratch config)."""
    (tmp_path / "study").mkdir(exist_ok=True)
    for m in ("model02", "model14"):
        if not (tmp_path / "study" / f"{m}.yaml").is_file():
            (tmp_path / "study" / f"{m}.yaml").write_text((REPO / "configs" / "study" / f"{m}.yaml").read_text())
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"base: {REPO / 'configs' / 'FetalHeart-MaskRCNN-R50-FPN-scratch.yaml'}\nruns:\n"
                    "  - {name: model02, config: study/model02.yaml}\n  - {name: model14, config: study/model14.yaml}\n")
    return grid


def _config(tmp_path: Path, val_fraction: float, max_parallel: int, only=(1,), out="out", extra=()) -> Path:
    opts = ["SOLVER.EPOCHS", 0, "SOLVER.MAX_ITER", 2, "INPUT.MAX_SIZE_TRAIN", 64, "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TEST", 64, "INPUT.MIN_SIZE_TEST", 64, "INPUT.SQUARE_SIZE", 0, "DATALOADER.NUM_WORKERS", 0,
            "TEST.EVAL_DURING_TRAINING", False, "TEST.VAL_LOSS", False, "EVAL.BOOTSTRAP_SAMPLES", 20, *extra]
    cfg = tmp_path / "study.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "labelme": str(tmp_path / "labelme"), "output": str(tmp_path / out), "grid": str(_grid(tmp_path)),
        "overlays": ["configs/overlays/cpu.yaml"], "only": list(only), "convert": {"val_fraction": val_fraction, "seed": 0},
        "max_parallel": max_parallel, "opts": [str(x) for x in opts]}))
    return cfg


def _run(cfg: Path, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "tools/run_study.py", "--config-file", str(cfg), "-q", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc.stdout


def _reran(log: str) -> set[str]:
    return {s for s in ("phantom", "extract", *STAGES) if f"[{s}] running" in log}


def _trained(log: str) -> set[str]:
    return {m for m in ("model02", "model14") if f"[run_grid] start {m}" in log}


def test_changed_plan_reruns_exactly_the_affected_stages(tmp_path):
    """Also issue 19's acceptance: an EVAL key or a moved output folder retrains nothing; MOMENTUM
    edited in one model file retrains that model alone."""
    _labelme(tmp_path / "labelme")
    first = _run(_config(tmp_path, 0.34, 1, only=(1, 2)))
    assert _reran(first) == set(STAGES) and "[convert] running (first run)" in first and _trained(first) == {
        "model02", "model14"}
    models = {m: tmp_path / "out" / "runs" / m / "model_final.pth" for m in ("model02", "model14")}
    stamps = {m: p.stat().st_mtime_ns for m, p in models.items()}

    unrelated = _run(_config(tmp_path, 0.34, 2, only=(1, 2)))  # how the work runs, not what it computes
    assert _reran(unrelated) == set() and unrelated.count("] reused ") == len(STAGES)

    # an evaluation setting: no model is retrained, every evaluation reruns with the new setting
    scored = _run(_config(tmp_path, 0.34, 2, only=(1, 2), extra=["EVAL.SCORE_THRESH", 0.3]))
    assert "[train] reused" in scored and _trained(scored) == set() and "[evaluate] running" in scored
    assert "reused" not in "".join(x for x in scored.splitlines() if x.startswith("[evaluate] model"))
    report = tmp_path / "out" / "runs" / "model14" / "eval" / "fetalheart_val" / "report.json"
    assert '"score_thresh": 0.3' in report.read_text()
    assert {m: p.stat().st_mtime_ns for m, p in models.items()} == stamps

    # the whole output folder moved: content keys, no paths: every stage reused, nothing retrained
    (tmp_path / "out").rename(tmp_path / "moved")
    moved = _run(_config(tmp_path, 0.34, 2, only=(1, 2), out="moved", extra=["EVAL.SCORE_THRESH", 0.3]))
    assert _reran(moved) == set() and moved.count("] reused ") == len(STAGES), moved
    (tmp_path / "moved").rename(tmp_path / "out")

    # MOMENTUM edited in one model file: that model alone is retrained (and re-evaluated)
    model14 = tmp_path / "study" / "model14.yaml"
    model14.write_text(model14.read_text().replace("MOMENTUM: 0.9", "MOMENTUM: 0.7"))
    edited = _run(_config(tmp_path, 0.34, 2, only=(1, 2), extra=["EVAL.SCORE_THRESH", 0.3]))
    assert _trained(edited) == {"model14"} and "(SOLVER.MOMENTUM 0.9 -> 0.7)" in edited
    assert "[evaluate] model02: reused" in edited and "[evaluate] model14: Dice" in edited
    assert models["model02"].stat().st_mtime_ns == stamps["model02"]
    assert models["model14"].stat().st_mtime_ns != stamps["model14"]
    stamp = models["model02"].stat().st_mtime_ns

    same_split = _run(_config(tmp_path, 0.4, 2))  # 0.4 gives the same 1-of-3-videos split: same data
    assert "[convert] running (changed: convert" in same_split and "[train] running" in same_split
    assert "skip model02: finished" in same_split and _trained(same_split) == set()
    assert models["model02"].stat().st_mtime_ns == stamp  # the model is keyed by the data's content, not by the option

    changed = _run(_config(tmp_path, 0.67, 2))
    assert _reran(changed) == set(STAGES)
    assert "[convert] running (changed: convert" in changed and '"val_fraction": 0.67' in changed
    assert "[train] running (changed: runs: model02 changed)" in changed
    assert "its config or dataset changed since it was trained (dataset content changed)" in changed
    assert models["model02"].stat().st_mtime_ns != stamp
    assert len(list((tmp_path / "out" / "runs" / ".stale").iterdir())) == 2  # model14 (momentum), model02 (data)

    stamp = models["model02"].stat().st_mtime_ns
    overwrite = _run(_config(tmp_path, 0.67, 2), "--overwrite")
    assert _reran(overwrite) == set(STAGES) and "skip model02: finished" in overwrite
    assert models["model02"].stat().st_mtime_ns == stamp  # a valid trained model survives --overwrite
    forced = _run(_config(tmp_path, 0.67, 2), "--overwrite", "--force")
    assert "--force: training it again" in forced and models["model02"].stat().st_mtime_ns != stamp


def _study(cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/run_study.py", "--config-file", str(cfg), "-q", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_stop_for_labelling_and_labels_beside_the_frames_are_never_deleted(tmp_path):
    from fetalheart.phantom import PhantomSpec, make_phantom

    make_phantom(tmp_path / "ph", PhantomSpec(seconds=0.5, size=(160, 96), seed=0), quiet=True)
    (tmp_path / "videos").mkdir()
    for mp4 in (tmp_path / "ph").glob("*.mp4"):
        mp4.rename(tmp_path / "videos" / mp4.name)
    cfg = tmp_path / "study.yaml"
    plan = f"videos: {tmp_path / 'videos'}\noutput: {tmp_path / 'out'}\n"
    cfg.write_text(plan + "extract: {every: 2}\n")
    log = _run(cfg)
    frames, labels = tmp_path / "out" / "frames", tmp_path / "out" / "labelme"
    assert "[extract] running" in log and "label them in LabelMe" in log and f"--output {labels}" in log
    assert f"replace the line 'videos: ...' in {cfg} with 'labelme: {labels}'" in log
    assert f"tools/run_study.py --config-file {cfg}" in log and labels.is_dir()  # labels get their own folder
    pngs = sorted(frames.glob("*.png"))
    assert pngs

    # LabelMe's default: the JSON beside its image, in OUTPUT/frames
    label = frames / f"{pngs[0].stem}.json"
    label.write_text(json.dumps({"version": "5.4.1", "shapes": [], "imagePath": pngs[0].name, "imageData": None}))
    sha = hashlib.sha256(label.read_bytes()).hexdigest()
    assert "1 LabelMe file(s) are saved beside the frames" in _run(cfg)  # reused: nothing touched

    for how, change in (("--overwrite", lambda: None), ("an edited extract:", lambda: cfg.write_text(
            plan + "extract: {every: 3}\n"))):
        change()
        proc = _study(cfg, *(["--overwrite"] if how == "--overwrite" else []))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (how, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert f"holds 1 file(s) this pipeline did not write (or that changed since): {label.name}" in line, how
        assert "nothing was deleted" in line and f"labels belong in {labels}/" in line
        assert hashlib.sha256(label.read_bytes()).hexdigest() == sha and sorted(frames.glob("*.png")) == pngs, how

    cfg.write_text(plan + "extract: {every: 2}\n")
    for mp4 in (tmp_path / "videos").glob("*.mp4"):  # a touched video: its content, hence its frames, unchanged
        os.utime(mp4)
    touched = _run(cfg)
    assert "[extract] reused" in touched and hashlib.sha256(label.read_bytes()).hexdigest() == sha

    # following the hint but keeping the videos: line is one clear error, not an endless stop
    cfg.write_text(plan + f"labelme: {labels}\n")
    proc = _study(cfg)
    assert proc.returncode != 0 and f"remove the line 'videos: {tmp_path / 'videos'}'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and hashlib.sha256(label.read_bytes()).hexdigest() == sha
