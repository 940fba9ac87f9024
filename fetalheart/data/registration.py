"""Register the datasets a config names, from ``cfg.DATASETS.ROOT``, and check they fit the model."""

from __future__ import annotations

import json
import logging

from fetalheart.utils.errors import FetalHeartError

from detectron2.data import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)


def register_datasets_from_cfg(cfg) -> list[str]:
    """Register every unregistered ``<prefix>_<split>`` name in DATASETS.TRAIN/TEST; return all names.

    DATASETS.ROOT is a labelme2coco output folder (absolute, or relative to $FETALHEART_DATASETS).
    Raises a one-line error for a missing folder or a class count that does not match
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (which would otherwise fail deep inside the ROI heads). When the
    converter wrote RLE masks (LabelMe ``mask`` shapes) it switches INPUT.MASK_FORMAT to bitmask.
    """
    from fetalheart.data.datasets import register_split_dir, resolve_dataset_dir

    names = list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    missing = [n for n in names if n not in DatasetCatalog.list()]
    if missing and not cfg.DATASETS.ROOT:
        raise FetalHeartError(f"dataset {missing[0]!r} is not registered: pass DATASETS.ROOT <labelme2coco output folder>")
    for prefix in dict.fromkeys(n.rsplit("_", 1)[0] for n in missing):
        root = resolve_dataset_dir(cfg.DATASETS.ROOT)
        if not root.is_dir():
            raise FetalHeartError(f"DATASETS.ROOT {root} does not exist (a labelme2coco output folder is expected)")
        register_split_dir(prefix, root)
        report = root / "conversion_report.json"
        if report.is_file() and json.loads(report.read_text()).get("mask_format") == "bitmask" \
                and cfg.INPUT.MASK_FORMAT != "bitmask":
            frozen = cfg.is_frozen()
            cfg.defrost()
            cfg.INPUT.MASK_FORMAT = "bitmask"  # RLE masks cannot be read as polygons
            if frozen:
                cfg.freeze()
            logger.info("INPUT.MASK_FORMAT set to bitmask: %s holds RLE masks", root)
    for name in names:
        if name not in DatasetCatalog.list():
            raise FetalHeartError(f"dataset {name!r} is not registered and not found under DATASETS.ROOT")
        classes = MetadataCatalog.get(name).get("thing_classes", None)
        if classes is not None and len(classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise FetalHeartError(
                f"dataset {name!r} has {len(classes)} classes but MODEL.ROI_HEADS.NUM_CLASSES is "
                f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}")
    return names
