#!/usr/bin/env python
"""Speed of the two model families at the same size, in the same run: U-Net ResNet-34 beside Mask R-CNN.

Training: s/iter (and s/image) of one optimisation step (loader batch, forward, backward, optimizer step;
the trainers' own loaders, models and optimizers, hooks left out), each family at its recipe's batch
(Mask R-CNN 1, U-Net 4). Inference: frames/s of fetalheart's ``Predictor`` (test-time preprocessing, the
model, masks at full resolution; for the U-Net also the connected components). The families are
measured in alternating rounds, so a change of machine load hits both; the ratio is the number to read.
The load average (os.getloadavg) is printed beside the times.

    python benchmarks/model_families.py --dataset outputs/demo/coco --size 160 --iters 10 --frames 10
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
from fetalheart.config import load_cfg
from fetalheart.data.registration import register_datasets_from_cfg
from fetalheart.engine import trainer_class

import cv2
import torch

MASK_RCNN = ("configs/study/model02.yaml", "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml",
             ["overlays/recommended.yaml", "overlays/cpu.yaml"])
UNET = ("configs/FetalHeart-SMP.yaml", None, [])


def _cfg(family: tuple, root: Path, out: Path, size: int, splits: tuple[str, str]):
    config, base, overlays = family
    opts = ["DATASETS.ROOT", str(root), "DATASETS.TRAIN", f"('{splits[0]}',)", "DATASETS.TEST", f"('{splits[1]}',)",
            "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu", "SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", "100000",
            "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1000000",
            "TEST.VAL_LOSS", "False", "TEST.EVAL_DURING_TRAINING", "False", "SOLVER.BEST_CHECKPOINT_METRIC", "",
            "DATALOADER.NUM_WORKERS", "0", "INPUT.MAX_SIZE_TRAIN", str(size), "INPUT.MAX_SIZE_TEST", str(size),
            "INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MIN_SIZE_TEST", str(size), "INPUT.SQUARE_SIZE", "0"]
    cfg = load_cfg(config, opts, base=base, overlays=overlays, freeze=False)
    register_datasets_from_cfg(cfg)
    return cfg


class Family:
    """One family's trainer (for steps) and predictor (for frames)."""

    def __init__(self, label: str, cfg, weights: str | None = None):
        from fetalheart.inference.predictor import Predictor

        torch.manual_seed(0)
        self.label, self.cfg = label, cfg
        cfg.MODEL.WEIGHTS = weights or ""
        self.trainer = trainer_class(cfg)(cfg)
        self.trainer.resume_or_load(resume=False)  # trained weights: the heads see as many instances as in use
        self.batches = iter(self.trainer.data_loader)
        if not weights:  # an untrained model predicts (almost) nothing: give trained runs for real frames/s
            weights = str(Path(cfg.OUTPUT_DIR) / "weights.pth")
            torch.save({"model": self.trainer.model.state_dict()}, weights)
        pcfg = cfg.clone()
        pcfg.MODEL.WEIGHTS = weights
        self.predictor = Predictor(pcfg, score_thresh=0.5)
        self.train_s, self.infer_s = [], []

    def steps(self, n: int) -> None:
        from detectron2.utils.events import EventStorage

        model, opt = self.trainer.model, self.trainer.optimizer
        model.train()
        with EventStorage(0):  # Mask R-CNN's heads log into detectron2's event storage
            self._steps(model, opt, n)

    def _steps(self, model, opt, n: int) -> None:
        for _ in range(n):
            start = time.perf_counter()
            losses = model(next(self.batches))
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            self.train_s.append(time.perf_counter() - start)

    def predict(self, frames: list) -> None:
        for f in frames:
            start = time.perf_counter()
            self.predictor([f])
            self.infer_s.append(time.perf_counter() - start)


def _frames(root: Path, split: str, n: int) -> list:
    import json

    images = json.loads((root / "annotations" / f"{split}.json").read_text())["images"][:n]
    return [cv2.imread(str(root / "images" / im["file_name"]), cv2.IMREAD_COLOR) for im in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=None, help="labelme2coco folder with train/val (default: a toy set)")
    ap.add_argument("--size", type=int, default=160, help="long side of the frames, both families (default 160)")
    ap.add_argument("--iters", type=int, default=10, help="timed training steps per family (default 10)")
    ap.add_argument("--frames", type=int, default=10, help="timed frames per family (default 10)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds the counts are split into (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--weights", nargs=2, default=None, metavar=("MASK_RCNN.pth", "UNET.pth"),
                    help="trained weights of the two families (default: random; untrained models predict little)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            root, splits = Path(args.dataset), ("fhbench_train", "fhbench_val")
        else:
            from tests._train_helpers import make_toy_coco

            root, splits = make_toy_coco(Path(tmp) / "toy", n_train=8, n_val=4, size=args.size), ("toy_train", "toy_val")
        weights = args.weights or (None, None)
        families = [Family(label, _cfg(fam, root, Path(tmp) / label, args.size, splits), w)
                    for (label, fam), w in zip((("Mask R-CNN R50-FPN", MASK_RCNN), ("U-Net ResNet-34", UNET)), weights,
                                               strict=True)]
        frames = _frames(root, splits[1].rsplit("_", 1)[1], max(1, args.frames))
        for fam in families:  # warm-up: first steps and frames allocate
            fam.steps(2)
            fam.predict(frames[:2])
            fam.train_s, fam.infer_s = [], []
        for r in range(args.rounds):
            for fam in families:
                fam.steps(max(1, args.iters // args.rounds))
                fam.predict(frames[r::args.rounds])
    _report(families, args, load_before, os.getloadavg())


def _report(families: list[Family], args, load_before, load_after) -> None:
    print(f"{args.size} px, {args.threads} threads, {args.iters} steps and {args.frames} frames per family in "
          f"{args.rounds} alternating rounds; load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    rows = []
    for f in families:
        batch = int(f.cfg.SOLVER.IMS_PER_BATCH)
        s_iter = statistics.median(f.train_s)
        fps = len(f.infer_s) / sum(f.infer_s)
        rows.append((f.label, batch, s_iter, s_iter / batch, fps))
        print(f"{f.label:20s} training {s_iter:7.3f} s/iter (batch {batch}, {s_iter / batch:.3f} s/image, median)   "
              f"inference {fps:6.2f} frames/s")
    (_, _, a_iter, a_img, a_fps), (_, _, b_iter, b_img, b_fps) = rows
    print(f"U-Net / Mask R-CNN: {b_iter / a_iter:.2f}x time per step, {b_img / a_img:.2f}x time per training image, "
          f"{b_fps / a_fps:.2f}x inference frames/s")


if __name__ == "__main__":
    main()
