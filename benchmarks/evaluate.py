#!/usr/bin/env python
"""Prediction speed against detectron2's DefaultPredictor, and the evaluator's share of an evaluation.

1. predict: frames per second of fetalheart's ``Predictor`` at 256 and 512 px for a trained run, and
   the ratio of its time per frame to detectron2's ``DefaultPredictor`` on the same model, weights,
   input size and score threshold, timed frame by frame in alternation (target <= 1.05: our extras
   must cost nothing); targets >= 2 frames/s at 256 px and >= 1 frame/s at 512 px on a 2-core CPU.
   Use an Original-enhancement run (model 2) for the ratio: with an enhancement, ours also pays for
   the preprocessing the model was trained with (reported as its own line).
2. evaluation: time of ``SegmentationMetricsEvaluator`` (process + evaluate) as a share of the whole
   evaluation of the run's validation split (model + COCOEvaluator + ours; target <= 5%).

    python benchmarks/evaluate.py --run outputs/demo/runs/model02
    python benchmarks/evaluate.py --run outputs/demo/runs/model14 --sizes 256 --frames 10
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fetalheart._compat  # noqa: E402,F401
from fetalheart.config import load_cfg  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def run_cfg(run: Path, size: int | None = None, freeze: bool = True):
    """The run's own config on this machine's CPU, at a test size (None: the run's own)."""
    opts = ["MODEL.WEIGHTS", str(run / "model_final.pth"), "MODEL.DEVICE", "cpu"]
    if size:
        opts += ["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)]
    return load_cfg(run / "config.yaml", opts, freeze=freeze)


def val_frames(cfg, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of the run's validation split, as BGR arrays."""
    from fetalheart.data.registration import register_datasets_from_cfg

    from detectron2.data import DatasetCatalog

    register_datasets_from_cfg(cfg, training=False)
    dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])
    return [cv2.imread(d["file_name"], cv2.IMREAD_COLOR) for d in dicts[:n]]


def bench_predict(run: Path, size: int, n: int) -> dict:
    """Seconds per frame of ours and of DefaultPredictor, alternating frame by frame."""
    from fetalheart.inference.predictor import Predictor

    from detectron2.engine import DefaultPredictor

    cfg = run_cfg(run, size)
    thresh = float(cfg.EVAL.SCORE_THRESH)
    ours = Predictor(cfg, score_thresh=thresh)
    plain_cfg = cfg.clone()
    plain_cfg.defrost()
    plain_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = max(thresh, float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST))
    plain = DefaultPredictor(plain_cfg)  # same weights, resize to the same size, same threshold
    frames = val_frames(cfg, n + 1)
    t_ours, t_plain = [], []
    with torch.inference_mode():
        ours(frames[:1])
        plain(frames[0])  # warm-up
        for f in frames[1:]:
            t = time.perf_counter()
            ours([f])
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            plain(f)
            t_plain.append(time.perf_counter() - t)
    a, b = float(np.median(t_ours)), float(np.median(t_plain))
    return {"size": size, "frames": len(t_ours), "enhance": cfg.INPUT.ENHANCE, "ours_fps": 1 / a,
            "detectron2_fps": 1 / b, "ratio": a / b}


class _Timed:
    """Wraps an evaluator's process/evaluate and adds up their wall time."""

    def __init__(self, evaluator):
        self.seconds = 0.0
        for name in ("process", "evaluate"):
            method = getattr(evaluator, name)
            setattr(evaluator, name, self._wrap(method))

    def _wrap(self, method):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


def bench_evaluation(run: Path) -> dict:
    """Share of SegmentationMetricsEvaluator in one whole evaluation of the validation split."""
    from fetalheart.data.loaders import build_test_loader
    from fetalheart.evaluation.build import build_evaluators
    from fetalheart.modeling.load import load_model_for_inference

    import scipy.stats  # noqa: F401  (a one-time import of the process, 0.4 s here: not the evaluator's work)
    from detectron2.evaluation import COCOEvaluator, inference_on_dataset

    cfg = run_cfg(run)
    val_frames(cfg, 0)  # registers the datasets
    name = cfg.DATASETS.TEST[0]
    model = load_model_for_inference(cfg)
    evaluators = build_evaluators(cfg, name, None)
    ours = _Timed(evaluators.segmentation)
    coco = _Timed(next(e for e in evaluators._evaluators if isinstance(e, COCOEvaluator)))
    loader = build_test_loader(cfg, name)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        inference_on_dataset(model, loader, evaluators)
    total = time.perf_counter() - t
    return {"images": len(loader), "total": total, "ours": ours.seconds, "coco": coco.seconds,
            "share": ours.seconds / total}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, type=Path, help="a trained run folder (config.yaml, model_final.pth)")
    p.add_argument("--sizes", default="256,512", help="test sizes (long side), comma-separated (default 256,512)")
    p.add_argument("--frames", type=int, default=20, help="frames timed per size (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    targets = {256: 2.0, 512: 1.0}
    for size in (int(s) for s in args.sizes.split(",")):
        r = bench_predict(args.run, size, args.frames)
        goal = targets.get(size)
        print(f"predict {size} px ({r['enhance']}, {r['frames']} frames, {torch.get_num_threads()} threads): "
              f"ours {r['ours_fps']:.2f} frames/s" + (f" (target >= {goal:g}: {r['ours_fps'] / goal:.2f}x)" if goal
                                                       else "")
              + f", DefaultPredictor {r['detectron2_fps']:.2f} frames/s, time ratio ours/detectron2 "
              f"{r['ratio']:.3f} (target <= 1.05)")
    e = bench_evaluation(args.run)
    print(f"evaluation of {e['images']} frames: {e['total']:.1f} s in all, COCOEvaluator {e['coco']:.2f} s, "
          f"SegmentationMetricsEvaluator {e['ours']:.2f} s = {100 * e['share']:.1f}% of the evaluation (target <= 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
