#!/usr/bin/env python
"""Benchmark: 1,000 LabelMe files at 1280x720 with 10 polygons each -> COCO, target < 10 s.

Prints files/s for the parallel run (all cores), and as references measured in the same run:
one worker, and the floor of just parsing the JSON files (json.load of every file).

    .venv/bin/python benchmarks/labelme2coco.py [--files 1000] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.annotations.convert import convert
from fetalheart.classes import CLASS_NAMES

import numpy as np

W, H = 1280, 720


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_inputs(root: Path, n_files: int, n_videos: int = 10) -> None:
    import cv2

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (H, W), dtype=np.uint8), (0, 0), 3)
    frames, labelme = root / "frames", root / "labelme"
    frames.mkdir(parents=True)
    labelme.mkdir()
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    for k in range(n_files):
        stem = f"video{k % n_videos}_{k // n_videos:06d}"
        # a real 1280x720 PNG per name, each with its own pixels (the converter merges or refuses
        # images with equal bytes or pixels): the frame number stamped into the first row
        img[0, :8] = np.frombuffer(k.to_bytes(8, "little"), np.uint8)
        cv2.imwrite(str(frames / f"{stem}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        shapes = []
        for c, label in enumerate(CLASS_NAMES):
            cx, cy, r = 150 + 100 * c, 200 + 30 * (k % 7), 40 + 5 * c
            pts = np.stack([cx + r * np.cos(t) * (1 + 0.1 * np.sin(3 * t)), cy + r * np.sin(t)], 1)
            shapes.append({"label": label, "points": np.round(pts, 1).tolist(), "group_id": None,
                           "shape_type": "polygon", "flags": {}})
        doc = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"../frames/{stem}.png",
               "imageData": None, "imageHeight": H, "imageWidth": W}
        (labelme / f"{stem}.json").write_text(json.dumps(doc))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=None, help="workers (default: all cores)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fh-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(root / "in", args.files)
        print(f"generated {args.files} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        t0 = time.perf_counter()
        for f in sorted((root / "in" / "labelme").glob("*.json")):
            json.loads(f.read_text())
        t_parse = time.perf_counter() - t0

        t0, c0 = time.perf_counter(), _cpu()
        report = convert([root / "in" / "labelme"], root / "out", jobs=args.jobs, quiet=True)
        t_par, cpu_par = time.perf_counter() - t0, _cpu() - c0
        n = report["images"]["train"] + report["images"]["val"]
        assert n == args.files, n

        t0, c0 = time.perf_counter(), _cpu()
        convert([root / "in" / "labelme"], root / "out1", jobs=1, quiet=True)
        t_one, cpu_one = time.perf_counter() - t0, _cpu() - c0

    jobs = args.jobs or min(os.cpu_count() or 1, 8)
    print(f"cores: {os.cpu_count()}, workers: {jobs}, files: {args.files} ({W}x{H}, 10 polygons x 40 vertices)")
    print(f"labelme2coco ({jobs} workers): {t_par:.2f} s = {args.files / t_par:.0f} files/s "
          f"(target 10 s for 1000 files: {t_par / 10 * 1000 / args.files:.2f} of budget)")
    print(f"reference, 1 worker:          {t_one:.2f} s = {args.files / t_one:.0f} files/s "
          f"(parallel speed-up x{t_one / t_par:.2f})")
    print(f"CPU seconds (user+sys, incl. workers): parallel {cpu_par:.2f}, 1 worker {cpu_one:.2f}; "
          f"load average now {os.getloadavg()[0]:.1f} (other processes share the cores)")
    print(f"reference, json.load only:    {t_parse:.2f} s (conversion costs x{t_par / t_parse:.1f} of parsing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
