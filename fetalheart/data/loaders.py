"""detectron2 data loaders with fetalheart's mappers: the model's enhancement, then its resize.

Used by the trainer (training, validation loss) and by evaluation (test loader) alike, so every
step sees a frame preprocessed exactly the same way.
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.data.mapper import build_test_mapper, build_train_mapper, build_val_loss_mapper

from detectron2.data import build_detection_test_loader, build_detection_train_loader


def build_train_loader(cfg):
    """The training loader of ``cfg.DATASETS.TRAIN`` (training augmentation, enhancement first)."""
    return build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))


def build_test_loader(cfg, dataset_name: str):
    """Inference over one registered dataset with the test-time preprocessing (enhancement, resize)."""
    return build_detection_test_loader(cfg, dataset_name, mapper=build_test_mapper(cfg))


def build_val_loss_loader(cfg, dataset_name: str):
    """Validation images with their annotations, for the validation loss."""
    return build_detection_test_loader(cfg, dataset_name, mapper=build_val_loss_mapper(cfg))
