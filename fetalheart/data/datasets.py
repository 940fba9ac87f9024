"""Register converter output with detectron2 (``DatasetCatalog`` / ``MetadataCatalog``).

Layout (what ``fetalheart-labelme2coco -o DIR`` writes)::

    $FETALHEART_DATASETS/            default ./datasets, like detectron2's DETECTRON2_DATASETS
      <name>/
        annotations/train.json       COCO instances
        annotations/val.json
        images/...                   file_name in the JSON is relative to this folder
        conversion_report.json

``register_split_dir("fh", "<name>")`` registers ``fh_train`` and ``fh_val``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fetalheart.classes import CLASS_NAMES, COLORS, STRUCTURES
from fetalheart.utils.errors import FetalHeartError

#: Environment variable naming the datasets root (relative dataset folders are looked up there).
DATASETS_ENV = "FETALHEART_DATASETS"
SPLITS = ("train", "val")


def datasets_root() -> Path:
    """``$FETALHEART_DATASETS``, else ``./datasets``."""
    return Path(os.environ.get(DATASETS_ENV) or "datasets")


def resolve_dataset_dir(root: str | os.PathLike) -> Path:
    """A dataset folder: as given if it exists, else relative to :func:`datasets_root`."""
    p = Path(root)
    if p.is_dir() or p.is_absolute():
        return p
    return datasets_root() / p


def register_coco_dataset(
    name: str, json_file: str | os.PathLike, image_root: str | os.PathLike, thing_classes: list[str] | None = None
) -> None:
    """Register one COCO split under ``name`` with the fetal-heart class names and colours.

    Idempotent: registering the same name again with the same files does nothing; with other
    files it is an error (detectron2 would silently keep the first). ``thing_classes`` defaults
    to the 10 structures; it must match the JSON's categories (detectron2 checks on load).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    json_file = str(Path(json_file).resolve())
    image_root = str(Path(image_root).resolve())
    classes = list(thing_classes) if thing_classes is not None else list(CLASS_NAMES)
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file", None) == json_file and meta.get("image_root", None) == image_root:
            return
        raise FetalHeartError(
            f"dataset {name!r} is already registered with {meta.get('json_file', '?')}; "
            f"choose another name than for {json_file}"
        )
    colors = {s.name: list(s.color) for s in STRUCTURES}
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=classes,
        thing_colors=[colors.get(c, list(COLORS[i % len(COLORS)])) for i, c in enumerate(classes)],
    )


def register_split_dir(prefix: str, root: str | os.PathLike) -> list[str]:
    """Register ``<prefix>_train`` and ``<prefix>_val`` from a converter output folder.

    The class list comes from the folder's ``conversion_report.json`` (so ``--labels`` datasets
    register correctly); the 10 structures when there is none.
    """
    d = resolve_dataset_dir(root)
    classes = None
    report = d / "conversion_report.json"
    if report.is_file():
        try:
            classes = json.loads(report.read_text(encoding="utf-8")).get("categories")
        except (OSError, ValueError):
            classes = None
    names = []
    for split in SPLITS:
        json_file = d / "annotations" / f"{split}.json"
        if not json_file.is_file():
            raise FetalHeartError(f"{json_file} not found: is {d} a fetalheart-labelme2coco output folder?")
        name = f"{prefix}_{split}"
        register_coco_dataset(name, json_file, d / "images", thing_classes=classes)
        names.append(name)
    return names


def register_all(root: str | os.PathLike | None = None) -> list[str]:
    """Register every converter output folder directly under ``root`` (default the datasets root)
    as ``<folder name>_train`` / ``<folder name>_val``."""
    base = Path(root) if root is not None else datasets_root()
    names: list[str] = []
    if not base.is_dir():
        return names
    for d in sorted(base.iterdir()):
        if (d / "annotations" / "train.json").is_file() and (d / "annotations" / "val.json").is_file():
            names += register_split_dir(d.name, d)
    return names
