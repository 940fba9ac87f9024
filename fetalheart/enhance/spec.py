"""Spec strings ("ahe+clahe"), parameters, and the composition that applies them left to right."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fetalheart.enhance.deblur import deblur_with_kernel, estimate_kernel
from fetalheart.enhance.histogram import clahe_plane, he_plane
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.sector import auto_sector_mask

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
    "bd_min_sigma": 1.0,  # floor on the deconvolution kernel's spread (pixels); see bd_skip_sharp
    "bd_skip_sharp": False,  # True: frames whose estimate is below bd_min_sigma are left unchanged
}

#: The parameters the kernel *estimate* depends on (the kernel cache key); the others only
#: change the deconvolution, so changing them reuses cached kernels.
KERNEL_PARAMS: tuple[str, ...] = ("bd_kernel_size", "bd_lambda", "bd_iters", "bd_max_size")

_TRUE_WORDS, _FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

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
        out[k] = _convert(key, value, DEFAULT_PARAMS[k])
    if out["clahe_clip_limit"] < 0:
        raise FetalHeartError("clahe_clip_limit must be >= 0 (0 turns the clip off)")
    for k in ("clahe_tile_grid", "ahe_tile_grid", "bd_iters", "bd_rl_iters", "bd_max_size"):
        if out[k] < 1:
            raise FetalHeartError(f"{k} must be >= 1, got {out[k]}")
    if out["bd_kernel_size"] < 3 or out["bd_kernel_size"] % 2 == 0:
        raise FetalHeartError(f"bd_kernel_size must be odd and >= 3, got {out['bd_kernel_size']}")
    if out["bd_method"] not in ("wiener", "rl"):
        raise FetalHeartError(f"bd_method must be 'wiener' or 'rl', got {out['bd_method']!r}")
    widest = (out["bd_kernel_size"] - 1) / 4.0
    if not 0 <= out["bd_min_sigma"] <= widest:
        raise FetalHeartError(f"bd_min_sigma must be in [0, {widest:g}] for bd_kernel_size "
                              f"{out['bd_kernel_size']} (a wider floor does not fit the kernel), got {out['bd_min_sigma']}")
    return out


def _convert(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``; booleans accept true/false/1/0/yes/no (CLI strings)."""
    if isinstance(default, bool):
        if isinstance(value, bool | int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE_WORDS or text in _FALSE_WORDS:
            return text in _TRUE_WORDS
        raise FetalHeartError(f"enhancement parameter {key}={value!r} is not a bool (use true or false)")
    if isinstance(default, str):
        return str(value).lower()
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise FetalHeartError(f"enhancement parameter {key}={value!r} is not a {type(default).__name__}") from None


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


def _bd_plane(plane: np.ndarray, mask: np.ndarray | None, p: Mapping[str, Any], kernel: np.ndarray) -> np.ndarray:
    full = float(np.iinfo(plane.dtype).max)
    result = deblur_with_kernel(
        plane.astype(np.float64) / full,
        kernel,
        method=p["bd_method"],
        nsr=p["bd_nsr"],
        rl_iters=p["bd_rl_iters"],
        min_sigma=p["bd_min_sigma"],
        skip_sharp=p["bd_skip_sharp"],
    )
    out = np.clip(np.rint(result.image * full), 0, full).astype(plane.dtype)
    if mask is not None:
        out[~mask] = plane[~mask]
    return out


def _plane_steps(
    plane: np.ndarray, ops: tuple[str, ...], mask: np.ndarray | None, p: Mapping[str, Any], kernel: np.ndarray | None
) -> list[np.ndarray]:
    """The plane after each operation (``len(ops)`` planes); bd deconvolves with ``kernel``."""
    steps = []
    for op in ops:
        if op == "he":
            plane = he_plane(plane, mask)
        elif op == "ahe":
            plane = clahe_plane(plane, 0.0, p["ahe_tile_grid"], mask)
        elif op == "clahe":
            plane = clahe_plane(plane, p["clahe_clip_limit"], p["clahe_tile_grid"], mask)
        elif op == "bd":
            assert kernel is not None
            plane = _bd_plane(plane, mask, p, kernel)
        steps.append(plane)
    return steps


def _split_luminance(image: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The plane the operations work on, and the function that puts a processed plane back.

    Gray frames stored as BGR (all channels equal, as most echo exports) are processed as one
    plane and replicated, which is exact and 3x cheaper. Other colour frames go through LAB
    and only L changes (uint16 via float LAB, since OpenCV's LAB is 8-bit or float only).
    """
    if image.ndim == 2:
        return image, lambda plane: plane
    if image.shape[2] == 1:
        return image[..., 0], lambda plane: plane[..., None]
    bgr, alpha = image[..., :3], image[..., 3:]

    def with_alpha(out: np.ndarray) -> np.ndarray:
        return np.concatenate([out, alpha], axis=2) if alpha.size else out

    if np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 0], bgr[..., 2]):
        return np.ascontiguousarray(bgr[..., 0]), lambda plane: with_alpha(np.repeat(plane[..., None], 3, axis=2))
    if image.dtype == np.uint8:
        lab = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2LAB)

        def rebuild8(plane: np.ndarray) -> np.ndarray:
            out = lab.copy()
            out[..., 0] = plane
            return with_alpha(cv2.cvtColor(out, cv2.COLOR_LAB2BGR))

        return np.ascontiguousarray(lab[..., 0]), rebuild8
    labf = cv2.cvtColor(bgr.astype(np.float32) / 65535.0, cv2.COLOR_BGR2LAB)

    def rebuild16(plane: np.ndarray) -> np.ndarray:
        out = labf.copy()
        out[..., 0] = plane.astype(np.float32) / 655.35
        return with_alpha(np.clip(np.rint(cv2.cvtColor(out, cv2.COLOR_LAB2BGR) * 65535.0), 0, 65535).astype(np.uint16))

    return np.clip(np.rint(labf[..., 0] * 655.35), 0, 65535).astype(np.uint16), rebuild16


def luminance_plane(image: np.ndarray) -> np.ndarray:
    """The 2-D plane every operation (and the bd kernel estimate) works on."""
    _check_image(image)
    return _split_luminance(image)[0]


def estimation_mask(plane: np.ndarray, mask: str | np.ndarray | None) -> np.ndarray:
    """Where bd estimates its kernel: the given mask array, else the detected sector of ``plane``.

    Always inside the fan, whatever ``mask`` mode the operations use: burned-in text outside
    the fan is sharp and would pin the kernel to a delta.
    """
    if isinstance(mask, np.ndarray):
        return resolve_mask(plane, mask)
    return auto_sector_mask(plane)


def estimate_bd_kernel(plane: np.ndarray, mask: str | np.ndarray | None, p: Mapping[str, Any]) -> np.ndarray:
    """bd's kernel estimate on an *original* luminance plane, inside the sector (uncached)."""
    full = float(np.iinfo(plane.dtype).max)
    img = plane.astype(np.float64) / full
    if float(img.max() - img.min()) < 1e-6:
        k = np.zeros((p["bd_kernel_size"],) * 2)
        k[k.shape[0] // 2, k.shape[1] // 2] = 1.0
        return k
    return estimate_kernel(img, kernel_size=p["bd_kernel_size"], lam=p["bd_lambda"], iters=p["bd_iters"],
                           max_size=p["bd_max_size"], mask=estimation_mask(plane, mask))


def apply_steps(
    image: np.ndarray,
    ops: tuple[str, ...],
    *,
    mask: str | np.ndarray | None = "none",
    params: Mapping[str, Any],
    kernel: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The image after each operation, left to right (``params`` resolved).

    bd deconvolves its input with ``kernel``, the kernel estimated on the *original* image
    (``estimate_bd_kernel``; estimated here when not given): the blur is a property of the
    acquisition, so every spec containing bd removes the same blur.
    """
    plane, rebuild, m, kernel = _prepare(image, ops, mask, params, kernel)
    return [rebuild(q) for q in _plane_steps(plane, ops, m, params, kernel)]


def _prepare(image: np.ndarray, ops: tuple[str, ...], mask: Any, params: Mapping[str, Any], kernel: Any) -> tuple:
    """Checked input -> (plane, rebuild, resolved mask, bd kernel or None)."""
    _check_image(image)
    plane, rebuild = _split_luminance(image)
    if "bd" in ops and kernel is None:
        kernel = estimate_bd_kernel(plane, mask, params)
    return plane, rebuild, resolve_mask(image, mask), kernel


def apply_ops(
    image: np.ndarray,
    ops: tuple[str, ...],
    *,
    mask: str | np.ndarray | None = "none",
    params: Mapping[str, Any],
    kernel: np.ndarray | None = None,
) -> np.ndarray:
    """Apply parsed operations left to right; ``params`` must already be resolved (see apply_steps)."""
    if not ops:
        _check_image(image)
        return image.copy()
    plane, rebuild, m, kernel = _prepare(image, ops, mask, params, kernel)
    return rebuild(_plane_steps(plane, ops, m, params, kernel)[-1])


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
