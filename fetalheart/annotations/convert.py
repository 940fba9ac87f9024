"""LabelMe folders -> a COCO dataset folder (annotations/{train,val}.json or K folds, images/, report).

Two passes: every file is read and checked (in parallel), every problem is collected; only when
the whole input is valid (or ``skip_invalid``) is anything written, so a failed run leaves no
half-dataset behind. Same input and options give byte-identical output.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fetalheart
from fetalheart.annotations.coco import coco_document, segmentation_from_parts, write_coco
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
from fetalheart.annotations.report import report_markdown
from fetalheart.annotations.split import (
    DEFAULT_GUARD_GAP,
    EXCLUDED,
    TRAIN,
    VAL,
    Folds,
    FrameTime,
    Split,
    frame_time_from_name,
    make_folds,
    make_split,
)
from fetalheart.classes import CLASS_NAMES, STRUCTURES, coco_categories, normalize_label
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
_FORMAT_SUFFIX = {
    "PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "DIB": ".bmp", "TIFF": ".tif", "GIF": ".gif",
    "WEBP": ".webp",
}
#: Files the converter writes (glob patterns); any of them already present means OUT holds a dataset.
OUTPUT_FILES = (
    "annotations/train.json",
    "annotations/val.json",
    "annotations/fold*_train.json",
    "annotations/fold*_val.json",
    "conversion_report.json",
    "conversion_report.md",
)
#: Annotation files this tool may have written: the only ones --overwrite deletes when a run does not rewrite them.
_ANNOTATION_FILE_RE = re.compile(r"^(train|val|fold[0-9]+_(train|val))\.json$")


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
    unknown_keys: dict[str, int] = field(default_factory=dict)
    four_point_rectangles: int = 0


@dataclass(frozen=True)
class _Options:
    label_map: LabelMap
    unknown: str
    max_pixels: int


def _resolve_image(lf: LabelmeFile, job: Job, opts: _Options, res: FileResult) -> None:
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
        info, base = _embedded_image(lf, job, opts, file_problem)
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


def _embedded_image(lf: LabelmeFile, job: Job, opts: _Options, file_problem: str):
    """(ImageInfo, output file name) of the embedded ``imageData``.

    The name is ``imagePath``'s file name when that names an image, else the JSON's stem with the
    suffix of the embedded format (``apc2016_obj3.json`` -> ``apc2016_obj3.jpg``).
    """
    try:
        info = image_info(decode_image_data(lf.image_data or ""), opts.max_pixels)
    except LabelmeError as exc:
        raise LabelmeError(f"{file_problem}; embedded imageData: {exc}" if file_problem else str(exc)) from None
    base = ""
    if lf.image_path and not file_problem and has_image_suffix(lf.image_path):
        try:
            base = safe_image_name(lf.image_path)
        except LabelmeError:
            base = ""
    return info, base or job.json_path.stem + _FORMAT_SUFFIX.get(info.format, ".img")


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


@dataclass(frozen=True)
class ConvertOptions:
    """What the dataset is made of and how it is split (every field is recorded in the report).

    ``folds=K`` (K >= 2) writes K grouped cross-validation splits ``annotations/fold{i}_{train,val}.json``
    instead of ``train.json``/``val.json``. ``guard_gap`` (source frames, default 10) and
    ``guard_seconds`` are the single-video guard gap; give at most one.
    """

    val_fraction: float = 0.2
    seed: int = 0
    group_regex: str | None = None  # what groups frames (video/patient); default: the file name's stem
    val_list: Path | list[str] | None = None  # a file (or list) naming the val images or groups
    folds: int = 0
    guard_gap: int | None = None
    guard_seconds: float | None = None
    labels: Path | list[str] | None = None  # labels.txt or names; default the 10 structures
    unknown: str = "error"  # a label that is not a class: "error" or "skip" the shape
    ignore_label: str | list[str] | None = None  # labels made iscrowd regions, besides __ignore__
    drop_empty: bool = False  # leave out images without shapes
    skip_invalid: bool = False  # convert the valid files, list the rest in the report
    link: bool = False  # symlink images instead of copying
    max_pixels: int | None = None  # refuse larger images (default MAX_IMAGE_PIXELS)

    def report_dict(self, ignore: set[str], guard_gap: int) -> dict:
        """The ``options`` section of conversion_report.json."""
        val_list, labels = self.val_list, self.labels
        return dict(
            val_fraction=self.val_fraction, seed=self.seed, group_regex=self.group_regex,
            val_list=str(val_list) if isinstance(val_list, (str, Path)) else val_list,
            link=self.link, labels=str(labels) if isinstance(labels, (str, Path)) else labels, unknown=self.unknown,
            ignore_labels=sorted(ignore), drop_empty=self.drop_empty, skip_invalid=self.skip_invalid,
            guard_gap=guard_gap if self.guard_seconds is None else None, guard_seconds=self.guard_seconds,
            folds=self.folds,
        )  # fmt: skip


def _make_split(names: list[str], options: ConvertOptions, guard_gap: int, times: dict[str, FrameTime],
                val_entries: list[str] | None) -> tuple[Split | Folds, dict[str, dict[str, str]]]:
    """The split (or folds) of the kept images, and each annotation file prefix's assignment."""
    split_opts = dict(seed=options.seed, group_regex=options.group_regex, guard_gap=guard_gap,
                      guard_seconds=options.guard_seconds, times=times)
    if options.folds:
        folds = make_folds(names, options.folds, **split_opts)
        return folds, {f"fold{i}_": a for i, a in enumerate(folds.assignments)}
    split = make_split(names, val_fraction=options.val_fraction, val_list=val_entries, **split_opts)
    return split, {"": split.assignment}


