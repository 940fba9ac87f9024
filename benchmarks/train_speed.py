#!/usr/bin/env python
"""Training speed: plain detectron2 DefaultTrainer vs fetalheart's Trainer on the same data.

Prints s/iter for both, the time our validation-loss pass takes, our overhead beside that pass
(target <= 5%), and the share of training time the validation pass takes at the default period
scaled to N iterations (target <= 10%): the study validates 36 images every 500 iterations, so
here N iterations validate round(N * 36 / 500) images once.

    python benchmarks/train_speed.py --iters 20 --size 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests._train_helpers

import fetalheart._compat  # noqa: E402,F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import load_cfg
from fetalheart.data.registration import register_datasets_from_cfg
from fetalheart.engine import Trainer

from detectron2.data import build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluators


def _opts(root: Path, out: Path, iters: int, size: int, val_images: int) -> list[str]:
    from tests._train_helpers import tiny_opts

    return tiny_opts(root, out, iters=iters, size=size, **{
        "TEST.EVAL_PERIOD": iters, "TEST.VAL_LOSS_MAX_IMAGES": val_images, "SOLVER.BEST_CHECKPOINT_METRIC": "",
        "SOLVER.CHECKPOINT_PERIOD": 10 ** 6, "INPUT.AUG.ROTATION": 0.0, "INPUT.AUG.SCALE": "(1.0, 1.0)",
        "INPUT.AUG.BRIGHTNESS": 0.0, "INPUT.AUG.CONTRAST": 0.0, "MODEL.RPN.POST_NMS_TOPK_TRAIN": 1000,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 256})


class PlainTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer with the stock DatasetMapper; no evaluation."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return DatasetEvaluators([])


def _timed_train(trainer_cls, cfg) -> tuple[float, object]:
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=False)
    trainer.test = lambda *a, **k: {}  # evaluation (COCO AP) is not what is measured here
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from tests._train_helpers import make_toy_coco

    val_images = max(1, round(args.iters * 36 / 500))
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_coco(Path(tmp) / "data", n_train=6, n_val=max(2, val_images), size=args.size)
        scratch = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
        base_opts = _opts(root, Path(tmp) / "plain", args.iters, args.size, val_images) + ["MODEL.DEVICE", args.device]
        plain_cfg = load_cfg(scratch, base_opts + ["TEST.VAL_LOSS", "False"])
        ours_cfg = load_cfg(scratch, _opts(root, Path(tmp) / "ours", args.iters, args.size, val_images)
                            + ["MODEL.DEVICE", args.device])
        register_datasets_from_cfg(plain_cfg)
        # Warm-up (first iterations allocate): a 2-iteration plain run, not counted.
        _timed_train(PlainTrainer, load_cfg(scratch, base_opts + ["SOLVER.MAX_ITER", "2", "TEST.VAL_LOSS", "False"]))
        plain_s, _ = _timed_train(PlainTrainer, plain_cfg)
        ours_s, ours = _timed_train(Trainer, ours_cfg)
    val_s = ours.val_loss_hook.seconds
    n = args.iters
    print(f"device {args.device}, {args.size} px, {n} iterations, validation pass over {val_images} images")
    print(f"plain DefaultTrainer      {plain_s / n:7.3f} s/iter")
    print(f"fetalheart Trainer        {ours_s / n:7.3f} s/iter  (of which validation pass {val_s:.2f} s)")
    print(f"overhead beside val pass  {(ours_s - val_s) / plain_s:7.3f}x  (target <= 1.05)")
    print(f"validation share          {val_s / ours_s:7.3f}   (target <= 0.10)")


if __name__ == "__main__":
    main()
