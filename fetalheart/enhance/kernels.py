"""bd kernel cache: each source image's blur kernel is estimated once and shared by every bd spec.

The blind part of bd (the kernel estimate, ~0.1 s per frame) is what costs; the deconvolution
that follows is one FFT pair (~15 ms at 512x384). The blur is a property of the acquisition,
so the kernel is estimated on the *original* pixels (inside the ultrasound sector) and every
spec containing bd (bd, he+bd, ahe+bd, he+clahe+bd, ahe+clahe+bd) deconvolves its own input
with it. Keyed by the SHA-256 of the original luminance plane + the estimation parameters
(``KERNEL_PARAMS``) + the estimation mask + ``CACHE_VERSION``, one cache folder serves a whole
grid: every run, DataLoader worker, spec and the offline tool. Entries are small ``.npy``
files written atomically.

``warm_bd_cache(paths, params, cache_dir, jobs)`` fills the cache up front (before a grid
launches its runs), reading images exactly as the training mapper does.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fetalheart.enhance.cache import CACHE_VERSION, KeyedCache, image_digest
from fetalheart.enhance.deblur import kernel_sigma
from fetalheart.enhance.spec import (
    KERNEL_PARAMS,
    MASK_MODES,
    estimate_bd_kernel,
    luminance_plane,
    resolve_params,
)
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path
from fetalheart.utils.keys import content_key

import cv2
import numpy as np

#: Sub-folders of a cache directory (``INPUT.ENHANCE_CACHE_DIR``, ``--cache-dir``).
KERNEL_DIR = "bd_kernels"
IMAGE_DIR = "bd_images"


def kernel_key(plane: np.ndarray, params: Mapping[str, Any], mask: str | np.ndarray | None) -> str:
    """Key of one original plane's kernel: content + estimation parameters + estimation mask."""
    mask_part = "array:" + image_digest(np.asarray(mask, bool)) if isinstance(mask, np.ndarray) else "sector"
    return content_key({"plane": image_digest(plane), "v": CACHE_VERSION,
                        "bd_kernel": {k: params[k] for k in KERNEL_PARAMS}, "mask": mask_part})


class KernelCache(KeyedCache):
    """Estimated bd kernels: an in-memory LRU (kernels are ~2 KB) in front of an optional folder of .npy files."""

    SUFFIX = ".npy"

    def __init__(self, directory: str | os.PathLike | None = None, memory_items: int = 4096):
        super().__init__(directory, memory_items)

    def get(self, key: str, ksize: int) -> np.ndarray | None:
        """The cached kernel, or None (absent, or a damaged/foreign file: then it is re-estimated)."""
        k = self._memory.get(key)
        if k is None and self.directory is not None:
            try:
                k = np.load(self._path(key), allow_pickle=False)
            except (OSError, ValueError):
                k = None
            if k is not None and not _valid_kernel(k, ksize):
                k = None
        if k is None:
            self.misses += 1
            return None
        self.hits += 1
        self._memory.remember(key, np.array(k, dtype=np.float64))
        return k.copy()

    def put(self, key: str, kernel: np.ndarray) -> None:
        self._memory.remember(key, np.array(kernel, dtype=np.float64))
        if self.directory is None:
            return
        with atomic_path(self._path(key)) as tmp:
            np.save(tmp, np.asarray(kernel, dtype=np.float64))


def _valid_kernel(k: np.ndarray, ksize: int) -> bool:
    return (k.shape == (ksize, ksize) and k.dtype == np.float64 and bool(np.isfinite(k).all())
            and k.min() >= 0 and abs(float(k.sum()) - 1.0) < 1e-6)


def bd_kernel(
    image: np.ndarray, params: Mapping[str, Any], mask: str | np.ndarray | None = "none",
    cache: KernelCache | None = None,
) -> np.ndarray:
    """The estimated (not yet floored) bd kernel of an original image, from ``cache`` when there."""
    plane = luminance_plane(image)
    if cache is None:
        return estimate_bd_kernel(plane, mask, params)
    key = kernel_key(plane, params, mask)
    k = cache.get(key, params["bd_kernel_size"])
    if k is None:
        k = estimate_bd_kernel(plane, mask, params)
        cache.put(key, k)
    return k


