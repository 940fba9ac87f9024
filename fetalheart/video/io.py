"""Video in and out: the one reader (OpenCV's FFmpeg backend, true timestamps, a clear reason when a
file cannot be opened) and the one writer (H.264 through imageio-ffmpeg's ``write_frames``).

Why OpenCV and not the ffmpeg binary: ``VideoCapture.grab()`` decodes a frame without the
colour conversion and copy that ``retrieve()`` does, so frames we skip cost less, and
``CAP_PROP_POS_MSEC`` after a grab is the frame's presentation time from the container
(correct for B-frames and variable frame rate; checked against ffmpeg's ``showinfo``).

Why we diagnose files ourselves: when OpenCV cannot open a file it only says "no", and FFmpeg's
reason ("moov atom not found") goes to the C-level stderr. We silence FFmpeg's log (it would
also print decoder noise for every broken packet of a truncated file) and instead look at
the file to give one clear line.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path

# Must be set before OpenCV initialises its FFmpeg backend (first VideoCapture in the process).
# AV_LOG_QUIET = -8. setdefault: a user who exports OPENCV_FFMPEG_LOGLEVEL keeps control.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402

try:  # OpenCV's own "[ WARN ] ... can't be used to capture by name" lines.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # pragma: no cover - very old OpenCV builds
    pass

import numpy as np  # noqa: E402

#: File suffixes taken for videos when a folder is read (``run_study`` videos:, ``predict`` inputs).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video before decoding it."""

    path: Path
    width: int
    height: int
    frame_count: int  # from the container index; -1 when unknown (may be an estimate for some formats)
    fps: float  # nominal (average) frame rate; timestamps come from each frame, not from this


def parse_time(value: str | float | int | None) -> float | None:
    """Seconds from ``12.5``, ``1:02`` (mm:ss) or ``00:01:02.5`` (hh:mm:ss); None stays None."""
    if value is None or isinstance(value, (int, float)):
        if value is not None and value < 0:
            raise FetalHeartError(f"time must not be negative: {value}")
        return None if value is None else float(value)
    text = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d*)?|(\d+:){1,2}\d+(\.\d*)?", text):
        raise FetalHeartError(f"cannot read time {value!r}: use seconds (12.5) or hh:mm:ss (00:01:02.5)")
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in decoded)


def _mp4_top_level_boxes(path: Path, limit: int = 64) -> list[str] | None:
    """Names of the top-level ISO-BMFF boxes, or None if this is not an MP4/MOV file.

    Used only to explain a failure: a recording that was cut off before the index (``moov``)
    was written cannot be opened at all.
    """
    names: list[str] = []
    size_total = path.stat().st_size
    with path.open("rb") as fh:
        offset = 0
        while offset + 8 <= size_total and len(names) < limit:
            fh.seek(offset)
            header = fh.read(8)
            size, kind = struct.unpack(">I4s", header)
            try:
                name = kind.decode("ascii")
            except UnicodeDecodeError:
                break
            if not names and name not in ("ftyp", "styp", "moov", "mdat", "free", "skip", "wide"):
                return None
            names.append(name)
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
            elif size == 0:
                break
            if size < 8:
                break
            offset += size
    return names or None


