"""``FetalHeartRCNN``: detectron2's GeneralizedRCNN with Matterport's "square" input.

The study (Matterport Mask R-CNN, IMAGE_RESIZE_MODE "square") resizes the long side to 512 and
pads the frame with black to 512 x 512, so anchors and convolutions always see a square canvas.
detectron2 pads only to a multiple of 32, with the normalised mean. This subclass pads the
normalised batch to ``INPUT.SQUARE_SIZE`` with the value a black pixel normalises to, right and
bottom, and keeps the true image sizes in the ImageList, so detectron2's post-processing
(box clipping, mask pasting at the original resolution) is unchanged. Same weights, same keys:
checkpoints load into either class.

Its inference also applies the small-structure options (docs/small_structures.md): Gaussian-smoothed
mask pasting (``MODEL.ROI_MASK_HEAD.PASTE.MODE gaussian``, fetalheart.modeling.paste) and two-step
refinement (``MODEL.REFINE.ENABLED``, fetalheart.modeling.refine), both in detectron2's post-processing
step (``fetalheart.modeling.postprocess`` replaces ``detector_postprocess``). Their files (mask_paste.json,
refiner.pth) are found beside MODEL.WEIGHTS, else in OUTPUT_DIR, when the first image is predicted.
"""

from __future__ import annotations

import math
import os

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.errors import FetalHeartError

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList


@META_ARCH_REGISTRY.register()
class FetalHeartRCNN(GeneralizedRCNN):
    """GeneralizedRCNN whose inputs are padded with black to a square of ``square_size`` (0 = off)."""

    @configurable
    def __init__(self, *, square_size: int = 0, paste_files: tuple = (), refiner_files: tuple = (),
                 class_names: tuple = (), **kwargs):
        super().__init__(**kwargs)
        self.square_size = int(square_size)
        self.paste_files, self.refiner_files = tuple(paste_files), tuple(refiner_files)  # () = option off
        self.class_names = tuple(class_names)
        self._fits = self._refiner = None  # loaded on first use (the weights are loaded after building)

    @classmethod
    def from_config(cls, cfg):
        from fetalheart.config import class_names

        ret = super().from_config(cfg)
        ret["square_size"] = cfg.INPUT.get("SQUARE_SIZE", 0)
        weights = cfg.MODEL.WEIGHTS
        beside = [os.path.dirname(weights) or "."] if weights and "://" not in weights else []
        paste, refine = cfg.MODEL.ROI_MASK_HEAD.get("PASTE"), cfg.MODEL.get("REFINE")
        if paste is not None and paste.MODE == "gaussian":
            ret["paste_files"] = tuple(f for f in (paste.FIT_FILE, *beside, cfg.OUTPUT_DIR) if f)
        if refine is not None and refine.ENABLED:
            ret["refiner_files"] = tuple(f for f in (refine.WEIGHTS, *beside, cfg.OUTPUT_DIR) if f)
        ret["class_names"] = class_names(cfg)
        return ret

    def _small_structure_parts(self):
        """(sigma fits or None, Refiner or None), read from their files once."""
        from fetalheart.modeling.paste import PASTE_FILE, find_file, load_fits
        from fetalheart.modeling.refine import REFINER_FILE, Refiner

        if self.paste_files and self._fits is None:
            path = find_file(self.paste_files, PASTE_FILE)
            if path is None:
                raise FetalHeartError(f"MODEL.ROI_MASK_HEAD.PASTE.MODE gaussian: no {PASTE_FILE} in "
                                      f"{', '.join(map(str, self.paste_files))}; fit it with tools/train_refiner.py --paste-only")
            self._fits = load_fits(path)
        if self.refiner_files and self._refiner is None:
            path = find_file(self.refiner_files, REFINER_FILE)
            if path is None:
                raise FetalHeartError(f"MODEL.REFINE.ENABLED: no {REFINER_FILE} in {', '.join(map(str, self.refiner_files))}; "
                                      "train step 2 with tools/train_refiner.py")
            self._refiner = Refiner.load(path, self.class_names, self.device)
        return self._fits, self._refiner

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        """GeneralizedRCNN's inference; with Gaussian pasting or refinement on, their post-processing."""
        if not (self.paste_files or self.refiner_files):
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        from fetalheart.modeling.postprocess import postprocess

        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        fits, refiner = self._small_structure_parts()
        if refiner is not None:
            results = [refiner.refine(x["image"], r, x.get("image_full")) if r.has("pred_masks") else r
                       for x, r in zip(batched_inputs, results, strict=True)]
        if not do_postprocess:
            return results
        return [{"instances": postprocess(r, x.get("height", r.image_size[0]), x.get("width", r.image_size[1]), fits)}
                for x, r in zip(batched_inputs, results, strict=True)]

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

