"""NIfTI image + label volumes (CAMUS-style 2-D sequences, or 3-D volumes sliced along an axis) -> LabelMe
frames, so a CAMUS-style study runs through labelme2coco, the grouped splits and the same evaluator.

Pairs: ``<name>.nii[.gz]`` with its labels ``<name><label suffix>.nii[.gz]`` (CAMUS: ``patient0001_4CH_ED``
and ``patient0001_4CH_ED_gt``), read with nibabel. A volume of shape (x, y) is one frame, (x, y, n)
is n frames along ``axis`` (the last by default: time for a 2-D sequence, z for a volume); singleton
axes are dropped. nibabel's arrays are (x, y, ...): a frame is written with y down the rows and x across
(as ITK-SNAP and SimpleITK show it); ``transpose=False`` keeps the array's own axes. Grey levels: uint8
volumes as they are, others scaled linearly from the volume's [min, max] to [0, 255].

Labels: a label map names the structure of each value (``1=LV,2=Myocardium,3=LA``, or ``100=LV,...``);
values it does not name are not structures (counted in the summary). Each 8-connected component of a
value is one LabelMe ``mask`` shape (exact pixels). Frames go to ``OUT/labelme/<patient>/<volume>_<index>.png``
beside their JSON (the summary to ``OUT/nifti_import.json``); the patient is the first match of ``patient_regex`` in the file's path (default
``patient\\d+``), else the volume's folder. ``group_by`` "patient" (every volume of a patient in one
group: ED, ES and the sequences of one patient are never split) or "volume".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fetalheart.annotations.components import components
from fetalheart.annotations.labelme import labelme_document, mask_shape
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import write_json_atomic
from fetalheart.video.naming import frame_stem

import cv2
import numpy as np

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABELME_DIR = "labelme"
#: labelme2coco --group-regex that groups the written frames (in OUT/labelme) by their patient folder.
PATIENT_GROUP_REGEX = r"^([^/]+)/"


@dataclass(frozen=True)
class NiftiOptions:
    """How volumes are paired, sliced and named."""

    labels: str = "1=LV,2=Myocardium,3=LA"  # value=structure, comma-separated (CAMUS's by default)
    label_suffix: str = "_gt"
    axis: int = -1
    every: int = 1  # every n-th frame/slice
    transpose: bool = True
    patient_regex: str = r"(patient\d+)"
    group_by: str = "patient"  # or "volume"
    skip_empty: bool = False  # leave out frames without any labelled structure


def parse_label_map(text: str) -> dict[int, str]:
    """``"1=LV,2=Myocardium"`` -> {1: "LV", 2: "Myocardium"} (values are integers, names unique)."""
    out: dict[int, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value, _, name = part.partition("=")
        if not name.strip() or not value.strip().lstrip("-").isdigit():
            raise FetalHeartError(f"label map entry {part!r}: expected VALUE=STRUCTURE, e.g. 1=LV")
        if int(value) == 0:
            raise FetalHeartError("label map: 0 is the background, not a structure")
        out[int(value)] = name.strip()
    if not out or len(set(out.values())) != len(out):
        raise FetalHeartError(f"label map {text!r}: give each value its own structure name")
    return out


def volume_stem(path: Path) -> str:
    name = path.name
    return next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.endswith(s)), path.stem)


def find_pairs(inputs: Sequence[str | os.PathLike], label_suffix: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, label) volume pairs under the inputs (files or folders, recursively), and unpaired images."""
    files: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FetalHeartError(f"input not found: {p}")
        files += [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and q.name.endswith(NIFTI_SUFFIXES))
    by_stem = {(f.parent, volume_stem(f)): f for f in files}
    pairs, unpaired = [], []
    for (folder, stem), f in sorted(by_stem.items()):
        if stem.endswith(label_suffix):
            continue
        label = by_stem.get((folder, stem + label_suffix))
        (pairs.append((f, label)) if label is not None else unpaired.append(f))
    if not pairs:
        raise FetalHeartError(f"no image/label pairs (<name>.nii[.gz] + <name>{label_suffix}.nii[.gz]) in the inputs")
    return pairs, unpaired


