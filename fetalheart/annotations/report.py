"""The conversion report: the dict ``convert`` returns and writes as conversion_report.json
(``build_report``: counts per split or fold, how the split was grouped, every validation finding),
and its human-readable Markdown (``report_markdown``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart import __version__
from fetalheart.annotations.reading import FileResult
from fetalheart.annotations.split import EXCLUDED, TRAIN, VAL, Folds, Split
from fetalheart.classes import STRUCTURES

#: Lists longer than this are cut in the Markdown (the JSON report keeps everything).
MAX_LISTED = 20


def _bullets(items: list[str], empty: str = "none") -> list[str]:
    if not items:
        return [f"- {empty}"]
    lines = [f"- {x}" for x in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"- ... and {len(items) - MAX_LISTED} more (see conversion_report.json)")
    return lines


def report_markdown(report: dict) -> str:
    """Markdown: images and per-class instance counts per split or fold (like the study's Table 3),
    how the split was grouped, its warnings, and every validation finding."""
    out = [
        "# LabelMe to COCO conversion report",
        "",
        f"Inputs: {', '.join(report['inputs'])}  ",
        f"Output: {report['output']}  ",
        f"fetalheart {report['fetalheart_version']}; mask format for training: `{report['mask_format']}`",
        "",
    ]
    warnings = report["split"].get("warnings", [])
    if warnings:
        out += ["## Warnings", ""] + [f"- **{w}**" for w in warnings] + [""]
    out += _folds_tables(report) if "folds" in report else _split_tables(report)
    if report.get("ignore_regions_note"):
        out += ["", report["ignore_regions_note"]]
    out += _split_section(report["split"])
    out += _validation_lines(report["validation"])
    return "\n".join(out) + "\n"


def _split_tables(report: dict) -> list[str]:
    cats, inst, im = report["categories"], report["instances"], report["images"]
    out = [
        "## Images",
        "",
        "| split | images |",
        "|---|---:|",
        f"| train | {im['train']} |",
        f"| val | {im['val']} |",
        f"| left out (guard gap) | {im['excluded_guard_gap']} |",
        "",
        f"Images without shapes kept as true negatives: {im['empty_kept']}; dropped (--drop-empty): {im['dropped_empty']}.",
        "",
        "## Instances per class",
        "",
        "| class | train | val | total |",
        "|---|---:|---:|---:|",
    ]
    for c in cats:
        out.append(f"| {c} | {inst['train'][c]} | {inst['val'][c]} | {inst['total'][c]} |")
    tt, tv = sum(inst["train"].values()), sum(inst["val"].values())
    out.append(f"| **all** | **{tt}** | **{tv}** | **{tt + tv}** |")
    crowd = report.get("crowd_regions", {})
    if any(crowd.values()):
        out += ["", f"Ignore (iscrowd) regions: train {crowd.get('train', 0)}, val {crowd.get('val', 0)}."]
    return out


def _folds_tables(report: dict) -> list[str]:
    cats, inst, im, folds = report["categories"], report["instances"], report["images"], report["folds"]
    out = [
        f"## Folds ({folds['k']}-fold cross-validation)",
        "",
        f"{im['total']} images; every image is in the val side of exactly one fold. Images without shapes "
        f"kept as true negatives: {im['empty_kept']}; dropped (--drop-empty): {im['dropped_empty']}.",
        "",
        "| fold | train images | val images | left out of train (guard gap) | val groups |",
        "|---:|---:|---:|---:|---|",
    ]
    for f in folds["per_fold"]:
        groups = ", ".join(f["val_groups"][:MAX_LISTED]) + (" ..." if len(f["val_groups"]) > MAX_LISTED else "")
        out.append(f"| {f['fold']} | {f['train']} | {f['val']} | {f['excluded']} | {groups} |")
    out += ["", "## Instances per class in each fold's val", ""]
    out.append("| class | " + " | ".join(f"fold {f['fold']}" for f in folds["per_fold"]) + " | total |")
    out.append("|---|" + "---:|" * (len(folds["per_fold"]) + 1))
    for c in cats:
        out.append(f"| {c} | " + " | ".join(str(v[c]) for v in inst["val_per_fold"]) + f" | {inst['total'][c]} |")
    crowd = report.get("crowd_regions", {})
    if crowd.get("total"):
        out += ["", f"Ignore (iscrowd) regions: {crowd['total']} in all, per val fold "
                + ", ".join(str(n) for n in crowd["val_per_fold"]) + "."]
    return out


def _split_section(sp: dict) -> list[str]:
    out = ["", "## Split", ""]
    if "val_fraction_requested" in sp:
        out.append(f"Method: **{sp['method']}**; val fraction requested {sp['val_fraction_requested']}, "
                   f"actual {sp['val_fraction_actual']}.  ")
    else:
        out.append(f"Method: **{sp['method']}**.  ")
    out.append(f"Grouping ({sp.get('n_groups', len(sp['groups']))} groups): {sp['grouping']}.  ")
    guard = sp.get("guard")
    if guard:
        unit = "s" if guard["unit"] == "seconds" else "source-video frames"
        used = "applied (single video)" if guard["applied"] else "not needed (split by whole groups)"
        out.append(f"Guard gap: {guard['value']} {unit}, {used}.")
    out.append("")
    out += [f"> {n}" for n in sp["notes"]]
    if sp["notes"]:
        out.append("")
    groups = sp["groups"]
    for side in sorted(set(groups.values()), key=lambda s: (s not in ("train", "val"), s)):
        names = [g for g, s in groups.items() if s == side]
        shown = ", ".join(names[:MAX_LISTED]) + (" ..." if len(names) > MAX_LISTED else "")
        out.append(f"- {side} groups ({len(names)}): {shown}")
    return out


def _validation_lines(v: dict) -> list[str]:
    out = ["", "## Validation", ""]
    out.append(f"- points outside the image, clipped: {v['points_clipped']}")
    ign = v["ignored_shape_types"]
    out.append("- shapes without area, ignored: " + (", ".join(f"{k} {n}" for k, n in ign.items()) if ign else "none"))
    unk = v["unknown_labels_skipped"]
    out.append("- unknown labels skipped: " + (", ".join(f"{k!r} {n}" for k, n in unk.items()) if unk else "none"))
    keys = v.get("unknown_keys", {})
    out.append("- keys no LabelMe version writes, ignored: "
               + (", ".join(f"`{k}` {n}" for k, n in keys.items()) if keys else "none"))
    out.append(f"- 4-point rectangles (X-AnyLabeling) read as polygons: {v.get('four_point_rectangles', 0)}")
    sections = [
        ("Invalid files left out", v["invalid_files"]),
        ("Non-LabelMe JSON skipped", v["skipped_non_labelme"]),
        ("Duplicate images merged (one dataset image each)", v.get("duplicate_images_merged", [])),
        ("Degenerate shapes dropped", v["degenerate_shapes_dropped"]),
        ("Self-intersecting polygons", v["self_intersecting_polygons"]),
        ("Warnings", v["warnings"]),
    ]
    for title, items in sections:
        out += ["", f"### {title} ({len(items)})", ""] + _bullets(items)
    missing = v["images_missing_classes"]
    out += ["", f"### Annotated images missing some classes ({len(missing)})", ""]
    out += _bullets([f"{k}: {', '.join(m)}" for k, m in missing.items()])
    return out


# ------------------------------------------------------------------------ the report dict

#: Said in the report (json and md) whenever ignore regions were written.
CROWD_NOTE = (
    "Ignore regions (iscrowd=1) are trained as background, because detectron2's DatasetMapper drops iscrowd "
    "annotations from the training targets, and are excluded from evaluation."
)


@dataclass
class ConversionRun:
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
    merged_duplicates: list[str] = field(default_factory=list)  # JSON files whose image another file already gave


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


def build_report(run: ConversionRun, docs: dict) -> dict:
    kept, split, cat_names = run.kept, run.split, run.cat_names
    used = {img["file_name"] for imgs, _ in docs.values() for img in imgs}
    written = [r for r in kept if r.name in used]
    report = {
        "tool": "fetalheart-labelme2coco",
        "fetalheart_version": __version__,
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


def _split_info(run: ConversionRun) -> dict:
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
        "grouping_rule": ("regex" if run.options.get("group_regex")
                          else "patient_folder" if run.options.get("group_by") == "patient" else "file_name"),
        "n_groups": len(set(split.image_groups.values())),
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


def _split_sections(run: ConversionRun) -> dict:
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
                                 "grouping_rule", "n_groups", "groups", "notes", "warnings", "guard",
                                 "frame_index_source")}
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


def _folds_sections(run: ConversionRun) -> dict:
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


def _validation_section(run: ConversionRun) -> dict:
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
        "duplicate_images_merged": run.merged_duplicates,
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

