#!/usr/bin/env python
"""Speed of the evaluation and prediction paths, printed as ratios against a reference.

1. SegmentationMetricsEvaluator's added time beside detectron2's COCOEvaluator (segm + bbox) on
   the same predictions (target: <= 20%). Synthetic 512x512 images, 10 classes, about a dozen
   ground-truth instances and noisy predictions (shifted masks, false positives) per image.
2. predict.py frames per second on CPU at 512 px (untrained from-scratch R50-FPN: the speed of
   the network does not depend on its weights).

    .venv/bin/python benchmarks/evaluate.py --images 40 --predict-frames 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

import numpy as np


def synthetic_dataset(n: int, size: int, rng) -> tuple[str, list[dict]]:
    from fetalheart.classes import CLASS_NAMES

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    dicts = []
    for i in range(n):
        anns = []
        for c in range(10):
            for _ in range(1 + (c == 9)):
                cx, cy = rng.uniform(60, size - 60, 2)
                rx, ry = rng.uniform(10, 50, 2)
                t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
                poly = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).ravel().tolist()
                anns.append({"bbox": [cx - rx, cy - ry, 2 * rx, 2 * ry], "bbox_mode": BoxMode.XYWH_ABS,
                             "category_id": c, "segmentation": [poly], "iscrowd": 0})
        dicts.append({"file_name": f"synthetic_{i}.png", "image_id": i, "height": size, "width": size,
                      "annotations": anns})
    name = f"bench_{uuid.uuid4().hex[:6]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES))
    return name, dicts


def noisy_outputs(dicts, rng):
    from fetalheart.evaluation.per_image import annotation_masks

    import torch
    from detectron2.structures import Boxes, Instances

    outs = []
    for d in dicts:
        masks, classes = annotation_masks(d)
        masks = np.stack([np.roll(m, int(rng.integers(-6, 7)), axis=1) for m in masks])
        extra = masks[rng.permutation(len(masks))[:4]]  # false positives: other shapes, wrong class
        masks = np.concatenate([masks, np.roll(extra, 40, axis=0)])
        classes = np.concatenate([classes, rng.integers(0, 10, len(extra))])
        scores = rng.uniform(0.3, 1.0, len(masks))
        inst = Instances(masks.shape[1:])
        inst.pred_masks = torch.from_numpy(masks)
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes)
        outs.append({"instances": inst})
    return outs


def time_evaluator(ev, inputs, outputs) -> float:
    t = time.perf_counter()
    ev.reset()
    for i, o in zip(inputs, outputs, strict=True):
        ev.process([i], [o])
    ev.evaluate()
    return time.perf_counter() - t


def bench_evaluator(n: int, size: int, repeats: int) -> None:
    import logging

    from fetalheart import _compat
    from fetalheart.evaluation import FetalHeartEvaluators, SegmentationMetricsEvaluator

    from detectron2.evaluation import COCOEvaluator

    logging.disable(logging.INFO)
    rng = np.random.default_rng(0)
    name, dicts = synthetic_dataset(n, size, rng)
    outputs = noisy_outputs(dicts, rng)
    inputs = [{"image_id": d["image_id"], "height": size, "width": size} for d in dicts]
    with tempfile.TemporaryDirectory() as tmp:
        coco = COCOEvaluator(name, tasks=("segm", "bbox"), output_dir=tmp, **_compat.coco_evaluator_kwargs())
        seg = SegmentationMetricsEvaluator(name, bootstrap_samples=1000)
        both = FetalHeartEvaluators([coco, seg])
        import contextlib
        import io

        t_coco, t_both, t_seg = [], [], []
        for _ in range(repeats):
            with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
                t_coco.append(time_evaluator(coco, inputs, outputs))
                t_both.append(time_evaluator(both, inputs, outputs))
            t_seg.append(time_evaluator(seg, inputs, outputs))
    c, s, b = min(t_coco), min(t_seg), min(t_both)
    print(f"evaluator: {n} images {size}px, ~{len(outputs[0]['instances'])} predictions/image, "
          f"COCO use_fast_impl={_compat.coco_evaluator_kwargs()['use_fast_impl']}")
    print(f"  COCOEvaluator (segm+bbox) alone: {c:.2f} s   both (build_evaluators, RLEs shared): {b:.2f} s   "
          f"added time: {100 * (b - c) / c:.1f}% (target <= 20%)")
    print(f"  SegmentationMetricsEvaluator alone (encodes its own RLEs): {s:.2f} s = {100 * s / c:.1f}% of COCO")


def bench_predict(frames: int, size: int) -> None:
    from fetalheart.config import load_cfg
    from fetalheart.engine.trainer import Trainer
    from fetalheart.inference.predict import run_prediction

    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        import torch

        cfg = load_cfg("configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml",
                       ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size)])
        torch.save({"model": Trainer.build_model(cfg).state_dict()}, f"{tmp}/w.pth")
        cfg = load_cfg("configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml",
                       ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size),
                        "MODEL.WEIGHTS", f"{tmp}/w.pth"])
        from fetalheart.inference.predictor import Predictor

        pred = Predictor(cfg, score_thresh=0.0)
        rng = np.random.default_rng(0)
        for i in range(frames + 1):
            cv2.imwrite(f"{tmp}/f{i}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        pred([cv2.imread(f"{tmp}/f0.png")])  # warm-up
        import os

        os.remove(f"{tmp}/f0.png")
        s = run_prediction(pred, [f"{tmp}/f{i}.png" for i in range(1, frames + 1)], f"{tmp}/out", quiet=True)
    print(f"predict: {frames} frames at {size}px on CPU ({torch.get_num_threads()} threads): "
          f"{s['model_fps']:.3f} frames/s (model), {s['total_fps']:.3f} frames/s (with writing outputs); "
          f"writing costs {100 * (s['total_seconds'] / s['model_seconds'] - 1):.1f}% over the model")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--predict-frames", type=int, default=3, help="0 skips the prediction benchmark")
    a = p.parse_args()
    bench_evaluator(a.images, a.size, a.repeats)
    if a.predict_frames:
        bench_predict(a.predict_frames, a.size)


if __name__ == "__main__":
    main()