def read_volume(path: Path) -> np.ndarray:
    """A volume's voxel array (nibabel; scaling applied to images, labels kept integer) with singleton axes dropped."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises its own and OS errors
        raise FetalHeartError(f"cannot read NIfTI {path}: {str(exc).splitlines()[0][:200]}") from None
    data = np.squeeze(data)
    if data.ndim not in (2, 3):
        raise FetalHeartError(f"{path}: {data.ndim}-D after dropping singleton axes; expected 2-D or 3-D")
    return data


def to_uint8(volume: np.ndarray) -> np.ndarray:
    """uint8 as is; anything else scaled linearly from the volume's [min, max] to [0, 255]."""
    if volume.dtype == np.uint8:
        return volume
    v = volume.astype(np.float64)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return np.zeros(v.shape, np.uint8) if hi <= lo else np.round((v - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def frames(image: np.ndarray, labels: np.ndarray, options: NiftiOptions) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(index, grey frame, label frame) along the slicing axis (every ``options.every``-th)."""
    if image.shape != labels.shape:
        raise ValueError(f"image shape {image.shape} != label shape {labels.shape}")
    grey = to_uint8(image)
    if grey.ndim == 2:
        grey, labels = grey[..., None], labels[..., None]
        axis = 2
    else:
        axis = options.axis % 3
    grey, labels = np.moveaxis(grey, axis, -1), np.moveaxis(labels, axis, -1)
    for k in range(0, grey.shape[-1], max(1, options.every)):
        g, lab = grey[..., k], np.rint(labels[..., k]).astype(np.int64)
        yield (k, g.T, lab.T) if options.transpose else (k, g, lab)


def patient_of(path: Path, pattern: str) -> str:
    m = re.search(pattern, path.as_posix(), re.IGNORECASE)
    return (m.group(1) if m and m.groups() else m.group(0) if m else path.parent.name) or "volume"


def frame_shapes(labels: np.ndarray, names: dict[int, str]) -> list[dict]:
    """One LabelMe mask shape per 8-connected component of each named value."""
    return [mask_shape(names[v], m) for v in sorted(names) for m in components(labels == v)]


def _write_frame(folder: Path, stem: str, grey: np.ndarray, shapes: list[dict]) -> None:
    png = folder / f"{stem}.png"
    tmp = png.with_name(f".{stem}.tmp.png")
    if not cv2.imwrite(str(tmp), grey):
        raise FetalHeartError(f"cannot write {png}")
    os.replace(tmp, png)
    write_json_atomic(folder / f"{stem}.json", labelme_document(shapes, png.name, *grey.shape))


def import_volume_pair(image_path: Path, label_path: Path, out_dir: Path, names: dict[int, str],
                       options: NiftiOptions) -> dict:
    """Write one volume pair's frames and LabelMe files under ``out_dir/<patient>/``; return its counts."""
    image, labels = read_volume(image_path), read_volume(label_path)
    patient = patient_of(image_path, options.patient_regex)
    stem = volume_stem(image_path)
    folder = out_dir / patient
    folder.mkdir(parents=True, exist_ok=True)
    n = {"frames": 0, "skipped_empty": 0, "shapes": 0, "unnamed_pixels": {}}
    try:
        for k, grey, lab in frames(image, labels, options):
            shapes = frame_shapes(lab, names)
            if not shapes and options.skip_empty:
                n["skipped_empty"] += 1
                continue
            for v, c in zip(*np.unique(lab[(lab != 0) & ~np.isin(lab, list(names))], return_counts=True), strict=True):
                n["unnamed_pixels"][int(v)] = n["unnamed_pixels"].get(int(v), 0) + int(c)
            _write_frame(folder, frame_stem(stem, k), grey, shapes)
            n["frames"] += 1
            n["shapes"] += len(shapes)
    except ValueError as exc:
        raise FetalHeartError(f"{image_path} / {label_path.name}: {exc}") from None
    return {"image": str(image_path), "labels": str(label_path), "patient": patient, **n}


def import_nifti(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, options: NiftiOptions | None = None,
                 overwrite: bool = False) -> dict:
    """Every image/label pair under ``inputs`` -> PNG frames + LabelMe JSON in ``out_dir/labelme``; a summary
    (also written as ``out_dir/nifti_import.json``) with the labelme2coco grouping to use."""
    o = options or NiftiOptions()
    if o.group_by not in ("patient", "volume"):
        raise FetalHeartError(f"group by must be patient or volume, got {o.group_by!r}")
    names = parse_label_map(o.labels)
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FetalHeartError(f"{out} is not empty; pass --overwrite to write into it")
    pairs, unpaired = find_pairs(inputs, o.label_suffix)
    volumes = [import_volume_pair(img, lab, out / LABELME_DIR, names, o) for img, lab in pairs]
    unnamed: dict[int, int] = {}
    for v in volumes:
        for value, c in v["unnamed_pixels"].items():
            unnamed[value] = unnamed.get(value, 0) + c
    summary = {"volumes": len(volumes), "patients": len({v["patient"] for v in volumes}),
               "frames": sum(v["frames"] for v in volumes), "shapes": sum(v["shapes"] for v in volumes),
               "skipped_empty": sum(v["skipped_empty"] for v in volumes), "unpaired_images": [str(p) for p in unpaired],
               "label_map": {str(k): v for k, v in names.items()}, "unnamed_label_pixels": unnamed,
               "group_by": o.group_by, "group_regex": PATIENT_GROUP_REGEX if o.group_by == "patient" else None,
               "classes": list(names.values()), "labelme": str(out / LABELME_DIR), "per_volume": volumes}
    write_json_atomic(out / "nifti_import.json", summary)
    return summary
