"""Video to curated frames: sample, measure sharpness, drop blurred and duplicate frames, crop.

The study turned one echo video into a few hundred frames and sorted them by hand; this does
the mechanical part reproducibly. Output: ``<video-stem>_<frame-index:06d>.<fmt>`` (index in the
source video, so a frame maps back to its time), ``frames.csv`` (one row per sampled frame:
timestamp from the container, sharpness, mean intensity, kept or why not) and
``extraction.json`` (options, per-video crop/resize geometry, thresholds, partial decodes).

Library entry point: ``extract_frames(videos, out_dir, ExtractOptions(...))``. Building blocks live
in ``io`` (decoding), ``geometry`` (crop/resize, ``FrameGeometry.map_points``), ``sector`` (the fan)
and ``quality`` (sharpness, duplicates).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from fetalheart.video.geometry import FrameGeometry, make_geometry, parse_crop, parse_resize
from fetalheart.video.io import (
    VideoInfo,
    check_video_path,
    iter_grabbed,
    open_video,
    parse_time,
    sample_frames,
)
from fetalheart.video.naming import frame_name, frame_name_pattern
from fetalheart.video.quality import (
    AUTO_PERCENTILE,
    auto_threshold,
    frame_difference,
    mean_intensity,
    parse_min_sharpness,
    sharpness,
    thumbnail,
    to_gray,
)
from fetalheart.video.sector import Box, find_sector

import cv2
import numpy as np

__all__ = [
    "KEPT",
    "OUT_OF_FOCUS",
    "DUPLICATE",
    "ExtractOptions",
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


@dataclass(frozen=True)
class ExtractOptions:
    """Which frames to keep and how to write them (recorded in extraction.json); see ``extract_frames``."""

    every: int | None = None  # every N-th frame from start (default: every frame unless fps)
    fps: float | None = None  # or N frames per second of presentation time
    start: str | float | None = None  # seconds or hh:mm:ss
    end: str | float | None = None
    max_frames: int | None = None  # per video, image files written
    resize: int | tuple[int, int] | str | None = None  # N (longest side) or WxH (fit and pad)
    crop: Box | str | None = None  # x,y,w,h in source pixels
    auto_crop: bool = False  # crop to the detected ultrasound sector
    fmt: str = "png"  # png | jpg
    min_sharpness: float | str | None = None  # None (measure only), a number, "auto" or "auto:F"
    keep_all: bool = False  # also write dropped frames
    dedupe: float | None = None  # grey levels (mean absolute thumbnail difference)


@dataclass(frozen=True)
class _Plan:
    """ExtractOptions checked and parsed (times in seconds, boxes as tuples, the sharpness rule)."""

    every: int | None
    fps: float | None
    t_start: float | None
    t_end: float | None
    max_frames: int | None
    resize: int | tuple[int, int] | None
    crop: Box | None
    auto_crop: bool
    fmt: str
    rule: float | str | None  # threshold, "auto:F" or None
    keep_all: bool
    dedupe: float | None

    def to_dict(self) -> dict[str, Any]:
        """The ``options`` of extraction.json."""
        return {"every": self.every, "fps": self.fps, "start": self.t_start, "end": self.t_end,
                "max_frames": self.max_frames, "resize": self.resize, "crop": self.crop, "auto_crop": self.auto_crop,
                "format": self.fmt, "min_sharpness": self.rule, "keep_all": self.keep_all, "dedupe": self.dedupe}


def _check_numbers(o: ExtractOptions) -> None:
    if o.every is not None and o.fps is not None:
        raise FetalHeartError("give --every or --fps, not both")
    if o.every is not None and int(o.every) < 1:
        raise FetalHeartError(f"--every must be >= 1, got {o.every}")
    if o.fps is not None and not o.fps > 0:
        raise FetalHeartError(f"--fps must be > 0, got {o.fps}")
    if o.max_frames is not None and o.max_frames < 1:
        raise FetalHeartError(f"--max-frames must be >= 1, got {o.max_frames}")
    if o.dedupe is not None and o.dedupe < 0:
        raise FetalHeartError(f"--dedupe must be >= 0, got {o.dedupe}")
    if o.crop is not None and o.auto_crop:
        raise FetalHeartError("give --crop or --auto-crop, not both")


def _plan_extraction(options: ExtractOptions) -> _Plan:
    """Check every option (FetalHeartError naming the first bad one) and parse it."""
    fmt = options.fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ("png", "jpg"):
        raise FetalHeartError(f"format must be png or jpg, got {fmt!r}")
    _check_numbers(options)
    t_start, t_end = parse_time(options.start), parse_time(options.end)
    if t_start is not None and t_end is not None and t_end <= t_start:
        raise FetalHeartError(f"--end ({t_end:g} s) must be after --start ({t_start:g} s)")
    every = int(options.every) if options.every is not None else (None if options.fps is not None else 1)
    return _Plan(every, options.fps, t_start, t_end, options.max_frames, parse_resize(options.resize),
                 parse_crop(options.crop), options.auto_crop, fmt, parse_min_sharpness(options.min_sharpness),
                 options.keep_all, options.dedupe)


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


def _existing_outputs(out_dir: Path, stems: list[str], fmt: str) -> list[Path]:
    found = [p for p in (out_dir / "frames.csv", out_dir / "extraction.json") if p.exists()]
    if out_dir.is_dir():
        patterns = [frame_name_pattern(s, fmt) for s in stems]
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

    def __init__(self, workers: int, fmt: str):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frame-writer")
        self.pending: list[Future] = []
        self.limit = 2 * workers
        self.params = _PNG_PARAMS if fmt == "png" else _JPG_PARAMS
        self.ext = "." + fmt

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


@dataclass
class _Output:
    """Where one extraction writes: the folder, the image writer, the records of every sampled frame."""

    out: Path
    writer: _Writer
    records: list[FrameRecord] = field(default_factory=list)
    summaries: list[VideoSummary] = field(default_factory=list)


@dataclass
class _Measure:
    """How a video's frames are measured: where (region, sector mask) and the sharpness threshold."""

    region: Box
    mask: np.ndarray | None
    threshold: float | None


