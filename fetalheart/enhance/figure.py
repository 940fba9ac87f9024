"""The study's Figure 2: every enhancement variant of one frame, side by side, with its histogram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.kernels import KernelCache
from fetalheart.enhance.spec import SPECS_OF_STUDY

import cv2
import numpy as np


def _luminance(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2GRAY)


def enhancement_grid(
    image: np.ndarray,
    specs: Sequence[str] = SPECS_OF_STUDY,
    *,
    mask: str = "none",
    params: Mapping[str, Any] | None = None,
    ncols: int = 4,
    title: str | None = None,
    cell_width: float = 2.6,
    progress: bool = False,
):
    """A matplotlib Figure: per spec, the enhanced image (top) and its luminance histogram (log counts, below)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from tqdm import tqdm

    kernels = KernelCache()  # the frame's bd kernel, estimated once for all bd variants
    variants = []
    for spec in tqdm(specs, desc="variants", unit="spec", disable=not progress):
        e = Enhancer(spec, params=params, mask=mask, memory_items=0, kernels=kernels)
        variants.append((e.spec.upper(), e(image)))
    nrows = (len(variants) + ncols - 1) // ncols
    h, w = image.shape[:2]
    img_h = cell_width * h / w
    fig = plt.figure(figsize=(cell_width * ncols, nrows * (img_h + 0.75) + (0.4 if title else 0)))
    ratios = []
    for _ in range(nrows):
        ratios += [0.3, img_h, 0.45]  # spacer for the title, image, histogram
    gs = fig.add_gridspec(3 * nrows, ncols, height_ratios=ratios, hspace=0.05, wspace=0.08)
    levels = 256 if image.dtype == np.uint8 else 65536
    for i, (name, out) in enumerate(variants):
        r, c = divmod(i, ncols)
        ax = fig.add_subplot(gs[3 * r + 1, c])
        shown = out if out.dtype == np.uint8 else (out / 257).astype(np.uint8)
        if shown.ndim == 3 and shown.shape[2] >= 3:
            ax.imshow(cv2.cvtColor(shown[..., :3], cv2.COLOR_BGR2RGB))
        else:
            ax.imshow(shown.squeeze(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        hx = fig.add_subplot(gs[3 * r + 2, c])
        # log counts: the black margin outside the fan would otherwise flatten everything else.
        hist = np.log1p(np.bincount(_luminance(out).ravel(), minlength=levels))
        hx.fill_between(np.arange(levels), hist, step="mid", color="0.3", linewidth=0)
        hx.set_xlim(0, levels - 1)
        hx.set_yticks([])
        hx.set_ylim(0, None)
        hx.set_xticks([0, levels - 1])
        hx.tick_params(labelsize=6, length=2, pad=1)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
