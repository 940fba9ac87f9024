"""Video to curated frames: sample, measure sharpness, drop blurred and duplicate frames, crop.

The study turned one echo video into a few hundred frames and sorted them by hand; this does
the mechanical part reproducibly. Output: ``<video-stem>_<frame-index:06d>.<fmt>`` (index in the
source video, so a frame maps back to its time), ``frames.csv`` (one row per sampled frame:
timestamp from the container, sharpness, mean intensity, kept or why not) and
``extraction.json`` (options, per-video crop/resize geometry, thresholds, partial decodes).

Library entry point: ``extract_frames``. Building blocks live in ``video_io`` (decoding),
``video_geometry`` (crop/resize, ``FrameGeometry.map_points``, sector detection) and
``video_quality`` (sharpness, duplicates).
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from fetalheart.video_geometry import (
    Box,
    FrameGeometry,
    find_sector,
    make_geometry,
    parse_crop,
    parse_resize,
)
from fetalheart.video_io import (
    VideoInfo,
    check_video_path,
    iter_grabbed,
    open_video,
    parse_time,
    sample_frames,
)
from fetalheart.video_quality import (
    AUTO_PERCENTILE,
    auto_threshold,
    frame_difference,
    mean_intensity,
    parse_min_sharpness,
    sharpness,
    thumbnail,
    to_gray,
)

import cv2
import numpy as np

__all__ = [
    "KEPT",
    "OUT_OF_FOCUS",
    "DUPLICATE",
    "ExtractionResult",
    "FrameGeometry",
    "FrameRecord",
    "PartialVideoError",
    "VideoSummary",
    "extract_frames",
    "format_summary",
    "parse_time",
]

KEPT = "kept"
OUT_OF_FOCUS = "out_of_focus"
DUPLICATE = "duplicate"
STATUSES = (KEPT, OUT_OF_FOCUS, DUPLICATE)

CSV_COLUMNS = ("source", "frame_index", "timestamp", "file", "sharpness", "mean_intensity", "status")

#: Frames probed (by seeking) before the main pass, for --auto-crop and --min-sharpness auto.
PROBE_FRAMES = 15

# PNG level 1: lossless like any level, and about 2.3x faster than level 3 here; on noisy
# (speckle-like) 1280x720 frames the files were within 1% of level 3 and of ffmpeg's PNGs.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]
_JPG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95]


@dataclass
class FrameRecord:
    """One sampled frame: where it came from, what we measured, what we did with it."""

    source: str
    frame_index: int
    timestamp: float  # seconds, container presentation time (relative to stream start)
    sharpness: float
    mean_intensity: float
    status: str  # kept | out_of_focus | duplicate
    file: str = ""  # file name in out_dir, "" if not written (written anyway with keep_all)


@dataclass
class VideoSummary:
    """Per-video totals for the summary table and extraction.json."""

    source: str
    stem: str
    width: int
    height: int
    fps: float
    frame_count: int  # from the container (-1 unknown)
    decoded: int = 0  # frames walked through (grabbed)
    sampled: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    written: int = 0
    sharpness_threshold: float | None = None
    sharpness_rule: str = "off"
    sharpness_region: Any = None  # x,y,w,h box, or 'sector interior within (...)'
    geometry: FrameGeometry | None = None
    partial: str | None = None  # why decoding stopped early, None if it reached the end

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "geometry"}
        d["geometry"] = self.geometry.to_dict() if self.geometry else None
        return d


@dataclass
class ExtractionResult:
    """What ``extract_frames`` did: every sampled frame, the files kept, counts, geometry."""

    out_dir: Path
    records: list[FrameRecord]
    videos: list[VideoSummary]
    csv_path: Path
    json_path: Path

    @property
    def kept(self) -> list[Path]:
        """Paths of frames with status ``kept`` (in-focus, not duplicates)."""
        return [self.out_dir / r.file for r in self.records if r.status == KEPT and r.file]

    @property
    def written(self) -> list[Path]:
        """Every image file written (``kept`` plus the dropped ones when keep_all)."""
        return [self.out_dir / r.file for r in self.records if r.file]

    @property
    def counts(self) -> dict[str, int]:
        """Sampled frames per status, over all videos (every status present, zeros included)."""
        c = Counter(r.status for r in self.records)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def geometries(self) -> dict[str, FrameGeometry]:
        return {v.source: v.geometry for v in self.videos if v.geometry is not None}

    @property
    def crop(self) -> Box | None:
        """The crop box used (single video); None when several videos have different crops."""
        crops = {g.crop for g in self.geometries.values()}
        return crops.pop() if len(crops) == 1 else None

    def geometry(self, source: str | os.PathLike | None = None) -> FrameGeometry:
        """Geometry of one video (by path or stem); the only one when ``source`` is None."""
        if source is None:
            if len(self.videos) != 1:
                raise ValueError("several videos: name one")
            return self.videos[0].geometry  # type: ignore[return-value]
        key = str(source)
        for v in self.videos:
            if key in (v.source, v.stem, Path(v.source).name):
                return v.geometry  # type: ignore[return-value]
        raise KeyError(key)


class PartialVideoError(FetalHeartError):
    """A video stopped decoding before its end; ``result`` holds what was extracted."""

    def __init__(self, message: str, result: ExtractionResult):
        super().__init__(message)
        self.result = result


def _frame_name(stem: str, index: int, fmt: str) -> str:
    return f"{stem}_{index:06d}.{fmt}"


def _existing_outputs(out_dir: Path, stems: list[str], fmt: str) -> list[Path]:
    found = [p for p in (out_dir / "frames.csv", out_dir / "extraction.json") if p.exists()]
    if out_dir.is_dir():
        patterns = [re.compile(re.escape(s) + r"_\d{6}\." + fmt + r"$") for s in stems]
        found += sorted(p for p in out_dir.iterdir() if any(pat.match(p.name) for pat in patterns))
    return found


def _probe_times(info: VideoInfo, start: float | None, end: float | None, n: int) -> list[float]:
    duration = info.frame_count / info.fps if info.fps > 0 and info.frame_count > 0 else None
    t0 = start or 0.0
    t1 = end if end is not None else duration
    if t1 is None or t1 <= t0:
        t1 = t0 + 1.0
    return [float(t) for t in np.linspace(t0, t1, n + 2)[1:-1]]


class _Writer:
    """Encode and write frames on a small thread pool (cv2 releases the GIL), atomically.

    A bounded number of frames in flight keeps memory flat on long videos.
    """

    def __init__(self, workers: int, params: list[int], ext: str):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frame-writer")
        self.pending: list[Future] = []
        self.limit = 2 * workers
        self.params = params
        self.ext = ext

    def _write(self, path: Path, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(self.ext, image, self.params)
        if not ok:
            raise FetalHeartError(f"could not encode {path.name}")
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_bytes(buf.tobytes())

    def submit(self, path: Path, image: np.ndarray) -> None:
        self.pending.append(self.pool.submit(self._write, path, image))
        if len(self.pending) > self.limit:
            self._drain(keep=self.limit // 2)

    def _drain(self, keep: int = 0) -> None:
        while len(self.pending) > keep:
            self.pending.pop(0).result()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def extract_frames(
    videos: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    every: int | None = None,
    fps: float | None = None,
    start: str | float | None = None,
    end: str | float | None = None,
    max_frames: int | None = None,
    resize: int | tuple[int, int] | str | None = None,
    crop: Box | str | None = None,
    auto_crop: bool = False,
    fmt: str = "png",
    min_sharpness: float | str | None = None,
    keep_all: bool = False,
    dedupe: float | None = None,
    overwrite: bool = False,
    allow_partial: bool = False,
    quiet: bool = False,
) -> ExtractionResult:
    """Extract sampled frames of ``videos`` into ``out_dir``; see README.md, "Extract frames from a video".

    Sampling: ``every`` N-th frame (counted from the first frame at/after ``start``) or ``fps``
    frames per second of presentation time (VFR-correct); default every frame. ``start``/``end``
    in seconds or hh:mm:ss (frames with start <= t < end). ``max_frames``: stop once that many
    image files were written for a video. ``min_sharpness``: None = measure only, a number, or
    ``"auto"``/``"auto:F"`` (F x the 75th percentile of sharpness over 15 probe frames). Frames below
    are ``out_of_focus``; frames whose 64x64 thumbnail differs from the last kept frame by less
    than ``dedupe`` grey levels (mean absolute difference) are ``duplicate``; neither is written
    unless ``keep_all``. Raises FetalHeartError on bad input, PartialVideoError (with ``.result``)
    when a video stops decoding early and ``allow_partial`` is False.
    """
    from tqdm import tqdm

    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if not videos:
        raise FetalHeartError("no video given")
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in ("png", "jpg"):
        raise FetalHeartError(f"format must be png or jpg, got {fmt!r}")
    if every is not None and fps is not None:
        raise FetalHeartError("give --every or --fps, not both")
    if every is not None and int(every) < 1:
        raise FetalHeartError(f"--every must be >= 1, got {every}")
    if fps is not None and not fps > 0:
        raise FetalHeartError(f"--fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise FetalHeartError(f"--max-frames must be >= 1, got {max_frames}")
    if dedupe is not None and dedupe < 0:
        raise FetalHeartError(f"--dedupe must be >= 0, got {dedupe}")
    if crop is not None and auto_crop:
        raise FetalHeartError("give --crop or --auto-crop, not both")
    every = int(every) if every is not None else (None if fps is not None else 1)
    t_start, t_end = parse_time(start), parse_time(end)
    if t_start is not None and t_end is not None and t_end <= t_start:
        raise FetalHeartError(f"--end ({t_end:g} s) must be after --start ({t_start:g} s)")
    crop_box = parse_crop(crop)
    resize_spec = parse_resize(resize)
    rule = parse_min_sharpness(min_sharpness)

    paths = [check_video_path(v) for v in videos]
    for path in paths:  # fail on an unreadable video before creating or touching OUT
        open_video(path)[0].release()
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise FetalHeartError(f"several videos share the name {dup[0]!r}: output names would collide")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FetalHeartError(f"output {out} exists and is not a directory")
    existing = _existing_outputs(out, stems, fmt)
    if existing and not overwrite:
        raise FetalHeartError(
            f"{out} already holds {len(existing)} output file(s) (e.g. {existing[0].name}); pass --overwrite to replace them"
        )
    ensure_writable_dir(out)

    ext = "." + fmt
    params = _PNG_PARAMS if fmt == "png" else _JPG_PARAMS
    records: list[FrameRecord] = []
    summaries: list[VideoSummary] = []
    writer = _Writer(workers=max(1, min(4, os.cpu_count() or 1)), params=params, ext=ext)
    try:
        for path in paths:
            cap, info = open_video(path)
            try:
                summary = VideoSummary(
                    source=str(path), stem=path.stem, width=info.width, height=info.height,
                    fps=info.fps, frame_count=info.frame_count,
                )  # fmt: skip
                summaries.append(summary)
                # Probe frames (by seeking) find the sector, used for --auto-crop and, when no crop
                # is given, as the region where sharpness is measured (burned-in text is always
                # sharp); they also give the reference of the automatic sharpness threshold.
                probes: list[np.ndarray] = []
                if crop_box is None or isinstance(rule, str):
                    probes = sample_frames(path, _probe_times(info, t_start, t_end, PROBE_FRAMES))
                sector: Box | None = None
                interior: np.ndarray | None = None
                if crop_box is None:
                    try:
                        sector, interior = find_sector(probes)
                    except FetalHeartError:
                        if auto_crop:
                            raise
                        # Not an ultrasound-like picture: measure sharpness on the whole frame.
                geometry = make_geometry((info.width, info.height), sector if auto_crop else crop_box, resize_spec)
                summary.geometry = geometry
                if interior is not None:
                    ys, xs = np.nonzero(interior)
                    region = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
                    rx, ry, rw, rh = region
                    mask = interior[ry : ry + rh, rx : rx + rw]
                else:
                    region, mask = geometry.crop, None
                    rx, ry, rw, rh = region
                summary.sharpness_region = region if mask is None else f"sector interior within {region}"
                threshold: float | None
                if isinstance(rule, str):
                    fraction = float(rule.split(":")[1])
                    values = [sharpness(to_gray(f[ry : ry + rh, rx : rx + rw]), mask) for f in probes]
                    threshold = auto_threshold(values, fraction)
                    summary.sharpness_rule = (
                        f"{fraction:g} x the {AUTO_PERCENTILE}th percentile of {len(values)} probe frames"
                    )
                else:
                    threshold = rule
                    summary.sharpness_rule = "off" if rule is None else "fixed"
                summary.sharpness_threshold = threshold
                _extract_one(
                    cap, info, summary, geometry, region, mask, records, writer, out, fmt,
                    every=every, fps=fps, t_start=t_start, t_end=t_end, max_frames=max_frames,
                    threshold=threshold, dedupe=dedupe, keep_all=keep_all,
                    bar=tqdm(total=info.frame_count if info.frame_count > 0 else None, desc=path.name,
                             unit="frame", disable=True if quiet else None, file=sys.stderr, leave=False),
                )  # fmt: skip
            finally:
                cap.release()
    finally:
        writer.close()

    csv_path = out / "frames.csv"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        w.writerow([r.source, r.frame_index, f"{r.timestamp:.6f}", r.file, f"{r.sharpness:.3f}",
                    f"{r.mean_intensity:.3f}", r.status])  # fmt: skip
    write_text_atomic(csv_path, buf.getvalue())
    from fetalheart import __version__

    json_path = write_json_atomic(
        out / "extraction.json",
        {
            "tool": "fetalheart.video.extract_frames",
            "version": __version__,
            "opencv": cv2.__version__,
            "options": {
                "every": every, "fps": fps, "start": t_start, "end": t_end, "max_frames": max_frames,
                "resize": resize_spec, "crop": crop_box, "auto_crop": auto_crop, "format": fmt,
                "min_sharpness": rule, "keep_all": keep_all, "dedupe": dedupe,
            },  # fmt: skip
            "coordinate_convention": "continuous pixels; out = (x - crop_x) * scale_x + pad_left",
            "videos": [s.to_dict() for s in summaries],
        },
    )
    result = ExtractionResult(out_dir=out, records=records, videos=summaries, csv_path=csv_path, json_path=json_path)
    partial = [s for s in summaries if s.partial]
    if partial and not allow_partial:
        s = partial[0]
        raise PartialVideoError(f"{s.source}: {s.partial}; pass --allow-partial to accept", result)
    return result


def _extract_one(
    cap: cv2.VideoCapture,
    info: VideoInfo,
    summary: VideoSummary,
    geometry: FrameGeometry,
    region: Box,
    mask: np.ndarray | None,
    records: list[FrameRecord],
    writer: _Writer,
    out: Path,
    fmt: str,
    *,
    every: int | None,
    fps: float | None,
    t_start: float | None,
    t_end: float | None,
    max_frames: int | None,
    threshold: float | None,
    dedupe: float | None,
    keep_all: bool,
    bar: Any,
) -> None:
    cx, cy, cw, ch = region
    counts: Counter[str] = Counter()
    in_range = 0  # frames at/after start, for --every
    next_time: float | None = None  # for --fps
    last_thumb: np.ndarray | None = None
    stopped_early = False  # by --end or --max-frames, not by the file
    last_index, last_time = -1, 0.0
    tick = 0
    eps = 1e-6
    with bar:
        for index, ts in iter_grabbed(cap):
            last_index, last_time = index, ts
            tick += 1
            if tick == 32:
                bar.update(tick)
                tick = 0
            if t_start is not None and ts < t_start - eps:
                continue
            if t_end is not None and ts >= t_end - eps:
                stopped_early = True
                break
            if every is not None:
                take = in_range % every == 0
                in_range += 1
            else:
                if next_time is None:
                    next_time = ts
                take = ts >= next_time - eps
                if take:
                    while next_time <= ts + eps:
                        next_time += 1.0 / fps  # type: ignore[operator]
            if not take:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            gray = to_gray(frame[cy : cy + ch, cx : cx + cw])
            sharp = sharpness(gray, mask)
            thumb = thumbnail(gray) if dedupe is not None else None
            if threshold is not None and sharp < threshold:
                status = OUT_OF_FOCUS
            elif thumb is not None and last_thumb is not None and frame_difference(thumb, last_thumb) < dedupe:
                status = DUPLICATE
            else:
                status = KEPT
                last_thumb = thumb
            name = ""
            if status == KEPT or keep_all:
                name = _frame_name(summary.stem, index, fmt)
                writer.submit(out / name, geometry.apply(frame))
                summary.written += 1
            counts[status] += 1
            records.append(FrameRecord(str(info.path), index, ts, sharp, mean_intensity(gray, mask), status, name))
            if max_frames is not None and summary.written >= max_frames:
                stopped_early = True
                break
        bar.update(tick)
    summary.decoded = last_index + 1
    summary.sampled = sum(counts.values())
    summary.counts = {s: counts.get(s, 0) for s in STATUSES}
    if summary.decoded == 0:
        raise FetalHeartError(f"{info.path}: no frame could be decoded (corrupt or unsupported video)")
    if not stopped_early and info.frame_count > 0 and summary.decoded < info.frame_count:
        summary.partial = (
            f"decoding stopped after frame {last_index} (t={last_time:.3f} s) of {info.frame_count} "
            "announced by the container: the file is truncated or corrupt"
        )


def format_summary(result: ExtractionResult) -> str:
    """Plain-text table per video, in the spirit of the study's Table 2 (frame counts by fate)."""
    header = ("video", "frames", "sampled", "kept", "out of focus", "duplicate", "written", "sharpness min", "crop x,y,w,h")
    rows = []
    for v in result.videos:
        thr = "-" if v.sharpness_threshold is None else f"{v.sharpness_threshold:.1f}"
        crop = ",".join(map(str, v.geometry.crop)) if v.geometry else "-"
        decoded = f"{v.decoded}" + (" (partial)" if v.partial else "")
        rows.append((v.stem, decoded, v.sampled, v.counts.get(KEPT, 0), v.counts.get(OUT_OF_FOCUS, 0),
                     v.counts.get(DUPLICATE, 0), v.written, thr, crop))  # fmt: skip
    if len(result.videos) > 1:
        tot = result.counts
        rows.append(("total", sum(v.decoded for v in result.videos), sum(v.sampled for v in result.videos),
                     tot[KEPT], tot[OUT_OF_FOCUS], tot[DUPLICATE], sum(v.written for v in result.videos), "", ""))  # fmt: skip
    table = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
