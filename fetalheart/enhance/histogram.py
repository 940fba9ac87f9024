"""Histogram equalisation: global (HE, study Eq. 1), adaptive (AHE, Eq. 2), contrast-limited (CLAHE, Eq. 3).

OpenCV does the work: ``cv2.equalizeHist`` is HE on uint8 and ``cv2.createCLAHE`` is CLAHE on
uint8 and uint16 (bilinear interpolation between tile LUTs, C++ speed). AHE is CLAHE with
the clip turned off, which in OpenCV is ``clipLimit=0`` (bit-identical to clip 256: no bin of
a tile can exceed 256 x the mean bin height). We write only what OpenCV lacks: HE for
uint16 and HE/CLAHE restricted to an ultrasound sector mask.

**Clip limit units.** ``clahe_clip_limit`` is OpenCV's: a multiple of the mean bin height of a
tile histogram (2.0 = a bin may hold twice the average). scikit-image's
``equalize_adapthist(clip_limit=c)`` is normalised to [0, 1]: OpenCV ~= skimage x 256
(skimage's 0.01 ~= OpenCV 2.56).
"""

from __future__ import annotations

import cv2
import numpy as np


def _levels(plane: np.ndarray) -> int:
    return 256 if plane.dtype == np.uint8 else 65536


def _he_lut(values: np.ndarray, levels: int) -> np.ndarray:
    """OpenCV's equalizeHist LUT for the given pixel values (first occupied bin -> 0)."""
    hist = np.bincount(values.ravel(), minlength=levels).astype(np.float64)
    total = values.size
    nz = np.flatnonzero(hist)
    lut = np.arange(levels, dtype=np.float64)
    if total == 0 or len(nz) == 0 or hist[nz[0]] == total:
        return lut  # constant (or empty) region: OpenCV returns the image unchanged
    first = nz[0]
    scale = (levels - 1) / (total - hist[first])
    cdf = np.cumsum(hist)
    lut = (cdf - hist[first]) * scale
    lut[:first] = 0.0
    # np.rint rounds half to even, as cvRound (lrint) in OpenCV's saturate_cast.
    return np.clip(np.rint(lut), 0, levels - 1)


def he_plane(plane: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Global histogram equalisation of one uint8/uint16 channel, optionally inside ``mask`` only."""
    if mask is None and plane.dtype == np.uint8:
        return cv2.equalizeHist(plane)
    levels = _levels(plane)
    lut = _he_lut(plane if mask is None else plane[mask], levels).astype(plane.dtype)
    if mask is None:
        return lut[plane]
    out = plane.copy()
    out[mask] = lut[plane[mask]]
    return out


def _fill_outside(plane: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Give each pixel outside ``mask`` the value of its nearest pixel inside.

    CLAHE tiles that straddle the fan edge would otherwise be dominated by the black
    background; the nearest-inside fill makes those tiles see (roughly) fan statistics.
    """
    _, labels = cv2.distanceTransformWithLabels(
        (~mask).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    inside_idx = np.flatnonzero(mask.ravel())
    # Labels number the zero pixels (inside the mask) in raster order, starting at 1.
    label_to_value = np.zeros(inside_idx.size + 1, dtype=plane.dtype)
    label_to_value[1:] = plane.ravel()[inside_idx]
    return label_to_value[labels]


def clahe_plane(
    plane: np.ndarray, clip_limit: float, tile_grid: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """CLAHE of one uint8/uint16 channel with OpenCV (``clip_limit=0``: no clipping, i.e. AHE)."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid)))
    if mask is None:
        return clahe.apply(plane)
    if not mask.any():
        return plane.copy()
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub_mask = mask[y0:y1, x0:x1]
    sub = _fill_outside(plane[y0:y1, x0:x1], sub_mask)
    enhanced = clahe.apply(np.ascontiguousarray(sub))
    out = plane.copy()
    out[y0:y1, x0:x1][sub_mask] = enhanced[sub_mask]
    return out
