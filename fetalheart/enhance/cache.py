"""Content-addressed cache of enhanced images (disk + small in-memory LRU).

A bd result costs a kernel estimate (~0.1 s per frame; cached separately, see kernels.py)
plus an FFT deconvolution, and training sees each image many times, so the finished image of
a bd spec is cached too. The key (``fetalheart.utils.keys``, the one content-key scheme) holds the
SHA-256 of the pixels (shape, dtype, bytes), the canonical spec, the parameters the spec uses, the
mask and ``CACHE_VERSION``, never a path: change any of them and the entry is simply not found,
move the cache or the images and every entry is still found. Entries are lossless PNG
(uint8/uint16), written atomically so concurrent DataLoader workers never read half a file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fetalheart.utils.io import atomic_path
from fetalheart.utils.keys import array_digest, content_key

import cv2
import numpy as np

#: Bump when an enhancement algorithm (he, ahe, clahe, bd, the sector mask) changes its output, so
#: stale cache entries are ignored; it is also part of every training run's key (a model trained on
#: the old output is trained again, fetalheart.pipeline.keys).
#: 2: bd deconvolves every frame (kernel floor ``bd_min_sigma``), kernel estimated on the
#: original image inside the sector and shared by all bd specs.
CACHE_VERSION = 2

#: SHA-256 of an array's shape, dtype and bytes (the scheme's ``array_digest``).
image_digest = array_digest


def cache_key(image: np.ndarray, spec: str, params: dict[str, Any], mask: Any) -> str:
    """Key of one (image, spec, used params, mask) combination."""
    mask_part = mask if isinstance(mask, str) or mask is None else "array:" + image_digest(np.asarray(mask, bool))
    return content_key({"image": image_digest(image), "v": CACHE_VERSION, "spec": spec, "params": params,
                        "mask": mask_part})


class MemoryLru:
    """The in-memory half of a cache: at most ``items`` arrays, the least recently used dropped first."""

    def __init__(self, items: int):
        self.items = items
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, key: str) -> np.ndarray | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def remember(self, key: str, value: np.ndarray) -> None:
        if self.items <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.items:
            self._entries.popitem(last=False)


class KeyedCache:
    """Arrays by content key: a ``MemoryLru`` in front of an optional folder of ``<key[:2]>/<key><SUFFIX>``
    files; counts hits and misses. Subclasses say how an entry is read, checked and written."""

    SUFFIX = ""

    def __init__(self, directory: str | os.PathLike | None = None, memory_items: int = 32):
        self.directory = Path(directory) if directory else None
        self._memory = MemoryLru(memory_items)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}{self.SUFFIX}"


class ImageCache(KeyedCache):
    """Finished images (PNG files) behind an LRU of ``memory_items`` arrays."""

    SUFFIX = ".png"

    def get(self, key: str, like: np.ndarray) -> np.ndarray | None:
        """The cached image for ``key`` if present and shaped like ``like``."""
        remembered = self._memory.get(key)
        if remembered is not None:
            self.hits += 1
            return remembered.copy()
        if self.directory is not None:
            path = self._path(key)
            if path.is_file():
                img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if img is not None and img.ndim == 2 and like.ndim == 3 and like.shape[2] == 1:
                    img = img[..., None]
                if img is not None and img.shape == like.shape and img.dtype == like.dtype:
                    self._memory.remember(key, img.copy())
                    self.hits += 1
                    return img.copy()
        self.misses += 1
        return None

    def put(self, key: str, image: np.ndarray) -> None:
        self._memory.remember(key, image.copy())
        if self.directory is None:
            return
        path = self._path(key)
        with atomic_path(path) as tmp:
            to_write = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
            if not cv2.imwrite(str(tmp), to_write):
                raise OSError(f"cannot write cache entry {path}")
