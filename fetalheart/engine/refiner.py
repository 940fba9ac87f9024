"""Train step 2 of the two-step refinement and fit the Gaussian paste, on a run's training split.

* ``fit_paste``: the sigma(width) lines of fetalheart.modeling.paste on DATASETS.TRAIN's ground truth at
  the original resolution: mask size M (Mask R-CNN's 28, tight boxes) and, with MODEL.REFINE on, S
  (the refiner's crop boxes) -> ``mask_paste.json``.
* ``train_refiner``: the step-2 network on ground-truth-centred crops of the target classes, at the
  model's test-time resolution and enhancement (the evaluation mapper with annotations), the crop
  centre and side jittered so it sees step 1's localisation errors -> ``refiner.pth``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.modeling.paste import PASTE_FILE, fit_sigma, instances_of, mask_box, save_fits
from fetalheart.modeling.refine import (
    REFINER_FILE,
    Refiner,
    RefinerSpec,
    build_refiner_net,
    crop,
    grey_crops,
    run_net,
    square_crop_boxes,
    target_class_ids,
)
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.structures import BitMasks, PolygonMasks

logger = logging.getLogger(__name__)


def _bits(instances, h: int, w: int) -> torch.Tensor:
    masks = instances.gt_masks
    if isinstance(masks, PolygonMasks):
        masks = BitMasks.from_polygon_masks(masks, h, w)
    return masks.tensor.bool()


def _train_dicts(cfg) -> list[dict]:
    if not cfg.DATASETS.TRAIN:
        raise FetalHeartError("DATASETS.TRAIN is empty: the paste fit and step 2 train on the training split")
    return [d for name in cfg.DATASETS.TRAIN for d in DatasetCatalog.get(name)]


def _spaced(items: list, n: int) -> list:
    if n <= 0 or len(items) <= n:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n)]


def ground_truth(cfg, class_ids: list[int] | None = None) -> list[tuple[torch.Tensor, int, int]]:
    """(full-resolution bool mask, contiguous class, image index) of every non-crowd training instance (no
    images read)."""
    out = []
    for k, d in enumerate(_train_dicts(cfg)):
        annos = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        if not annos:
            continue
        inst = utils.annotations_to_instances(annos, (d["height"], d["width"]), mask_format=cfg.INPUT.MASK_FORMAT)
        for m, c in zip(_bits(inst, d["height"], d["width"]), inst.gt_classes.tolist(), strict=True):
            if class_ids is None or c in class_ids:
                out.append((m, int(c), k))
    return out


def heart_box(masks: torch.Tensor, margin: float) -> torch.Tensor | None:
    """The square heart crop of one image's (K, H, W) masks: their union's tight box, grown and made square."""
    box = mask_box(masks.any(0)) if len(masks) else None
    return None if box is None else square_crop_boxes(box[None], margin)[0]


def _paste_fit_pairs(cfg, gt: list, ids: list[int], class_names) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mask, crop box) of every target instance as step 2 pastes it: its own square (detections mode) or its
    image's heart square (heart mode)."""
    r = cfg.MODEL.REFINE
    if r.MODE == "heart":
        by_image: dict[int, list] = {}
        for m, c, k in gt:
            by_image.setdefault(k, []).append((m, c))
        pairs = []
        heart, _ = target_class_ids(r.HEART_CLASSES, class_names)
        for items in by_image.values():
            anchors = [m for m, c in items if c in heart]
            box = heart_box(torch.stack(anchors), float(r.MARGIN)) if anchors else None
            pairs += [(m, box) for m, c in items if c in ids and box is not None and m.any()]
        return pairs
    pairs = []
    for m, c, _ in gt:
        box = mask_box(m) if c in ids else None
        if box is not None:
            pairs.append((m, square_crop_boxes(box[None], float(r.MARGIN))[0]))
    return pairs


def fit_paste(cfg, out_dir: str | Path, class_names) -> Path:
    """Fit sigma(width) for Mask R-CNN's masks (and the refiner's, with MODEL.REFINE on); write mask_paste.json."""
    p = cfg.MODEL.ROI_MASK_HEAD.PASTE
    gt = ground_truth(cfg)
    limit = int(p.FIT_MAX_INSTANCES)
    size = 2 * int(cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION)  # the mask head's output (14 -> 28)
    fits = {size: fit_sigma(_spaced(instances_of(torch.stack([m for m, _, _ in gt])) if gt else [], limit),
                            size, p.SIGMA_GRID)}
    if cfg.MODEL.REFINE.ENABLED:
        ids, _ = target_class_ids(cfg.MODEL.REFINE.CLASSES, class_names)
        pairs = _paste_fit_pairs(cfg, gt, ids, class_names)
        fits[int(cfg.MODEL.REFINE.SIZE)] = fit_sigma(_spaced(pairs, limit), int(cfg.MODEL.REFINE.SIZE), p.SIGMA_GRID)
    path = Path(out_dir) / PASTE_FILE
    save_fits(path, fits, p.SIGMA_GRID, f"Gaussian mask paste fitted on {', '.join(cfg.DATASETS.TRAIN)}")
    for m, f in fits.items():
        logger.info("mask paste fit (M=%d, %d instances): sigma = %.4f * width + %.3f, clipped to [%.2f, %.2f]; "
                    "mean Dice gain on the fit set %.4f", m, f.n, f.a, f.b, f.lo, f.hi, f.mean_gain)
    return path