def _check_videos(videos: list[str | os.PathLike] | str | os.PathLike, out: Path, fmt: str,
                  overwrite: bool) -> list[Path]:
    """The video paths, refused before OUT is created or touched (unreadable, colliding names, old outputs)."""
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if not videos:
        raise FetalHeartError("no video given")
    paths = [check_video_path(v) for v in videos]
    for path in paths:
        open_video(path)[0].release()
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise FetalHeartError(f"several videos share the name {dup[0]!r}: output names would collide")
    if out.exists() and not out.is_dir():
        raise FetalHeartError(f"output {out} exists and is not a directory")
    existing = _existing_outputs(out, stems, fmt)
    if existing and not overwrite:
        raise FetalHeartError(
            f"{out} already holds {len(existing)} output file(s) (e.g. {existing[0].name}); pass --overwrite to replace them"
        )
    return paths


def _find_sector(probes: list[np.ndarray], plan: _Plan) -> tuple[Box | None, np.ndarray | None]:
    """The sector (box, interior) when no crop is given; (None, None) when the frames show none and
    --auto-crop was not asked (not an ultrasound-like picture: sharpness on the whole frame)."""
    if plan.crop is not None:
        return None, None
    try:
        return find_sector(probes)
    except FetalHeartError:
        if plan.auto_crop:
            raise
        return None, None


def _set_up_video(path: Path, info: VideoInfo, plan: _Plan, summary: VideoSummary) -> _Measure:
    """Geometry, measuring region and sharpness threshold of one video, recorded in ``summary``.

    Probe frames (by seeking) find the sector, used for --auto-crop and, when no crop is given, as
    the region where sharpness is measured (burned-in text is always sharp); they also give the
    reference of the automatic sharpness threshold.
    """
    probes: list[np.ndarray] = []
    if plan.crop is None or isinstance(plan.rule, str):
        probes = sample_frames(path, _probe_times(info, plan.t_start, plan.t_end, PROBE_FRAMES))
    sector, interior = _find_sector(probes, plan)
    summary.geometry = make_geometry((info.width, info.height), sector if plan.auto_crop else plan.crop, plan.resize)
    if interior is not None:
        ys, xs = np.nonzero(interior)
        region = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        rx, ry, rw, rh = region
        mask = interior[ry : ry + rh, rx : rx + rw]
        summary.sharpness_region = f"sector interior within {region}"
    else:
        region, mask = summary.geometry.crop, None
        summary.sharpness_region = region
    summary.sharpness_threshold = _threshold(plan.rule, probes, region, mask, summary)
    return _Measure(region, mask, summary.sharpness_threshold)


