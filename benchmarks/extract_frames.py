#!/usr/bin/env python
"""Benchmark: our frame extractor against ffmpeg writing every frame to PNG, in the same run.

Makes a 1280x720 30 fps H.264 video (ffmpeg from imageio-ffmpeg; test pattern in grey with
per-frame noise, like speckle), then times:
  1. ffmpeg -i V -fps_mode passthrough OUT/%06d.png  (every frame; -vsync 0 in older ffmpeg)
  2. extract_frames, every frame, --min-sharpness off (same work as ffmpeg: decode + PNG)
  3. extract_frames, every frame, default options (adds sector probing and sharpness)
  4. extract_frames --every 15 (default options)
Targets (issue 4): (2)/(1) <= 1.0; (2)/(4) >= 5. Prints the ratios.

    .venv/bin/python benchmarks/extract_frames.py            # 60 s video, a few minutes on 2 cores
    .venv/bin/python benchmarks/extract_frames.py --seconds 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fetalheart  # noqa: F401
from fetalheart.video.extract import ExtractOptions, extract_frames

import imageio_ffmpeg


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp dir)")
    args = ap.parse_args()
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fh-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"bench_{args.seconds:g}s.mp4"
    if not video.exists():
        src = (f"testsrc2=size=1280x720:rate=30:duration={args.seconds},format=gray,"
               "noise=alls=6:allf=t,format=yuv420p")  # fmt: skip
        t = _time(lambda: subprocess.run([ff, "-v", "error", "-y", "-f", "lavfi", "-i", src, "-c:v", "libx264",
                                          "-preset", "veryfast", "-bf", "3", str(video)], check=True))  # fmt: skip
        print(f"made {video} ({video.stat().st_size / 1e6:.1f} MB) in {t:.1f} s", file=sys.stderr)

    def fresh(name: str) -> Path:
        d = work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        return d

    d_ff = fresh("ffmpeg")
    t_ff = _time(lambda: subprocess.run([ff, "-v", "error", "-i", str(video), "-fps_mode", "passthrough",
                                         str(d_ff / "%06d.png")], check=True))  # fmt: skip
    n_ff = len(list(d_ff.glob("*.png")))
    shutil.rmtree(d_ff)
    res = {}
    t_all = _time(lambda: res.__setitem__("all", extract_frames([video], fresh("all"), ExtractOptions(min_sharpness=None), quiet=True)))
    shutil.rmtree(work / "all")
    t_def = _time(lambda: res.__setitem__("def", extract_frames([video], fresh("def"), ExtractOptions(min_sharpness="auto"), quiet=True)))
    shutil.rmtree(work / "def")
    t_15 = _time(lambda: res.__setitem__("e15", extract_frames([video], fresh("e15"), ExtractOptions(every=15, min_sharpness="auto"), quiet=True)))  # fmt: skip
    shutil.rmtree(work / "e15")
    n_all = len(res["all"].written)
    print(f"video: {args.seconds:g} s 1280x720 30 fps H.264; {n_ff} frames by ffmpeg, {n_all} by us")
    print(f"ffmpeg all frames to PNG         {t_ff:8.2f} s")
    print(f"ours all frames (sharpness off)  {t_all:8.2f} s   ratio to ffmpeg {t_all / t_ff:.2f}  (target <= 1.0)")
    print(f"ours all frames (default auto)   {t_def:8.2f} s   ratio to ffmpeg {t_def / t_ff:.2f}")
    print(f"ours --every 15 ({len(res['e15'].written)} frames)      {t_15:8.2f} s   "
          f"speed-up vs ours all {t_all / t_15:.1f}x (target >= 5)")  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
