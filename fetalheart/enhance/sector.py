"""Automatic ultrasound sector ("fan") mask.

Outside the fan an echo frame is black (plus text and calibration marks). Equalising the
whole frame lets that black dominate the histogram; equalising inside the fan does not.
"""

from __future__ import annotations

import cv2
import numpy as np


def auto_sector_mask(image: np.ndarray, *, threshold: float = 0.03, min_fraction: float = 0.05) -> np.ndarray:
    """Boolean H x W mask of the imaging sector: the convex hull of the largest bright region.

    ``threshold`` is a fraction of the dtype range. The convex hull (a sector is convex) fills
    the dark blood pools that touch the fan's edge. If nothing covering ``min_fraction`` of the
    frame is found, the whole frame is returned (equalising everything is the safe fallback).
    """
    gray = image if image.ndim == 2 else image[..., :3].max(axis=2)
    full = float(np.iinfo(gray.dtype).max) if np.issubdtype(gray.dtype, np.integer) else 1.0
    binary = (gray > threshold * full).astype(np.uint8)
    h, w = binary.shape
    k = max(3, (min(h, w) // 64) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    # Opening drops thin text and tick marks; closing bridges speckle gaps.
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return np.ones((h, w), dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < min_fraction * h * w:
        return np.ones((h, w), dtype=bool)
    contours, _ = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)
