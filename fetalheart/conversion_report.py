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
    """Markdown: images and per-class instance counts per split (like the study's Table 3),
    how the split was grouped, and every validation finding."""
    cats = report["categories"]
    inst = report["instances"]
    im = report["images"]
    sp = report["split"]
    v = report["validation"]
    out = [
        "# LabelMe to COCO conversion report",
        "",
        f"Inputs: {', '.join(report['inputs'])}  ",
        f"Output: {report['output']}  ",
        f"fetalheart {report['fetalheart_version']}; mask format for training: `{report['mask_format']}`",
        "",
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
    out += [
        "",
        "## Split",
        "",
        f"Method: **{sp['method']}**; val fraction requested {sp['val_fraction_requested']}, "
        f"actual {sp['val_fraction_actual']}. Grouping: {sp['grouping']}.",
        "",
    ]
    out += [f"> {n}" for n in sp["notes"]]
    if sp["notes"]:
        out.append("")
    groups = sp["groups"]
    for side in ("train", "val", "mixed"):
        names = [g for g, s in groups.items() if s == side]
        if names:
            shown = ", ".join(names[:MAX_LISTED]) + (" ..." if len(names) > MAX_LISTED else "")
            out.append(f"- {side} groups ({len(names)}): {shown}")
    out += ["", "## Validation", ""]
    out.append(f"- points outside the image, clipped: {v['points_clipped']}")
    ign = v["ignored_shape_types"]
    out.append(
        "- shapes without area, ignored: "
        + (", ".join(f"{k} {n}" for k, n in ign.items()) if ign else "none")
    )
    unk = v["unknown_labels_skipped"]
    out.append(
        "- unknown labels skipped: " + (", ".join(f"{k!r} {n}" for k, n in unk.items()) if unk else "none")
    )
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
    return "\n".join(out) + "\n"
