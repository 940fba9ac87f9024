"""LabelMe folders -> a COCO dataset folder (annotations/{train,val}.json, images/, report).

Two passes: every file is read and checked (in parallel), every problem is collected; only when
the whole input is valid (or ``skip_invalid``) is anything written, so a failed run leaves no
half-dataset behind. Same input and options give byte-identical output.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fetalheart
from fetalheart.classes import CLASS_NAMES, STRUCTURES, coco_categories, normalize_label
from fetalheart.coco import coco_document, segmentation_from_parts, write_coco
from fetalheart.conversion_report import report_markdown
from fetalheart.labelme import (
    LabelmeError,
    LabelmeFile,
    clip_polygon,
    decode_image_data,
    decode_mask_shape,
    dedupe_vertices,
    image_info,
    is_labelme,
    is_self_intersecting,
    load_json,
    parse_labelme,
    paste_mask,
    safe_image_name,
    shape_polygon,
)
from fetalheart.split import DEFAULT_GUARD_GAP, EXCLUDED, TRAIN, VAL, make_split
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import (
    atomic_path,
    copy_atomic,
    ensure_writable_dir,
    write_bytes_atomic,
    write_json_atomic,
)

from tqdm import tqdm

IGNORE_LABEL = "__ignore__"
_BACKGROUND_LABELS = {"_background_", "__background__", "background"}
_FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif", "WEBP": ".webp"}
#: Files the converter writes; any of them already present means OUT holds a dataset.
OUTPUT_FILES = ("annotations/train.json", "annotations/val.json", "conversion_report.json", "conversion_report.md")


# ------------------------------------------------------------------------------------------- labels


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


def read_labels_file(path: Path) -> list[str]:
    """labels.txt as labelme writes it: one label a line; ``__ignore__``/``_background_`` lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise FetalHeartError(f"--labels {path}: {exc.strerror or exc}") from None
    names: list[str] = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#") or s == IGNORE_LABEL or s.lower() in _BACKGROUND_LABELS:
            continue
        name = normalize_label(s) or s
        if name in names:
            raise FetalHeartError(f"--labels {path}: label {s!r} listed twice (as {name!r})")
        names.append(name)
    if not names:
        raise FetalHeartError(f"--labels {path}: no labels")
    return names


def categories_for(names: list[str]) -> list[dict]:
    """COCO categories: the study's 10 with their fixed ids, or user labels numbered 1..N."""
    if tuple(names) == CLASS_NAMES:
        return coco_categories()
    return [{"id": i + 1, "name": n, "supercategory": "heart"} for i, n in enumerate(names)]


# --------------------------------------------------------------------------------- per-file pass


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
    width: int = 0
    height: int = 0
    annotations: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored_shapes: dict[str, int] = field(default_factory=dict)
    unknown_skipped: dict[str, int] = field(default_factory=dict)
    clipped_points: int = 0
    degenerate: list[str] = field(default_factory=list)
    self_intersecting: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Options:
    label_map: LabelMap
    unknown: str
    max_pixels: int


def _resolve_image(lf: LabelmeFile, job: Job, opts: _Options, res: FileResult) -> None:
    candidate = None
    if lf.image_path:
        p = Path(lf.image_path)
        candidate = p if p.is_absolute() else job.json_path.parent / p
    if candidate is not None and candidate.is_file():
        info = image_info(candidate, opts.max_pixels)
        res.source = str(candidate.resolve())
        base = safe_image_name(lf.image_path)
    elif lf.image_data:
        info = image_info(decode_image_data(lf.image_data), opts.max_pixels)
        res.embedded = True
        base = (
            safe_image_name(lf.image_path)
            if lf.image_path
            else job.json_path.stem + _FORMAT_SUFFIX.get(info.format, ".img")
        )
    elif candidate is not None:
        raise LabelmeError(f"image not found: {candidate} (imagePath {lf.image_path!r}) and no embedded imageData")
    else:
        raise LabelmeError("no image: empty imagePath and no imageData")
    res.name = f"{job.rel_dir}/{base}" if job.rel_dir else base
    res.width, res.height = info.width, info.height
    if (lf.height, lf.width) != (None, None) and (lf.height, lf.width) != (info.height, info.width):
        res.warnings.append(
            f"imageHeight x imageWidth = {lf.height}x{lf.width} but the image is {info.height}x{info.width}"
            f"{' after EXIF rotation' if info.exif_transposed else ''}; using the image size"
        )
    if info.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        res.warnings.append(f"{info.mode} image: detectron2 reads it as 8-bit RGB, check the intensity range")


