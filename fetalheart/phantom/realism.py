"""Is the phantom echo-like? The image statistics of ``shared/tools/echo_stats.py`` and their targets.

The statistics (grey-level percentiles, dark share, speckle contrast and size, gradient) are
computed inside the ultrasound sector, sizes relative to the sector's width, exactly as the
shared tool computes them (``tests/test_phantom_realism.py`` checks the two agree). The target
ranges come from five real sources (fetal heart, fetal head, adult four-chamber); the numbers are
vendored in ``echo_statistics.json`` next to this module, a byte copy of
``shared/reference/echo_statistics.json``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

REFERENCE = Path(__file__).with_name("echo_statistics.json")
#: The statistics held against real echo, in the order of the issue's table.
STATISTICS = ("p50", "dark_frac", "grad_p90", "speckle_cv", "speckle_fwhm_x", "speckle_fwhm_y", "p05", "p95")


@functools.lru_cache(maxsize=1)
def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def targets() -> dict[str, tuple[float, float]]:
    """Target range (low, high) of each statistic: the real sources' range, widened."""
    return {k: (float(lo), float(hi)) for k, (lo, hi) in reference()["target"].items()}


def sector_mask(grey: np.ndarray) -> np.ndarray:
    """The fan: pixels above 8 grey levels, closed with a 15 px square, largest 8-connected part."""
    m = cv2.morphologyEx((grey > 8).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return m.astype(bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _half_max_width(ac: np.ndarray) -> float:
    """Full width at half maximum of a 1-D autocorrelation peaked at len // 2 (linear interpolation)."""
    c = len(ac) // 2
    a = ac / ac[c]
    width = 0.0
    for step in (1, -1):
        i = c
        while 0 < i < len(a) - 1 and a[i] > 0.5:
            i += step
        j = i - step  # last sample above half maximum
        width += abs(j - c) + (a[j] - 0.5) / max(a[j] - a[i], 1e-9)
    return width


def _speckle_size(f: np.ndarray, tissue: np.ndarray, width: int) -> tuple[float, float]:
    """Median half-maximum widths (x, y) of the autocorrelation of up to 60 tissue patches."""
    p = max(16, int(0.06 * width) | 1)  # patch ~6% of the sector width
    acx, acy = [], []
    cand = np.argwhere(tissue)
    h, w = f.shape
    for y, x in cand[np.random.default_rng(0).permutation(len(cand))[:400]]:
        y0, x0 = y - p // 2, x - p // 2
        if y0 < 0 or x0 < 0 or y0 + p > h or x0 + p > w or not tissue[y0 : y0 + p, x0 : x0 + p].mean() > 0.8:
            continue
        patch = f[y0 : y0 + p, x0 : x0 + p] - f[y0 : y0 + p, x0 : x0 + p].mean()
        if patch.std() < 1:
            continue
        spectrum = np.fft.fft2(patch, s=(2 * p, 2 * p))
        ac = np.fft.fftshift(np.real(np.fft.ifft2(spectrum * np.conj(spectrum))))
        acx.append(_half_max_width(ac[p, :]))
        acy.append(_half_max_width(ac[:, p]))
        if len(acx) >= 60:
            break
    if not acx:
        return float("nan"), float("nan")
    return float(np.median(acx) / width), float(np.median(acy) / width)


def frame_statistics(grey: np.ndarray) -> dict[str, float]:
    """The statistics of one 8-bit grey frame (``sector_fill`` and the eight of ``STATISTICS``)."""
    sect = sector_mask(grey)
    v = grey[sect].astype(np.float64)
    xs = np.nonzero(sect)[1]
    width = int(xs.max() - xs.min() + 1)
    out = {"sector_fill": float(sect.mean()), "p05": float(np.percentile(v, 5)),
           "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
           "dark_frac": float((v < 30).mean())}  # fmt: skip
    f = grey.astype(np.float64)
    mu = cv2.blur(f, (9, 9))
    sd = np.sqrt(np.maximum(cv2.blur(f * f, (9, 9)) - mu * mu, 0))
    grad = np.hypot(cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3)) / 8.0
    inner = cv2.erode(sect.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    if inner.any():
        edge = cv2.blur(grad, (9, 9))
        # Tissue: windows of moderate brightness away from strong edges (their speckle, not anatomy).
        tissue = inner & (mu >= 60) & (mu <= 220) & (edge < np.percentile(edge[inner], 60))
        out["grad_p90"] = float(np.percentile(grad[inner], 90) / 255.0)
    else:
        tissue, out["grad_p90"] = inner, float("nan")
    out["speckle_cv"] = float(np.median(sd[tissue] / mu[tissue])) if tissue.sum() > 50 else float("nan")
    out["speckle_fwhm_x"], out["speckle_fwhm_y"] = _speckle_size(f, tissue, width)
    return out


def video_statistics(frames: Iterable[np.ndarray]) -> dict[str, float]:
    """Median of each statistic over the frames (NaNs ignored), rounded as the shared tool rounds."""
    rows = [frame_statistics(g) for g in frames]
    if not rows:
        raise ValueError("no frames to measure")
    out = {k: round(float(np.nanmedian([r[k] for r in rows])), 4) for k in rows[0]}
    out["n_frames"] = len(rows)
    return out


def outside_targets(stats: dict[str, float]) -> list[str]:
    """One line per statistic outside its target range (empty: echo-like on all of them)."""
    bad = []
    for name, (lo, hi) in targets().items():
        v = stats.get(name, float("nan"))
        if not lo <= v <= hi:
            bad.append(f"{name} {v:.4g} outside the real-echo range {lo:.4g} - {hi:.4g}")
    return bad
