"""Spec strings ("ahe+clahe"), parameters, and the composition that applies them left to right."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fetalheart.enhance.deblur import blind_deblur
from fetalheart.enhance.histogram import clahe_plane, he_plane
from fetalheart.enhance.sector import auto_sector_mask
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

#: The operations a spec may name, in the order the docs list them.
OPERATIONS: tuple[str, ...] = ("he", "ahe", "clahe", "bd")

#: The study's 11 preprocessing variants, in its order (Syaputra et al. 2025, Figure 2).
SPECS_OF_STUDY: tuple[str, ...] = (
    "original",
    "he",
    "ahe",
    "clahe",
    "bd",
    "he+clahe",
    "ahe+clahe",
    "he+bd",
    "ahe+bd",
    "he+clahe+bd",
    "ahe+clahe+bd",
)

_IDENTITY_NAMES = ("original", "none", "")

#: Every parameter, its default and what it means. Keys are fixed: config, cache keys and
#: the ``--param`` CLI option use them.
DEFAULT_PARAMS: dict[str, Any] = {
    "clahe_clip_limit": 2.0,  # OpenCV units: multiple of a tile's mean bin height (~ skimage x 256)
    "clahe_tile_grid": 8,  # tiles per side (8 -> 8x8 tiles)
    "ahe_tile_grid": 8,  # tiles per side for AHE (CLAHE with the clip off)
    "bd_kernel_size": 15,  # odd; largest blur kernel bd can find, in pixels
    "bd_lambda": 4e-3,  # weight of the L0 gradient prior (image in [0, 1])
    "bd_iters": 5,  # latent/kernel alternations per pyramid scale
    "bd_method": "wiener",  # final non-blind step: "wiener" (gradient prior) or "rl" (Richardson-Lucy)
    "bd_nsr": 0.01,  # Wiener regularisation weight (noise-to-signal)
    "bd_rl_iters": 10,  # Richardson-Lucy iterations when bd_method == "rl"
    "bd_max_size": 128,  # kernel estimated on the most-textured window of this size (speed)
    "bd_min_sigma": 1.2,  # kernels narrower than this (pixels) count as "no blur": frame kept
}

MASK_MODES = ("none", "auto")


def parse_spec(spec: str) -> tuple[str, ...]:
    """Normalise a spec ("AHE + CLAHE") to a tuple of operations; "original" -> ()."""
    if not isinstance(spec, str):
        raise FetalHeartError(f"enhancement spec must be a string, got {type(spec).__name__}")
    text = spec.strip().lower()
    if text in _IDENTITY_NAMES:
        return ()
    ops = tuple(part.strip() for part in text.split("+"))
    bad = [op for op in ops if op not in OPERATIONS]
    if bad:
        raise FetalHeartError(
            f"unknown enhancement {bad[0]!r} in spec {spec!r}; valid names: original, "
            + ", ".join(OPERATIONS)
            + " (combine with '+', e.g. 'ahe+clahe')"
        )
    return ops


def spec_name(ops: tuple[str, ...]) -> str:
    """Canonical spec string of a parsed spec ("original" for the identity)."""
    return "+".join(ops) if ops else "original"


def resolve_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults overridden by ``params``; unknown keys and bad values are user errors."""
    out = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        k = str(key).lower()
        if k not in DEFAULT_PARAMS:
            raise FetalHeartError(f"unknown enhancement parameter {key!r}; valid: {', '.join(DEFAULT_PARAMS)}")
        default = DEFAULT_PARAMS[k]
        try:
            out[k] = type(default)(value) if not isinstance(default, str) else str(value).lower()
        except (TypeError, ValueError):
            raise FetalHeartError(f"enhancement parameter {key}={value!r} is not a {type(default).__name__}") from None
    if out["clahe_clip_limit"] < 0:
        raise FetalHeartError("clahe_clip_limit must be >= 0 (0 turns the clip off)")
    for k in ("clahe_tile_grid", "ahe_tile_grid", "bd_iters", "bd_rl_iters", "bd_max_size"):
        if out[k] < 1:
            raise FetalHeartError(f"{k} must be >= 1, got {out[k]}")
    if out["bd_kernel_size"] < 3 or out["bd_kernel_size"] % 2 == 0:
        raise FetalHeartError(f"bd_kernel_size must be odd and >= 3, got {out['bd_kernel_size']}")
    if out["bd_method"] not in ("wiener", "rl"):
        raise FetalHeartError(f"bd_method must be 'wiener' or 'rl', got {out['bd_method']!r}")
    return out


def used_params(ops: tuple[str, ...], params: Mapping[str, Any]) -> dict[str, Any]:
    """Only the parameters the operations read (cache keys ignore the rest)."""
    prefixes = {"he": (), "ahe": ("ahe_",), "clahe": ("clahe_",), "bd": ("bd_",)}
    wanted = tuple(p for op in ops for p in prefixes[op])
    return {k: v for k, v in sorted(params.items()) if k.startswith(wanted)} if wanted else {}


