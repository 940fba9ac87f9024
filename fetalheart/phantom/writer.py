"""Writing a phantom: PNG frames, LabelMe JSON, frames.csv, phantom.json and the H.264 video.

``make_phantom(out_dir, PhantomSpec(...))``: the spec decides every pixel and polygon (the same spec
gives byte-identical files); the keywords only decide what is written and how talkative it is.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fetalheart.annotations.labelme import labelme_document
from fetalheart.classes import CLASS_NAMES
from fetalheart.phantom.anatomy import HALF_ANGLE, sector_for
from fetalheart.phantom.render import render_frame, text_layout
from fetalheart.phantom.schedule import CATEGORIES, normalise_proportions
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from fetalheart.video.io import write_video
from fetalheart.video.naming import frame_stem

import cv2
import numpy as np

# Speckle barely compresses: fast zlib level with run-length matching (smaller and faster than
# the default strategy on these frames, measured).
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]

def phantom_metadata(*, seed: int, fps: float, size: tuple[int, int], n_frames: int, name: str) -> dict:
    """What phantom.json records: enough to test sector auto-crop and margin text removal."""
    sector = sector_for((int(size[0]), int(size[1])))
    text = text_layout(int(seed), float(fps), sector.size)
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
            "half_angle_deg": round(math.degrees(HALF_ANGLE), 3),
        },
        "text_boxes": [] if text is None else [list(b) for b in text[1]],
        "classes": list(CLASS_NAMES),
        "categories": list(CATEGORIES),
    }


@dataclass(frozen=True)
class PhantomSpec:
    """What a phantom video is; every field decides its pixels and its ground truth."""

    seconds: float = 2.0
    fps: float = 30
    size: tuple[int, int] = (1280, 720)
    seed: int = 0
    name: str | None = None  # file stem; default phantom_s<seed>
    proportions: Mapping[str, float] | Sequence[float] | None = None  # category weights (default: the study's)

    @property
    def stem(self) -> str:
        return self.name or f"phantom_s{self.seed}"

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    def check(self) -> None:
        """FetalHeartError naming the first invalid field."""
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds) and self.seconds > 0):
            raise FetalHeartError(f"seconds must be positive, got {self.seconds}")
        if not (isinstance(self.fps, int | float) and math.isfinite(self.fps) and self.fps > 0):
            raise FetalHeartError(f"fps must be positive, got {self.fps}")
        w, h = int(self.size[0]), int(self.size[1])
        if w < 64 or h < 64:
            raise FetalHeartError(f"phantom frames must be at least 64x64 pixels, got {w}x{h}")
        if not self.stem or any(c in self.stem for c in "/\\") or self.stem.startswith("."):
            raise FetalHeartError(f"invalid phantom name {self.stem!r}: use a plain file stem")


def _planned_outputs(out: Path, spec: PhantomSpec, video_path: Path | None) -> list[Path]:
    stems = [frame_stem(spec.stem, i) for i in range(spec.n_frames)]
    planned = [out / "frames.csv", out / "phantom.json"] + ([video_path] if video_path else [])
    return planned + [out / "frames" / f"{s}.png" for s in stems] + [out / "labelme" / f"{s}.json" for s in stems]


def _write_frame(out: Path, spec: PhantomSpec, index: int) -> tuple[np.ndarray, tuple]:
    """Render frame ``index``, write its grey PNG and LabelMe JSON; (grey image, frames.csv row)."""
    w, h = int(spec.size[0]), int(spec.size[1])
    frame, shapes, category = render_frame(index, seed=spec.seed, fps=spec.fps, size=(w, h), n_frames=spec.n_frames,
                                           proportions=spec.proportions)
    grey = np.ascontiguousarray(frame[:, :, 0])  # the phantom is grey: 8-bit grey PNG
    stem = frame_stem(spec.stem, index)
    png = out / "frames" / f"{stem}.png"
    with atomic_path(png, overwrite=True) as tmp:
        if not cv2.imwrite(str(tmp), grey, _PNG_PARAMS):
            raise FetalHeartError(f"could not write {png}")
    doc = labelme_document(shapes, f"../frames/{stem}.png", h, w)
    write_json_atomic(out / "labelme" / f"{stem}.json", doc, overwrite=True, indent=None)  # C encoder
    return grey, (f"frames/{stem}.png", index, f"{index / spec.fps:.6f}", category)


def _write_frames(out: Path, spec: PhantomSpec, video_path: Path | None, quiet: bool) -> list[tuple]:
    """Every frame as PNG + LabelMe JSON, and into the video when there is one; the frames.csv rows."""
    from tqdm import tqdm

    (out / "frames").mkdir(exist_ok=True)
    (out / "labelme").mkdir(exist_ok=True)
    rows = []
    with ExitStack() as stack:
        size = (int(spec.size[0]), int(spec.size[1]))
        video = stack.enter_context(write_video(video_path, size, spec.fps)) if video_path else None
        for i in tqdm(range(spec.n_frames), desc=f"phantom {spec.stem}", unit="frame", disable=quiet, file=None):
            grey, row = _write_frame(out, spec, i)
            if video is not None:
                video.write(grey)
            rows.append(row)
    return rows


def _write_metadata(out: Path, spec: PhantomSpec, rows: list[tuple], video_path: Path | None) -> dict[str, int]:
    """frames.csv and phantom.json; returns the frame counts per category."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["file", "frame_index", "timestamp", "category"])
    wr.writerows(rows)
    write_text_atomic(out / "frames.csv", buf.getvalue(), overwrite=True)
    counts = {c: sum(1 for r in rows if r[3] == c) for c in CATEGORIES}
    size = (int(spec.size[0]), int(spec.size[1]))
    meta = phantom_metadata(seed=spec.seed, fps=spec.fps, size=size, n_frames=spec.n_frames, name=spec.stem)
    meta["proportions"] = dict(zip(CATEGORIES, normalise_proportions(spec.proportions), strict=True))
    meta["counts"] = counts
    meta["video"] = video_path.name if video_path else None
    meta["video_codec"] = "h264" if video_path else None
    meta["annotation_notes"] = {
        "multiple_hearts": "each heart annotated; group_id 0 and 1 tell the hearts apart",
        "out_of_focus": "structures annotated from the geometry although the image is blurred",
        "no_heart": "no shapes",
        "multi_part": "a valve whose leaflets are apart is two polygons with one label and group_id",
    }
    write_json_atomic(out / "phantom.json", meta, overwrite=True)
    return counts


