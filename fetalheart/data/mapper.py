"""DatasetMappers that apply the model's own enhancement (``cfg.INPUT.ENHANCE``) first.

Enhancement runs on the full-resolution frame before any resize, exactly as the offline
``enhance_dataset`` tool would, so online and offline preprocessing give the same input.
"""

from __future__ import annotations

import os

from fetalheart.data.augment import build_augmentations

from detectron2.data import DatasetMapper
from detectron2.data import transforms as T


def enhancement_augmentation(cfg) -> list[T.Augmentation]:
    """The enhancement step for this config, as a (possibly empty) augmentation list."""
    from fetalheart.enhance import enhancer_from_cfg
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    enhancer = enhancer_from_cfg(cfg, os.path.join(cfg.OUTPUT_DIR, "enhance_cache") if cfg.OUTPUT_DIR else None)
    return [] if enhancer.identity else [EnhanceAugmentation(enhancer)]


def build_train_mapper(cfg) -> DatasetMapper:
    """Training: enhancement, resize with scale jitter, enabled augmentations; masks as polygons."""
    return DatasetMapper(cfg, is_train=True,
                         augmentations=enhancement_augmentation(cfg) + build_augmentations(cfg, True))


def build_test_mapper(cfg) -> DatasetMapper:
    """Evaluation/prediction: enhancement and the fixed test resize, no annotations needed."""
    return DatasetMapper(cfg, is_train=False,
                         augmentations=enhancement_augmentation(cfg) + build_augmentations(cfg, False))


def build_val_loss_mapper(cfg) -> DatasetMapper:
    """Validation loss: annotations kept (losses need them) but no random augmentation."""
    return DatasetMapper(cfg, is_train=True,
                         augmentations=enhancement_augmentation(cfg) + build_augmentations(cfg, False))
