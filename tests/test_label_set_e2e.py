"""A label set is data: a two-class set that is not a subset of the 10 structures, end to end.

LabelMe (LV, Myocardium) -> labelme2coco --labels -> train_net (no NUM_CLASSES by hand) -> config.yaml
carries the classes -> evaluate (report per class) -> predict (COCO categories, LabelMe labels), and a
run whose config says cuda evaluates and predicts on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRATCH = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
CLASSES = ["LV", "Myocardium"]

pytestmark = pytest.mark.slow


def _tool(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}  # never a GPU: as on a laptop
    proc = subprocess.run([sys.executable, f"tools/{name}.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=full)
    assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    return proc


def _write_frames(folder: Path, video: str, n: int, rng: np.random.Generator) -> None:
    """An LV (bright ellipse) inside a myocardium ring drawn as its own polygon (dark crescent)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.gamma(4.0, 10.0, size=(96, 128)).clip(0, 255).astype(np.uint8)
        cx, cy = 64 + rng.uniform(-6, 6), 48 + rng.uniform(-4, 4)
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        lv = np.stack([cx + 18 * np.cos(t), cy + 14 * np.sin(t)], 1)
        myo = np.stack([cx + 40 + 10 * np.cos(t), cy + 20 * np.sin(t)], 1)
        cv2.fillPoly(img, [lv.round().astype(np.int32)], 200)
        cv2.fillPoly(img, [myo.round().astype(np.int32)], 110)
        name = f"{video}_{i:06d}"
        cv2.imwrite(str(folder / f"{name}.png"), img)
        shapes = [{"label": lab, "points": pts.round(2).tolist(), "group_id": None, "shape_type": "polygon",
                   "flags": {}} for lab, pts in (("LV", lv), ("Myocardium", myo))]
        (folder / f"{name}.json").write_text(json.dumps({
            "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.png", "imageData": None,
            "imageHeight": 96, "imageWidth": 128}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("labelset")
    rng = np.random.default_rng(0)
    for video in ("a", "b", "c"):
        _write_frames(root / "labelme", video, 3, rng)
    (root / "labels.txt").write_text("LV\nMyocardium\n")
    _tool("labelme2coco", str(root / "labelme"), "-o", str(root / "coco"), "--labels", str(root / "labels.txt"),
          "--val-fraction", "0.34", "-q")
    run = root / "run"
    _tool("train_net", "--config-file", SCRATCH, "DATASETS.ROOT", str(root / "coco"), "OUTPUT_DIR", str(run),
          "MODEL.DEVICE", "cpu", "SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1000",
          "TEST.EVAL_PERIOD", "1000", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MAX_SIZE_TEST", "128",
          "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128", "INPUT.SQUARE_SIZE", "128",
          "DATALOADER.NUM_WORKERS", "0", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
          "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TEST", "50")
    return {"root": root, "run": run}


def test_config_yaml_carries_the_label_set(trained):
    cfg = yaml.safe_load((trained["run"] / "config.yaml").read_text())
    assert cfg["MODEL"]["CLASS_NAMES"] == CLASS_NAMES_AS_SAVED and cfg["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == 2


CLASS_NAMES_AS_SAVED = CLASSES  # yacs dumps a tuple as a YAML list


def _cuda_config(trained) -> Path:
    """The run's config.yaml as a GPU machine would have saved it (MODEL.DEVICE cuda)."""
    cfg = yaml.safe_load((trained["run"] / "config.yaml").read_text())
    cfg["MODEL"]["DEVICE"] = "cuda"
    path = trained["root"] / "config_cuda.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_gpu_trained_run_evaluates_on_cpu_with_its_own_classes(trained):
    out = trained["root"] / "eval"
    proc = _tool("evaluate", "--config-file", str(_cuda_config(trained)), "MODEL.WEIGHTS",
                 str(trained["run"] / "model_final.pth"), "DATASETS.ROOT", str(trained["root"] / "coco"),
                 "-o", str(out), "--bootstrap", "20", "-q")
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == CLASSES and set(report["per_class"]) == set(CLASSES)
    rows = (out / "per_class.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == CLASSES
    assert "Dice" in proc.stdout


def test_gpu_trained_run_predicts_on_cpu_with_its_own_labels(trained):
    out = trained["root"] / "pred"
    _tool("predict", "--config-file", str(_cuda_config(trained)), "MODEL.WEIGHTS",
          str(trained["run"] / "model_final.pth"), str(trained["root"] / "labelme" / "a_000000.png"),
          "-o", str(out), "--score-thresh", "0.0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "-q")
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == CLASSES
    assert {a["category_id"] for a in coco["annotations"]} <= {1, 2}
    doc = json.loads((out / "labelme" / "a_000000.json").read_text())
    labels = {s["label"] for s in doc["shapes"]}
    assert labels and labels <= set(CLASSES)  # the model's own labels, never the 10 built-in names
