"""Two-step refinement of small structures: crop around each step-1 detection, segment the crop again.

Step 1 is the trained Mask R-CNN. For each detection of a target class (``MODEL.REFINE.CLASSES``, by
name) the frame is cropped to a square centred on the detection's mask, grown by ``MARGIN`` x the
mask's longer side on each side, resized to S x S (``crop``), and segmented by a small
segmentation_models_pytorch network (``build_refiner_net``: one sigmoid channel per target class, the
detection's class read). The S x S soft mask replaces step 1's 28 x 28 one and is pasted back through
the crop box (``fetalheart.modeling.postprocess``, Gaussian pasting at S cells when on); the class,
score and box stay step 1's, so every metric still applies (Slobodzian et al., IDDM 2023).

The network and its options live in ``refiner.pth`` (trained by fetalheart.engine.refiner), read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import normalize_label
from fetalheart.utils.errors import FetalHeartError

import torch
import torch.nn.functional as F
from detectron2.layers.mask_ops import paste_masks_in_image
from detectron2.structures import Boxes, Instances
from torch import nn
from torchvision.ops import roi_align

logger = logging.getLogger(__name__)

#: The step-2 network file written beside a model.
REFINER_FILE = "refiner.pth"
#: MODEL.REFINE.MODE: "detections" (each target-class detection cropped and segmented again) or "heart" (one
#: crop around the union of the confident non-target detections, the heart; every target class segmented in it).
REFINE_MODES = ("detections", "heart")
#: Heart mode: step-1 detections at or above this score outline the heart.
HEART_MIN_SCORE = 0.5


def target_class_ids(wanted: Sequence[str], class_names: Sequence[str]) -> tuple[list[int], list[str]]:
    """Contiguous ids of the ``wanted`` names in the model's ``class_names`` (case and aliases ignored),
    and the wanted names the label set does not have (ignored: a user's label set may lack valves)."""
    key = {(normalize_label(n) or n).lower(): i for i, n in enumerate(class_names)}
    ids, missing = [], []
    for name in wanted:
        i = key.get((normalize_label(name) or name).lower())
        if i is None:
            missing.append(name)
        elif i not in ids:
            ids.append(i)
    return ids, missing


def square_crop_boxes(boxes: torch.Tensor, margin: float, min_side: float = 4.0) -> torch.Tensor:
    """(N, 4) XYXY boxes -> squares on the same centres, side = (1 + 2 margin) x the longer side."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values.clamp(min=min_side) * (1 + 2 * margin)
    half = side[:, None] / 2
    return torch.cat([c - half, c + half], dim=1)


def crop(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) image -> (N, C, size, size) crops of XYXY ``boxes`` (bilinear, aligned; zeros outside)."""
    if len(boxes) == 0:
        return image.new_zeros((0, image.shape[0], size, size), dtype=torch.float32)
    rois = torch.cat([boxes.new_zeros((len(boxes), 1)), boxes.float()], dim=1)
    return roi_align(image.float()[None], rois, (size, size), 1.0, 2, aligned=True)


def build_refiner_net(arch: str, encoder: str, num_classes: int) -> nn.Module:
    """The step-2 network: a 1-channel segmentation_models_pytorch model, random initialisation."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=num_classes)
    except (KeyError, ValueError) as exc:
        raise FetalHeartError(f"MODEL.REFINE ARCH {arch!r} / ENCODER {encoder!r}: {' '.join(str(exc).split())[:300]}") from None


def run_net(net: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """Logits of (N, 1, S, S) normalised crops, padded to the encoder's stride (32) and cut back."""
    s = crops.shape[-1]
    side = int(math.ceil(s / 32) * 32)
    x = F.pad(crops, (0, side - s, 0, side - s), value=float(crops.amin()) if crops.numel() else 0.0)
    return net(x)[..., :s, :s]


@dataclass
class RefinerSpec:
    """What a refiner.pth was trained with: enough to rebuild and apply it."""

    classes: list[str]  # target class names, channel order
    size: int
    margin: float
    arch: str
    encoder: str
    pixel_mean: float  # grey normalisation
    pixel_std: float
    source: str = "input"  # "original": crops of the original-resolution frame ("image_full"); "input": of the model's input
    mode: str = "detections"  # REFINE_MODES
    heart_classes: list[str] | None = None  # heart mode: the classes whose detections outline the heart

    @classmethod
    def from_cfg(cls, cfg, classes: Sequence[str], heart_classes: Sequence[str] = ()) -> RefinerSpec:
        r = cfg.MODEL.REFINE
        mean = sum(cfg.MODEL.PIXEL_MEAN) / len(cfg.MODEL.PIXEL_MEAN)
        std = sum(cfg.MODEL.PIXEL_STD) / len(cfg.MODEL.PIXEL_STD)
        return cls(list(classes), int(r.SIZE), float(r.MARGIN), r.ARCH, r.ENCODER, float(mean), float(std), r.SOURCE,
                   r.MODE, list(heart_classes))


def grey_crops(image: torch.Tensor, boxes: torch.Tensor, spec: RefinerSpec) -> torch.Tensor:
    """(C, H, W) pixel values -> (N, 1, S, S) normalised grey crops (channels averaged; black outside the frame)."""
    return (crop(image.float().mean(0, keepdim=True), boxes, spec.size) - spec.pixel_mean) / spec.pixel_std


class Refiner:
    """A trained step-2 network applied to step 1's detections (``refine``)."""

    def __init__(self, net: nn.Module, spec: RefinerSpec, class_names: Sequence[str]):
        self.net, self.spec = net.eval(), spec
        ids, missing = target_class_ids(spec.classes, class_names)
        if missing:
            logger.info("MODEL.REFINE: classes %s are not in the model's label set: ignored", ", ".join(missing))
        #: model class id -> the network's channel
        self.channel = {i: spec.classes.index(n) for n in spec.classes for i in target_class_ids([n], class_names)[0]}
        self.ids = ids
        self.class_of_channel = {ch: i for i, ch in self.channel.items()}
        self.heart_ids = set(target_class_ids(spec.heart_classes or [], class_names)[0])

    @classmethod
    def load(cls, path: str | Path, class_names: Sequence[str], device: str | torch.device = "cpu") -> Refiner:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
            spec = RefinerSpec(**data["spec"])
            net = build_refiner_net(spec.arch, spec.encoder, len(spec.classes))
            net.load_state_dict(data["model"])
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise FetalHeartError(f"cannot load the refiner {path}: {str(exc).splitlines()[0][:200]}") from None
        return cls(net.to(device), spec, class_names)

    @staticmethod
    def save(path: str | Path, net: nn.Module, spec: RefinerSpec) -> None:
        from dataclasses import asdict

        torch.save({"model": {k: v.cpu() for k, v in net.state_dict().items()}, "spec": asdict(spec)}, str(path))

    @torch.no_grad()
    def refine(self, image: torch.Tensor, inst: Instances, full: torch.Tensor | None = None) -> Instances:
        """Add ``refined_masks`` (N, 1, S, S soft), ``refined_boxes`` (crop squares, input coordinates) and
        ``refined`` (bool) to one image's raw detections (input coordinates). ``image`` is the model's
        C x H x W input, ``full`` the enhanced frame at its original resolution (needed by SOURCE original).
        Heart mode replaces step 1's target-class detections by step 2's components."""
        if self.spec.source == "original":
            if full is None:
                raise FetalHeartError("the refiner crops the original-resolution frame (MODEL.REFINE.SOURCE original) but "
                                      "the inputs have no 'image_full' (fetalheart's test loader and Predictor add it)")
        else:
            full = image
        if self.spec.mode == "heart":
            return self._refine_heart(full, inst)
        return self._refine_detections(full, inst)

    def _tight_boxes(self, full: torch.Tensor, inst: Instances, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tight boxes in ``full``'s pixels, the input-to-full scale) of step 1's masks of detections ``idx``."""
        h, w = inst.image_size
        boxes = inst.pred_boxes.tensor[idx]
        step1 = paste_masks_in_image(inst.pred_masks[idx, 0], boxes, (h, w))  # step 1's masks, input pixels
        tight = torch.stack([_tight(m, b) for m, b in zip(step1, boxes, strict=True)])
        scale = torch.tensor([full.shape[-1] / w, full.shape[-2] / h] * 2, device=boxes.device)
        return tight * scale, scale

    def _refine_detections(self, full: torch.Tensor, inst: Instances) -> Instances:
        n, s = len(inst), self.spec.size
        device = inst.pred_boxes.tensor.device
        refined = torch.zeros(n, dtype=torch.bool, device=device)
        masks = torch.zeros((n, 1, s, s), device=device)
        crop_boxes = inst.pred_boxes.tensor.clone()
        pick = [k for k in range(n) if int(inst.pred_classes[k]) in self.channel]
        if pick:
            idx = torch.as_tensor(pick, device=device)
            tight, scale = self._tight_boxes(full, inst, idx)
            sq = square_crop_boxes(tight, self.spec.margin)  # square in the frame it is cut from
            logits = run_net(self.net, grey_crops(full.to(device), sq, self.spec))
            ch = torch.as_tensor([self.channel[int(inst.pred_classes[k])] for k in pick], device=device)
            masks[idx] = logits[torch.arange(len(pick), device=device), ch][:, None].sigmoid()
            crop_boxes[idx] = sq / scale
            refined[idx] = True
        inst.refined_masks, inst.refined_boxes, inst.refined = masks, Boxes(crop_boxes), refined
        return inst

    def _refine_heart(self, full: torch.Tensor, inst: Instances) -> Instances:
        """One crop around the heart (the union of step 1's confident heart-class masks); step 2's components of
        every target class replace step 1's target-class detections (score: the mean probability)."""
        from fetalheart.annotations.components import probabilities_to_instances

        n, s = len(inst), self.spec.size
        device = inst.pred_boxes.tensor.device
        target = [int(c) in self.channel for c in inst.pred_classes]
        anchors = [k for k in range(n) if int(inst.pred_classes[k]) in self.heart_ids
                   and float(inst.scores[k]) >= HEART_MIN_SCORE]
        old = inst[torch.as_tensor([k for k in range(n) if not target[k] or not anchors], dtype=torch.long)]
        m = len(old)
        old.refined_masks = torch.zeros((m, 1, s, s), device=device)
        old.refined_boxes, old.refined = Boxes(old.pred_boxes.tensor.clone()), torch.zeros(m, dtype=torch.bool, device=device)
        if not anchors:  # no heart found: step 1 as it is
            return old
        tight, scale = self._tight_boxes(full, inst, torch.as_tensor(anchors, device=device))
        heart = torch.cat([tight[:, :2].min(0).values, tight[:, 2:].max(0).values])[None]  # the masks' union box
        heart = square_crop_boxes(heart, self.spec.margin)
        probs = run_net(self.net, grey_crops(full.to(device), heart, self.spec))[0].sigmoid()
        found = probabilities_to_instances(probs.float().cpu().numpy(), 0.5, 2)
        keep = [j for j in range(len(found)) if int(found.classes[j]) in self.class_of_channel]
        if not keep:
            return old
        found = type(found)(found.masks[keep], found.classes[keep], found.scores[keep])
        box = (heart[0] / scale).to(device)  # input coordinates
        cell = (box[2:] - box[:2]) / s
        comps = torch.as_tensor(found.masks, device=device)
        ch = torch.as_tensor(found.classes, device=device)
        soft = probs[ch] * comps  # each component's probabilities, zero elsewhere
        new = Instances(inst.image_size)
        new.pred_boxes = Boxes(torch.stack([torch.cat([box[:2] + _tight(c, box)[:2] * cell, box[:2] + _tight(c, box)[2:] * cell])
                                            for c in comps]))
        new.scores = torch.as_tensor(found.scores, dtype=inst.scores.dtype, device=device)
        new.pred_classes = torch.as_tensor([self.class_of_channel[int(c)] for c in found.classes], dtype=inst.pred_classes.dtype,
                                           device=device)
        new.pred_masks = inst.pred_masks.new_zeros((len(found), *inst.pred_masks.shape[1:]))
        new.refined_masks = soft[:, None]
        new.refined_boxes = Boxes(box[None].repeat(len(found), 1))
        new.refined = torch.ones(len(found), dtype=torch.bool, device=device)
        return Instances.cat([old, new])


def _tight(mask: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return fallback.float()
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
