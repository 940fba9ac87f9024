"""nnU-Net v2 without training it here: export our split (or K folds) as an nnU-Net raw dataset, and
import its predicted label maps back as COCO results for ``tools/evaluate.py --predictions``.

Export of a labelme2coco folder (``ROOT/annotations/{train,val}.json`` or ``fold<k>_{train,val}.json``,
``ROOT/images``), after nnU-Net v2's dataset format (documentation/dataset_format.md)::

    OUT/nnUNet_raw/Dataset<ID>_<Name>/
        dataset.json            channel_names {"0": "ultrasound"}, labels {"background": 0, <class>: k, ...
                                ["ignore": C+1]}, numTraining, file_ending ".png"
        imagesTr/<case>_0000.png  the frame in grey (channel 0)
        labelsTr/<case>.png       one label per pixel (uint8)
        fetalheart_cases.json     case -> COCO image (id, file, group, size), classes, what the export changed
    OUT/nnUNet_preprocessed/Dataset<ID>_<Name>/splits_final.json
                                [{"train": [cases], "val": [cases]}, ...]: our grouped split or folds,
                                so nnU-Net's cross-validation never puts one video on both sides

A label map holds one label per pixel, while our structures may overlap: classes are painted in order
of decreasing area, so a small structure (a valve on a chamber wall) keeps its pixels; the pixels a
larger one loses are counted in fetalheart_cases.json. Ignore regions (``iscrowd``) become nnU-Net's
``ignore`` label (the highest value), painted last. Enhanced images: export the output of
``tools/enhance_dataset.py`` (same layout) instead of the original folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fetalheart.annotations.rle import segmentation_to_mask
from fetalheart.annotations.semantic import Frame, SemanticOptions, semantic_results
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import ensure_writable_dir, read_json, write_json_atomic

import cv2
import numpy as np

CASES_FILE = "fetalheart_cases.json"
SPLITS_FILE = "splits_final.json"
_FOLD_RE = re.compile(r"^fold(\d+)_(train|val)$")


@dataclass(frozen=True)
class ExportOptions:
    """Which nnU-Net dataset to write."""

    dataset_id: int = 501  # nnU-Net: custom datasets from 500 up, at most 999
    name: str = "FetalHeart"
    channel_name: str = "ultrasound"  # any name but "CT": nnU-Net then z-score normalises the frames


def split_files(root: Path) -> list[list[tuple[str, Path]]]:
    """Per fold, [("train", file), ("val", file)] of a labelme2coco folder (one fold for train/val)."""
    ann = root / "annotations"
    files = {p.stem: p for p in ann.glob("*.json")}
    folds: dict[int, dict[str, Path]] = {}
    for stem, p in files.items():
        m = _FOLD_RE.match(stem)
        if m:
            folds.setdefault(int(m.group(1)), {})[m.group(2)] = p
    if folds:
        bad = [k for k, sides in folds.items() if set(sides) != {"train", "val"}]
        if bad or sorted(folds) != list(range(len(folds))):
            raise FetalHeartError(f"{ann}: fold files are incomplete (need fold0..fold{len(folds) - 1}_{{train,val}}.json)")
        return [[("train", folds[k]["train"]), ("val", folds[k]["val"])] for k in sorted(folds)]
    if "train" in files and "val" in files:
        return [[("train", files["train"]), ("val", files["val"])]]
    raise FetalHeartError(f"{ann}: no train.json/val.json or fold<k>_train/val.json: is {root} a labelme2coco output folder?")


def case_ids(images: Sequence[dict]) -> dict[int, str]:
    """image id -> nnU-Net case identifier: the file stem made safe (letters, digits, ``_``, ``-``), unique."""
    out, used = {}, set()
    for im in sorted(images, key=lambda i: i["id"]):
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(str(im["file_name"])).with_suffix("").as_posix()).strip("-") or "case"
        case, k = base, 1
        while case in used:
            k += 1
            case = f"{base}-{k}"
        used.add(case)
        out[int(im["id"])] = case
    return out


def label_map(image: dict, anns: Sequence[dict], n_classes: int, contiguous: dict[int, int]) -> tuple[np.ndarray, int]:
    """One frame's label map (uint8: class k -> k + 1, ignore regions -> n_classes + 1) and the pixels of
    overlapping structures that the smaller structure took from the larger."""
    h, w = int(image["height"]), int(image["width"])
    unions: dict[int, np.ndarray] = {}
    crowd = np.zeros((h, w), bool)
    for a in anns:
        m = segmentation_to_mask(a["segmentation"], h, w)
        if a.get("iscrowd", 0):
            crowd |= m
        else:
            c = contiguous[int(a["category_id"])]
            unions[c] = unions.get(c, np.zeros((h, w), bool)) | m
    labels = np.zeros((h, w), np.uint8)
    covered = np.zeros((h, w), np.int32)
    for c, m in sorted(unions.items(), key=lambda cm: -int(cm[1].sum())):
        labels[m] = c + 1
        covered += m
    lost = int((covered[covered > 1] - 1).sum())
    labels[crowd] = n_classes + 1
    return labels, lost


def _collect(folds: list[list[tuple[str, Path]]]) -> tuple[dict[int, dict], dict[int, list], list[dict]]:
    """Every image once (by id, checked across the split files), its annotations, the categories."""
    images: dict[int, dict] = {}
    anns: dict[int, list] = {}
    cats = None
    for sides in folds:
        for _, path in sides:
            doc = read_json(path)
            if cats is not None and doc.get("categories") != cats:
                raise FetalHeartError(f"{path}: categories differ from the other split files")
            cats = doc.get("categories") or []
            for im in doc.get("images", []):
                old = images.setdefault(int(im["id"]), im)
                if old.get("file_name") != im.get("file_name"):
                    raise FetalHeartError(f"{path}: image id {im['id']} names {im['file_name']} here, "
                                          f"{old['file_name']} elsewhere")
            for a in doc.get("annotations", []):
                anns.setdefault(int(a["image_id"]), {})[int(a["id"])] = a
    return images, {k: list(v.values()) for k, v in anns.items()}, cats or []


def dataset_json(cats: list[dict], n_cases: int, options: ExportOptions, with_ignore: bool) -> dict:
    """nnU-Net v2's dataset.json: background 0, class k (categories in id order) k + 1[, ignore last]."""
    labels = {"background": 0, **{c["name"]: k + 1 for k, c in enumerate(cats)}}
    if with_ignore:
        labels["ignore"] = len(cats) + 1
    return {"channel_names": {"0": options.channel_name}, "labels": labels, "numTraining": n_cases,
            "file_ending": ".png", "name": options.name,
            "description": "exported by fetalheart (tools/export_nnunet.py) from a labelme2coco dataset"}


