"""The human-readable conversion report (Markdown) from the report dict ``convert`` returns."""

from __future__ import annotations

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
    out.append(f"Grouping: {sp['grouping']}.  ")
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
