"""Small test videos written by the ffmpeg binary that imageio-ffmpeg ships, and reference timestamps.

ffprobe is not shipped by imageio-ffmpeg, so the reference frame list comes from ffmpeg itself:
``ffmpeg -i VIDEO -vf showinfo -f null -`` logs one line per decoded frame, in presentation
order, with ``pts_time`` (the container's presentation time in seconds): the same numbers
``ffprobe -show_frames`` prints as ``pts_time``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-v", "error", "-y", *args], check=True)


def make_h264(path: Path, *, seconds: float = 3, size: str = "320x180", rate: int = 30, bframes: int = 3,
              vf: str | None = None, faststart: bool = False, source: str = "testsrc2") -> Path:
    """H.264 (libx264, B-frames) test video; ``vf`` e.g. a select filter for variable frame rate."""
    sep = "" if source.endswith(":") else "="
    args = ["-f", "lavfi", "-i", f"{source}{sep}size={size}:rate={rate}:duration={seconds}"]
    if vf:
        args += ["-vf", vf, "-fps_mode", "vfr"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-bf", str(bframes), "-g", "30", "-pix_fmt", "yuv420p"]
    if faststart:
        args += ["-movflags", "+faststart"]
    ffmpeg(*args, str(path))
    return path


def reference_timestamps(path: Path) -> list[float]:
    """Presentation times of every frame, in presentation order, from ffmpeg's showinfo filter."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-vf", "showinfo", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    return [float(t) for t in re.findall(r"\bn:\s*\d+\s+pts:\s*-?\d+\s+pts_time:\s*([-0-9.e]+)", out)]


def truncate_copy(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
