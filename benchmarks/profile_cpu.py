#!/usr/bin/env python
"""Where a training iteration and an inference go on this machine, by model component.

Times forward passes of backbone, RPN, box head, box predictor, mask head and the rest with
module hooks, plus backward + optimizer step (training) and post-processing (inference: mask
pasting at full resolution), on real samples of a labelme2coco dataset. Prints the components
sorted by cost, so a sizing change can be judged on the part it targets.

    python benchmarks/profile_cpu.py --dataset outputs/demo/coco --size 192 --iters 8
    python benchmarks/profile_cpu.py --dataset outputs/demo/coco --overlay configs/overlays/cpu.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fetalheart._compat  # noqa: E402,F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import load_cfg
from fetalheart.data.registration import register_datasets_from_cfg

import torch
from tabulate import tabulate

PARTS = {"backbone": "backbone", "rpn": "proposal_generator", "box head": "roi_heads.box_head",
         "box predictor": "roi_heads.box_predictor", "mask head": "roi_heads.mask_head",
         "roi pooling": "roi_heads.box_pooler", "mask pooling": "roi_heads.mask_pooler"}


class Timer:
    """Forward time of named submodules, accumulated over calls (module hooks)."""

    def __init__(self, model):
        self.seconds: dict[str, float] = defaultdict(float)
        self._start: dict[str, float] = {}
        for name, path in PARTS.items():
            module = model.get_submodule(path) if _has(model, path) else None
            if module is None:
                continue
            module.register_forward_pre_hook(lambda m, a, n=name: self._start.__setitem__(n, time.perf_counter()))
            module.register_forward_hook(lambda m, a, o, n=name: self._stop(n))

    def _stop(self, name):
        self.seconds[name] += time.perf_counter() - self._start.pop(name)


def _has(model, path):
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def _cfg(args):
    opts = ["DATASETS.ROOT", str(Path(args.dataset).resolve()), "MODEL.DEVICE", "cpu", "SOLVER.EPOCHS", "0",
            "INPUT.MAX_SIZE_TRAIN", str(args.size), "INPUT.MIN_SIZE_TRAIN", f"({args.size},)",
            "INPUT.MAX_SIZE_TEST", str(args.size), "INPUT.MIN_SIZE_TEST", str(args.size),
            "INPUT.SQUARE_SIZE", "0", "DATALOADER.NUM_WORKERS", "0", *args.opts]
    cfg = load_cfg(args.config_file, opts, overlays=args.overlay, freeze=False)
    register_datasets_from_cfg(cfg)
    cfg.freeze()
    return cfg


def _table(timer: Timer, total: float, extra: dict[str, float], n: int) -> str:
    parts = dict(timer.seconds)
    parts.update(extra)
    parts["other"] = max(0.0, total - sum(parts.values()))
    rows = sorted(((k, 1000 * v / n, 100 * v / total) for k, v in parts.items()), key=lambda r: -r[1])
    return tabulate(rows, headers=["part", "ms per image", "% of total"], floatfmt=".1f")


def profile_training(cfg, iters: int) -> str:
    from fetalheart.engine import Trainer

    model = Trainer.build_model(cfg)
    model.train()
    optimizer = Trainer.build_optimizer(cfg, model)
    data = iter(Trainer.build_train_loader(cfg))
    batches = [next(data) for _ in range(iters + 1)]
    from detectron2.utils.events import EventStorage

    timer = Timer(model)
    with EventStorage(0):
        total = _train_loop(model, optimizer, batches, timer)
    return f"training: {total / iters:.2f} s/iter\n" + _table(timer, total, {"backward + step": timer.backward}, iters)


def _train_loop(model, optimizer, batches, timer) -> float:
    back, start = 0.0, time.perf_counter()
    for i, batch in enumerate(batches):
        if i == 1:  # the first iteration warms up allocators: not counted
            timer.seconds.clear()
            back, start = 0.0, time.perf_counter()
        loss = sum(model(batch).values())
        t = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        back += time.perf_counter() - t
    timer.backward = back
    return time.perf_counter() - start


def profile_inference(cfg, images: int) -> str:
    from fetalheart.engine import Trainer
    from fetalheart.engine.trainer import Trainer as T

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    model = Trainer.build_model(cfg).eval()
    loader = iter(T.build_test_loader(cfg, cfg.DATASETS.TEST[0]))
    inputs = [next(loader) for _ in range(images + 1)]
    timer = Timer(model)
    post = 0.0
    import detectron2.modeling.meta_arch.rcnn as rcnn

    original = rcnn.GeneralizedRCNN._postprocess

    def timed_post(*a, **k):
        nonlocal post
        t = time.perf_counter()
        out = original(*a, **k)
        post += time.perf_counter() - t
        return out

    rcnn.GeneralizedRCNN._postprocess = staticmethod(timed_post)
    try:
        with torch.no_grad():
            for i, inp in enumerate(inputs):
                if i == 1:
                    timer.seconds.clear()
                    post, start = 0.0, time.perf_counter()
                model(inp)
        total = time.perf_counter() - start
    finally:
        rcnn.GeneralizedRCNN._postprocess = original
    return f"inference: {total / images:.2f} s/image\n" + _table(timer, total, {"paste masks (postprocess)": post}, images)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="labelme2coco output folder (train/val)")
    p.add_argument("--config-file", default="configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml")
    p.add_argument("--overlay", action="append", default=[], help="config overlay (repeatable)")
    p.add_argument("--size", type=int, default=192, help="long side of the input (default 192)")
    p.add_argument("--iters", type=int, default=6, help="training iterations and inference images timed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("opts", nargs="*", help="KEY VALUE overrides")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = _cfg(args)
    print(profile_training(cfg, args.iters))
    print()
    print(profile_inference(cfg, args.iters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
