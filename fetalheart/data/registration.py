"""Register the datasets a config names, from ``cfg.DATASETS.ROOT``, and fit the model to them.

A label set is data: the class list comes from the training dataset's categories and is written
into the config (``MODEL.CLASS_NAMES``, ``MODEL.ROI_HEADS.NUM_CLASSES``), so config.yaml, the model,
evaluation reports and prediction all carry the user's own labels.
"""

from __future__ import annotations

import json
import logging

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.errors import FetalHeartError

from detectron2.data import DatasetCatalog, MetadataCatalog

logger = logging.getLogger(__name__)


def _set(cfg, updates: dict) -> None:
    """Set dotted keys on a possibly frozen config."""
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.merge_from_list([x for kv in updates.items() for x in kv])
    if frozen:
        cfg.freeze()


def _register_missing(cfg, names: list[str]) -> None:
    from fetalheart.data.datasets import register_split, resolve_dataset_dir, split_of

    missing = [n for n in names if n not in DatasetCatalog.list()]
    if missing and not cfg.DATASETS.ROOT:
        raise FetalHeartError(f"dataset {missing[0]!r} is not registered: pass DATASETS.ROOT <labelme2coco output folder>")
    if not missing:
        return
    root = resolve_dataset_dir(cfg.DATASETS.ROOT)
    if not root.is_dir():
        raise FetalHeartError(f"DATASETS.ROOT {root} does not exist (a labelme2coco output folder is expected)")
    for name in missing:
        prefix, split = split_of(name)
        register_split(prefix, root, split)
    report = root / "conversion_report.json"
    if report.is_file() and json.loads(report.read_text()).get("mask_format") == "bitmask" \
            and cfg.INPUT.MASK_FORMAT != "bitmask":
        _set(cfg, {"INPUT.MASK_FORMAT": "bitmask"})  # RLE masks cannot be read as polygons
        logger.info("INPUT.MASK_FORMAT set to bitmask: %s holds RLE masks", root)


def _fit_classes(cfg, names: list[str], training: bool) -> None:
    """Every named dataset must share one class list; the model takes it (or must already have it)."""
    lists = {n: tuple(MetadataCatalog.get(n).get("thing_classes", ())) for n in names}
    first = names[0]
    for n, classes in lists.items():
        if classes != lists[first]:
            raise FetalHeartError(f"datasets {first!r} and {n!r} have different classes "
                                  f"({', '.join(lists[first])} vs {', '.join(classes)}): convert them with one label set")
    classes = lists[first]
    if not classes:
        return
    own = tuple(cfg.MODEL.CLASS_NAMES)
    if own and own != classes:
        raise FetalHeartError(f"the model's classes ({', '.join(own)}) differ from dataset {first!r}'s "
                              f"({', '.join(classes)})")
    if cfg.MODEL.ROI_HEADS.NUM_CLASSES != len(classes):
        if not training:  # a trained model's heads have NUM_CLASSES outputs: never resize them silently
            raise FetalHeartError(f"the model has {cfg.MODEL.ROI_HEADS.NUM_CLASSES} classes but dataset {first!r} "
                                  f"has {len(classes)} ({', '.join(classes)})")
        logger.info("MODEL.ROI_HEADS.NUM_CLASSES set to %d from dataset %s", len(classes), first)
    _set(cfg, {"MODEL.CLASS_NAMES": classes, "MODEL.ROI_HEADS.NUM_CLASSES": len(classes)})


def register_datasets_from_cfg(cfg, training: bool = True) -> list[str]:
    """Register every unregistered name in DATASETS.TRAIN/TEST and fit the class list; return all names.

    DATASETS.ROOT is a labelme2coco output folder (absolute, or relative to $FETALHEART_DATASETS).
    ``training`` False (evaluation, prediction): the model's class count is never changed.
    Raises a one-line error for a missing folder or split, datasets whose classes disagree, or a
    model trained on other classes. When the converter wrote RLE masks (LabelMe ``mask`` shapes)
    it switches INPUT.MASK_FORMAT to bitmask.
    """
    names = list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    if not names:
        return names
    _register_missing(cfg, names)
    _fit_classes(cfg, names, training)
    return names