def _write_case(root: Path, raw: Path, image: dict, case: str, labels: np.ndarray) -> None:
    src = root / "images" / image["file_name"]
    grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise FetalHeartError(f"cannot read image {src}")
    if grey.shape != labels.shape:
        raise FetalHeartError(f"{src}: image size {grey.shape} != annotated size {labels.shape}")
    for path, array in ((raw / "imagesTr" / f"{case}_0000.png", grey), (raw / "labelsTr" / f"{case}.png", labels)):
        tmp = path.with_name(f".{path.stem}.tmp.png")
        if not cv2.imwrite(str(tmp), array):
            raise FetalHeartError(f"cannot write {path}")
        os.replace(tmp, path)


def export_nnunet(root: str | os.PathLike, out_dir: str | os.PathLike, options: ExportOptions | None = None,
                  overwrite: bool = False) -> dict:
    """Write the nnU-Net raw dataset and splits_final.json of a labelme2coco folder; return a summary."""
    o = options or ExportOptions()
    if not 1 <= o.dataset_id <= 999 or not re.fullmatch(r"[A-Za-z0-9_-]+", o.name):
        raise FetalHeartError("nnU-Net needs a dataset id 1..999 (custom ones from 500) and a name of letters, "
                              "digits, '_' or '-'")
    root, out = Path(root), Path(out_dir)
    folds = split_files(root)
    images, anns, cats = _collect(folds)
    folder = f"Dataset{o.dataset_id:03d}_{o.name}"
    raw, pre = out / "nnUNet_raw" / folder, out / "nnUNet_preprocessed" / folder
    if (raw / "dataset.json").exists() and not overwrite:
        raise FetalHeartError(f"{raw} already holds a dataset; pass --overwrite to replace it")
    for sub in ("imagesTr", "labelsTr"):
        ensure_writable_dir(raw / sub)
    contiguous = {int(c["id"]): k for k, c in enumerate(sorted(cats, key=lambda c: int(c["id"])))}
    cats = sorted(cats, key=lambda c: int(c["id"]))
    cases = case_ids(list(images.values()))
    with_ignore = any(a.get("iscrowd", 0) for v in anns.values() for a in v)
    lost, entries = 0, {}
    for image_id, im in sorted(images.items()):
        labels, n_lost = label_map(im, anns.get(image_id, []), len(cats), contiguous)
        lost += n_lost
        _write_case(root, raw, im, cases[image_id], labels)
        entries[cases[image_id]] = {"image_id": image_id, "file_name": im["file_name"], "group": im.get("group"),
                                    "height": int(im["height"]), "width": int(im["width"])}
    splits = [{side: sorted(cases[int(i["id"])] for i in read_json(path)["images"]) for side, path in sides}
              for sides in folds]
    write_json_atomic(raw / "dataset.json", dataset_json(cats, len(images), o, with_ignore), overwrite=True)
    write_json_atomic(pre / SPLITS_FILE, splits, overwrite=True)
    summary = {"dataset": str(raw), "splits_final": str(pre / SPLITS_FILE), "cases": len(images), "folds": len(splits),
               "classes": [c["name"] for c in cats], "ignore_label": with_ignore, "overlap_pixels_reassigned": lost,
               "source": str(root.resolve())}
    write_json_atomic(raw / CASES_FILE, {**summary, "categories": cats, "cases": entries}, overwrite=True)
    return summary


def import_nnunet(predictions: str | os.PathLike, export_dir: str | os.PathLike,
                  options: SemanticOptions | None = None) -> tuple[list[dict], dict]:
    """nnU-Net's predicted label maps (``<case>.png``; or ``.npz`` probabilities) -> COCO results with the
    exported dataset's image and category ids. ``export_dir`` is the raw dataset folder (or the export's
    top folder when it holds one dataset)."""
    raw = Path(export_dir)
    if not (raw / CASES_FILE).is_file():
        found = sorted((raw / "nnUNet_raw").glob(f"*/{CASES_FILE}")) if raw.is_dir() else []
        if len(found) != 1:
            raise FetalHeartError(f"{raw}: no {CASES_FILE} (give the Dataset<ID>_<Name> folder tools/export_nnunet.py wrote)")
        raw = found[0].parent
    info = json.loads((raw / CASES_FILE).read_text(encoding="utf-8"))
    frames = {case: Frame(e["image_id"], e["file_name"], e["height"], e["width"]) for case, e in info["cases"].items()}
    cats = info["categories"]
    values = {k + 1: k for k in range(len(cats))}  # the export's labels; "ignore" (C + 1) is not a structure
    return semantic_results(predictions, frames, [int(c["id"]) for c in cats], values, options)
