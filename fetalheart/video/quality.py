"""Per-frame measures used to sort frames: sharpness, brightness, near-duplicates.

Sharpness is the variance of the Laplacian of the grey image (Pech-Pacheco et al. 2000), the
usual cheap focus measure. It is computed at source resolution (resizing changes the value) inside the ultrasound
sector only: the auto-detected fan's interior (eroded, so the fan's own edge is out), or the
whole --crop box when the user gives one, or the whole frame if no sector is found. Burned-in
text and the fan edge are sharp whatever the focus: on the phantom (1280x720), out-of-focus
frames measure 1.01 of the in-focus median on the whole frame and 0.33-0.39 of the reference
inside the eroded fan.
Its scale depends on the machine, gain and resolution, which is why the default threshold is
relative to the video (``auto``: a fraction of a high percentile over the video), not absolute.
"""

from __future__ import annotations

import re

from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

#: ``auto`` threshold = AUTO_FRACTION x the AUTO_PERCENTILE-th percentile of the video's
#: sharpness. A high percentile (not the median) stays a sharp-frame reference even when up to
#: 3/4 of the video is out of focus (a probe sweep). On the phantom, out-of-focus frames measure
#: 0.18-0.39 and in-focus frames 0.50-1.37 of that reference (the lowest: frames without a heart at
#: 480x270; docs/extract_frames.md, "Definitions").
AUTO_FRACTION = 0.5
AUTO_PERCENTILE = 75

_THUMB = (64, 64)


def to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def sharpness(gray: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian (higher = sharper), over ``mask != 0`` if given."""
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    return float(lap.var() if mask is None else lap[mask != 0].var())


def mean_intensity(gray: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(gray.mean() if mask is None else gray[mask != 0].mean())


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """Small float image for the near-duplicate test (area-averaged: speckle noise cancels)."""
    return cv2.resize(gray, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, in grey levels (0-255)."""
    return float(np.abs(a - b).mean())


def parse_min_sharpness(value: str | float | int | None) -> float | str | None:
    """None (no filter), a number (absolute threshold), ``auto`` or ``auto:F`` (F x median)."""
    if value is None or isinstance(value, (int, float)):
        if value is not None and value < 0:
            raise FetalHeartError(f"--min-sharpness must be >= 0, got {value}")
        return None if value is None else float(value)
    text = str(value).strip().lower()
    if text in ("none", "off", "0"):
        return None if text != "0" else 0.0
    if text == "auto":
        return f"auto:{AUTO_FRACTION}"
    m = re.fullmatch(r"auto:(\d*\.?\d+)", text)
    if m:
        return f"auto:{float(m.group(1))}"
    try:
        number = float(text)
    except ValueError:
        raise FetalHeartError(
            f"cannot read --min-sharpness {value!r}: use a number, 'auto', 'auto:0.4' or 'off'"
        ) from None
    if number < 0:
        raise FetalHeartError(f"--min-sharpness must be >= 0, got {value}")
    return number


def auto_threshold(values: list[float], fraction: float) -> float | None:
    """``fraction`` x the AUTO_PERCENTILE-th percentile of ``values`` (None if there are none)."""
    if not values:
        return None
    return float(fraction * np.percentile(values, AUTO_PERCENTILE))
