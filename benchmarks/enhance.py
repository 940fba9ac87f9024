#!/usr/bin/env python
"""Speed of the enhancement ops beside the reference calls they wrap or replace.

    .venv/bin/python benchmarks/enhance.py                 # op table, 512x512 and 1280x720
    .venv/bin/python benchmarks/enhance.py --dataset 176   # + 176 images x 11 specs, 2 workers

Ratios are against references measured in the same run (targets: he/clahe/ahe <= 1.5x the
OpenCV call; bd < 1 s per 512x512 frame; 176 x 11 specs < 180 s with 2 workers).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import fetalheart  # noqa: F401
from fetalheart.enhance import SPECS_OF_STUDY, enhance

import cv2
import numpy as np


def frame(w: int, h: int) -> np.ndarray:
    """A blurred BGR gray phantom frame when available, else smooth noise."""
    try:
        from fetalheart.phantom import render_frame

        img = render_frame(3, seed=0, size=(w, h), category="out_of_focus")[0]
    except Exception:  # the phantom is another module; the timings do not depend on content much
        rng = np.random.default_rng(0)
        img = cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (9, 9), 2)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def timeit(fn, min_time: float = 0.3, max_reps: int = 200) -> float:
    fn()  # warm up
    times = []
    t_end = time.perf_counter() + min_time
    while (time.perf_counter() < t_end or len(times) < 3) and len(times) < max_reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000.0


def op_table() -> None:
    from skimage.exposure import equalize_adapthist
    from skimage.restoration import richardson_lucy

    g = cv2.getGaussianKernel(9, 2.0)
    k = g @ g.T

    def rows_for(bgr: np.ndarray) -> list:
        gray = np.ascontiguousarray(bgr[..., 0])
        f = gray.astype(np.float64) / 255
        clahe = cv2.createCLAHE(2.0, (8, 8))
        ahe = cv2.createCLAHE(0.0, (8, 8))
        return [
            ("he", lambda: enhance(gray, "he"), "cv2.equalizeHist", lambda: cv2.equalizeHist(gray)),
            ("he (BGR)", lambda: enhance(bgr, "he"), "cv2.equalizeHist", lambda: cv2.equalizeHist(gray)),
            ("clahe", lambda: enhance(gray, "clahe"), "cv2 CLAHE clip 2", lambda: clahe.apply(gray)),
            ("ahe", lambda: enhance(gray, "ahe"), "cv2 CLAHE clip 0", lambda: ahe.apply(gray)),
            ("clahe (BGR)", lambda: enhance(bgr, "clahe"), "cv2 CLAHE clip 2", lambda: clahe.apply(gray)),
            ("clahe mask", lambda: enhance(gray, "clahe", mask="auto"), "cv2 CLAHE clip 2", lambda: clahe.apply(gray)),
            ("ahe skimage", lambda: enhance(gray, "ahe"), "skimage equalize_adapthist", lambda: equalize_adapthist(gray, clip_limit=1.0)),
            ("bd", lambda: enhance(gray, "bd"), "skimage RL 10 it, true K", lambda: richardson_lucy(f, k, num_iter=10)),
        ]

    print(f"{'size':>9} {'op':<14} {'ours ms':>9} {'reference':<30} {'ref ms':>9} {'ratio':>6}")
    for w, h in ((512, 512), (1280, 720)):
        for name, ours, ref_name, ref in rows_for(frame(w, h)):
            a = timeit(ours, 0.5 if name != "bd" else 2.0)
            b = timeit(ref, 0.5 if name != "bd" else 2.0)
            print(f"{w}x{h:<5} {name:<14} {a:9.2f} {ref_name:<30} {b:9.2f} {a / b:6.2f}")


def dataset_run(n: int, workers: int) -> None:
    from fetalheart.enhance.dataset import enhance_coco

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "images").mkdir()
        images = []
        for i in range(n):
            try:
                from fetalheart.phantom import render_frame

                img = render_frame(i, seed=0, size=(512, 384), n_frames=max(n, 4))[0]
            except Exception:
                img = frame(512, 384)
            cv2.imwrite(str(d / "images" / f"f{i:04d}.png"), img)
            images.append({"id": i + 1, "file_name": f"f{i:04d}.png", "height": 384, "width": 512})
        (d / "train.json").write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
        total = 0.0
        for spec in SPECS_OF_STUDY:
            t0 = time.perf_counter()
            enhance_coco(d / "train.json", d / "images", spec, d / f"out_{spec}", workers=workers, quiet=True)
            dt = time.perf_counter() - t0
            total += dt
            print(f"  {spec:<14} {dt:7.1f} s")
        print(f"{n} images (512x384) x {len(SPECS_OF_STUDY)} specs, {workers} workers: {total:.1f} s "
              f"(target < 180 s for 176 images)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=int, default=0, help="also time N images x 11 specs offline")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip-ops", action="store_true")
    args = p.parse_args()
    cv2.setNumThreads(1)
    if not args.skip_ops:
        op_table()
    if args.dataset:
        dataset_run(args.dataset, args.workers)


if __name__ == "__main__":
    main()
