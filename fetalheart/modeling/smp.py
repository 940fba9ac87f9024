"""``SMPSegmentor``: any segmentation_models_pytorch model as a detectron2 meta-architecture.

The U-Net family (U-Net, U-Net++, MAnet, LinkNet, FPN, PSPNet, PAN, DeepLabV3(+), x any smp encoder)
behind the same interface as Mask R-CNN, so the trainer, the data loaders with the model's own
enhancement, the evaluators, ``evaluate``, ``predict`` and the grid serve both families unchanged:

* input: detectron2's batched dicts (``image`` C x H x W in INPUT.FORMAT, ``height``/``width``), made
  grey (the channels averaged; ultrasound is grey) for the 1-channel encoder, normalised with
  MODEL.PIXEL_MEAN/STD and padded to the encoder's stride (32);
* training: one sigmoid channel per class (structures may overlap), target = the union of the class's
  instance masks, loss = w_bce x BCE + w_dice x soft Dice (smp's losses; padding ignored);
* inference: probabilities cropped and resized to the original frame (detectron2's
  ``sem_seg_postprocess``), returned as ``sem_seg`` and as ``instances`` by connected components
  (``fetalheart.annotations.components``: the documented score rule).

Encoder weights come from a local file or not at all: nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.annotations.components import probabilities_to_instances
from fetalheart.annotations.semantic import SemanticOptions
from fetalheart.utils.errors import FetalHeartError

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import BitMasks, Boxes, ImageList, Instances, PolygonMasks
from torch import nn

#: Target value of padded pixels: smp's losses leave them out.
IGNORE = -1

WEIGHTS_HELP = ("put the encoder's state dict in a local file and give its path, e.g. on a machine with internet: "
                "python -c \"import segmentation_models_pytorch as smp, torch; torch.save(smp.encoders.get_encoder("
                "'{encoder}', weights='imagenet').state_dict(), '{encoder}_imagenet.pth')\" "
                "(docs/model_families.md, 'Encoder weights'), or MODEL.SMP.ENCODER_WEIGHTS '' for random initialisation")


def _state_dict(path: Path) -> dict:
    """A state dict from .pth/.pt (torch.load, weights only) or .safetensors; common wrappers unwrapped."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors have no common base class
        raise FetalHeartError(f"cannot read MODEL.SMP.ENCODER_WEIGHTS {path}: {str(exc).splitlines()[0][:200]}") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise FetalHeartError(f"MODEL.SMP.ENCODER_WEIGHTS {path}: not a state dict")
    if sd and all(k.startswith("encoder.") for k in sd):  # saved from a whole smp model
        sd = {k[len("encoder."):]: v for k, v in sd.items()}
    return sd


def load_encoder_weights(net: nn.Module, weights: str, encoder: str, in_channels: int) -> None:
    """Load a local encoder state dict (3-channel, e.g. ImageNet), then adapt the first convolution to
    ``in_channels`` as smp does for its own pretrained weights (``set_in_channels``: summed for 1 channel)."""
    path = Path(weights)
    if not path.is_file():
        where = f"file not found: {weights}" if (os.sep in weights or path.suffix) else f"{weights!r}: nothing is downloaded here"
        raise FetalHeartError(f"MODEL.SMP.ENCODER_WEIGHTS {where}; " + WEIGHTS_HELP.format(encoder=encoder))
    try:
        net.encoder.load_state_dict(_state_dict(path))
    except RuntimeError as exc:
        raise FetalHeartError(f"MODEL.SMP.ENCODER_WEIGHTS {path} does not fit encoder {encoder}: "
                              f"{' '.join(str(exc).split())[:240]}") from None
    net.encoder.set_in_channels(in_channels, pretrained=True)


def build_network(cfg) -> nn.Module:
    """The smp model of ``cfg.MODEL.SMP`` with one output channel per class (no weights downloaded)."""
    s = cfg.MODEL.SMP
    classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    pretrained = bool(s.ENCODER_WEIGHTS)
    try:
        net = smp.create_model(s.ARCH, encoder_name=s.ENCODER, encoder_weights=None,
                               in_channels=3 if pretrained else int(s.IN_CHANNELS), classes=classes)
    except (KeyError, ValueError) as exc:
        raise FetalHeartError(f"MODEL.SMP ARCH {s.ARCH!r} / ENCODER {s.ENCODER!r}: "
                              f"{' '.join(str(exc).strip(chr(39)).split())[:300]}") from None
    if pretrained:
        load_encoder_weights(net, s.ENCODER_WEIGHTS, s.ENCODER, int(s.IN_CHANNELS))
    return net


