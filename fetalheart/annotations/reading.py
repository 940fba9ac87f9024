"""The per-file pass of the converter: read one LabelMe file, check it, find its image, and turn its
shapes into COCO instances (``process_file``); every problem is collected, nothing is written here.

Run in parallel over all files (``read_files``); ``convert`` then assembles and writes the dataset.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetalheart.annotations.coco import segmentation_from_parts
from fetalheart.annotations.labelme import (
    LabelmeError,
    LabelmeFile,
    clip_polygon,
    decode_image_data,
    decode_mask_shape,
    dedupe_vertices,
    has_image_suffix,
    image_info,
    is_labelme,
    is_self_intersecting,
    load_json,
    parse_labelme,
    paste_mask,
    safe_image_name,
    shape_polygon,
)
from fetalheart.classes import normalize_label
from fetalheart.utils.io import file_sha256

from tqdm import tqdm

_FORMAT_SUFFIX = {
    "PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "DIB": ".bmp", "TIFF": ".tif", "GIF": ".gif",
    "WEBP": ".webp",
}


@dataclass(frozen=True)
class LabelMap:
    """Source label -> category name, crowd (ignore) or unknown."""

    categories: tuple[str, ...]
    ignore: frozenset[str]  # lower-cased labels that become iscrowd regions

    def lookup(self, label: str) -> tuple[str, str | None]:
        """("category", name) | ("crowd", None) | ("unknown", None)."""
        if label.strip().lower() in self.ignore:
            return "crowd", None
        canon = normalize_label(label)
        if canon is not None and canon in self.categories:
            return "category", canon
        for c in self.categories:  # user labels outside the alias table: case-insensitive exact match
            if c.lower() == label.strip().lower():
                return "category", c
        return "unknown", None


@dataclass
class Job:
    json_path: Path
    rel_dir: str  # folder of the JSON relative to its INPUT root ("" for files given directly)
    explicit: bool


@dataclass
class FileResult:
    job: Job
    status: str  # "ok", "skipped" (not LabelMe, in a folder), "invalid"
    reason: str = ""
    name: str = ""  # output image name, relative to OUT/images
    source: str = ""  # resolved source image path, or "" for embedded imageData
    embedded: bool = False
    content: str = ""  # SHA-256 of the encoded image bytes (file or embedded)
    pixels: str = ""  # SHA-256 of the decoded pixels, where duplicates.add_pixel_digests needed it
    width: int = 0
    height: int = 0
    annotations: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored_shapes: dict[str, int] = field(default_factory=dict)
    unknown_skipped: dict[str, int] = field(default_factory=dict)
    clipped_points: int = 0
    degenerate: list[str] = field(default_factory=list)
    self_intersecting: list[str] = field(default_factory=list)
    unknown_keys: dict[str, int] = field(default_factory=dict)
    four_point_rectangles: int = 0


@dataclass(frozen=True)
class ReadOptions:
    """What the per-file pass needs besides the file: the label map, the unknown-label rule, the size limit."""

    label_map: LabelMap
    unknown: str
    max_pixels: int


def _resolve_image(lf: LabelmeFile, job: Job, opts: ReadOptions, res: FileResult) -> None:
    """Find and check the image: the ``imagePath`` file first; when that is missing or not an image
    (LabelMe's tutorial file names the JSON itself), the embedded ``imageData``. When ``imageData`` is
    broken but the file is fine, the file is used (it is read first)."""
    candidate = None
    if lf.image_path:
        p = Path(lf.image_path)
        candidate = p if p.is_absolute() else job.json_path.parent / p
    info, file_problem = None, ""
    if candidate is not None and candidate.is_file():
        try:
            info = image_info(candidate, opts.max_pixels)
            res.source = str(candidate.resolve())
            res.content = file_sha256(candidate)
            base = safe_image_name(lf.image_path)
        except LabelmeError as exc:
            if not lf.image_data:
                raise
            file_problem = f"imagePath {lf.image_path!r}: {exc}"
    if info is None:
        if not lf.image_data:
            if candidate is not None:
                raise LabelmeError(
                    f"image not found: {candidate} (imagePath {lf.image_path!r}) and no embedded imageData"
                )
            raise LabelmeError("no image: empty imagePath and no imageData")
        info, base = _embedded_image(lf, job, opts, file_problem, res)
        res.embedded = True
        if file_problem:
            res.warnings.append(f"{file_problem}: used the embedded imageData")
    res.name = f"{job.rel_dir}/{base}" if job.rel_dir else base
    res.width, res.height = info.width, info.height
    if (lf.height, lf.width) != (None, None) and (lf.height, lf.width) != (info.height, info.width):
        res.warnings.append(
            f"imageHeight x imageWidth = {lf.height}x{lf.width} but the image is {info.height}x{info.width}"
            f"{' after EXIF rotation' if info.exif_transposed else ''}; using the image size"
        )
    if info.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        res.warnings.append(f"{info.mode} image: detectron2 reads it as 8-bit RGB, check the intensity range")


def _embedded_image(lf: LabelmeFile, job: Job, opts: ReadOptions, file_problem: str, res: FileResult):
    """(ImageInfo, output file name) of the embedded ``imageData``.

    The name is ``imagePath``'s file name when that names an image, else the JSON's stem with the
    suffix of the embedded format (``apc2016_obj3.json`` -> ``apc2016_obj3.jpg``).
    """
    try:
        data = decode_image_data(lf.image_data or "")
        info = image_info(data, opts.max_pixels)
        res.content = hashlib.sha256(data).hexdigest()
    except LabelmeError as exc:
        raise LabelmeError(f"{file_problem}; embedded imageData: {exc}" if file_problem else str(exc)) from None
    base = ""
    if lf.image_path and not file_problem and has_image_suffix(lf.image_path):
        try:
            base = safe_image_name(lf.image_path)
        except LabelmeError:
            base = ""
    return info, base or job.json_path.stem + _FORMAT_SUFFIX.get(info.format, ".img")


def _instances(lf: LabelmeFile, opts: ReadOptions, res: FileResult) -> None:
    h, w = res.height, res.width
    groups: dict[tuple, list] = {}
    unknown: Counter[str] = Counter()
    for s in lf.shapes:
        kind, cat = opts.label_map.lookup(s.label)
        if kind == "unknown":
            unknown[s.label] += 1
            continue
        key = (kind, cat, s.group_id) if s.group_id is not None else (kind, cat, "shape", s.index)
        groups.setdefault(key, []).append(s)
    if unknown:
        if opts.unknown == "error":
            labels = ", ".join(f"{k!r}" for k in sorted(unknown))
            raise LabelmeError(f"unknown label{'s' if len(unknown) > 1 else ''} {labels} (use --labels or --unknown skip)")
        res.unknown_skipped = dict(unknown)
    for (kind, cat, *_), shapes in groups.items():
        polys, masks = [], []
        for s in shapes:
            tag = f"shape {s.index} ({s.label!r}, {s.shape_type})"
            if s.shape_type == "mask":
                crop, x0, y0 = decode_mask_shape(s)
                full, clipped = paste_mask(crop, x0, y0, h, w)
                res.clipped_points += int(clipped)
                if not full.any():
                    res.degenerate.append(f"{tag}: empty mask")
                    continue
                masks.append(full)
                continue
            poly = dedupe_vertices(shape_polygon(s))
            outside = int(((poly[:, 0] < 0) | (poly[:, 0] > w) | (poly[:, 1] < 0) | (poly[:, 1] > h)).sum())
            if outside:
                res.clipped_points += outside
                poly = dedupe_vertices(clip_polygon(poly, w, h))
            if len(poly) < 3:
                res.degenerate.append(f"{tag}: fewer than 3 distinct points" + (" inside the image" if outside else ""))
                continue
            if len(poly) > 3 and is_self_intersecting(poly):
                res.self_intersecting.append(f"{tag}: kept as drawn (filled as pycocotools rasterises it)")
            polys.append(poly)
        if not polys and not masks:
            continue
        seg, area, bbox = segmentation_from_parts(polys, masks, h, w, force_rle=(kind == "crowd"))
        if area == 0:
            res.degenerate.append(f"shapes {[s.index for s in shapes]} ({shapes[0].label!r}): zero area")
            continue
        res.annotations.append(
            {"category": cat, "iscrowd": int(kind == "crowd"), "segmentation": seg, "area": area, "bbox": bbox}
        )


def process_file(job: Job, opts: ReadOptions) -> FileResult:
    """Read, validate and rasterise one LabelMe file; never raises for bad input."""
    res = FileResult(job, "ok")
    try:
        obj = load_json(job.json_path)
        if not is_labelme(obj):
            if job.explicit:
                raise LabelmeError("not a LabelMe file (no 'shapes' or 'imagePath')")
            res.status, res.reason = "skipped", _describe_non_labelme(obj)
            return res
        lf = parse_labelme(obj, job.json_path)
        res.ignored_shapes = dict(lf.ignored_shapes)
        res.unknown_keys = dict(lf.unknown_keys)
        res.four_point_rectangles = lf.four_point_rectangles
        _resolve_image(lf, job, opts, res)
        _instances(lf, opts, res)
    except LabelmeError as exc:
        res.status, res.reason, res.annotations = "invalid", str(exc), []
    except OSError as exc:
        res.status, res.reason, res.annotations = "invalid", f"{exc.strerror or exc}", []
    return res


def _describe_non_labelme(obj: Any) -> str:
    if isinstance(obj, dict) and {"images", "annotations"} <= obj.keys():
        return "a COCO file (an earlier output?), not LabelMe"
    return f"not a LabelMe file (a JSON {type(obj).__name__})"


_WORKER_OPTS: ReadOptions | None = None


def _init_worker(opts: ReadOptions) -> None:
    global _WORKER_OPTS
    _WORKER_OPTS = opts


def _work(job: Job) -> FileResult:
    assert _WORKER_OPTS is not None
    return process_file(job, _WORKER_OPTS)


def find_jobs(inputs: list[Path], out_dir: Path) -> tuple[list[Job], list[str]]:
    """Every ``*.json`` under folder inputs (recursively, sorted), plus files given directly.

    Matching the suffix exactly (not "contains .json") and skipping OUT keeps an earlier output
    from being read as input.
    """
    jobs, problems = [], []
    out_res = out_dir.resolve()
    seen: set[Path] = set()
    for inp in inputs:
        inp = Path(inp)
        if inp.is_dir():
            for p in sorted(inp.rglob("*")):
                if p.suffix.lower() != ".json" or not p.is_file():
                    continue
                rp = p.resolve()
                if rp.is_relative_to(out_res) or any(part.startswith(".") for part in p.relative_to(inp).parts):
                    continue
                rel = p.parent.relative_to(inp).as_posix()
                if rp not in seen:
                    seen.add(rp)
                    jobs.append(Job(p, "" if rel == "." else rel, False))
        elif inp.is_file():
            if inp.resolve() not in seen:
                seen.add(inp.resolve())
                jobs.append(Job(inp, "", True))
        else:
            problems.append(f"{inp}: no such file or folder")
    return jobs, problems


def read_files(job_list: list[Job], opts: ReadOptions, jobs: int | None, quiet: bool) -> list[FileResult]:
    """``process_file`` for every job, in order: in this process for small inputs, else in a process pool."""
    n_jobs = jobs or min(os.cpu_count() or 1, 8)
    bar = dict(total=len(job_list), desc="labelme", unit="file", disable=quiet, file=sys.stderr)
    if n_jobs <= 1 or len(job_list) < 64:  # a pool costs more than it saves on small inputs
        return [process_file(j, opts) for j in tqdm(job_list, **bar)]
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(opts,)) as pool:
        return list(tqdm(pool.imap(_work, job_list, chunksize=8), **bar))

