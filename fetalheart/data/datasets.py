"""Register converter output with detectron2 (``DatasetCatalog`` / ``MetadataCatalog``).

Layout (what ``fetalheart-labelme2coco -o DIR`` writes)::

    $FETALHEART_DATASETS/            default ./datasets, like detectron2's DETECTRON2_DATASETS
      <name>/
        annotations/train.json       COCO instances (or fold<k>_train.json / fold<k>_val.json with --folds)
        annotations/val.json
        images/...                   file_name in the JSON is relative to this folder
        conversion_report.json

``register_split_dir("fh", "<name>")`` registers ``fh_train`` and ``fh_val`` (or, for a K-fold
folder, ``fh_fold0_train`` ... ``fh_fold<K-1>_val``). The class list is the JSON's categories: a label
set is data, and the model takes its classes from the dataset it is trained on.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import COLORS, STRUCTURES
from fetalheart.utils.errors import FetalHeartError

#: Environment variable naming the datasets root (relative dataset folders are looked up there).
DATASETS_ENV = "FETALHEART_DATASETS"
SPLITS = ("train", "val")
#: "<prefix>_<split>" where split is train, val, fold<k>_train or fold<k>_val.
_NAME_RE = re.compile(r"^(?P<prefix>.+?)_(?P<split>(?:fold\d+_)?(?:train|val))$")


def datasets_root() -> Path:
    """``$FETALHEART_DATASETS``, else ``./datasets``."""
    return Path(os.environ.get(DATASETS_ENV) or "datasets")


def resolve_dataset_dir(root: str | os.PathLike) -> Path:
    """A dataset folder: as given if it exists, else relative to :func:`datasets_root`."""
    p = Path(root)
    if p.is_dir() or p.is_absolute():
        return p
    return datasets_root() / p


def split_of(name: str) -> tuple[str, str]:
    """``"fh_fold2_val"`` -> ("fh", "fold2_val"); a name without a split suffix is an error."""
    m = _NAME_RE.match(name)
    if not m:
        raise FetalHeartError(f"dataset name {name!r} does not end in _train, _val, _fold<k>_train or _fold<k>_val")
    return m.group("prefix"), m.group("split")


def coco_class_names(json_file: str | os.PathLike) -> list[str]:
    """Category names of a COCO file in id order (what detectron2's load_coco_json will use)."""
    try:
        cats = json.loads(Path(json_file).read_text(encoding="utf-8")).get("categories") or []
        return [str(c["name"]) for c in sorted(cats, key=lambda c: int(c["id"]))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FetalHeartError(f"cannot read the categories of {json_file}: {exc}") from None


def register_coco_dataset(
    name: str, json_file: str | os.PathLike, image_root: str | os.PathLike, thing_classes: list[str] | None = None
) -> None:
    """Register one COCO split under ``name`` with its class names and the structures' colours.

    Idempotent: registering the same name again with the same files does nothing; with other
    files it is an error (detectron2 would silently keep the first). ``thing_classes`` defaults
    to the JSON's categories.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    json_file = str(Path(json_file).resolve())
    image_root = str(Path(image_root).resolve())
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file", None) == json_file and meta.get("image_root", None) == image_root:
            return
        raise FetalHeartError(
            f"dataset {name!r} is already registered with {meta.get('json_file', '?')}; "
            f"choose another name than for {json_file}"
        )
    classes = list(thing_classes) if thing_classes is not None else coco_class_names(json_file)
    colors = {s.name: list(s.color) for s in STRUCTURES}
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=classes,
        thing_colors=[colors.get(c, list(COLORS[i % len(COLORS)])) for i, c in enumerate(classes)],
    )


def available_splits(root: str | os.PathLike) -> list[str]:
    """The splits a converter output folder holds: ["train", "val"] or ["fold0_train", ...]."""
    found = sorted(p.stem for p in (resolve_dataset_dir(root) / "annotations").glob("*.json"))
    return [s for s in found if _NAME_RE.match(f"x_{s}")]


def register_split(prefix: str, root: str | os.PathLike, split: str) -> str:
    """Register ``<prefix>_<split>`` from ``ROOT/annotations/<split>.json``; return the name."""
    d = resolve_dataset_dir(root)
    json_file = d / "annotations" / f"{split}.json"
    if not json_file.is_file():
        held = ", ".join(available_splits(d)) or "none"
        raise FetalHeartError(f"{json_file} not found (splits in {d}: {held}): "
                              "is it a fetalheart-labelme2coco output folder?")
    name = f"{prefix}_{split}"
    register_coco_dataset(name, json_file, d / "images")
    return name


def register_split_dir(prefix: str, root: str | os.PathLike) -> list[str]:
    """Register every split of a converter output folder as ``<prefix>_<split>``."""
    splits = available_splits(root)
    if not splits:
        raise FetalHeartError(f"annotation files not found in {resolve_dataset_dir(root) / 'annotations'} "
                              "(train.json/val.json or fold<k>_*.json): is it a fetalheart-labelme2coco output folder?")
    return [register_split(prefix, root, s) for s in splits]


def register_all(root: str | os.PathLike | None = None) -> list[str]:
    """Register every converter output folder directly under ``root`` (default the datasets root)
    as ``<folder name>_<split>``."""
    base = Path(root) if root is not None else datasets_root()
    names: list[str] = []
    if not base.is_dir():
        return names
    for d in sorted(base.iterdir()):
        if d.is_dir() and available_splits(d):
            names += register_split_dir(d.name, d)
    return names


def json_image_paths(root: str | os.PathLike, dataset_names) -> list[str]:
    """Image files of ``<prefix>_<split>`` datasets of a converter folder, read from the JSONs
    (no registration needed: the training grid uses it before any run starts)."""
    d = resolve_dataset_dir(root)
    paths: dict[str, None] = {}
    for name in dataset_names:
        json_file = d / "annotations" / f"{split_of(name)[1]}.json"
        try:
            images = json.loads(json_file.read_text(encoding="utf-8"))["images"]
        except (OSError, ValueError, KeyError) as exc:
            raise FetalHeartError(f"cannot read the images of {json_file}: {exc}") from None
        paths.update((str(d / "images" / im["file_name"]), None) for im in images)
    return list(paths)
