"""The ultrasound sector ("fan"): where the echo image is, as opposed to the black margin with text.

One detector, two callers with their own numbers (kept as they were, so results are unchanged):

* ``auto_sector_mask`` (one frame; enhancement ``INPUT.ENHANCE_MASK auto`` and bd's kernel
  estimation): bright pixels above a fraction of the dtype range; falls back to the whole frame.
* ``find_sector`` (a few frames of a video; ``extract_frames --auto-crop`` and the region where
  sharpness is measured): per-pixel peak over the frames, an Otsu level, static pixels (burned-in
  text) removed; raises when nothing sector-like is found.

Both then clean the bright mask morphologically (``fan_blob``: an opening drops thin text and tick
marks), keep its largest 8-connected blob and take that blob's convex hull (``fan_hull``: a sector
is convex, and the hull fills the dark blood pools that touch the fan's edge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass(frozen=True)
class FanBlob:
    """The connected components of a cleaned bright mask, and which one is the fan."""

    labels: np.ndarray  # int32 H x W, 0 = background
    stats: np.ndarray  # cv2.connectedComponentsWithStats rows
    centroids: np.ndarray
    main: int  # label of the largest component
    kernel_size: int  # of the morphological clean-up

    @property
    def area(self) -> int:
        return int(self.stats[self.main, cv2.CC_STAT_AREA])


def fan_blob(bright: np.ndarray, kernel_divisor: int, close: bool = False) -> FanBlob | None:
    """Opening (and, with ``close``, closing) of a bright-pixel mask, then its largest blob; None if empty.

    The elliptic kernel is ``min(h, w) // kernel_divisor`` pixels (odd, at least 3): relative to the
    frame, so the same text strokes are removed at any resolution.
    """
    h, w = bright.shape
    k = max(3, (min(h, w) // kernel_divisor) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    binary = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    if close:  # bridges speckle gaps
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return None
    return FanBlob(labels, stats, centroids, 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), k)


def fan_hull(region: np.ndarray) -> np.ndarray:
    """Convex hull (OpenCV point array) of a boolean region: the fan without its dark notches."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.convexHull(np.concatenate(contours))


def auto_sector_mask(image: np.ndarray, *, threshold: float = 0.03, min_fraction: float = 0.05) -> np.ndarray:
    """Boolean H x W mask of the imaging sector of one frame: the convex hull of its largest bright region.

    Outside the fan an echo frame is black (plus text and calibration marks); equalising the whole
    frame lets that black dominate the histogram, equalising inside the fan does not.
    ``threshold`` is a fraction of the dtype range. If nothing covering ``min_fraction`` of the
    frame is found, the whole frame is returned (equalising everything is the safe fallback).
    """
    gray = image if image.ndim == 2 else image[..., :3].max(axis=2)
    full = float(np.iinfo(gray.dtype).max) if np.issubdtype(gray.dtype, np.integer) else 1.0
    h, w = gray.shape
    blob = fan_blob(gray > threshold * full, kernel_divisor=64, close=True)
    if blob is None or blob.area < min_fraction * h * w:
        return np.ones((h, w), dtype=bool)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, fan_hull(blob.labels == blob.main), 1)
    return mask.astype(bool)


def _video_bright_pixels(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Pixels bright in some frame (Otsu on the per-pixel peak, floored so dark speckle still counts),
    minus those that never change when most of the bright area does (burned-in text, logos, calipers)."""
    grays = np.stack([f if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    stack = np.stack([cv2.GaussianBlur(g, (5, 5), 0) for g in grays])
    peak = stack.max(axis=0)
    otsu, _ = cv2.threshold(peak, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = peak > max(8.0, 0.5 * float(otsu))
    if len(frames) >= 3:
        static = (stack.max(axis=0).astype(np.int16) - stack.min(axis=0)) <= 2
        if mask.any() and (static & mask).sum() < 0.5 * mask.sum():
            mask &= ~static
    return mask


def find_sector(frames: Sequence[np.ndarray], margin: int = 2) -> tuple[Box, np.ndarray]:
    """Bounding box of the ultrasound sector in a video's frames, and an interior mask to measure sharpness on.

    The mask (uint8, full frame) is the convex hull of the fan, eroded so that the fan's own
    edge against the black background and any text next to it (always sharp) are left out:
    on the phantom this takes out-of-focus frames from 0.34-0.51 of the in-focus reference
    sharpness down to 0.01. The fan is the largest blob plus other blobs whose centre lies
    inside its convex hull (the fan split by dark chambers). Raises if nothing sector-like is found.
    """
    if not frames:
        raise FetalHeartError("auto-crop: no frame could be decoded to find the sector")
    bright = _video_bright_pixels(frames)
    h, w = bright.shape
    blob = fan_blob(bright, kernel_divisor=100)
    if blob is None:
        raise FetalHeartError("auto-crop: no ultrasound sector found (frames are blank?); use --crop x,y,w,h")
    if blob.area < 0.01 * h * w:
        raise FetalHeartError("auto-crop: the largest bright region is under 1% of the frame; use --crop x,y,w,h")
    hull = fan_hull(blob.labels == blob.main)
    keep = [i for i in range(1, len(blob.stats))
            if i == blob.main or cv2.pointPolygonTest(hull, tuple(map(float, blob.centroids[i])), False) >= 0]
    return _grown_box(blob, keep, margin, (w, h)), _interior(hull, blob.kernel_size, (h, w))


def _grown_box(blob: FanBlob, keep: list[int], margin: int, size: tuple[int, int]) -> Box:
    """Bounding box of the kept blobs; the opening eroded the fan's outline by about k/2: give it back, plus ``margin``."""
    s = blob.stats
    x0 = min(s[i, cv2.CC_STAT_LEFT] for i in keep)
    y0 = min(s[i, cv2.CC_STAT_TOP] for i in keep)
    x1 = max(s[i, cv2.CC_STAT_LEFT] + s[i, cv2.CC_STAT_WIDTH] for i in keep)
    y1 = max(s[i, cv2.CC_STAT_TOP] + s[i, cv2.CC_STAT_HEIGHT] for i in keep)
    grow = blob.kernel_size // 2 + margin
    x0, y0 = max(0, x0 - grow), max(0, y0 - grow)
    x1, y1 = min(size[0], x1 + grow), min(size[1], y1 + grow)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _interior(hull: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """The hull filled and eroded by 4k+1 pixels (unless that would leave under a quarter of it)."""
    interior = np.zeros(shape, np.uint8)
    cv2.fillPoly(interior, [hull.reshape(-1, 2)], 1)
    shrunk = cv2.erode(interior, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * k + 1, 4 * k + 1)))
    return shrunk if shrunk.sum() >= 0.25 * interior.sum() else interior
