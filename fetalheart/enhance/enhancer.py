"""``Enhancer``: a spec + parameters + mask bound into one callable, with caching for bd."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fetalheart.enhance.cache import ImageCache, cache_key
from fetalheart.enhance.kernels import IMAGE_DIR, KERNEL_DIR, KernelCache, bd_kernel
from fetalheart.enhance.spec import (
    MASK_MODES,
    apply_ops,
    apply_steps,
    parse_spec,
    resolve_params,
    spec_name,
    used_params,
)
from fetalheart.utils.errors import FetalHeartError

import numpy as np


class Enhancer:
    """``Enhancer("ahe+clahe")(image) -> image``; the same object serves training, evaluation, prediction.

    When the spec contains ``bd``, two caches keyed by image content work together:
    the *kernel* cache (``cache_dir/bd_kernels``: the blur kernel estimated once per original
    image, shared by every bd spec, run and DataLoader worker; see ``fetalheart.enhance.kernels``)
    and the *result* cache (``cache_dir/bd_images`` + a ``memory_items`` LRU: the finished
    image for this spec + parameters + mask). Cheap specs (he/ahe/clahe, ~1 ms) are recomputed:
    reading a cache entry would cost more. ``kernels`` shares one in-memory kernel cache
    between several Enhancers (e.g. the 5 bd specs of a figure).
    """

    def __init__(
        self,
        spec: str,
        *,
        params: Mapping[str, Any] | None = None,
        mask: str | np.ndarray = "none",
        cache_dir: str | os.PathLike | None = None,
        memory_items: int = 32,
        kernels: KernelCache | None = None,
    ):
        self.ops = parse_spec(spec)
        self.spec = spec_name(self.ops)
        self.params = resolve_params(params)
        if isinstance(mask, str) and mask not in MASK_MODES:
            raise FetalHeartError(f"mask must be one of {', '.join(MASK_MODES)} or an array, got {mask!r}")
        self.mask = mask
        root = Path(cache_dir) if cache_dir else None
        has_bd = "bd" in self.ops
        self.cache = ImageCache(root / IMAGE_DIR if root else None, memory_items) if has_bd else None
        if has_bd and kernels is None:
            kernels = KernelCache(root / KERNEL_DIR if root else None)
        self.kernels = kernels if has_bd else None

    @property
    def identity(self) -> bool:
        """True for "original": callers may skip the step altogether."""
        return not self.ops

    def kernel(self, image: np.ndarray) -> np.ndarray | None:
        """The bd kernel *estimated* on this original image (cached; None when the spec has no bd)."""
        if self.kernels is None:
            return None
        return bd_kernel(image, self.params, self.mask, self.kernels)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.identity:
            return image
        if self.cache is None:
            return apply_ops(image, self.ops, mask=self.mask, params=self.params)
        key = cache_key(image, self.spec, used_params(self.ops, self.params), self.mask)
        cached = self.cache.get(key, image)
        if cached is not None:
            return cached
        out = apply_ops(image, self.ops, mask=self.mask, params=self.params, kernel=self.kernel(image))
        self.cache.put(key, out)
        return out

    def steps(self, image: np.ndarray) -> list[np.ndarray]:
        """The image after each operation of the spec (uncached results; the bd kernel is cached)."""
        if self.identity:
            return []
        return apply_steps(image, self.ops, mask=self.mask, params=self.params, kernel=self.kernel(image))

    def __repr__(self) -> str:
        mask = self.mask if isinstance(self.mask, str) else "array"
        return f"Enhancer({self.spec!r}, mask={mask!r}, params={used_params(self.ops, self.params)})"
