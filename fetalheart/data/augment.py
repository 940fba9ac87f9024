"""Anatomy-respecting augmentations, as detectron2 Augmentations switched by ``cfg.INPUT.AUG``.

No flips by default (a mirrored four-chamber view swaps left and right heart). Photometric
augmentations change pixels only and run before the enhancement under study (see mapper.py);
geometric ones go through detectron2's transforms, so boxes, polygons and masks follow.
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import Transform


class ResizeLongestEdge(T.Augmentation):
    """Resize so the long side is ``length`` (x a random scale): the study's 512x512 "square" mode.

    detectron2's ResizeShortestEdge with MIN=MAX=512 gives the same size but cannot jitter scale.
    The square padding itself happens in the model (fetalheart.modeling.FetalHeartRCNN).
    """

    def __init__(self, length: int, scale: tuple[float, float] = (1.0, 1.0)):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        s = self.length * float(np.random.uniform(*self.scale)) / max(h, w)
        return T.ResizeTransform(h, w, max(1, round(h * s)), max(1, round(w * s)))


class _PixelTransform(Transform):
    """A transform that changes pixel values only; geometry passes through unchanged."""

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation

    def inverse(self):
        return T.NoOpTransform()


class GammaTransform(_PixelTransform):
    def __init__(self, gamma: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        lut = np.clip(((np.arange(256) / 255.0) ** self.gamma) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return lut[img] if img.dtype == np.uint8 else np.clip(img / 255.0, 0, 1) ** self.gamma * 255.0


class SpeckleTransform(_PixelTransform):
    """Multiplicative Gaussian noise, the first-order model of ultrasound speckle."""

    def __init__(self, std: float, seed: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        rng = np.random.default_rng(self.seed)
        noise = rng.normal(1.0, self.std, size=img.shape[:2])[..., None] if img.ndim == 3 else rng.normal(
            1.0, self.std, size=img.shape)
        out = img.astype(np.float32) * noise.astype(np.float32)
        return np.clip(out, 0, 255).astype(img.dtype)


class RandomGamma(T.Augmentation):
    def __init__(self, amount: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        return GammaTransform(float(np.random.uniform(1 - self.amount, 1 + self.amount)))


class RandomSpeckle(T.Augmentation):
    def __init__(self, std: float):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        return SpeckleTransform(self.std, int(np.random.randint(0, 2**31 - 1)))


def photometric_augmentations(cfg) -> list[T.Augmentation]:
    """The enabled intensity augmentations (training only), in the order they are applied."""
    aug = cfg.INPUT.AUG
    augs: list[T.Augmentation] = []
    if aug.BRIGHTNESS > 0:
        augs.append(T.RandomBrightness(1 - aug.BRIGHTNESS, 1 + aug.BRIGHTNESS))
    if aug.CONTRAST > 0:
        augs.append(T.RandomContrast(1 - aug.CONTRAST, 1 + aug.CONTRAST))
    if aug.GAMMA > 0:
        augs.append(RandomGamma(aug.GAMMA))
    if aug.SPECKLE > 0:
        augs.append(RandomSpeckle(aug.SPECKLE))
    return augs


def geometric_augmentations(cfg, is_train: bool) -> list[T.Augmentation]:
    """Resize (+ scale jitter, flip, rotation when training), in the order they are applied."""
    aug = cfg.INPUT.AUG
    if not is_train:
        return [ResizeLongestEdge(cfg.INPUT.MAX_SIZE_TEST)]
    augs: list[T.Augmentation] = [ResizeLongestEdge(cfg.INPUT.MAX_SIZE_TRAIN, tuple(aug.SCALE))]
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(T.RandomFlip(horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                                 vertical=cfg.INPUT.RANDOM_FLIP == "vertical"))
    if aug.ROTATION > 0:
        augs.append(T.RandomRotation([-aug.ROTATION, aug.ROTATION], expand=False))
    return augs
