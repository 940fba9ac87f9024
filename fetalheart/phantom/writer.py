"""Writing a phantom: PNG frames, LabelMe JSON, frames.csv, phantom.json and the H.264 video."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from fetalheart.classes import CLASS_NAMES
from fetalheart.phantom.anatomy import _HALF_ANGLE, _sector
from fetalheart.phantom.render import _text_layout, render_frame
from fetalheart.phantom.schedule import CATEGORIES, _normalise_proportions, _schedule
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic

import cv2
import numpy as np

#: Written into every LabelMe JSON (a 5.x-style version string; labelme 5 and 6 both read it).
LABELME_VERSION = "5.5.0"
# Speckle barely compresses: fast zlib level with run-length matching (smaller and faster than
# the default strategy on these frames, measured).
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]

def phantom_metadata(*, seed: int, fps: float, size: tuple[int, int], n_frames: int, name: str) -> dict:
    """What phantom.json records: enough to test sector auto-crop and margin text removal."""
    sector = _sector((int(size[0]), int(size[1])))
    text = _text_layout(int(seed), float(fps), sector.size)
    return {
        "generator": "fetalheart.phantom",
        "name": name,
        "seed": int(seed),
        "size": [int(size[0]), int(size[1])],
        "fps": int(fps) if float(fps).is_integer() else float(fps),
        "n_frames": int(n_frames),
        "seconds": n_frames / float(fps),
        "sector_bbox": sector.bbox,
        "sector": {
            "apex": [round(sector.apex[0], 3), round(sector.apex[1], 3)],
            "radius": round(sector.radius, 3),
            "inner_radius": round(sector.r0, 3),
            "half_angle_deg": round(math.degrees(_HALF_ANGLE), 3),
        },
        "text_boxes": [] if text is None else [list(b) for b in text[1]],
        "classes": list(CLASS_NAMES),
        "categories": list(CATEGORIES),
    }


class _VideoWriter:
    """H.264 through the ffmpeg shipped by imageio-ffmpeg (rawvideo pipe); mp4v through OpenCV if absent.

    libx264 with one thread: the other core keeps rendering, and the stream is reproducible.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        self.path = path
        self.proc: subprocess.Popen | None = None
        self.cv_writer = None
        w, h = size
        exe = _ffmpeg_exe()
        if exe is not None:
            pad = [] if (w % 2 == 0 and h % 2 == 0) else ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]  # yuv420p
            cmd = [
                exe, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-",
                "-an", *pad, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
                "-movflags", "+faststart", "-f", "mp4", str(path),
            ]  # fmt: skip
            # stderr to a file, not a pipe: a full pipe would block the encoder.
            self.err = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err)
            self.codec = "h264"
        else:
            self.err = None
            self.cv_writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not self.cv_writer.isOpened():
                raise FetalHeartError("no video encoder: install imageio-ffmpeg, or pass --frames-only")
            self.codec = "mp4v"

    def _stderr(self) -> str:
        if self.err is None:
            return ""
        self.err.seek(0)
        lines = self.err.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def write(self, frame: np.ndarray) -> None:
        """Write one frame: BGR (H, W, 3) with equal channels, or grey (H, W)."""
        if self.proc is None:
            self.cv_writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            return
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame if frame.ndim == 2 else frame[:, :, 0]).tobytes())
        except BrokenPipeError:
            self.proc.wait()
            raise FetalHeartError(f"ffmpeg stopped while encoding {self.path}: {self._stderr()}") from None

    def close(self) -> None:
        if self.proc is None:
            self.cv_writer.release()
            return
        self.proc.stdin.close()
        rc = self.proc.wait()
        msg = self._stderr()
        self.err.close()
        if rc != 0:
            raise FetalHeartError(f"ffmpeg failed (exit {rc}) writing {self.path}: {msg}")

    def abort(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.err.close()
        elif self.cv_writer is not None:
            self.cv_writer.release()


def _ffmpeg_exe() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - missing package or binary: fall back to OpenCV
        return shutil.which("ffmpeg")


def make_phantom(
    out_dir: str | os.PathLike,
    *,
    seconds: float = 2.0,
    fps: float = 30,
    size: tuple[int, int] = (1280, 720),
    seed: int = 0,
    name: str | None = None,
    frames_only: bool = False,
    proportions: Mapping[str, float] | Sequence[float] | None = None,
    write_video: bool = True,
    quiet: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write a phantom video, its frames, LabelMe JSONs, frames.csv and phantom.json under ``out_dir``.

    ``frames_only=True`` (or ``write_video=False``) skips the mp4. Existing outputs are refused
    unless ``overwrite``. Returns a summary: paths, frame counts per category, seconds taken.
    """
    start = time.perf_counter()
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise FetalHeartError(f"seconds must be positive, got {seconds}")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise FetalHeartError(f"fps must be positive, got {fps}")
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise FetalHeartError(f"phantom frames must be at least 64x64 pixels, got {w}x{h}")
    name = name or f"phantom_s{seed}"
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise FetalHeartError(f"invalid phantom name {name!r}: use a plain file stem")
    weights = _normalise_proportions(proportions)
    n_frames = max(1, int(round(seconds * fps)))
    out = ensure_writable_dir(out_dir)
    frames_dir, labelme_dir = out / "frames", out / "labelme"
    video_path = out / f"{name}.mp4" if (write_video and not frames_only) else None
    stems = [f"{name}_{i:06d}" for i in range(n_frames)]
    planned = [out / "frames.csv", out / "phantom.json"] + ([video_path] if video_path else [])
    planned += [frames_dir / f"{s}.png" for s in stems] + [labelme_dir / f"{s}.json" for s in stems]
    if not overwrite:
        existing = [p for p in planned if p.exists()]
        if existing:
            raise FetalHeartError(
                f"{existing[0]} exists ({len(existing)} output files already there); pass --overwrite to replace them"
            )
    frames_dir.mkdir(exist_ok=True)
    labelme_dir.mkdir(exist_ok=True)
    cats, _ = _schedule(n_frames, int(seed), weights, float(fps))
    writer = None
    video_ctx = atomic_path(video_path, overwrite=True) if video_path else None
    tmp_video = video_ctx.__enter__() if video_ctx else None
    rows = []
    codec = None
    try:
        if tmp_video is not None:
            writer = _VideoWriter(tmp_video, (w, h), fps)
            codec = writer.codec
        from tqdm import tqdm

        for i in tqdm(range(n_frames), desc=f"phantom {name}", unit="frame", disable=quiet, file=None):
            frame, shapes, category = render_frame(
                i, seed=seed, fps=fps, size=(w, h), n_frames=n_frames, proportions=proportions
            )
            grey = np.ascontiguousarray(frame[:, :, 0])  # the phantom is grey: 8-bit grey PNG
            png = frames_dir / f"{stems[i]}.png"
            with atomic_path(png, overwrite=True) as tmp:
                if not cv2.imwrite(str(tmp), grey, _PNG_PARAMS):
                    raise FetalHeartError(f"could not write {png}")
            doc = {
                "version": LABELME_VERSION,
                "flags": {},
                "shapes": shapes,
                "imagePath": f"../frames/{stems[i]}.png",
                "imageData": None,
                "imageHeight": h,
                "imageWidth": w,
            }
            write_json_atomic(labelme_dir / f"{stems[i]}.json", doc, overwrite=True, indent=None)  # C encoder
            if writer is not None:
                writer.write(grey)
            rows.append((f"frames/{stems[i]}.png", i, f"{i / fps:.6f}", category))
        if writer is not None:
            writer.close()
            writer = None
        if video_ctx is not None:
            video_ctx.__exit__(None, None, None)
            video_ctx = None
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        if video_ctx is not None:
            video_ctx.__exit__(type(exc), exc, exc.__traceback__)
        raise
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["file", "frame_index", "timestamp", "category"])
    wr.writerows(rows)
    write_text_atomic(out / "frames.csv", buf.getvalue(), overwrite=True)
    counts = {c: sum(1 for r in rows if r[3] == c) for c in CATEGORIES}
    meta = phantom_metadata(seed=seed, fps=fps, size=(w, h), n_frames=n_frames, name=name)
    meta["proportions"] = dict(zip(CATEGORIES, weights, strict=True))
    meta["counts"] = counts
    meta["video"] = video_path.name if video_path else None
    meta["video_codec"] = codec
    meta["annotation_notes"] = {
        "multiple_hearts": "each heart annotated; group_id 0 and 1 tell the hearts apart",
        "out_of_focus": "structures annotated from the geometry although the image is blurred",
        "no_heart": "no shapes",
        "multi_part": "a valve whose leaflets are apart is two polygons with one label and group_id",
    }
    write_json_atomic(out / "phantom.json", meta, overwrite=True)
    elapsed = time.perf_counter() - start
    return {
        "out_dir": str(out),
        "name": name,
        "video": str(video_path) if video_path else None,
        "frames_dir": str(frames_dir),
        "labelme_dir": str(labelme_dir),
        "frames_csv": str(out / "frames.csv"),
        "metadata": str(out / "phantom.json"),
        "n_frames": n_frames,
        "counts": counts,
        "seconds": elapsed,
        "frames_per_second": n_frames / elapsed if elapsed > 0 else float("inf"),
    }

