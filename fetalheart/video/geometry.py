"""Crop and resize of extracted frames, and the mapping of coordinates through them.

Annotations drawn on original frames (e.g. the phantom's LabelMe ground truth) must follow the
frames through the same crop and resize; ``FrameGeometry`` is recorded per video in
``extraction.json`` so that mapping is exact and reproducible.

Coordinate convention: continuous pixel coordinates (the image spans ``[0, w] x [0, h]``), the
one detectron2's ``ResizeTransform.apply_coords`` and pycocotools polygons use: a point ``x``
maps to ``(x - crop_x) * scale_x + pad_left``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.sector import Box

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameGeometry:
    """How an output frame was made from a source frame: crop, then scale, then pad."""

    source_size: tuple[int, int]  # (w, h) of the decoded video frame
    crop: Box  # (x, y, w, h) in source pixels; the whole frame when no crop
    scale: tuple[float, float]  # (sx, sy) output pixels per source pixel
    pad: tuple[int, int]  # (left, top) padding added after scaling (letterbox)
    output_size: tuple[int, int]  # (w, h) of the written image

    def map_points(self, xy: Any) -> np.ndarray:
        """Map ``(N, 2)`` points from original-frame to output-image coordinates."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] - self.crop[0]) * self.scale[0] + self.pad[0]
        out[:, 1] = (pts[:, 1] - self.crop[1]) * self.scale[1] + self.pad[1]
        return out

    def unmap_points(self, xy: Any) -> np.ndarray:
        """Inverse of ``map_points``: output-image coordinates back to the original frame."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        out = np.empty_like(pts)
        out[:, 0] = (pts[:, 0] - self.pad[0]) / self.scale[0] + self.crop[0]
        out[:, 1] = (pts[:, 1] - self.pad[1]) / self.scale[1] + self.crop[1]
        return out

    @property
    def is_identity(self) -> bool:
        return self.crop == (0, 0, *self.source_size) and self.output_size == self.source_size

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Crop, resize and pad one decoded frame (BGR or gray) to ``output_size``."""
        x, y, w, h = self.crop
        img = frame[y : y + h, x : x + w]
        inner_w = round(w * self.scale[0])
        inner_h = round(h * self.scale[1])
        if (inner_w, inner_h) != (w, h):
            # INTER_AREA averages when shrinking (no aliasing of speckle); linear when enlarging.
            interp = cv2.INTER_AREA if inner_w < w else cv2.INTER_LINEAR
            img = cv2.resize(img, (inner_w, inner_h), interpolation=interp)
        if (inner_w, inner_h) != self.output_size:
            left, top = self.pad
            right = self.output_size[0] - inner_w - left
            bottom = self.output_size[1] - inner_h - top
            img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
        return np.ascontiguousarray(img)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameGeometry:
        return cls(
            source_size=tuple(int(v) for v in data["source_size"]),
            crop=tuple(int(v) for v in data["crop"]),
            scale=tuple(float(v) for v in data["scale"]),
            pad=tuple(int(v) for v in data["pad"]),
            output_size=tuple(int(v) for v in data["output_size"]),
        )

    @classmethod
    def load(cls, out_dir: str | Path, source: str | None = None) -> FrameGeometry:
        """Read the geometry of ``source`` (video path or stem; optional if only one) from extraction.json."""
        data = json.loads((Path(out_dir) / "extraction.json").read_text(encoding="utf-8"))
        videos = data["videos"]
        if source is None:
            if len(videos) != 1:
                raise FetalHeartError(f"{out_dir} holds frames of {len(videos)} videos: name one")
            return cls.from_dict(videos[0]["geometry"])
        for video in videos:
            if source in (video["source"], video["stem"], Path(video["source"]).name):
                return cls.from_dict(video["geometry"])
        raise FetalHeartError(f"no video {source!r} in {Path(out_dir) / 'extraction.json'}")


def parse_crop(value: str | Sequence[int] | None) -> Box | None:
    """``"x,y,w,h"`` or a 4-sequence of ints -> box; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) != 4 or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise FetalHeartError(f"cannot read crop {value!r}: use x,y,w,h in pixels, e.g. 160,40,960,640")
        value = [int(p) for p in parts]
    box = tuple(int(v) for v in value)
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0 or box[0] < 0 or box[1] < 0:
        raise FetalHeartError(f"crop {value!r} must be x,y,w,h with x,y >= 0 and w,h > 0")
    return box  # type: ignore[return-value]


def parse_resize(value: str | int | Sequence[int] | None) -> int | tuple[int, int] | None:
    """``512`` (longest side, aspect kept) or ``"512x384"`` / ``(512, 384)`` (fit and pad)."""
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", value)
        if not m:
            raise FetalHeartError(f"cannot read resize {value!r}: use N (longest side) or WxH (fit and pad)")
        value = int(m.group(1)) if m.group(2) is None else (int(m.group(1)), int(m.group(2)))
    if isinstance(value, (int, np.integer)):
        if value <= 0:
            raise FetalHeartError(f"resize must be positive, got {value}")
        return int(value)
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) <= 0:
        raise FetalHeartError(f"resize {value!r} must be N or (W, H) with positive sizes")
    return size  # type: ignore[return-value]


def make_geometry(
    source_size: tuple[int, int], crop: Box | None = None, resize: int | tuple[int, int] | None = None
) -> FrameGeometry:
    """Geometry for a crop (default: whole frame) and a resize.

    ``resize=N``: scale so the longest side of the crop is N, keep aspect, no padding.
    ``resize=(W, H)``: scale to fit inside W x H keeping aspect, pad the rest with black,
    centred (letterbox): every output has the same size and nothing is cut.
    """
    sw, sh = source_size
    if crop is None:
        crop = (0, 0, sw, sh)
    x, y, w, h = crop
    if x + w > sw or y + h > sh:
        raise FetalHeartError(f"crop {x},{y},{w},{h} does not fit in the {sw}x{sh} frame")
    if resize is None:
        return FrameGeometry((sw, sh), crop, (1.0, 1.0), (0, 0), (w, h))
    if isinstance(resize, int):
        s = resize / max(w, h)
        inner = (max(1, round(w * s)), max(1, round(h * s)))
        return FrameGeometry((sw, sh), crop, (inner[0] / w, inner[1] / h), (0, 0), inner)
    tw, th = resize
    s = min(tw / w, th / h)
    inner = (min(tw, max(1, round(w * s))), min(th, max(1, round(h * s))))
    pad = ((tw - inner[0]) // 2, (th - inner[1]) // 2)
    return FrameGeometry((sw, sh), crop, (inner[0] / w, inner[1] / h), pad, (tw, th))
