"""LabelMe folders -> a COCO dataset folder (annotations/{train,val}.json or K folds, images/, report).

Two passes: every file is read and checked (in parallel), every problem is collected; only when
the whole input is valid (or ``skip_invalid``) is anything written, so a failed run leaves no
half-dataset behind. Same input and options give byte-identical output.
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import fetalheart
from fetalheart.annotations.coco import coco_document, write_coco
from fetalheart.annotations.duplicates import add_pixel_digests, merge_duplicates
from fetalheart.annotations.labelme import (
    decode_image_data,
    load_json,
)
from fetalheart.annotations.reading import FileResult, LabelMap, ReadOptions, find_jobs, read_files
from fetalheart.annotations.report import ConversionRun, build_report, report_markdown
from fetalheart.annotations.split import (
    DEFAULT_GUARD_GAP,
    TRAIN,
    VAL,
    Folds,
    FrameTime,
    Guard,
    Split,
    frame_time_from_name,
    make_folds,
    make_split,
)
from fetalheart.classes import CLASS_NAMES, coco_categories, normalize_label
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


# ----------------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class ConvertOptions:
    """What the dataset is made of and how it is split (every field is recorded in the report).

    ``folds=K`` (K >= 2) writes K grouped cross-validation splits ``annotations/fold{i}_{train,val}.json``
    instead of ``train.json``/``val.json``. ``guard_gap`` (source frames, default 10) and
    ``guard_seconds`` are the single-video guard gap; give at most one.
    """

    val_fraction: float = 0.2
    seed: int = 0
    group_regex: str | None = None  # what groups frames (video/patient); default: the video (split.video_and_index)
    group_by: str = "video"  # without group_regex: "video" or "patient" (the top folder of each image path)
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
            val_fraction=self.val_fraction, seed=self.seed, group_regex=self.group_regex, group_by=self.group_by,
            val_list=str(val_list) if isinstance(val_list, (str, Path)) else val_list,
            link=self.link, labels=str(labels) if isinstance(labels, (str, Path)) else labels, unknown=self.unknown,
            ignore_labels=sorted(ignore), drop_empty=self.drop_empty, skip_invalid=self.skip_invalid,
            guard_gap=guard_gap if self.guard_seconds is None else None, guard_seconds=self.guard_seconds,
            folds=self.folds,
        )  # fmt: skip


def _make_split(names: list[str], options: ConvertOptions, guard_gap: int, times: dict[str, FrameTime],
                val_entries: list[str] | None) -> tuple[Split | Folds, dict[str, dict[str, str]]]:
    """The split (or folds) of the kept images, and each annotation file prefix's assignment."""
    guard = Guard(frames=None, seconds=options.guard_seconds) if options.guard_seconds is not None else Guard(guard_gap)
    split_opts = dict(seed=options.seed, group_regex=options.group_regex, group_by=options.group_by, guard=guard,
                      times=times)
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
    results = read_files(job_list, ReadOptions(label_map, o.unknown, o.max_pixels or MAX_IMAGE_PIXELS), jobs, quiet)
    kept, problems, skipped, dropped_empty, merged = _collect(results, problems, o.skip_invalid, o.drop_empty)

    times, index_sources = frame_times(kept)
    split, assignments = _make_split([r.name for r in kept], o, guard_gap, times, val_entries)
    categories = categories_for(cat_names)
    docs = _documents(kept, split, assignments, cat_names, categories)
    run = ConversionRun(list(inputs), out_dir, kept, split, cat_names, problems, skipped, dropped_empty,
                        o.report_dict(ignore, guard_gap), index_sources, merged)
    report = build_report(run, docs)

    # ---- write (only now: every check above passed)
    _write_outputs(out_dir, kept, docs, categories, report, o.link, quiet)
    if overwrite:
        _remove_stale_annotations(out_dir, set(docs))
    for w in report["split"]["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if merged and not quiet:
        print(f"note: {len(merged)} LabelMe file(s) annotate an image another file already gives, with the same "
              f"shapes: one dataset image each (e.g. {merged[0]})", file=sys.stderr)
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
    """(kept in name order, problems, skipped, dropped_empty, merged duplicates); raise if problems and
    not skip_invalid."""
    skipped = [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "skipped"]
    problems = problems + [f"{r.job.json_path}: {r.reason}" for r in results if r.status == "invalid"]
    readable = [r for r in results if r.status == "ok"]
    add_pixel_digests(readable)
    unique, duplicate_problems, merged = merge_duplicates(readable)
    problems += duplicate_problems
    by_name: dict[str, FileResult] = {}
    for r in unique:
        if r.name in by_name:
            problems.append(f"{r.job.json_path}: duplicate image name {r.name!r}, also from "
                            f"{by_name[r.name].job.json_path} (a different image)")
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
    return kept, problems, skipped, dropped_empty, merged


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


