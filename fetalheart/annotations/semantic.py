"""Semantic prediction files (label maps, probability maps) -> COCO results, for any tool.

One file per frame, named by the frame (its image file's stem, e.g. ``video1_000012.png``) or by a
case id that a case map resolves (the nnU-Net export's ``fetalheart_cases.json``):

* label maps: ``.png`` / ``.tif`` / ``.bmp`` with one integer label per pixel (nnU-Net's output,
  a second reader's painted masks). Label value -> class: ``values`` (default: value k is the k-th
  class of the ground truth's categories in id order, 0 background);
* probability maps: ``.npz`` (array ``probabilities``, else its only array) or ``.npy`` with one
  channel per class, (C, H, W) or nnU-Net's (C, 1, H, W); a background channel first (C + 1 channels,
  nnU-Net's ``--save_probabilities``) is dropped.

Instances come from ``components`` (connected components per class, the documented score rule).
The maps must have the frame's size: nothing is resized here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from fetalheart.annotations.components import (
    SemanticInstances,
    label_map_to_instances,
    probabilities_to_instances,
)
from fetalheart.annotations.rle import area_bbox, encode_masks
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
PROBABILITY_SUFFIXES = (".npz", ".npy")


@dataclass(frozen=True)
class Frame:
    """Where a semantic file's instances go: a ground-truth image."""

    image_id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class SemanticOptions:
    """How maps become instances (``components``)."""

    prob_thresh: float = 0.5
    min_area: int = 0
    score_rule: str = "mean"


def frames_by_stem(coco: Mapping) -> dict[str, Frame]:
    """A COCO ground truth's images keyed by their file stem (``dir/video1_000012.png`` -> ``video1_000012``)."""
    out: dict[str, Frame] = {}
    for im in coco.get("images", []):
        stem = Path(str(im["file_name"])).stem
        if stem in out:
            raise FetalHeartError(f"two ground-truth images share the file stem {stem!r}: name the prediction "
                                  "files by a case map instead")
        out[stem] = Frame(int(im["id"]), str(im["file_name"]), int(im["height"]), int(im["width"]))
    return out


def parse_label_values(text: str | None, names: list[str]) -> dict[int, str]:
    """``"1=LV,2=Myocardium"`` -> {1: "LV", 2: "Myocardium"}; None/"" -> value k+1 is ``names[k]``."""
    if not text:
        return {k + 1: n for k, n in enumerate(names)}
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value, _, name = part.partition("=")
        if not name or not value.strip().lstrip("-").isdigit():
            raise FetalHeartError(f"label map entry {part!r}: expected VALUE=CLASS, e.g. 1=LV")
        out[int(value)] = name.strip()
    return out


def read_semantic_file(path: Path) -> tuple[str, np.ndarray]:
    """("labels", (H, W) ints) or ("probabilities", (C, H, W) floats) of one prediction file."""
    suffix = path.suffix.lower()
    if suffix in LABEL_SUFFIXES:
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise FetalHeartError(f"cannot read label map {path}")
        if labels.ndim == 3:  # a grey map saved with colour channels: they must agree
            if not (labels == labels[..., :1]).all():
                raise FetalHeartError(f"{path}: a label map must have one channel (one label per pixel)")
            labels = labels[..., 0]
        return "labels", labels.astype(np.int64)
    try:
        data = np.load(path, allow_pickle=False)
        if suffix == ".npz":
            keys = list(data.keys())
            data = data["probabilities"] if "probabilities" in keys else data[keys[0]] if len(keys) == 1 else None
            if data is None:
                raise FetalHeartError(f"{path}: no 'probabilities' array (arrays: {', '.join(keys)})")
    except (OSError, ValueError) as exc:
        raise FetalHeartError(f"cannot read probability map {path}: {exc}") from None
    probs = np.asarray(data, dtype=np.float32)
    if probs.ndim == 4 and probs.shape[1] == 1:  # nnU-Net's 2-D cases are (C, 1, H, W)
        probs = probs[:, 0]
    if probs.ndim != 3:
        raise FetalHeartError(f"{path}: probability maps must be (classes, height, width), got {probs.shape}")
    return "probabilities", probs


def file_instances(path: Path, n_classes: int, values: Mapping[int, int], options: SemanticOptions) -> SemanticInstances:
    """Instances (contiguous class ids) of one prediction file."""
    kind, data = read_semantic_file(path)
    if kind == "labels":
        return label_map_to_instances(data, values, options.min_area)
    if len(data) == n_classes + 1:
        data = data[1:]  # background channel first
    if len(data) != n_classes:
        raise FetalHeartError(f"{path}: {len(data)} probability channels for {n_classes} classes")
    return probabilities_to_instances(data, options.prob_thresh, options.min_area, options.score_rule)


def instances_to_results(found: SemanticInstances, image_id: int, category_ids: list[int]) -> list[dict]:
    """COCO results (RLE masks, tight boxes) of one frame's instances; ``category_ids[c]`` is class c's id."""
    out = []
    for rle, c, s in zip(encode_masks(found.masks), found.classes, found.scores, strict=True):
        out.append({"image_id": image_id, "category_id": int(category_ids[int(c)]), "segmentation": rle,
                    "bbox": area_bbox(rle)[1], "score": float(s)})
    return out


def prediction_files(folder: Path) -> list[Path]:
    """The label and probability maps in a folder (sorted; a map and a probability file of one frame:
    the probabilities are used, as they carry the scores)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in LABEL_SUFFIXES + PROBABILITY_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for p in files:
        if p.stem not in by_stem or p.suffix.lower() in PROBABILITY_SUFFIXES:
            by_stem[p.stem] = p
    return list(by_stem.values())


def semantic_results(folder: str | os.PathLike, frames: Mapping[str, Frame], category_ids: list[int],
                     values: Mapping[int, int], options: SemanticOptions | None = None) -> tuple[list[dict], dict]:
    """COCO results of every prediction file in ``folder`` whose stem names a frame, and a summary.

    ``category_ids``: the dataset category id of each contiguous class; ``values``: label value ->
    contiguous class. A file naming no frame is an error (a typo would silently drop frames otherwise);
    frames without a file simply have no prediction (counted in the summary).
    """
    options = options or SemanticOptions()
    folder = Path(folder)
    if not folder.is_dir():
        raise FetalHeartError(f"not a folder of prediction maps: {folder}")
    files = prediction_files(folder)
    if not files:
        raise FetalHeartError(f"{folder}: no label maps ({', '.join(LABEL_SUFFIXES)}) or probability maps "
                              f"({', '.join(PROBABILITY_SUFFIXES)})")
    unknown = [p.name for p in files if p.stem not in frames]
    if unknown:
        raise FetalHeartError(f"{folder}: {len(unknown)} prediction file(s) name no ground-truth frame, e.g. "
                              f"{unknown[0]} (files are named by the frame's image stem or a case id)")
    results = []
    for p in files:
        f = frames[p.stem]
        found = file_instances(p, len(category_ids), values, options)
        if found.masks.shape[1:] != (f.height, f.width):
            raise FetalHeartError(f"{p}: map size {found.masks.shape[1:]} != frame size {(f.height, f.width)} of "
                                  f"{f.file_name}")
        results += instances_to_results(found, f.image_id, category_ids)
    kinds = sorted({"probabilities" if p.suffix.lower() in PROBABILITY_SUFFIXES else "label maps" for p in files})
    return results, {"files": len(files), "kinds": kinds, "frames_without_file": len(frames) - len(files),
                     "instances": len(results), "options": asdict(options)}
