"""The online step: a detectron2 Augmentation whose transform changes pixel values only.

Put it first in a DatasetMapper's augmentation list (before resizing, so bd and the tile
grids see native resolution, as in the offline tool). Coordinates, boxes, polygons and
segmentation maps pass through untouched.
"""

from __future__ import annotations

from typing import Any

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.enhance.enhancer import Enhancer
from fetalheart.enhance.spec import apply_ops

import numpy as np
from detectron2.data.transforms import Augmentation, NoOpTransform, Transform


class EnhanceTransform(Transform):
    """Pixel-only transform: ``apply_image`` enhances, geometry is the identity."""

    def __init__(self, enhancer: Enhancer):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype not in (np.uint8, np.uint16):  # e.g. float input from a custom mapper
            return img
        return self.enhancer(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        # Geometry is unchanged, so for coordinates the inverse is the identity.
        return NoOpTransform()


class EnhanceAugmentation(Augmentation):
    """``EnhanceAugmentation(Enhancer("ahe+clahe"))`` (a spec string is accepted too)."""

    def __init__(self, enhancer: Enhancer | str):
        super().__init__()
        self.enhancer = Enhancer(enhancer) if isinstance(enhancer, str) else enhancer

    def get_transform(self, image: np.ndarray) -> Transform:
        if self.enhancer.identity:
            return NoOpTransform()
        return EnhanceTransform(self.enhancer)

    def __repr__(self) -> str:
        return f"EnhanceAugmentation({self.enhancer!r})"

    @classmethod
    def from_config(cls, cfg: Any) -> EnhanceAugmentation | None:
        """The augmentation ``cfg.INPUT.ENHANCE*`` asks for, or None for "original"."""
        from fetalheart.enhance.config import enhancer_from_cfg

        enhancer = enhancer_from_cfg(cfg)
        return None if enhancer.identity else cls(enhancer)


class _PhotometricThenEnhanceTransform(EnhanceTransform):
    """Pixel-only: sampled photometric transforms, then the enhancement with a fixed bd kernel."""

    def __init__(self, enhancer: Enhancer, photometric: list[Transform], kernel: np.ndarray | None):
        Transform.__init__(self)
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype not in (np.uint8, np.uint16):
            return img
        for t in self.photometric:
            img = t.apply_image(img)
        e = self.enhancer
        return apply_ops(img, e.ops, mask=e.mask, params=e.params, kernel=self.kernel)


class PhotometricThenEnhance(Augmentation):
    """Photometric augmentation (scanner gain, contrast) BEFORE the enhancement under study.

    bd's kernel is taken from the original frame, not from the jittered copy: the blur belongs to
    the acquisition, and the kernel cache is keyed by the original's content, so a jittered copy
    would miss it on every sample (~0.1 s each).
    """

    def __init__(self, photometric: list[Augmentation], enhancer: Enhancer):
        super().__init__()
        self.photometric, self.enhancer = list(photometric), enhancer

    def get_transform(self, image: np.ndarray) -> Transform:
        kernel = self.enhancer.kernel(image) if image.dtype in (np.uint8, np.uint16) else None
        sampled, img = [], image
        for aug in self.photometric:  # each sees the previous one's output, as in an AugmentationList
            t = aug.get_transform(img)
            img = t.apply_image(img)
            sampled.append(t)
        return _PhotometricThenEnhanceTransform(self.enhancer, sampled, kernel)
