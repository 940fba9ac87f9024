#!/usr/bin/env python
"""Inference cost of the small-structure options: frames/s of Mask R-CNN alone, with Gaussian pasting, and
with two-step refinement (+ Gaussian pasting), in the same run.

fetalheart's ``Predictor`` (test-time preprocessing, the model, masks at full resolution) on the same
frames for each variant, measured in alternating rounds so a change of machine load hits all; the ratio
to Mask R-CNN alone is the number to read. The load average (os.getloadavg) is printed beside the times.

    # a trained run with refiner.pth and mask_paste.json beside model_final.pth (tools/train_refiner.py)
    python benchmarks/refine_speed.py --run outputs/demo/runs/model02 --dataset outputs/demo/coco --frames 20
    # no run: an untrained model on toy frames, every detection kept (score 0), a 3-iteration refiner
    python benchmarks/refine_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests._train_helpers

import fetalheart._compat  # noqa: E402,F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import class_names, load_cfg
from fetalheart.data.registration import register_datasets_from_cfg

import cv2
import torch

VARIANTS = {
    "Mask R-CNN alone": [],
    "+ Gaussian paste": ["MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian"],
    "two-step": ["MODEL.REFINE.ENABLED", "True"],
    "two-step + Gaussian": ["MODEL.REFINE.ENABLED", "True", "MODEL.ROI_MASK_HEAD.PASTE.MODE", "gaussian"],
}


def _toy_run(tmp: Path) -> tuple[Path, Path, list[str]]:
    """An untrained Mask R-CNN at 128 px with a 3-iteration refiner and the paste fit beside it."""
    from fetalheart.engine.refiner import prepare_small_structures
    from fetalheart.engine.trainer import Trainer

    from tests._train_helpers import make_toy_coco

    root = make_toy_coco(tmp / "coco", n_train=3, n_val=4, size=128)
    opts = ["DATASETS.ROOT", str(root), "DATASETS.TRAIN", "('rsbench_train',)", "DATASETS.TEST", "('rsbench_val',)",
            "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "10",
            "MODEL.REFINE.CLASSES", "('LA', 'RA', 'LV', 'RV')", "MODEL.REFINE.ENCODER", "resnet18",
            "MODEL.REFINE.TRAIN.ITERS", "3", "MODEL.REFINE.TRAIN.BATCH_SIZE", "2"]
    cfg = load_cfg("configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml", opts, overlays=["overlays/refine.yaml"],
                   freeze=False)
    register_datasets_from_cfg(cfg)
    run = tmp / "run"
    run.mkdir()
    torch.manual_seed(0)
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, run / "model_final.pth")
    prepare_small_structures(cfg, run, class_names(cfg), log=lambda *_: None)
    cfg_file = run / "config.yaml"
    cfg_file.write_text(cfg.dump())
    return run, root, ["MODEL.REFINE.ENABLED", "False", "MODEL.ROI_MASK_HEAD.PASTE.MODE", "bilinear"]


def _frames(root: Path, n: int) -> list:
    import json

    split = "val" if (root / "annotations" / "val.json").is_file() else "train"
    images = json.loads((root / "annotations" / f"{split}.json").read_text())["images"][:n]
    return [cv2.imread(str(root / "images" / im["file_name"]), cv2.IMREAD_COLOR) for im in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a trained run (config.yaml, model_final.pth, refiner.pth, mask_paste.json)")
    ap.add_argument("--dataset", default=None, help="labelme2coco folder whose val frames are predicted")
    ap.add_argument("--frames", type=int, default=10, help="frames per variant and round (default 10)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--score-thresh", type=float, default=0.5, help="detections kept (default 0.5)")
    ap.add_argument("opts", nargs="*", help="KEY VALUE overrides for every variant, e.g. MODEL.REFINE.SIZE 96")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from fetalheart.inference.predictor import Predictor

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run, root, base = Path(args.run), Path(args.dataset or ""), []
            if not args.dataset:
                sys.exit("--run needs --dataset")
        else:
            run, root, base = _toy_run(Path(tmp))
            args.score_thresh = 0.0
        frames = _frames(root, args.frames)
        common = [*base, "MODEL.WEIGHTS", str(run / "model_final.pth"), "MODEL.DEVICE", "cpu", *args.opts]
        predictors = {name: Predictor(load_cfg(run / "config.yaml", [*common, *opts], cpu_fallback=True),
                                      score_thresh=args.score_thresh) for name, opts in VARIANTS.items()}
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        dets: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, pred in predictors.items():
                for f in frames:
                    start = time.perf_counter()
                    out = pred([f])
                    times[name].append(time.perf_counter() - start)
                    dets[name] = dets.get(name, 0) + len(out[0].classes)
    load_after = os.getloadavg()
    ref = statistics.median(times["Mask R-CNN alone"])
    print(f"{len(frames)} frames x {args.rounds} rounds, {args.threads} threads; load average before "
          f"{load_before[0]:.2f} / after {load_after[0]:.2f}")
    print(f"{'variant':<22} {'median s/frame':>14} {'frames/s':>9} {'vs alone':>9} {'detections':>11}")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<22} {med:14.4f} {1 / med:9.2f} {ref / med:9.2f}x {dets[name]:11d}")


if __name__ == "__main__":
    main()
