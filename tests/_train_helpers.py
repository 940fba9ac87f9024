"""A tiny COCO dataset (ellipses on speckle, 10 classes) for fast training tests."""

from __future__ import annotations

import json
from pathlib import Path

from fetalheart.classes import coco_categories

import cv2
import numpy as np


def make_toy_coco(root: Path, n_train: int = 3, n_val: int = 2, size: int = 128, seed: int = 0) -> Path:
    """Write ROOT/images/*.png and ROOT/annotations/{train,val}.json (labelme2coco's layout)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    img_id = 1
    for split, n in (("train", n_train), ("val", n_val)):
        images, anns = [], []
        for _ in range(n):
            img = (rng.gamma(4.0, 12.0, size=(size, size))).clip(0, 255).astype(np.uint8)
            name = f"toy_{img_id:03d}.png"
            for cls in range(4):  # four "chambers" in a 2x2 layout, so every image has several classes
                cx = size * (0.3 + 0.4 * (cls % 2)) + rng.uniform(-3, 3)
                cy = size * (0.3 + 0.4 * (cls // 2)) + rng.uniform(-3, 3)
                ax, ay = size * 0.14, size * 0.11
                t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
                poly = np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)
                cv2.fillPoly(img, [poly.round().astype(np.int32)], int(40 + 50 * cls))
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                anns.append({"id": ann_id, "image_id": img_id, "category_id": cls + 1, "iscrowd": 0,
                             "segmentation": [poly.ravel().round(2).tolist()],
                             "area": float(np.pi * ax * ay), "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
                ann_id += 1
            cv2.imwrite(str(root / "images" / name), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
            images.append({"id": img_id, "file_name": name, "height": size, "width": size})
            img_id += 1
        (root / "annotations" / f"{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": coco_categories(), "info": {}, "licenses": []}))
    return root


def tiny_opts(root: Path, out: Path, iters: int = 3, size: int = 128, **extra) -> list[str]:
    """KEY VALUE overrides for a few-iteration CPU run on the toy dataset."""
    opts = {
        "DATASETS.ROOT": str(root), "DATASETS.TRAIN": "('toy_train',)", "DATASETS.TEST": "('toy_val',)",
        "OUTPUT_DIR": str(out), "MODEL.DEVICE": "cpu", "SOLVER.EPOCHS": "0", "SOLVER.MAX_ITER": str(iters),
        "SOLVER.WARMUP_ITERS": "2", "SOLVER.STEPS": "()", "SOLVER.CHECKPOINT_PERIOD": "1000",
        "TEST.EVAL_PERIOD": "1000", "INPUT.MAX_SIZE_TRAIN": str(size), "INPUT.MAX_SIZE_TEST": str(size),
        "INPUT.MIN_SIZE_TRAIN": f"({size},)", "INPUT.MIN_SIZE_TEST": str(size), "DATALOADER.NUM_WORKERS": "0",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": "200", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "64",
        "EVAL.BOOTSTRAP_SAMPLES": "50", "TEST.DETECTIONS_PER_IMAGE": "20", "MODEL.RPN.POST_NMS_TOPK_TEST": "100",
    }
    opts.update({k: str(v) for k, v in extra.items()})
    return [x for kv in opts.items() for x in kv]


def save_untrained_run(run: Path, cfg) -> Path:
    """An untrained model of ``cfg`` (seed 0) saved as ``run/model_final.pth``: a run folder for the
    inference and evaluation tests, which need a model, not a trained one."""
    from fetalheart.engine.trainer import Trainer

    import torch

    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    run.mkdir()
    torch.save({"model": model.state_dict()}, run / "model_final.pth")
    return run