@dataclass
class CropSet:
    """Training images at test-time resolution and their target-class instances."""

    images: list[torch.Tensor]  # (C, H, W) pixel values
    masks: list[torch.Tensor]  # (K, H, W) bool, per image
    classes: list[torch.Tensor]  # (K,) contiguous class ids
    items: list[tuple[int, int]]  # (image, instance) of a target class; heart mode: (image, -1)
    heart_ids: tuple = ()  # heart mode: the classes outlining the heart


def load_crop_set(cfg, class_ids: list[int], heart_ids: list[int] = ()) -> CropSet:
    """The training split as inference crops it (MODEL.REFINE.SOURCE): at the original resolution with the
    enhancement (original), or through the evaluation mapper (enhancement, test resize; input)."""
    from fetalheart.data.mapper import build_full_resolution_mapper, build_val_loss_mapper

    original, heart = cfg.MODEL.REFINE.SOURCE == "original", cfg.MODEL.REFINE.MODE == "heart"
    mapper = build_full_resolution_mapper(cfg) if original else build_val_loss_mapper(cfg)
    images, masks, classes, items = [], [], [], []
    for d in _train_dicts(cfg):
        x = mapper(d)
        inst = x.get("instances")
        if inst is None or len(inst) == 0:
            continue
        h, w = x["image"].shape[-2:]
        bits, cls = _bits(inst, h, w), inst.gt_classes
        k = len(images)
        images.append(x["image"])
        masks.append(bits)
        classes.append(cls)
        if heart:
            items += [(k, -1)] if any(int(c) in heart_ids for c in cls) else []
        else:
            items += [(k, j) for j in range(len(cls)) if int(cls[j]) in class_ids and bits[j].any()]
    return CropSet(images, masks, classes, items, tuple(heart_ids))


def jittered_boxes(tight: torch.Tensor, margin: float, jitter_center: float, jitter_scale: float,
                   gen: torch.Generator) -> torch.Tensor:
    """Square crops around (N, 4) tight boxes, the centre moved by up to ``jitter_center`` x the side and the
    side scaled by 1 +- ``jitter_scale`` (uniform)."""
    sq = square_crop_boxes(tight, margin)
    side = sq[:, 2] - sq[:, 0]
    n = len(sq)
    shift = (torch.rand((n, 2), generator=gen) * 2 - 1) * jitter_center * side[:, None]
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * jitter_scale
    c = (sq[:, :2] + sq[:, 2:]) / 2 + shift
    half = (side * scale / 2)[:, None]
    return torch.cat([c - half, c + half], dim=1)


def batch(data: CropSet, picks: list[tuple[int, int]], spec: RefinerSpec, channel: dict[int, int],
          jitter: tuple[float, float], gen: torch.Generator):
    """(crops (B, 1, S, S), targets (B, S, S) float, channels (B,)) for (image, instance) picks; heart mode
    (instance -1): the heart crop and one target per channel, (B, C, S, S), channels None."""
    if picks and picks[0][1] < 0:
        return _heart_batch(data, picks, spec, channel, jitter, gen)
    xs, ys, chs = [], [], []
    for i, j in picks:
        m, c = data.masks[i][j], int(data.classes[i][j])
        box = jittered_boxes(mask_box(m)[None], spec.margin, jitter[0], jitter[1], gen)
        xs.append(grey_crops(data.images[i], box, spec))
        union = data.masks[i][data.classes[i] == c].any(0)  # every instance of that class in the crop
        ys.append(crop(union[None].float(), box, spec.size)[:, 0] >= 0.5)
        chs.append(channel[c])
    return torch.cat(xs), torch.cat(ys).float(), torch.as_tensor(chs)


def _heart_batch(data: CropSet, picks, spec: RefinerSpec, channel: dict[int, int], jitter, gen):
    xs, ys = [], []
    for i, _ in picks:
        cls = data.classes[i]
        anchors = data.masks[i][torch.as_tensor([int(c) in data.heart_ids for c in cls])]
        box = jittered_boxes(mask_box(anchors.any(0))[None], spec.margin, jitter[0], jitter[1], gen)
        xs.append(grey_crops(data.images[i], box, spec))
        target = torch.zeros((len(channel), *data.masks[i].shape[1:]))
        for c, ch in channel.items():
            if (cls == c).any():
                target[ch] = data.masks[i][cls == c].any(0).float()
        ys.append(crop(target, box, spec.size) >= 0.5)
    return torch.cat(xs), torch.cat(ys).float(), None