@META_ARCH_REGISTRY.register()
class SMPSegmentor(nn.Module):
    """A segmentation_models_pytorch network with detectron2's meta-architecture interface."""

    @configurable
    def __init__(self, *, net: nn.Module, num_classes: int, in_channels: int, pixel_mean, pixel_std,
                 loss_weights=(0.5, 0.5), instance_rule: SemanticOptions | None = None):
        super().__init__()
        self.net, self.num_classes, self.in_channels = net, int(num_classes), int(in_channels)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.size_divisibility = max(32, int(getattr(net.encoder, "output_stride", 32)))
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.bce = smp.losses.SoftBCEWithLogitsLoss(ignore_index=IGNORE)
        self.dice = smp.losses.DiceLoss("multilabel", from_logits=True, ignore_index=IGNORE)
        self.instance_rule = instance_rule or SemanticOptions()  # probabilities -> instances (annotations.components)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SMP
        return {"net": build_network(cfg), "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                "in_channels": s.IN_CHANNELS, "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD,
                "loss_weights": s.LOSS_WEIGHTS,
                "instance_rule": SemanticOptions(float(s.PROB_THRESH), int(s.MIN_AREA), s.SCORE_RULE)}

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs) -> ImageList:
        """Normalise, average the channels for a 1-channel encoder, pad (with black) to the stride."""
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        black = (-self.pixel_mean / self.pixel_std).mean()
        if self.in_channels == 1:
            images = [im.mean(0, keepdim=True) for im in images]
        return ImageList.from_tensors(images, self.size_divisibility, pad_value=float(black))

    def targets(self, batched_inputs, images: ImageList) -> torch.Tensor:
        """(N, C, H, W): 1 where the class's union of instance masks is, 0 elsewhere, IGNORE in padding."""
        n, _, h_pad, w_pad = images.tensor.shape
        out = torch.full((n, self.num_classes, h_pad, w_pad), float(IGNORE), device=self.device)
        for i, x in enumerate(batched_inputs):
            h, w = images.image_sizes[i]
            out[i, :, :h, :w] = 0
            inst = x.get("instances")
            if inst is None or len(inst) == 0:
                continue
            masks = inst.gt_masks
            bits = (BitMasks.from_polygon_masks(masks, h, w) if isinstance(masks, PolygonMasks) else masks).tensor
            bits, classes = bits.to(self.device)[:, :h, :w], inst.gt_classes.to(self.device)
            for c in classes.unique().tolist():
                out[i, c, :h, :w] = bits[classes == c].any(0).float()
        return out

    def forward(self, batched_inputs):
        images = self.preprocess_image(batched_inputs)
        logits = self.net(images.tensor)
        if logits.shape[-2:] != images.tensor.shape[-2:]:
            logits = F.interpolate(logits, size=images.tensor.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            t = self.targets(batched_inputs, images)
            return {"loss_bce": self.loss_weights[0] * self.bce(logits, t),
                    "loss_dice": self.loss_weights[1] * self.dice(logits, t)}
        probs = logits.sigmoid()
        results = []
        for p, x, size in zip(probs, batched_inputs, images.image_sizes, strict=True):
            p = sem_seg_postprocess(p, size, x.get("height", size[0]), x.get("width", size[1]))
            results.append({"sem_seg": p, "instances": self.instances(p)})
        return results

    def instances(self, probs: torch.Tensor) -> Instances:
        """Connected components of the thresholded probabilities, highest score first."""
        r = self.instance_rule
        found = probabilities_to_instances(probs.float().cpu().numpy(), r.prob_thresh, r.min_area, r.score_rule)
        order = sorted(range(len(found)), key=lambda k: -found.scores[k])
        inst = Instances(tuple(probs.shape[-2:]))
        masks = torch.from_numpy(found.masks[order]) if order else torch.zeros((0, *probs.shape[-2:]), dtype=torch.bool)
        inst.pred_masks = masks
        inst.pred_classes = torch.as_tensor(found.classes[order], dtype=torch.int64)
        inst.scores = torch.as_tensor(found.scores[order], dtype=torch.float32)
        inst.pred_boxes = BitMasks(masks).get_bounding_boxes() if order else Boxes(torch.zeros((0, 4)))
        return inst
