#!/usr/bin/env python
"""Speed of the enhancement ops beside the reference calls they wrap or replace.

    .venv/bin/python benchmarks/enhance.py                 # op table, 512x512 and 1280x720
    .venv/bin/python benchmarks/enhance.py --dataset 176   # + 176 images x 11 specs, 2 workers
    .venv/bin/python benchmarks/enhance.py --skip-ops --dataset 176 --repeat 3   # min / median

Ratios are against references measured in the same run (targets: he/clahe/ahe <= 1.5x the
OpenCV call; bd < 1 s per 512x512 frame; 176 x 11 specs <= 180 s with 2 workers).

The dataset run is what a grid does: warm the bd kernel cache once per image
(``warm_bd_cache``), then ``enhance_coco`` each of the 11 specs with that shared cache, so
the 5 bd specs only deconvolve. The total counts the warm-up once, and the per-spec change
statistics (``enhance_report.json``) are part of each spec's time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from fetalheart.enhance import SPECS_OF_STUDY, Enhancer, enhance, resolve_params, warm_bd_cache
from fetalheart.enhance.spec import apply_ops

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
        params = resolve_params(None)
        kernel = Enhancer("bd").kernel(gray)  # what the kernel cache holds for this frame
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
            ("bd cached K", lambda: apply_ops(gray, ("bd",), params=params, kernel=kernel),
             "skimage RL 10 it, true K", lambda: richardson_lucy(f, k, num_iter=10)),
        ]

    print(f"{'size':>9} {'op':<14} {'ours ms':>9} {'reference':<30} {'ref ms':>9} {'ratio':>6}")
    for w, h in ((512, 512), (1280, 720)):
        for name, ours, ref_name, ref in rows_for(frame(w, h)):
            a = timeit(ours, 0.5 if not name.startswith("bd") else 2.0)
            b = timeit(ref, 0.5 if not name.startswith("bd") else 2.0)
            print(f"{w}x{h:<5} {name:<14} {a:9.2f} {ref_name:<30} {b:9.2f} {a / b:6.2f}")


BUDGET_S = 180.0


def write_dataset(d: Path, n: int) -> list[Path]:
    """``n`` phantom frames (512x384, every frame category) and a COCO file listing them."""
    (d / "images").mkdir()
    images, paths = [], []
    for i in range(n):
        try:
            from fetalheart.phantom import render_frame

            img = render_frame(i, seed=0, size=(512, 384), n_frames=max(n, 4))[0]
        except Exception:
            img = frame(512, 384)
        paths.append(d / "images" / f"f{i:04d}.png")
        cv2.imwrite(str(paths[-1]), img)
        images.append({"id": i + 1, "file_name": f"f{i:04d}.png", "height": 384, "width": 512})
    (d / "train.json").write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return paths


def dataset_run(n: int, workers: int, verbose: bool = True) -> float:
    """One grid-like pass (warm-up + 11 specs, fresh caches); its total seconds."""
    from fetalheart.enhance.dataset import EnhanceOptions, enhance_coco

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        paths = write_dataset(d, n)
        cache = d / "enhance_cache"
        t0 = time.perf_counter()
        warm = warm_bd_cache(paths, None, cache, jobs=workers, quiet=True)
        total = time.perf_counter() - t0
        if verbose:
            print(f"  {'bd kernels':<14} {total:7.1f} s  ({warm['estimated']} estimated once per image, "
                  f"sigma median {warm['kernel_sigma']['median']} px, {warm['below_floor']} below the floor)")
        for spec in SPECS_OF_STUDY:
            t0 = time.perf_counter()
            options = EnhanceOptions(workers=workers, cache_dir=cache)
            summary = enhance_coco(d / "train.json", d / "images", spec, d / f"out_{spec}", options, quiet=True)
            dt = time.perf_counter() - t0
            total += dt
            if verbose:
                last = summary["changes"]["steps"][-1] if summary["changes"]["steps"] else None
                note = f"last step {last['frames_changed']}/{n} changed" if last else ""
                print(f"  {spec:<14} {dt:7.1f} s  {note}")
        kernels = len(list((cache / "bd_kernels").rglob("*.npy")))
        if kernels != n:
            raise SystemExit(f"expected {n} cached kernels (one per image), found {kernels}")
        print(f"{n} images (512x384) x {len(SPECS_OF_STUDY)} specs, {workers} workers: {total:.1f} s, "
              f"{kernels} bd kernels (one per image); ratio to the {BUDGET_S:.0f} s budget "
              f"{total / BUDGET_S:.2f} (x {176 / n:.2f} for 176 images)")
    return total


def dataset_runs(n: int, workers: int, repeat: int) -> None:
    totals = [dataset_run(n, workers, verbose=(i == 0)) for i in range(repeat)]
    if repeat > 1:
        t = np.array(totals)
        print(f"{repeat} runs: min {t.min():.1f} s (ratio {t.min() / BUDGET_S:.2f}), median {np.median(t):.1f} s "
              f"(ratio {np.median(t) / BUDGET_S:.2f}) to the {BUDGET_S:.0f} s budget; load average "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=int, default=0, help="also time N images x 11 specs offline")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="dataset runs to take the min/median of")
    p.add_argument("--skip-ops", action="store_true")
    args = p.parse_args()
    cv2.setNumThreads(1)
    if not args.skip_ops:
        op_table()
    if args.dataset:
        dataset_runs(args.dataset, args.workers, max(1, args.repeat))


if __name__ == "__main__":
    main()