def read_image(path: str | os.PathLike, image_format: str = "BGR") -> np.ndarray:
    """Read an image exactly as detectron2's ``read_image`` (the training mapper's reader) does.

    Same steps: Pillow decodes, EXIF orientation is applied, the image is converted to RGB (or
    "L") and flipped to BGR; so cache keys computed here match the ones the online path
    computes (tests compare the two readers). Kept import-light: detectron2 pulls in torch.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FetalHeartError(f"image not found: {path}")
    if image_format not in ("BGR", "RGB", "L"):
        raise FetalHeartError(f"image_format must be BGR, RGB or L, got {image_format!r}")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("L" if image_format == "L" else "RGB")
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise FetalHeartError(f"cannot read image {path}: {exc}") from None
    if image_format == "L":
        return arr[..., None].copy()
    return np.ascontiguousarray(arr[..., ::-1]) if image_format == "BGR" else arr.copy()


def process_pool(jobs: int, initializer: Any, initargs: tuple) -> ProcessPoolExecutor:
    """A process pool whose workers start fresh ("spawn").

    Forking a process that already runs threads (torch, OpenCV's pool, tqdm's monitor: a
    training or test process) can deadlock the children; seen here in the test suite.
    """
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)


def map_paths(work: Callable[[str], Any], paths: Sequence[str], jobs: int, initializer: Callable,
              initargs: tuple, bar: Any) -> list:
    """``work(path)`` for every path, in order, ticking ``bar``: in this process (one job or one path,
    after ``initializer(*initargs)``) or in a spawned pool whose workers run the initializer."""
    results = []
    if jobs == 1 or len(paths) <= 1:
        initializer(*initargs)
        for p in paths:
            results.append(work(p))
            bar.update()
    else:
        with process_pool(jobs, initializer, initargs) as pool:
            for r in pool.map(work, paths, chunksize=4):
                results.append(r)
                bar.update()
    return results


_WORKER: dict[str, Any] = {}


def _init_warm_worker(params: dict, cache_dir: str | None, mask: str, image_format: str) -> None:
    cv2.setNumThreads(1)  # parallelism is across images
    _WORKER.update(params=params, cache=KernelCache(cache_dir, memory_items=0), mask=mask, fmt=image_format)


def _warm_one(path: str) -> tuple[bool, float]:
    """(estimated now?, estimated sigma) for one image file."""
    cache: KernelCache = _WORKER["cache"]
    misses = cache.misses
    k = bd_kernel(read_image(path, _WORKER["fmt"]), _WORKER["params"], _WORKER["mask"], cache)
    return cache.misses > misses, kernel_sigma(k)


def warm_bd_cache(
    image_paths: Sequence[str | os.PathLike],
    params: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    jobs: int = 1,
    quiet: bool = False,
    *,
    mask: str = "none",
    image_format: str = "BGR",
) -> dict[str, Any]:
    """Estimate (or find) the bd kernel of every image into ``cache_dir/bd_kernels``; a summary.

    Call it once for a grid's image list before launching its runs, with the cache folder the
    runs use (``INPUT.ENHANCE_CACHE_DIR``): no run or DataLoader worker then estimates a
    kernel. Returns counts, seconds, and the estimated sigmas (median/min/max, and how many
    fall below the ``bd_min_sigma`` floor and are deconvolved with the floor instead).
    """
    resolved = resolve_params(params)
    if mask not in MASK_MODES:
        raise FetalHeartError(f"mask must be one of {', '.join(MASK_MODES)}, got {mask!r}")
    if jobs < 1:
        raise FetalHeartError(f"jobs must be >= 1, got {jobs}")
    paths = [str(p) for p in image_paths]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FetalHeartError(f"image not found: {missing[0]} ({len(missing)} of {len(paths)} missing)")
    if cache_dir is not None:
        Path(cache_dir, KERNEL_DIR).mkdir(parents=True, exist_ok=True)
    kdir = str(Path(cache_dir, KERNEL_DIR)) if cache_dir is not None else None
    from tqdm import tqdm

    start = time.perf_counter()
    init = (resolved, kdir, mask, image_format)
    bar = tqdm(total=len(paths), desc="bd kernels", unit="img", disable=quiet)
    try:
        results: list[tuple[bool, float]] = map_paths(_warm_one, paths, jobs, _init_warm_worker, init, bar)
    finally:
        bar.close()
    return _warm_summary(results, resolved, cache_dir, time.perf_counter() - start)


def _warm_summary(results: list[tuple[bool, float]], params: Mapping[str, Any], cache_dir: Any, seconds: float) -> dict:
    sigmas = np.array([s for _, s in results], dtype=np.float64)
    estimated = sum(1 for e, _ in results if e)
    floor = float(params["bd_min_sigma"])
    return {
        "images": len(results),
        "estimated": estimated,
        "cached": len(results) - estimated,
        "seconds": round(seconds, 2),
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "kernel_sigma": ({"median": round(float(np.median(sigmas)), 3), "min": round(float(sigmas.min()), 3),
                          "max": round(float(sigmas.max()), 3)} if len(sigmas) else None),
        "bd_min_sigma": floor,
        "below_floor": int((sigmas < floor).sum()),
        "floor_share": round(float((sigmas < floor).mean()), 4) if len(sigmas) else None,
    }