def _loss(net, x, y, ch, dice, device):
    """BCE + soft Dice: on each crop's class channel (detections), or on every channel (heart)."""
    logits = run_net(net, x)
    if ch is None:
        return F.binary_cross_entropy_with_logits(logits, y) + dice(logits.flatten(0, 1)[:, None], y.flatten(0, 1)[:, None])
    logits = logits[torch.arange(len(ch), device=device), ch]
    return F.binary_cross_entropy_with_logits(logits, y) + dice(logits[:, None], y[:, None])


def train_refiner(cfg, out_dir: str | Path, class_names, log=logger.info) -> Path:
    """Train the step-2 network of ``cfg.MODEL.REFINE`` on DATASETS.TRAIN; write refiner.pth into ``out_dir``."""
    r = cfg.MODEL.REFINE
    ids, missing = target_class_ids(r.CLASSES, class_names)
    if missing:
        log(f"MODEL.REFINE: classes {', '.join(missing)} are not in the label set ({', '.join(class_names)}): ignored")
    if not ids:
        raise FetalHeartError(f"MODEL.REFINE.CLASSES {list(r.CLASSES)}: none is in the label set {list(class_names)}")
    names = [class_names[i] for i in ids]
    heart_ids, _ = target_class_ids(r.HEART_CLASSES, class_names)
    spec = RefinerSpec.from_cfg(cfg, names, [class_names[i] for i in heart_ids])
    data = load_crop_set(cfg, ids, heart_ids)
    if not data.items:
        what = f"frame with a heart class ({', '.join(r.HEART_CLASSES)})" if r.MODE == "heart" else \
            f"instance of {', '.join(names)}"
        raise FetalHeartError(f"DATASETS.TRAIN has no {what}: nothing to train step 2 on")
    channel = {i: k for k, i in enumerate(ids)}
    gen = torch.Generator().manual_seed(int(cfg.SEED))
    torch.manual_seed(int(cfg.SEED))
    device = cfg.MODEL.DEVICE
    net = build_refiner_net(spec.arch, spec.encoder, len(ids)).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=float(r.TRAIN.BASE_LR))
    import segmentation_models_pytorch as smp

    dice = smp.losses.DiceLoss("binary", from_logits=True)
    start, it, losses = time.time(), 0, []
    log(f"step 2: {len(data.items)} instances of {', '.join(names)} in {len(data.images)} images "
        f"({spec.source} resolution); S={spec.size}, "
        f"{r.ENCODER} {r.ARCH}, up to {r.TRAIN.ITERS} iterations of {r.TRAIN.BATCH_SIZE}")
    for it in range(int(r.TRAIN.ITERS)):
        if r.TRAIN.MAX_SECONDS and time.time() - start > r.TRAIN.MAX_SECONDS:
            break
        picks = [data.items[int(k)] for k in torch.randint(len(data.items), (int(r.TRAIN.BATCH_SIZE),), generator=gen)]
        x, y, ch = batch(data, picks, spec, channel, (float(r.TRAIN.JITTER_CENTER), float(r.TRAIN.JITTER_SCALE)), gen)
        x, y, ch = x.to(device), y.to(device), None if ch is None else ch.to(device)
        loss = _loss(net, x, y, ch, dice, device)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (it + 1) % 50 == 0:
            log(f"step 2: iter {it + 1}  loss {np.mean(losses[-50:]):.4f}  ({time.time() - start:.0f} s)")
    path = Path(out_dir) / REFINER_FILE
    Refiner.save(path, net.cpu().eval(), spec)
    log(f"step 2: {len(losses)} iterations in {time.time() - start:.0f} s, last loss "
        f"{np.mean(losses[-50:]) if losses else float('nan'):.4f} -> {path}")
    return path


def prepare_small_structures(cfg, out_dir: str | Path, class_names, paste_only: bool = False, log=logger.info) -> list[Path]:
    """What a run with the small-structure options needs beside its model: refiner.pth (MODEL.REFINE on,
    unless ``paste_only``) and mask_paste.json (PASTE.MODE gaussian, or asked for with ``paste_only``)."""
    written = []
    if cfg.MODEL.REFINE.ENABLED and not paste_only:
        written.append(train_refiner(cfg, out_dir, class_names, log))
    if cfg.MODEL.ROI_MASK_HEAD.PASTE.MODE == "gaussian" or paste_only:
        written.append(fit_paste(cfg, out_dir, class_names))
    return written