def make_phantom(out_dir: str | os.PathLike, spec: PhantomSpec | None = None, *, video: bool = True,
                 quiet: bool = True, overwrite: bool = False) -> dict:
    """Write a phantom video, its frames, LabelMe JSONs, frames.csv and phantom.json under ``out_dir``.

    ``video=False`` skips the mp4 (``--frames-only``). Existing outputs are refused unless
    ``overwrite``. Returns a summary: paths, frame counts per category, seconds taken.
    """
    start = time.perf_counter()
    spec = spec or PhantomSpec()
    spec.check()
    normalise_proportions(spec.proportions)  # bad weights fail before anything is written
    out = ensure_writable_dir(out_dir)
    video_path = out / f"{spec.stem}.mp4" if video else None
    if not overwrite:
        existing = [p for p in _planned_outputs(out, spec, video_path) if p.exists()]
        if existing:
            raise FetalHeartError(
                f"{existing[0]} exists ({len(existing)} output files already there); pass --overwrite to replace them"
            )
    rows = _write_frames(out, spec, video_path, quiet)
    counts = _write_metadata(out, spec, rows, video_path)
    elapsed = time.perf_counter() - start
    return {
        "out_dir": str(out),
        "name": spec.stem,
        "video": str(video_path) if video_path else None,
        "frames_dir": str(out / "frames"),
        "labelme_dir": str(out / "labelme"),
        "frames_csv": str(out / "frames.csv"),
        "metadata": str(out / "phantom.json"),
        "n_frames": spec.n_frames,
        "counts": counts,
        "seconds": elapsed,
        "frames_per_second": spec.n_frames / elapsed if elapsed > 0 else float("inf"),
    }