# --------------------------------------------------------------------------- applying


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise FetalHeartError(f"expected an image array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise FetalHeartError(f"enhancement needs uint8 or uint16 pixels, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise FetalHeartError(f"expected a grayscale or BGR(A) image, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise FetalHeartError(f"image too small to enhance: {image.shape}")


def resolve_mask(image: np.ndarray, mask: str | np.ndarray | None) -> np.ndarray | None:
    """``"none"``/None -> None, ``"auto"`` -> the detected sector, an array -> a checked bool mask."""
    if mask is None or (isinstance(mask, str) and mask == "none"):
        return None
    if isinstance(mask, str):
        if mask != "auto":
            raise FetalHeartError(f"mask must be 'none', 'auto' or an array, got {mask!r}")
        return auto_sector_mask(image)
    m = np.asarray(mask).astype(bool)
    if m.shape != image.shape[:2]:
        raise FetalHeartError(f"mask shape {m.shape} does not match image {image.shape[:2]}")
    return m


def _bd_plane(plane: np.ndarray, mask: np.ndarray | None, p: Mapping[str, Any]) -> np.ndarray:
    full = float(np.iinfo(plane.dtype).max)
    result = blind_deblur(
        plane.astype(np.float64) / full,
        kernel_size=p["bd_kernel_size"],
        lam=p["bd_lambda"],
        iters=p["bd_iters"],
        method=p["bd_method"],
        nsr=p["bd_nsr"],
        rl_iters=p["bd_rl_iters"],
        max_size=p["bd_max_size"],
        min_sigma=p["bd_min_sigma"],
        mask=mask,
    )
    out = np.clip(np.rint(result.image * full), 0, full).astype(plane.dtype)
    if mask is not None:
        out[~mask] = plane[~mask]
    return out


def _apply_plane(plane: np.ndarray, ops: tuple[str, ...], mask: np.ndarray | None, p: Mapping[str, Any]) -> np.ndarray:
    for op in ops:
        if op == "he":
            plane = he_plane(plane, mask)
        elif op == "ahe":
            plane = clahe_plane(plane, 0.0, p["ahe_tile_grid"], mask)
        elif op == "clahe":
            plane = clahe_plane(plane, p["clahe_clip_limit"], p["clahe_tile_grid"], mask)
        elif op == "bd":
            plane = _bd_plane(plane, mask, p)
    return plane


def _on_luminance(image: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` (plane -> plane) to the luminance; colour is kept.

    Gray frames stored as BGR (all channels equal, as most echo exports) are processed as one
    plane and replicated, which is exact and 3x cheaper. Other colour frames go through LAB
    and only L changes (uint16 via float LAB, since OpenCV's LAB is 8-bit or float only).
    """
    if image.ndim == 2:
        return fn(image)
    if image.shape[2] == 1:
        return fn(image[..., 0])[..., None]
    bgr, alpha = image[..., :3], image[..., 3:]
    if np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 0], bgr[..., 2]):
        out = np.repeat(fn(np.ascontiguousarray(bgr[..., 0]))[..., None], 3, axis=2)
    elif image.dtype == np.uint8:
        lab = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2LAB)
        lab[..., 0] = fn(np.ascontiguousarray(lab[..., 0]))
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    else:
        lab = cv2.cvtColor(bgr.astype(np.float32) / 65535.0, cv2.COLOR_BGR2LAB)
        lum = np.clip(np.rint(lab[..., 0] * 655.35), 0, 65535).astype(np.uint16)
        lab[..., 0] = fn(lum).astype(np.float32) / 655.35
        out = np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_LAB2BGR) * 65535.0), 0, 65535).astype(np.uint16)
    return np.concatenate([out, alpha], axis=2) if alpha.size else out


def apply_ops(
    image: np.ndarray, ops: tuple[str, ...], *, mask: str | np.ndarray | None = "none", params: Mapping[str, Any]
) -> np.ndarray:
    """Apply parsed operations left to right; ``params`` must already be resolved."""
    _check_image(image)
    if not ops:
        return image.copy()
    m = resolve_mask(image, mask)
    return _on_luminance(image, lambda plane: _apply_plane(plane, ops, m, params))


def enhance(
    image: np.ndarray,
    spec: str,
    *,
    mask: str | np.ndarray | None = "none",
    params: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Enhance a uint8/uint16 gray or BGR image with a spec such as "ahe+clahe" (same shape, dtype).

    ``mask``: "none" (whole frame), "auto" (detected ultrasound sector) or a boolean H x W
    array; with a mask, statistics come from inside it and pixels outside are left unchanged.
    """
    return apply_ops(image, parse_spec(spec), mask=mask, params=resolve_params(params))
