"""``FetalHeartRCNN``: detectron2's GeneralizedRCNN with Matterport's "square" input.

The study (Matterport Mask R-CNN, IMAGE_RESIZE_MODE "square") resizes the long side to 512 and
pads the frame with black to 512 x 512, so anchors and convolutions always see a square canvas.
detectron2 pads only to a multiple of 32, with the normalised mean. This subclass pads the
normalised batch to ``INPUT.SQUARE_SIZE`` with the value a black pixel normalises to, right and
bottom, and keeps the true image sizes in the ImageList, so detectron2's post-processing
(box clipping, mask pasting at the original resolution) is unchanged. Same weights, same keys:
checkpoints load into either class.
"""

from __future__ import annotations

import math

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList


@META_ARCH_REGISTRY.register()
class FetalHeartRCNN(GeneralizedRCNN):
    """GeneralizedRCNN whose inputs are padded with black to a square of ``square_size`` (0 = off)."""

    @configurable
    def __init__(self, *, square_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.square_size = int(square_size)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["square_size"] = cfg.INPUT.get("SQUARE_SIZE", 0)
        return ret

    def preprocess_image(self, batched_inputs):
        if not self.square_size:
            return super().preprocess_image(batched_inputs)
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        div = max(1, self.backbone.size_divisibility)
        side = max(self.square_size, *(max(s) for s in sizes))
        side = int(math.ceil(side / div) * div)
        black = (-self.pixel_mean / self.pixel_std).to(images[0].dtype)  # what pixel value 0 normalises to
        batch = black.expand(len(images), -1, side, side).clone()
        for canvas, im in zip(batch, images, strict=True):
            canvas[:, : im.shape[-2], : im.shape[-1]].copy_(im)
        return ImageList(batch, sizes)