def _threshold(rule: float | str | None, probes: list[np.ndarray], region: Box, mask: np.ndarray | None,
               summary: VideoSummary) -> float | None:
    """The sharpness threshold of one video (``auto:F`` measured on the probes); the rule text in ``summary``."""
    if not isinstance(rule, str):
        summary.sharpness_rule = "off" if rule is None else "fixed"
        return rule
    rx, ry, rw, rh = region
    fraction = float(rule.split(":")[1])
    values = [sharpness(to_gray(f[ry : ry + rh, rx : rx + rw]), mask) for f in probes]
    summary.sharpness_rule = f"{fraction:g} x the {AUTO_PERCENTILE}th percentile of {len(values)} probe frames"
    return auto_threshold(values, fraction)


def extract_frames(
    videos: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    options: ExtractOptions | None = None,
    *,
    overwrite: bool = False,
    allow_partial: bool = False,
    quiet: bool = False,
) -> ExtractionResult:
    """Extract sampled frames of ``videos`` into ``out_dir``; see docs/extract_frames.md.

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
    plan = _plan_extraction(options or ExtractOptions())
    out = Path(out_dir)
    paths = _check_videos(videos, out, plan.fmt, overwrite)
    ensure_writable_dir(out)
    sink = _Output(out, _Writer(workers=max(1, min(4, os.cpu_count() or 1)), fmt=plan.fmt))
    try:
        for path in paths:
            _extract_video(path, plan, sink, quiet)
    finally:
        sink.writer.close()
    result = ExtractionResult(out_dir=out, records=sink.records, videos=sink.summaries,
                              csv_path=_write_csv(out / "frames.csv", sink.records),
                              json_path=_write_extraction_json(out / "extraction.json", plan, sink.summaries))
    partial = [s for s in sink.summaries if s.partial]
    if partial and not allow_partial:
        s = partial[0]
        raise PartialVideoError(f"{s.source}: {s.partial}; pass --allow-partial to accept", result)
    return result


def _extract_video(path: Path, plan: _Plan, sink: _Output, quiet: bool) -> None:
    """Set up, then walk one video (a progress bar per video)."""
    from tqdm import tqdm

    cap, info = open_video(path)
    try:
        summary = VideoSummary(source=str(path), stem=path.stem, width=info.width, height=info.height,
                               fps=info.fps, frame_count=info.frame_count)
        sink.summaries.append(summary)
        measure = _set_up_video(path, info, plan, summary)
        bar = tqdm(total=info.frame_count if info.frame_count > 0 else None, desc=path.name, unit="frame",
                   disable=True if quiet else None, file=sys.stderr, leave=False)
        with bar:
            _walk(cap, info, summary, measure, plan, sink, bar)
    finally:
        cap.release()


class _Sampler:
    """Which decoded frames are sampled: frames in [start, end), then every N-th or N per second."""

    EPS = 1e-6

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.in_range = 0  # frames at/after start, for --every
        self.next_time: float | None = None  # for --fps

    def past_end(self, ts: float) -> bool:
        return self.plan.t_end is not None and ts >= self.plan.t_end - self.EPS

    def take(self, ts: float) -> bool:
        if self.plan.t_start is not None and ts < self.plan.t_start - self.EPS:
            return False
        if self.plan.every is not None:
            self.in_range += 1
            return (self.in_range - 1) % self.plan.every == 0
        if self.next_time is None:
            self.next_time = ts
        if ts < self.next_time - self.EPS:
            return False
        while self.next_time <= ts + self.EPS:
            self.next_time += 1.0 / self.plan.fps  # type: ignore[operator]
        return True


class _Classifier:
    """kept / out_of_focus / duplicate for each sampled frame, in order (duplicates of the last kept one)."""

    def __init__(self, threshold: float | None, dedupe: float | None):
        self.threshold, self.dedupe = threshold, dedupe
        self.last_thumb: np.ndarray | None = None

    def status(self, gray: np.ndarray, sharp: float) -> str:
        thumb = thumbnail(gray) if self.dedupe is not None else None
        if self.threshold is not None and sharp < self.threshold:
            return OUT_OF_FOCUS
        if thumb is not None and self.last_thumb is not None and frame_difference(thumb, self.last_thumb) < self.dedupe:
            return DUPLICATE
        self.last_thumb = thumb
        return KEPT


def _walk(cap: cv2.VideoCapture, info: VideoInfo, summary: VideoSummary, measure: _Measure, plan: _Plan,
          sink: _Output, bar: Any) -> None:
    """Decode one video, sample, measure, classify and write its frames; totals into ``summary``."""
    cx, cy, cw, ch = measure.region
    sampler, classifier = _Sampler(plan), _Classifier(measure.threshold, plan.dedupe)
    counts: Counter[str] = Counter()
    stopped_early = False  # by --end or --max-frames, not by the file
    last_index, last_time, tick = -1, 0.0, 0
    for index, ts in iter_grabbed(cap):
        last_index, last_time, tick = index, ts, tick + 1
        if tick == 32:
            bar.update(tick)
            tick = 0
        if sampler.past_end(ts):  # (end > start: a frame before start is never past the end)
            stopped_early = True
            break
        if not sampler.take(ts):
            continue
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            break
        gray = to_gray(frame[cy : cy + ch, cx : cx + cw])
        sharp = sharpness(gray, measure.mask)
        status = classifier.status(gray, sharp)
        name = ""
        if status == KEPT or plan.keep_all:
            name = frame_name(summary.stem, index, plan.fmt)
            sink.writer.submit(sink.out / name, summary.geometry.apply(frame))
            summary.written += 1
        counts[status] += 1
        sink.records.append(FrameRecord(str(info.path), index, ts, sharp, mean_intensity(gray, measure.mask), status,
                                        name))
        if plan.max_frames is not None and summary.written >= plan.max_frames:
            stopped_early = True
            break
    bar.update(tick)
    _finish_summary(summary, info, counts, (last_index, last_time), stopped_early)


def _finish_summary(summary: VideoSummary, info: VideoInfo, counts: Counter, last: tuple[int, float],
                    stopped_early: bool) -> None:
    """Totals of one walked video; ``partial`` says why decoding stopped before the announced end."""
    last_index, last_time = last
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


def _write_csv(path: Path, records: list[FrameRecord]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        w.writerow([r.source, r.frame_index, f"{r.timestamp:.6f}", r.file, f"{r.sharpness:.3f}",
                    f"{r.mean_intensity:.3f}", r.status])  # fmt: skip
    return write_text_atomic(path, buf.getvalue())


def _write_extraction_json(path: Path, plan: _Plan, summaries: list[VideoSummary]) -> Path:
    from fetalheart import __version__

    return write_json_atomic(path, {
        "tool": "fetalheart.video.extract.extract_frames",
        "version": __version__,
        "opencv": cv2.__version__,
        "options": plan.to_dict(),
        "coordinate_convention": "continuous pixels; out = (x - crop_x) * scale_x + pad_left",
        "videos": [s.to_dict() for s in summaries],
    })


SUMMARY_HEADERS = ("video", "frames", "sampled", "kept", "out of focus", "duplicate", "written", "sharpness min",
                   "crop x,y,w,h")


def format_summary(result: ExtractionResult) -> str:
    """Plain-text table per video (tabulate), in the spirit of the study's Table 2 (frame counts by fate)."""
    from tabulate import tabulate

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
    return tabulate([tuple(map(str, r)) for r in rows], headers=SUMMARY_HEADERS, tablefmt="simple",
                    colalign=("left",) + ("right",) * (len(SUMMARY_HEADERS) - 1), disable_numparse=True)