def _instances(lf: LabelmeFile, opts: _Options, res: FileResult) -> None:
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


def process_file(job: Job, opts: _Options) -> FileResult:
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


_WORKER_OPTS: _Options | None = None


def _init_worker(opts: _Options) -> None:
    global _WORKER_OPTS
    _WORKER_OPTS = opts


def _work(job: Job) -> FileResult:
    assert _WORKER_OPTS is not None
    return process_file(job, _WORKER_OPTS)


# ----------------------------------------------------------------------------------- the pipeline


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


def convert(
    inputs: list[Path],
    out_dir: Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    group_regex: str | None = None,
    val_list: Path | list[str] | None = None,
    link: bool = False,
    labels: Path | list[str] | None = None,
    unknown: str = "error",
    ignore_label: str | list[str] | None = None,
    drop_empty: bool = False,
    skip_invalid: bool = False,
    overwrite: bool = False,
    guard_gap: int = DEFAULT_GUARD_GAP,
    quiet: bool = False,
    jobs: int | None = None,
    max_pixels: int | None = None,
) -> dict:
    """Convert LabelMe files to a split COCO dataset in ``out_dir``; return the report dict.

    Raises FetalHeartError (nothing written) when the input has problems and not ``skip_invalid``,
    or when ``out_dir`` already holds a dataset and not ``overwrite``.
    """
    from fetalheart.labelme import MAX_IMAGE_PIXELS

    out_dir = Path(out_dir)
    if unknown not in ("error", "skip"):
        raise FetalHeartError(f"--unknown must be 'error' or 'skip', got {unknown!r}")
    if guard_gap < 0:
        raise FetalHeartError("--guard-gap must be >= 0")
    existing = [f for f in OUTPUT_FILES if (out_dir / f).exists()]
    if existing and not overwrite:
        raise FetalHeartError(f"{out_dir} already holds a dataset ({existing[0]}); pass --overwrite to replace it")
    cat_names = (
        list(CLASS_NAMES)
        if labels is None
        else (read_labels_file(labels) if isinstance(labels, (str, Path)) else list(labels))
    )
    ignore = {IGNORE_LABEL}
    if ignore_label:
        ignore |= {ignore_label} if isinstance(ignore_label, str) else set(ignore_label)
    label_map = LabelMap(tuple(cat_names), frozenset(x.strip().lower() for x in ignore))
    opts = _Options(label_map, unknown, max_pixels or MAX_IMAGE_PIXELS)
    val_entries = None
    if val_list is not None:
        if isinstance(val_list, (str, Path)):
            try:
                val_entries = Path(val_list).read_text(encoding="utf-8-sig").splitlines()
            except OSError as exc:
                raise FetalHeartError(f"--val-list {val_list}: {exc.strerror or exc}") from None
        else:
            val_entries = list(val_list)

    job_list, problems = find_jobs([Path(p) for p in inputs], out_dir)
    results = _run_jobs(job_list, opts, jobs, quiet)

    skipped = [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "skipped"]
    problems += [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "invalid"]
    ok = [r for r in results if r.status == "ok"]
    by_name: dict[str, FileResult] = {}
    for r in ok:
        if r.name in by_name:
            first = by_name[r.name]
            same = " (the same image annotated twice)" if r.source and r.source == first.source else ""
            problems.append(f"{r.job.json_path}: duplicate image name {r.name!r}, also from {first.job.json_path}{same}")
            r.status = "invalid"
            continue
        by_name[r.name] = r
    if problems and not skip_invalid:
        raise FetalHeartError(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the input; nothing written "
            "(--skip-invalid converts the rest):\n  " + "\n  ".join(problems)
        )
    kept = [by_name[n] for n in sorted(by_name)]
    dropped_empty = []
    if drop_empty:
        dropped_empty = [r.name for r in kept if not r.annotations]
        kept = [r for r in kept if r.annotations]
    if not kept:
        raise FetalHeartError("no LabelMe files to convert" + (f" ({len(problems)} invalid)" if problems else ""))

    split = make_split(
        [r.name for r in kept], val_fraction=val_fraction, seed=seed, group_regex=group_regex,
        val_list=val_entries, guard_gap=guard_gap,
    )
    categories = categories_for(cat_names)
    cat_id = {c["name"]: c["id"] for c in categories}
    info = {
        "description": "fetal-heart instance segmentation, converted from LabelMe by fetalheart-labelme2coco",
        "version": fetalheart.__version__,
        "year": 0,
        "contributor": "",
        "url": "",
        "date_created": "",  # left empty on purpose: a timestamp would make identical inputs differ
    }
    docs = {TRAIN: ([], []), VAL: ([], [])}
    ann_id = 0
    for image_id, r in enumerate(kept, start=1):  # ids unique across splits, in name order
        side = split.assignment[r.name]
        if side == EXCLUDED:
            continue
        imgs, anns = docs[side]
        imgs.append({"id": image_id, "file_name": r.name, "height": r.height, "width": r.width})
        for a in r.annotations:
            cats = [a["category"]] if not a["iscrowd"] else cat_names  # a crowd region is ignored for every class
            for c in cats:
                ann_id += 1
                anns.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": cat_id[c],
                        "segmentation": a["segmentation"],
                        "area": a["area"],
                        "bbox": a["bbox"],
                        "iscrowd": a["iscrowd"],
                    }
                )

    report = _build_report(
        inputs, out_dir, kept, split, cat_names, problems, skipped, dropped_empty, docs,
        dict(val_fraction=val_fraction, seed=seed, group_regex=group_regex,
             val_list=str(val_list) if isinstance(val_list, (str, Path)) else val_list,
             link=link, labels=str(labels) if isinstance(labels, (str, Path)) else labels, unknown=unknown,
             ignore_labels=sorted(ignore), drop_empty=drop_empty, skip_invalid=skip_invalid, guard_gap=guard_gap),
    )

    # ---- write (only now: every check above passed)
    ensure_writable_dir(out_dir)
    images_dir = out_dir / "images"
    written = [r for r in kept if split.assignment[r.name] != EXCLUDED]
    for r in tqdm(written, desc="images", unit="img", disable=quiet, file=sys.stderr):
        target = images_dir / r.name
        if r.embedded:
            lf_obj = load_json(r.job.json_path)
            write_bytes_atomic(target, decode_image_data(lf_obj["imageData"]), overwrite=True)
        elif link:
            _symlink_atomic(Path(r.source), target)
        elif not (target.exists() and target.resolve() == Path(r.source)):
            copy_atomic(r.source, target, overwrite=True)
    for side in (TRAIN, VAL):
        imgs, anns = docs[side]
        write_coco(out_dir / "annotations" / f"{side}.json", coco_document(imgs, anns, categories, info), overwrite=True)
    write_json_atomic(out_dir / "conversion_report.json", report, overwrite=True)
    with atomic_path(out_dir / "conversion_report.md") as tmp:
        tmp.write_text(report_markdown(report), encoding="utf-8")
    return report