def _documents(kept: list[FileResult], split: Split | Folds, assignments: dict[str, dict[str, str]],
               cat_names: list[str], categories: list[dict]) -> dict[str, tuple[list[dict], list[dict]]]:
    """(images, annotations) of every annotation file to write, by its name without ``.json``."""
    names = [r.name for r in kept]
    entries = _coco_entries(kept, split.image_groups, cat_names, {c["name"]: c["id"] for c in categories})
    return {
        f"{prefix}{side}": _select(entries, [n for n in names if a[n] == side])
        for prefix, a in assignments.items()
        for side in (TRAIN, VAL)
    }


def convert(inputs: list[Path], out_dir: Path, options: ConvertOptions | None = None, *, overwrite: bool = False,
            quiet: bool = False, jobs: int | None = None) -> dict:
    """Convert LabelMe files to a split COCO dataset in ``out_dir``; return the report dict.

    Raises FetalHeartError (nothing written) when the input has problems and not ``skip_invalid``,
    or when ``out_dir`` already holds a dataset and not ``overwrite``. ``jobs``: reader processes.
    """
    from fetalheart.annotations.labelme import MAX_IMAGE_PIXELS

    o = options or ConvertOptions()
    out_dir = Path(out_dir)
    guard_gap = _check_options(o.unknown, o.guard_gap, o.guard_seconds, o.folds, o.val_list)
    existing = existing_outputs(out_dir)
    if existing and not overwrite:
        raise FetalHeartError(f"{out_dir} already holds a dataset ({existing[0]}); pass --overwrite to replace it")
    cat_names, ignore = _label_setup(o.labels, o.ignore_label)
    label_map = LabelMap(tuple(cat_names), frozenset(x.strip().lower() for x in ignore))
    val_entries = _read_val_list(o.val_list)  # an unreadable list fails before the (slow) reading pass
    job_list, problems = find_jobs([Path(p) for p in inputs], out_dir)
    results = _run_jobs(job_list, _Options(label_map, o.unknown, o.max_pixels or MAX_IMAGE_PIXELS), jobs, quiet)
    kept, problems, skipped, dropped_empty = _collect(results, problems, o.skip_invalid, o.drop_empty)

    times, index_sources = frame_times(kept)
    split, assignments = _make_split([r.name for r in kept], o, guard_gap, times, val_entries)
    categories = categories_for(cat_names)
    docs = _documents(kept, split, assignments, cat_names, categories)
    run = _Run(list(inputs), out_dir, kept, split, cat_names, problems, skipped, dropped_empty,
               o.report_dict(ignore, guard_gap), index_sources)
    report = _build_report(run, docs)

    # ---- write (only now: every check above passed)
    _write_outputs(out_dir, kept, docs, categories, report, o.link, quiet)
    if overwrite:
        _remove_stale_annotations(out_dir, set(docs))
    for w in report["split"]["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return report


def _label_setup(labels: Path | list[str] | None, ignore_label: str | list[str] | None) -> tuple[list[str], set[str]]:
    """(category names, labels that become ignore regions)."""
    cat_names = (
        list(CLASS_NAMES)
        if labels is None
        else (read_labels_file(labels) if isinstance(labels, (str, Path)) else list(labels))
    )
    ignore = {IGNORE_LABEL}
    if ignore_label:
        ignore |= {ignore_label} if isinstance(ignore_label, str) else set(ignore_label)
    return cat_names, ignore


def _check_options(unknown: str, guard_gap: int | None, guard_seconds: float | None, folds: int, val_list) -> int:
    """Validate the option combination; return the guard gap in source frames to use."""
    if unknown not in ("error", "skip"):
        raise FetalHeartError(f"--unknown must be 'error' or 'skip', got {unknown!r}")
    if guard_gap is not None and guard_seconds is not None:
        raise FetalHeartError("--guard-gap and --guard-seconds are mutually exclusive: give one")
    if guard_gap is not None and guard_gap < 0:
        raise FetalHeartError("--guard-gap must be >= 0")
    if guard_seconds is not None and not (math.isfinite(guard_seconds) and guard_seconds >= 0):
        raise FetalHeartError(f"--guard-seconds must be >= 0, got {guard_seconds}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
        raise FetalHeartError(f"--folds must be 0 (no folds) or at least 2, got {folds}")
    if folds and val_list is not None:
        raise FetalHeartError("--folds and --val-list cannot be combined: folds choose every val set")
    return DEFAULT_GUARD_GAP if guard_gap is None else guard_gap


def existing_outputs(out_dir: Path) -> list[str]:
    """Converter outputs already in ``out_dir`` (``OUTPUT_FILES``, fold files included)."""
    found: list[str] = []
    for pattern in OUTPUT_FILES:
        found += sorted(p.relative_to(out_dir).as_posix() for p in Path(out_dir).glob(pattern) if p.is_file())
    return found


def _read_val_list(val_list: Path | list[str] | None) -> list[str] | None:
    if val_list is None or not isinstance(val_list, (str, Path)):
        return None if val_list is None else list(val_list)
    try:
        return Path(val_list).read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise FetalHeartError(f"--val-list {val_list}: {exc.strerror or exc}") from None


def _collect(results: list[FileResult], problems: list[str], skip_invalid: bool, drop_empty: bool):
    """(kept in name order, problems, skipped, dropped_empty); raise if problems and not skip_invalid."""
    skipped = [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "skipped"]
    problems = problems + [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "invalid"]
    by_name: dict[str, FileResult] = {}
    for r in (r for r in results if r.status == "ok"):
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
    dropped_empty = [r.name for r in kept if not r.annotations] if drop_empty else []
    if drop_empty:
        kept = [r for r in kept if r.annotations]
    if not kept:
        raise FetalHeartError("no LabelMe files to convert" + (f" ({len(problems)} invalid)" if problems else ""))
    return kept, problems, skipped, dropped_empty


# ------------------------------------------------------------------------------------- frame times


def read_frames_csv(path: Path) -> dict[str, tuple[int, float | None]]:
    """A ``frames.csv`` (extract_frames, or the phantom's) -> {resolved image path: (source frame index,
    seconds)}. Files without ``file`` and ``frame_index`` columns, and rows that do not parse, give nothing."""
    table: dict[str, tuple[int, float | None]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not {"file", "frame_index"} <= set(reader.fieldnames or ()):
                return table
            base = Path(path).parent.resolve()
            for row in reader:
                try:
                    idx = int(row["frame_index"])
                    ts = float(row["timestamp"]) if row.get("timestamp") not in (None, "") else None
                except ValueError:
                    continue
                if row["file"]:
                    table[os.path.normpath(base / row["file"])] = (idx, ts if ts is None or math.isfinite(ts) else None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return table


def frame_times(kept: list[FileResult]) -> tuple[dict[str, FrameTime], dict[str, int]]:
    """Each image's source frame index and time: from a ``frames.csv`` in the image's folder or its
    parent (extract_frames writes it beside the frames, the phantom one level up), else the index in
    the file name, taken as the source frame index. Also counts where the index came from."""
    tables: dict[Path, dict] = {}
    times: dict[str, FrameTime] = {}
    sources: Counter[str] = Counter()
    for r in kept:
        from_name = frame_time_from_name(r.name)
        hit = None
        if r.source:
            src = Path(r.source)
            for folder in (src.parent, src.parent.parent):
                csv_path = folder / "frames.csv"
                if csv_path not in tables:
                    tables[csv_path] = read_frames_csv(csv_path) if csv_path.is_file() else {}
                hit = tables[csv_path].get(os.path.normpath(src))
                if hit:
                    break
        if hit:
            times[r.name] = FrameTime(from_name.video, hit[0], hit[1])
            sources["frames.csv"] += 1
        else:
            times[r.name] = from_name
            sources["file name" if from_name.index is not None else "none"] += 1
    return times, dict(sorted(sources.items()))


# ------------------------------------------------------------------------------------------- output


def _coco_entries(
    kept: list[FileResult], groups: dict[str, str], cat_names: list[str], cat_id: dict[str, int]
) -> dict[str, tuple[dict, list[dict]]]:
    """Image name -> (COCO image entry, its annotations). Image and annotation ids are assigned over
    all images in name order, so they are the same in the plain split and in every fold file."""
    entries = {}
    ann_id = 0
    for image_id, r in enumerate(kept, start=1):
        img = {"id": image_id, "file_name": r.name, "height": r.height, "width": r.width, "group": groups[r.name]}
        anns = []
        for a in r.annotations:
            cats = [a["category"]] if not a["iscrowd"] else cat_names  # a crowd region is ignored for every class
            for c in cats:
                ann_id += 1
                anns.append({"id": ann_id, "image_id": image_id, "category_id": cat_id[c],
                             "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"],
                             "iscrowd": a["iscrowd"]})  # fmt: skip
        entries[r.name] = (img, anns)
    return entries


def _select(entries: dict[str, tuple[dict, list[dict]]], names: list[str]) -> tuple[list[dict], list[dict]]:
    return [entries[n][0] for n in names], [a for n in names for a in entries[n][1]]


def _coco_info() -> dict:
    return {
        "description": "fetal-heart instance segmentation, converted from LabelMe by fetalheart-labelme2coco",
        "version": fetalheart.__version__,
        "year": 0,
        "contributor": "",
        "url": "",
        "date_created": "",  # left empty on purpose: a timestamp would make identical inputs differ
    }


def _write_outputs(out_dir: Path, kept: list[FileResult], docs: dict, categories: list[dict], report: dict,
                   link: bool, quiet: bool) -> None:  # fmt: skip
    ensure_writable_dir(out_dir)
    images_dir = out_dir / "images"
    used = {img["file_name"] for imgs, _ in docs.values() for img in imgs}
    written = [r for r in kept if r.name in used]
    for r in tqdm(written, desc="images", unit="img", disable=quiet, file=sys.stderr):
        target = images_dir / r.name
        if r.embedded:
            lf_obj = load_json(r.job.json_path)
            write_bytes_atomic(target, decode_image_data(lf_obj["imageData"]), overwrite=True)
        elif link:
            _symlink_atomic(Path(r.source), target)
        elif not (target.exists() and target.resolve() == Path(r.source)):
            copy_atomic(r.source, target, overwrite=True)
    info = _coco_info()
    for key, (imgs, anns) in docs.items():
        write_coco(out_dir / "annotations" / f"{key}.json", coco_document(imgs, anns, categories, info), overwrite=True)
    write_json_atomic(out_dir / "conversion_report.json", report, overwrite=True)
    with atomic_path(out_dir / "conversion_report.md") as tmp:
        tmp.write_text(report_markdown(report), encoding="utf-8")


def _remove_stale_annotations(out_dir: Path, written: set[str]) -> list[str]:
    """With --overwrite: delete annotation files of an earlier run that this run did not write (e.g.
    fold files after a run without --folds), so OUT describes one run. Only our own file names."""
    removed = []
    ann_dir = out_dir / "annotations"
    for p in sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []:
        if _ANNOTATION_FILE_RE.match(p.name) and p.stem not in written:
            p.unlink()
            removed.append(p.name)
    return removed


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


#: Said in the report (json and md) whenever ignore regions were written.
CROWD_NOTE = (
    "Ignore regions (iscrowd=1) are trained as background, because detectron2's DatasetMapper drops iscrowd "
    "annotations from the training targets, and are excluded from evaluation."
)


@dataclass
class _Run:
    """What the report is made from."""

    inputs: list
    out_dir: Path
    kept: list[FileResult]
    split: Split | Folds
    cat_names: list[str]
    problems: list[str]
    skipped: list[str]
    dropped_empty: list[str]
    options: dict
    index_sources: dict[str, int]


def _counts(kept: list[FileResult], names: set[str], cat_names: list[str]) -> tuple[dict[str, int], int]:
    """Instances per class and ignore regions (one per drawn region, not per class copy) in ``names``."""
    c: Counter[str] = Counter()
    crowd = 0
    for r in kept:
        if r.name in names:
            for a in r.annotations:
                if a["iscrowd"]:
                    crowd += 1
                else:
                    c[a["category"]] += 1
    return {n: c.get(n, 0) for n in cat_names}, crowd


def _names_on(assignment: dict[str, str], side: str) -> set[str]:
    return {n for n, s in assignment.items() if s == side}


def _build_report(run: _Run, docs: dict) -> dict:
    kept, split, cat_names = run.kept, run.split, run.cat_names
    used = {img["file_name"] for imgs, _ in docs.values() for img in imgs}
    written = [r for r in kept if r.name in used]
    report = {
        "tool": "fetalheart-labelme2coco",
        "fetalheart_version": fetalheart.__version__,
        "inputs": [str(p) for p in run.inputs],
        "output": str(run.out_dir),
        "options": run.options,
        "categories": list(cat_names),
        "colors": {s.name: list(s.color) for s in STRUCTURES if s.name in cat_names},
        "mask_format": "bitmask" if any(_has_rle(a) for r in written for a in r.annotations if not a["iscrowd"])
        else "polygon",
    }
    if isinstance(split, Folds):
        report.update(_folds_sections(run))
    else:
        report.update(_split_sections(run))
    if sum(v if isinstance(v, int) else sum(v) for v in report["crowd_regions"].values()):
        report["ignore_regions_note"] = CROWD_NOTE
    report["validation"] = _validation_section(run)
    return report


def _split_info(run: _Run) -> dict:
    split = run.split
    guard_seconds = run.options.get("guard_seconds")
    notes = list(split.notes)
    if split.guard is not None:
        src = run.index_sources
        notes.append(
            "source frame index: from frames.csv for "
            f"{src.get('frames.csv', 0)} images, from the file name for {src.get('file name', 0)}, "
            f"unknown (position in name order) for {src.get('none', 0)}"
        )
    return {
        "method": split.method,
        "grouping": split.grouping,
        "grouping_rule": "regex" if run.options.get("group_regex") else "file_name",
        "groups": {},
        "notes": notes,
        "warnings": list(split.warnings),
        "guard": {
            "unit": "seconds" if guard_seconds is not None else "source_frames",
            "value": guard_seconds if guard_seconds is not None else run.options["guard_gap"],
            "applied": split.guard is not None,
        },
        "frame_index_source": run.index_sources,
    }


def _split_sections(run: _Run) -> dict:
    split: Split = run.split  # type: ignore[assignment]
    a = split.assignment
    train, val = _names_on(a, TRAIN), _names_on(a, VAL)
    inst_train, crowd_train = _counts(run.kept, train, run.cat_names)
    inst_val, crowd_val = _counts(run.kept, val, run.cat_names)
    info = _split_info(run)
    info.update(
        val_fraction_requested=run.options["val_fraction"],
        val_fraction_actual=round(len(val) / max(1, len(train) + len(val)), 4),
        groups=split.groups,
    )
    # keep the historical key order: method, fractions, grouping, groups, notes first
    info = {k: info[k] for k in ("method", "val_fraction_requested", "val_fraction_actual", "grouping",
                                 "grouping_rule", "groups", "notes", "warnings", "guard", "frame_index_source")}
    return {
        "images": {
            "train": len(train),
            "val": len(val),
            "excluded_guard_gap": sum(1 for v in a.values() if v == EXCLUDED),
            "empty_kept": sum(1 for r in run.kept if not r.annotations),
            "dropped_empty": len(run.dropped_empty),
            "total": len(run.kept),
        },
        "split": info,
        "instances": {
            "train": inst_train,
            "val": inst_val,
            "total": {n: inst_train[n] + inst_val[n] for n in run.cat_names},
        },
        "crowd_regions": {"train": crowd_train, "val": crowd_val},
    }


def _folds_sections(run: _Run) -> dict:
    folds: Folds = run.split  # type: ignore[assignment]
    per_fold, val_inst, val_crowd = [], [], []
    for i, a in enumerate(folds.assignments):
        val = _names_on(a, VAL)
        per_fold.append({"fold": i, "train": len(_names_on(a, TRAIN)), "val": len(val),
                         "val_groups": folds.val_groups(i), "excluded": len(_names_on(a, EXCLUDED))})  # fmt: skip
        inst, crowd = _counts(run.kept, val, run.cat_names)
        val_inst.append(inst)
        val_crowd.append(crowd)
    total_inst, total_crowd = _counts(run.kept, {r.name for r in run.kept}, run.cat_names)
    info = _split_info(run)
    info["groups"] = (
        {g: f"fold{f}" for g, f in folds.fold_of_group.items()}
        if folds.fold_of_group
        else {g: "mixed" for g in sorted(set(folds.image_groups.values()))}
    )
    return {
        "images": {
            "total": len(run.kept),
            "empty_kept": sum(1 for r in run.kept if not r.annotations),
            "dropped_empty": len(run.dropped_empty),
        },
        "split": info,
        "folds": {"k": folds.k, "per_fold": per_fold},
        "instances": {"total": total_inst, "val_per_fold": val_inst},
        "crowd_regions": {"total": total_crowd, "val_per_fold": val_crowd},
    }


def _validation_section(run: _Run) -> dict:
    kept = run.kept
    ignored: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    unknown_keys: Counter[str] = Counter()
    for r in kept:
        ignored.update(r.ignored_shapes)
        unknown.update(r.unknown_skipped)
        unknown_keys.update(r.unknown_keys)
    missing = {}
    for r in kept:
        present = {a["category"] for a in r.annotations if not a["iscrowd"]}
        if present and set(run.cat_names) - present:
            missing[r.name] = [n for n in run.cat_names if n not in present]
    return {
        "invalid_files": run.problems,
        "skipped_non_labelme": run.skipped,
        "ignored_shape_types": dict(sorted(ignored.items())),
        "unknown_labels_skipped": dict(sorted(unknown.items())),
        "unknown_keys": dict(sorted(unknown_keys.items())),
        "four_point_rectangles": sum(r.four_point_rectangles for r in kept),
        "points_clipped": sum(r.clipped_points for r in kept),
        "degenerate_shapes_dropped": [f"{r.job.json_path}: {d}" for r in kept for d in r.degenerate],
        "self_intersecting_polygons": [f"{r.job.json_path}: {d}" for r in kept for d in r.self_intersecting],
        "warnings": [f"{r.job.json_path}: {w}" for r in kept for w in r.warnings],
        "images_missing_classes": missing,
    }


def _has_rle(ann: dict) -> bool:
    return isinstance(ann["segmentation"], dict)
