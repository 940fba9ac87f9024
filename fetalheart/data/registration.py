"""Register the datasets a config names, from ``cfg.DATASETS.ROOT``, and check they fit the model."""

from __future__ import annotations

import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from fetalheart.utils.errors import FetalHeartError


def register_datasets_from_cfg(cfg) -> list[str]:
    """Register every unregistered ``<prefix>_<split>`` name in DATASETS.TRAIN/TEST; return all names.

    Raises a one-line error for a missing annotation file or a class count that does not match
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (which would otherwise fail deep inside the ROI heads).
    """
    from fetalheart.data.datasets import register_coco_dataset

    names = list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    root = cfg.DATASETS.ROOT or os.environ.get("FETALHEART_DATASETS", "")
    for name in names:
        if name in DatasetCatalog.list():
            continue
        split = name.rsplit("_", 1)[-1]
        json_file = Path(root) / "annotations" / f"{split}.json"
        if not root or not json_file.is_file():
            raise FetalHeartError(
                f"dataset {name!r} is not registered and {json_file if root else 'DATASETS.ROOT'} "
                f"{'does not exist' if root else 'is not set'}: pass DATASETS.ROOT <labelme2coco output folder>")
        register_coco_dataset(name, str(json_file), str(Path(root) / "images"))
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise FetalHeartError(
                f"dataset {name!r} has {len(classes)} classes but MODEL.ROI_HEADS.NUM_CLASSES is "
                f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}")
    return names