def _symlink_atomic(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink()
        os.symlink(src, tmp)


def _run_jobs(job_list: list[Job], opts: _Options, jobs: int | None, quiet: bool) -> list[FileResult]:
    n_jobs = jobs or min(os.cpu_count() or 1, 8)
    bar = dict(total=len(job_list), desc="labelme", unit="file", disable=quiet, file=sys.stderr)
    if n_jobs <= 1 or len(job_list) < 64:  # a pool costs more than it saves on small inputs
        return [process_file(j, opts) for j in tqdm(job_list, **bar)]
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(n_jobs, initializer=_init_worker, initargs=(opts,)) as pool:
        return list(tqdm(pool.imap(_work, job_list, chunksize=8), **bar))


def _build_report(inputs, out_dir, kept, split, cat_names, problems, skipped, dropped_empty, docs, options) -> dict:
    counts = {}
    crowd = {}
    for side in (TRAIN, VAL):
        imgs, anns = docs[side]
        c = Counter()
        k = 0
        id_to_name = {i + 1: n for i, n in enumerate(cat_names)}
        for a in anns:
            if a["iscrowd"]:
                k += 1
            else:
                c[id_to_name[a["category_id"]]] += 1
        counts[side] = {n: c.get(n, 0) for n in cat_names}
        crowd[side] = k // max(1, len(cat_names))
    counts["total"] = {n: counts[TRAIN][n] + counts[VAL][n] for n in cat_names}
    missing = {}
    for r in kept:
        present = {a["category"] for a in r.annotations if not a["iscrowd"]}
        if present and set(cat_names) - present:
            missing[r.name] = [n for n in cat_names if n not in present]
    n_images = {s: len(docs[s][0]) for s in (TRAIN, VAL)}
    excluded = sum(1 for v in split.assignment.values() if v == EXCLUDED)
    ignored = Counter()
    unknown = Counter()
    for r in kept:
        ignored.update(r.ignored_shapes)
        unknown.update(r.unknown_skipped)
    return {
        "tool": "fetalheart-labelme2coco",
        "fetalheart_version": fetalheart.__version__,
        "inputs": [str(p) for p in inputs],
        "output": str(out_dir),
        "options": options,
        "categories": list(cat_names),
        "colors": {s.name: list(s.color) for s in STRUCTURES if s.name in cat_names},
        "mask_format": "bitmask" if any(_has_rle(a) for s in (TRAIN, VAL) for a in docs[s][1] if not a["iscrowd"]) else "polygon",
        "images": {
            "train": n_images[TRAIN],
            "val": n_images[VAL],
            "excluded_guard_gap": excluded,
            "empty_kept": sum(1 for r in kept if not r.annotations),
            "dropped_empty": len(dropped_empty),
        },
        "split": {
            "method": split.method,
            "val_fraction_requested": options["val_fraction"],
            "val_fraction_actual": round(n_images[VAL] / max(1, n_images[TRAIN] + n_images[VAL]), 4),
            "grouping": "--group-regex " + options["group_regex"] if options["group_regex"] else "file-name stem before the trailing frame index",
            "groups": split.groups,
            "notes": split.notes,
        },
        "instances": counts,
        "crowd_regions": crowd,
        "validation": {
            "invalid_files": problems,
            "skipped_non_labelme": skipped,
            "ignored_shape_types": dict(sorted(ignored.items())),
            "unknown_labels_skipped": dict(sorted(unknown.items())),
            "points_clipped": sum(r.clipped_points for r in kept),
            "degenerate_shapes_dropped": [f"{r.job.json_path}: {d}" for r in kept for d in r.degenerate],
            "self_intersecting_polygons": [f"{r.job.json_path}: {d}" for r in kept for d in r.self_intersecting],
            "warnings": [f"{r.job.json_path}: {w}" for r in kept for w in r.warnings],
            "images_missing_classes": missing,
        },
    }


def _has_rle(ann: dict) -> bool:
    return isinstance(ann["segmentation"], dict)