def check_video_path(path: str | os.PathLike) -> Path:
    """Refuse, with one clear line, the inputs that are certainly not a video."""
    path = Path(path)
    if not path.exists():
        raise FetalHeartError(f"{path}: no such file")
    if path.is_dir():
        raise FetalHeartError(f"{path} is a directory, not a video file")
    if path.stat().st_size == 0:
        raise FetalHeartError(f"{path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise FetalHeartError(f"{path}: permission denied")
    return path


def _diagnose_unopenable(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(512)
    if _looks_like_text(head):
        return f"{path} is not a video (it looks like a text file)"
    boxes = _mp4_top_level_boxes(path)
    if boxes is not None and "moov" not in boxes:
        return (
            f"{path}: MP4 index (moov atom) not found: the file is truncated or the recording was not "
            "finalised, and without the index nothing can be decoded; use a complete copy"
        )
    return f"{path} is not a video OpenCV/FFmpeg can decode (unknown or corrupt format)"


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open ``path`` with the FFmpeg backend; FetalHeartError with the reason if it cannot."""
    path = check_video_path(path)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise FetalHeartError(_diagnose_unopenable(path))
    info = VideoInfo(
        path=path,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1),
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
    )
    if info.width <= 0 or info.height <= 0:
        cap.release()
        raise FetalHeartError(f"{path} has no video stream")
    return cap, info


def iter_grabbed(cap: cv2.VideoCapture) -> Iterator[tuple[int, float]]:
    """Yield ``(frame_index, timestamp_seconds)`` for each decoded frame, in presentation order.

    The frame is grabbed (decoded) but not converted; call ``cap.retrieve()`` for the ones you
    keep. Stops at the end of the stream or at the first frame that cannot be decoded.
    """
    index = 0
    while cap.grab():
        yield index, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        index += 1


def sample_frames(path: str | os.PathLike, times: list[float]) -> list:
    """Decode the frames nearest to ``times`` (seconds) by seeking: a cheap look at a video.

    Used for auto-crop and the automatic sharpness threshold, where an approximate position
    is enough (seeking is keyframe-based; exact indices come from the main pass).
    """
    cap, _ = open_video(path)
    frames = []
    try:
        for t in times:
            cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000.0)
            ok, frame = cap.read()
            if ok and frame is not None:
                frames.append(frame)
    finally:
        cap.release()
    return frames


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, timestamp_seconds, BGR frame)`` for every ``every``-th decoded frame.

    Frames in between are grabbed but not converted (cheap); the file is opened by ``open_video``,
    so an unreadable video fails with its reason.
    """
    cap, _ = open_video(path)
    try:
        for index, timestamp in iter_grabbed(cap):
            if index % every:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield index, timestamp, frame
    finally:
        cap.release()


def video_info(path: str | os.PathLike) -> VideoInfo:
    """What the container says (size, frame count, nominal fps), without decoding a frame."""
    cap, info = open_video(path)
    cap.release()
    return info


#: libx264 with one thread (reproducible streams, and the other cores keep working), bit-exact
#: containers without metadata, the index at the front (``faststart``) so a player starts at once.
H264_PARAMS = ["-preset", "veryfast", "-crf", "20", "-threads", "1", "-fflags", "+bitexact",
               "-flags:v", "+bitexact", "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4"]


class VideoStream:
    """Frames going to one ffmpeg process (see ``write_video``)."""

    def __init__(self, path: Path, frames):
        self.path, self._frames = path, frames

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: grey (H, W), or BGR (H, W, 3) when the video was opened with ``color=True``."""
        try:
            self._frames.send(np.ascontiguousarray(frame))
        except OSError as exc:
            raise FetalHeartError(f"ffmpeg stopped while encoding {self.path}: {str(exc).splitlines()[0]}") from None


@contextmanager
def write_video(path: str | os.PathLike, size: tuple[int, int], fps: float, *, color: bool = False
                ) -> Iterator[VideoStream]:
    """The one video encoder: H.264 MP4 (yuv420p) through imageio-ffmpeg's ``write_frames``, written atomically.

    ``with write_video(path, (w, h), fps) as video: video.write(frame)``. Odd sizes are padded by one
    black row/column (yuv420p needs even sizes). A failed or interrupted encoding leaves no file.
    """
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise FetalHeartError(f"cannot write {path}: no ffmpeg binary ({exc}); reinstall imageio-ffmpeg") from None
    w, h = int(size[0]), int(size[1])
    pad = [] if (w % 2 == 0 and h % 2 == 0) else ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    with atomic_path(path, overwrite=True) as tmp:
        frames = imageio_ffmpeg.write_frames(
            str(tmp), (w, h), pix_fmt_in="bgr24" if color else "gray", pix_fmt_out="yuv420p",
            fps=Fraction(float(fps)).limit_denominator(), quality=None, codec="libx264", macro_block_size=1,
            ffmpeg_log_level="error", output_params=[*pad, *H264_PARAMS])
        frames.send(None)  # starts ffmpeg
        try:
            yield VideoStream(Path(path), frames)
        finally:
            frames.close()  # ffmpeg finishes the file; its own errors, if any, went to stderr
        if tmp.stat().st_size == 0:
            raise FetalHeartError(f"ffmpeg wrote nothing to {path} (see its message above)")
