"""Content-addressed cache of enhanced images (disk + small in-memory LRU).

A bd result costs a kernel estimate (~0.1 s per frame; cached separately, see kernels.py)
plus an FFT deconvolution, and training sees each image many times, so the finished image of
a bd spec is cached too. The key is a SHA-256 of the pixels (shape, dtype, bytes), the
canonical spec, the parameters the spec uses, the mask and ``CACHE_VERSION``: change any of
them and the entry is simply not found. Entries are lossless PNG (uint8/uint16), written
atomically so concurrent DataLoader workers never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fetalheart.utils.io import atomic_path

import cv2
import numpy as np

#: Bump when an algorithm changes its output, so stale cache entries are ignored.
#: 2: bd deconvolves every frame (kernel floor ``bd_min_sigma``), kernel estimated on the
#: original image inside the sector and shared by all bd specs.
CACHE_VERSION = 2


def image_digest(image: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes."""
    h = hashlib.sha256()
    h.update(f"{image.shape}|{image.dtype.str}|".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def cache_key(image: np.ndarray, spec: str, params: dict[str, Any], mask: Any) -> str:
    """Key of one (image, spec, used params, mask) combination."""
    mask_part = mask if isinstance(mask, str) or mask is None else "array:" + image_digest(np.asarray(mask, bool))
    meta = json.dumps(
        {"v": CACHE_VERSION, "spec": spec, "params": params, "mask": mask_part}, sort_keys=True, default=str
    )
    return hashlib.sha256((image_digest(image) + "|" + meta).encode()).hexdigest()


class ImageCache:
    """Disk cache (optional) in front of which sits an LRU of ``memory_items`` arrays."""

    def __init__(self, directory: str | os.PathLike | None = None, memory_items: int = 32):
        self.directory = Path(directory) if directory else None
        self.memory_items = memory_items
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.png"

    def get(self, key: str, like: np.ndarray) -> np.ndarray | None:
        """The cached image for ``key`` if present and shaped like ``like``."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key].copy()
        if self.directory is not None:
            path = self._path(key)
            if path.is_file():
                img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if img is not None and img.ndim == 2 and like.ndim == 3 and like.shape[2] == 1:
                    img = img[..., None]
                if img is not None and img.shape == like.shape and img.dtype == like.dtype:
                    self._remember(key, img)
                    self.hits += 1
                    return img.copy()
        self.misses += 1
        return None

    def put(self, key: str, image: np.ndarray) -> None:
        self._remember(key, image)
        if self.directory is None:
            return
        path = self._path(key)
        with atomic_path(path) as tmp:
            to_write = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
            if not cv2.imwrite(str(tmp), to_write):
                raise OSError(f"cannot write cache entry {path}")

    def _remember(self, key: str, image: np.ndarray) -> None:
        if self.memory_items <= 0:
            return
        self._memory[key] = image.copy()
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
