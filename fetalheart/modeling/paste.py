"""Gaussian-smoothed mask pasting: a low-resolution soft mask resized into its box, blurred, thresholded.

Mask R-CNN predicts a 28 x 28 soft mask per detection and detectron2 pastes it into the box by bilinear
resampling and a 0.5 threshold (``paste_masks_in_image``). Upsampled by a factor of 3-10 that gives
staircase edges and loses thin parts. Following Slobodzian et al. (IDDM 2023), the resized soft mask is
blurred with a Gaussian whose sigma grows linearly with the box width, ``sigma = a * width + b`` (output
pixels), before the threshold. ``(a, b)`` are fitted on the training split's ground truth
(``fit_sigma``): each instance is downsampled to the mask resolution and pasted back with every sigma of
a grid; the best sigma by Dice, per instance, is regressed on the box width by least squares and the
line is clipped to the grid's range. sigma 0 is detectron2's own paste, exactly.

The fit is data (``mask_paste.json`` beside the model, one entry per mask resolution: 28 for Mask
R-CNN, S for the step-2 refiner of fetalheart.modeling.refine), read by evaluation and prediction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.layers.mask_ops import paste_masks_in_image
from torchvision.ops import roi_align

#: The fit file written beside a model (model_final.pth) and read with it.
PASTE_FILE = "mask_paste.json"
#: MODEL.ROI_MASK_HEAD.PASTE.MODE values: detectron2's bilinear paste, or the fitted Gaussian.
PASTE_MODES = ("bilinear", "gaussian")


@dataclass(frozen=True)
class SigmaFit:
    """sigma(width) = clip(a * width + b, lo, hi) in output pixels, for masks of ``mask_size`` cells."""

    a: float
    b: float
    lo: float
    hi: float
    mask_size: int
    n: int = 0  # instances the line was fitted on
    mean_gain: float = 0.0  # mean Dice gain of the fitted sigma over sigma 0 on those instances

    def sigma(self, width: float) -> float:
        return float(min(max(self.a * float(width) + self.b, self.lo), self.hi))


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H, W) float image blurred by a separable Gaussian (radius ceil(3 sigma), zeros outside)."""
    if sigma <= 0:
        return img
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    out = F.conv2d(img[None, None], k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, k.view(1, 1, -1, 1), padding=(radius, 0))[0, 0]


def paste_mask(mask: torch.Tensor, box: Sequence[float] | torch.Tensor, image_hw: tuple[int, int],
               sigma: float = 0.0, threshold: float = 0.5) -> torch.Tensor:
    """An (M, M) soft mask pasted into ``box`` (XYXY, image pixels) of an image: (H, W) bool.

    sigma 0: detectron2's ``paste_masks_in_image``. sigma > 0: the same bilinear resampling on the box
    grown by the blur's radius, blurred, thresholded (only that region is computed).
    """
    box = torch.as_tensor(box, dtype=torch.float32, device=mask.device).reshape(4)
    h, w = int(image_hw[0]), int(image_hw[1])
    if sigma <= 0:
        return paste_masks_in_image(mask[None].float(), box[None], (h, w), threshold)[0]
    pad = int(math.ceil(3.0 * sigma)) + 1
    x0 = max(int(math.floor(float(box[0]))) - pad, 0)
    y0 = max(int(math.floor(float(box[1]))) - pad, 0)
    x1 = min(int(math.ceil(float(box[2]))) + pad, w)
    y1 = min(int(math.ceil(float(box[3]))) + pad, h)
    out = torch.zeros((h, w), dtype=torch.bool, device=mask.device)
    if x1 <= x0 or y1 <= y0:
        return out
    ys = torch.arange(y0, y1, dtype=torch.float32, device=mask.device) + 0.5  # pixel centres, as detectron2
    xs = torch.arange(x0, x1, dtype=torch.float32, device=mask.device) + 0.5
    gy = (ys - box[1]) / (box[3] - box[1]).clamp(min=1e-6) * 2 - 1
    gx = (xs - box[0]) / (box[2] - box[0]).clamp(min=1e-6) * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    soft = F.grid_sample(mask[None, None].float(), grid, align_corners=False)[0, 0]
    out[y0:y1, x0:x1] = gaussian_blur(soft, sigma) >= threshold
    return out


