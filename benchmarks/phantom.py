#!/usr/bin/env python
"""Speed and realism of the phantom: frames per second at 640x360 and the echo statistics.

    .venv/bin/python benchmarks/phantom.py                    # speed + realism line (seed 0, 640x360)
    .venv/bin/python benchmarks/phantom.py --size 1280x720    # another frame size
    .venv/bin/python benchmarks/phantom.py --profile          # + where the render time goes

Speed: ``render_frame`` alone (CPU time per frame, one thread), and ``make_phantom`` writing
PNG + LabelMe + video. Both are also given as a ratio to a reference measured in the same run
(one 640x360 float32 ``cv2.GaussianBlur`` with sigma 3, a fixed amount of OpenCV work), so a
loaded or slower machine shows up in the reference, not as a change of the phantom.
Target (issue 22): >= 10 frames/s at 640x360.

Realism: the eight statistics of ``shared/tools/echo_stats.py`` on the frames the demo keeps from
the timed video (H.264, every 3rd frame, auto-crop, out-of-focus frames dropped), against the
target ranges of real echo.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

from fetalheart.phantom import PhantomSpec, make_phantom, render_frame
from fetalheart.phantom.realism import STATISTICS, outside_targets, targets, video_statistics
from fetalheart.video.extract import ExtractOptions, extract_frames

import cv2
import numpy as np


def reference_ms(repeat: int = 50) -> float:
    """Median ms of the reference call (a fixed OpenCV workload)."""
    img = np.random.default_rng(0).random((360, 640), dtype=np.float32)
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        cv2.GaussianBlur(img, (0, 0), 3.0)
        times.append(time.process_time() - t0)
    return float(np.median(times)) * 1000.0


def render_ms(size: tuple[int, int], n: int) -> float:
    """Median CPU ms per rendered frame over ``n`` frames of a video (all categories, in order)."""
    render_frame(0, seed=0, size=size, n_frames=n)  # warm the per-size and per-seed caches
    times = []
    for i in range(n):
        t0 = time.process_time()
        render_frame(i, seed=0, size=size, n_frames=n)
        times.append(time.process_time() - t0)
    return float(np.median(times)) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    ap.add_argument("--frames", type=int, default=180, help="frames to time (default 180 = the demo's 6 s)")
    ap.add_argument("--profile", action="store_true", help="print the functions that take the render time")
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.lower().split("x"))
    cv2.setNumThreads(1)  # one core: what a worker gets
    load = os.getloadavg()
    ref = reference_ms()
    ms = render_ms(size, a.frames)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = make_phantom(tmp, PhantomSpec(seconds=a.frames / 30, size=size, seed=0), quiet=True)
        wall = (time.perf_counter() - t0) / a.frames * 1000.0
        opts = ExtractOptions(every=3, auto_crop=True, min_sharpness="auto")  # the demo's (StudyPlan.extract)
        kept = extract_frames([info["video"]], os.path.join(tmp, "kept"), opts, quiet=True).kept
        frames = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in kept]
    print(f"phantom {size[0]}x{size[1]}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  reference (GaussianBlur 640x360 f32, sigma 3)  {ref:7.2f} ms")
    print(f"  render_frame (CPU, 1 thread)                   {ms:7.2f} ms/frame  {1000 / ms:6.1f} frames/s  "
          f"= {ms / ref:5.1f} x reference")  # fmt: skip
    print(f"  make_phantom (PNG + LabelMe + H.264, wall)     {wall:7.2f} ms/frame  {1000 / wall:6.1f} frames/s  "
          f"= {wall / ref:5.1f} x reference   (target >= 10 frames/s)")  # fmt: skip
    stats = video_statistics(frames)
    bad = outside_targets(stats)
    cells = "  ".join(f"{k} {stats[k]:.4g}" + ("" if lo <= stats[k] <= hi else "(!)")
                      for k in STATISTICS for lo, hi in [targets()[k]])  # fmt: skip
    print(f"  realism ({len(frames)} frames kept as by the demo): {cells}")
    print(f"  {8 - len(bad)} of 8 statistics inside the real-echo ranges" + ("" if not bad else ": " + "; ".join(bad)))
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(30):
            render_frame(i, seed=0, size=size, n_frames=a.frames)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