def downsample(mask: torch.Tensor, box: Sequence[float] | torch.Tensor, size: int) -> torch.Tensor:
    """A full-resolution (H, W) mask inside ``box`` averaged to a (size, size) soft mask (RoIAlign, aligned,
    adaptive sampling: the fraction of each cell inside the mask), what a perfect mask head would give."""
    boxes = torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)
    rois = torch.cat([torch.zeros(1, 1), boxes], dim=1)
    return roi_align(mask.float()[None, None], rois, (size, size), 1.0, 0, aligned=True)[0, 0]


def mask_box(mask: torch.Tensor) -> torch.Tensor | None:
    """Tight XYXY box of a bool mask (pixel edges: x1 = last column + 1), None when empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return None
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def best_sigma(mask: torch.Tensor, box: torch.Tensor, mask_size: int, grid: Sequence[float]) -> tuple[float, float, float]:
    """(best sigma of ``grid``, its Dice, the Dice at sigma 0) for one ground-truth instance."""
    low = downsample(mask, box, mask_size)
    scores = [dice(paste_mask(low, box, mask.shape, s), mask) for s in grid]
    k = int(np.argmax(scores))  # the first (smallest) sigma among equal scores
    zero = scores[list(grid).index(0.0)] if 0.0 in grid else dice(paste_mask(low, box, mask.shape, 0.0), mask)
    return float(grid[k]), float(scores[k]), float(zero)


def fit_sigma(instances: Iterable[tuple[torch.Tensor, torch.Tensor]], mask_size: int, grid: Sequence[float]) -> SigmaFit:
    """Fit sigma = a * width + b on (full-resolution bool mask, XYXY box) pairs: the best grid sigma per
    instance by Dice, least squares on the box width, clipped to the grid's range. No instance: sigma 0."""
    grid = sorted(float(g) for g in grid)
    if not grid or grid[0] < 0:
        raise FetalHeartError("MODEL.ROI_MASK_HEAD.PASTE.SIGMA_GRID must be non-empty, values >= 0")
    widths, sigmas, gains = [], [], []
    for mask, box in instances:
        s, d, d0 = best_sigma(mask, box, mask_size, grid)
        widths.append(float(box[2] - box[0]))
        sigmas.append(s)
        gains.append(d - d0)
    if not widths:
        return SigmaFit(0.0, 0.0, 0.0, 0.0, int(mask_size))
    a, b = fit_line(widths, sigmas)
    return SigmaFit(a, b, grid[0], grid[-1], int(mask_size), len(widths), float(np.mean(gains)))


def fit_line(widths: Sequence[float], sigmas: Sequence[float]) -> tuple[float, float]:
    """Least squares sigma = a * width + b; one distinct width: a = 0, b = the mean sigma."""
    w, s = np.asarray(widths, float), np.asarray(sigmas, float)
    if len(w) > 1 and np.ptp(w) > 0:
        a, b = np.polyfit(w, s, 1)
        return float(a), float(b)
    return 0.0, float(s.mean())


def instances_of(masks: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mask, tight box) pairs of a (N, H, W) bool stack, empty masks left out."""
    out = []
    for m in masks:
        box = mask_box(m)
        if box is not None:
            out.append((m, box))
    return out


def save_fits(path: str | os.PathLike, fits: dict[int, SigmaFit], grid: Sequence[float], what: str) -> None:
    data = {"what": what, "units": "sigma and width in output (original-frame) pixels", "grid": list(map(float, grid)),
            "fits": {str(k): asdict(v) for k, v in sorted(fits.items())}}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def load_fits(path: str | os.PathLike) -> dict[int, SigmaFit]:
    """Mask size -> SigmaFit from a ``mask_paste.json``."""
    try:
        data = json.loads(Path(path).read_text())
        return {int(k): SigmaFit(**v) for k, v in data["fits"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FetalHeartError(f"cannot read the mask-paste fit {path}: {exc}") from None


def find_file(candidates: Sequence[str | os.PathLike], name: str) -> Path | None:
    """The first existing file among ``candidates`` (files, or folders holding ``name``)."""
    for c in candidates:
        if not c:
            continue
        p = Path(c)
        p = p / name if p.is_dir() else p
        if p.is_file():
            return p
    return None
