"""The evaluation report files: the report dict -> report.json, per_class.csv, per_image.csv, report.md.

All scores in the CSV and Markdown files are on a 0-1 scale, COCO AP included (detectron2 prints
it x100), so a row reads like the study's tables (mAP 0.3049 for model 14). The report dict itself
is built by ``aggregate.summarize_records``. No torch or detectron2 here.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import json_ready, write_json_atomic, write_text_atomic

REPORT_FILES = ("report.json", "per_class.csv", "per_image.csv", "report.md")





# --- Writers -----------------------------------------------------------------------------------


def _coco(report: dict, task: str, key: str) -> float:
    v = report.get("coco", {}).get(task, {}).get(key, float("nan"))
    return float("nan") if v is None else float(v) / 100.0


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def per_class_rows(report: dict) -> list[dict]:
    """One row per class: counts, COCO AP/AP50/AP75, IoU and Dice with CI, instance P/R/F1."""
    rows = []
    for name in report["classes"]:
        e = report["per_class"][name]
        row = {
            "class": name,
            "n_images_counted": e["dice"]["n"],
            "n_groups_counted": e["dice"].get("n_groups"),
            "n_images_gt": e["n_images_gt"],
            "segm_AP": _coco(report, "segm", f"AP-{name}"),
            "segm_AP50": _coco(report, "segm", f"AP50-{name}"),
            "segm_AP75": _coco(report, "segm", f"AP75-{name}"),
            "bbox_AP": _coco(report, "bbox", f"AP-{name}"),
            "corrected_AP": report["study_map"]["corrected"]["per_class"].get(name, float("nan")),
        }
        for m in ("iou", "dice"):
            for k in ("mean", "std", "ci_low", "ci_high"):
                row[f"{m}_{k}"] = e[m][k]
        for k in ("precision", "recall", "f1", "iou", "dice", "tp", "fp", "fn", "ignored"):
            row[f"inst_{k}"] = e["instance"].get(k, 0)
        row.update(n_empty_both=e["n_empty_both"], n_missed=e["n_missed"], n_false_alarm=e["n_false_alarm"])
        for m in ("hd95", "assd"):
            if m in e:
                row.update({f"{m}_{k}": e[m][k] for k in ("mean", "std", "ci_low", "ci_high", "n", "n_inf")})
        rows.append(row)
    return rows


def _csv_text(rows: Sequence[dict], fieldnames: Sequence[str] | None = None) -> str:
    buf = io.StringIO()
    fieldnames = list(fieldnames or (rows[0].keys() if rows else []))
    w = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


PER_IMAGE_FIELDS = ("image_id", "file_name", "group", "class", "iou", "dice", "intersection", "gt_area",
                    "pred_area", "n_gt", "n_pred", "tp", "fp", "fn", "inst_iou", "inst_dice")


def _ci(v: dict) -> str:
    return f"[{_f(v.get('ci_low'))}, {_f(v.get('ci_high'))}]"


def _n(v: dict, what: str = "frames") -> str:
    return f"{v.get('n', '')} {what} / {v.get('n_groups', '')} groups"


def _summary_lines(report: dict) -> list[str]:
    o, sm = report["overall"], report["study_map"]
    from fetalheart.evaluation.metrics import MIN_GROUPS_FOR_BOOTSTRAP

    lines = [f"| metric | value | 95% CI (cluster bootstrap; none below {MIN_GROUPS_FOR_BOOTSTRAP} groups) | n |",
             "|---|---|---|---|"]
    n_frames = report["n_images"]
    k = len(report.get("run", {}).get("folds", [])) if report.get("run", {}).get("fold") == "pooled" else 0
    pooled = f"pooled over {k} models, none" if k else "pooled, none"
    for label, task, key in (("COCO segm AP", "segm", "AP"), ("COCO segm AP50", "segm", "AP50"),
                             ("COCO segm AP75", "segm", "AP75"), ("COCO bbox AP", "bbox", "AP")):
        lines.append(f"| {label} | {_f(_coco(report, task, key))} | ({pooled}) | {n_frames} frames |")
    for task, f in report.get("coco_folds", {}).items():
        lines.append(f"| COCO {task} AP, mean +/- std over folds | {_f(f['mean'])} +/- {_f(f['std'])} | "
                     f"(one model per fold) | {f['n_folds']} folds |")
    mp, co = sm["matterport"], sm["corrected"]
    shown = " (shown as study mAP)"
    lines += [f"| Study mAP, Matterport{shown if sm['mode'] == 'matterport' else ''} | {_f(mp['mAP'])} | {_ci(mp)} | "
              f"{mp['n_images']} frames with ground truth / {mp.get('n_groups', '')} groups |",
              f"| Study mAP50 / mAP75, Matterport | {_f(mp['mAP50'])} / {_f(mp['mAP75'])} | | |",
              f"| mAP, corrected per class{shown if sm['mode'] == 'corrected' else ''} | {_f(co['mAP'])} | "
              f"({pooled}) | {co['n_classes']} classes, {co['n_images']} frames |",
              f"| mAP50 / mAP75, corrected | {_f(co['mAP50'])} / {_f(co['mAP75'])} | | |"]
    for key, label in (("iou_macro", "IoU macro"), ("dice_macro", "Dice macro"),
                       ("iou_micro", "IoU micro"), ("dice_micro", "Dice micro")):
        lines.append(f"| {label} | {_f(o[key]['mean'])} | {_ci(o[key])} | {_n(o[key])} |")
    im = o["instance_micro"]
    lines.append(f"| Instance precision / recall / F1 | {_f(im['precision'])} / {_f(im['recall'])} / "
                 f"{_f(im['f1'])} | | TP {im['tp']}, FP {im['fp']}, FN {im['fn']} instances |")
    lines.append(f"| Instance IoU / Dice of matches (macro) | {_f(o['instance_macro']['iou'])} / "
                 f"{_f(o['instance_macro']['dice'])} | | {im['tp']} matches |")
    if "hd95_macro" in o:
        lines.append(f"| HD95 / ASSD macro (px) | {_f(o['hd95_macro'], 2)} / {_f(o['assd_macro'], 2)} | | |")
    return lines


def _per_class_lines(report: dict) -> list[str]:
    rows = per_class_rows(report)
    lines = ["| class | n frames / groups | AP | AP50 | AP75 | corrected AP | IoU mean +/- std [95% CI] | "
             "Dice mean +/- std [95% CI] | P | R | F1 |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(
            f"| {r['class']} | {r['n_images_counted']} / {r['n_groups_counted']} | {_f(r['segm_AP'])} | "
            f"{_f(r['segm_AP50'])} | {_f(r['segm_AP75'])} | {_f(r['corrected_AP'])} | {_f(r['iou_mean'])} +/- "
            f"{_f(r['iou_std'])} [{_f(r['iou_ci_low'])}, {_f(r['iou_ci_high'])}] | {_f(r['dice_mean'])} +/- "
            f"{_f(r['dice_std'])} [{_f(r['dice_ci_low'])}, {_f(r['dice_ci_high'])}] | {_f(r['inst_precision'])} | "
            f"{_f(r['inst_recall'])} | {_f(r['inst_f1'])} |")
    if rows and "hd95_mean" in rows[0]:
        lines += ["", "| class | HD95 px (n frames, n inf) | ASSD px |", "|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['class']} | {_f(r['hd95_mean'], 2)} ({r['hd95_n']}, {r['hd95_n_inf']}) | "
                         f"{_f(r['assd_mean'], 2)} |")
    return lines


def _empty_case_lines(report: dict) -> list[str]:
    o = report["overall"]
    ec, ig = o["empty_cases"], o.get("ignore_regions", {})
    lines = ["", "## Empty cases and ignore regions", "",
             f"Of {ec['image_class_pairs']} frame x class pairs: {ec['empty_both_not_counted']} empty in both "
             f"(not counted), {ec['missed_counted_0']} present only in ground truth (missed, counted 0), "
             f"{ec['false_alarm_counted_0']} present only in prediction (false alarm, counted 0). "
             f"Frames without any ground truth: {ec['images_without_ground_truth']}. Ignore regions: "
             f"{ig.get('regions', 0)} in {ig.get('frames_with', 0)} frames; {ig.get('predictions_ignored', 0)} "
             "predictions fell in one and were ignored.", "",
             "| class | empty both | missed | false alarm | ignored predictions |", "|---|---|---|---|---|"]
    for name in report["classes"]:
        e = report["per_class"][name]
        lines.append(f"| {name} | {e['n_empty_both']} | {e['n_missed']} | {e['n_false_alarm']} | "
                     f"{e['instance'].get('ignored', 0)} |")
    return lines


def _enhancement_lines(report: dict) -> list[str]:
    """Per enhancement step: frames changed / total on the evaluated frames (fetalheart.enhance.stats)."""
    stats = report.get("enhancement_changes")
    if not stats:
        return []
    from fetalheart.enhance.stats import bd_sentence, changes_table

    lines = ["", "## Enhancement", "", f"What `{stats['spec']}` changed on these frames ({stats['definition']}).", "",
             changes_table(stats), *(["", bd_sentence(stats)] if bd_sentence(stats) else [])]
    return lines + (["", f"**WARNING: {stats['warning']}**"] if stats.get("warning") else [])


def markdown(report: dict, plots: Sequence[str] = ()) -> str:
    """The human-readable report: definitions first, then summary, per-class table, empty cases."""
    lines = [f"# Evaluation report: {report.get('dataset', '')}", ""]
    run = report.get("run", {})
    if run:
        lines += [f"- {k}: `{v}`" for k, v in run.items()] + [""]
    lines += [f"{report['n_images']} frames from {report.get('n_groups', '?')} groups (videos/patients), "
              f"{len(report['classes'])} classes. All scores on a 0-1 scale.", ""]
    lines += [f"Note: {n}" for n in report.get("notes", [])] + ([""] if report.get("notes") else [])
    lines += ["## Definitions", "", report["definitions"], "", "## Summary", "", *_summary_lines(report),
              *_enhancement_lines(report), "", "## Per class", "", *_per_class_lines(report),
              *_empty_case_lines(report)]
    cm = report["confusion_matrix"]
    labels = cm["labels"]
    lines += ["", "## Confusion matrix of matched instances", "",
              "Rows: ground truth, columns: prediction; class-agnostic one-to-one matching at mask IoU >= 0.5; "
              "`background` = unmatched (predictions ignored in ignore regions are left out).", "",
              "| gt \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, cm["matrix"], strict=True):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    rk = report.get("ranking", {})
    if rk.get("best"):
        lines += ["", f"Best frames (mean Dice): {', '.join(map(str, rk['best']))}; "
                      f"worst: {', '.join(map(str, rk['worst']))}."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | os.PathLike, overwrite: bool = False,
                 plots: Sequence[str] = ()) -> list[Path]:
    """Write the four report files into ``out_dir`` (atomically); returns their paths."""
    out = Path(out_dir)
    if not overwrite:
        for name in REPORT_FILES:
            if (out / name).exists():
                raise FetalHeartError(f"{out / name} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        write_json_atomic(out / "report.json", json_ready(report), overwrite=overwrite),
        write_text_atomic(out / "per_class.csv", _csv_text(per_class_rows(report)), overwrite=overwrite),
    ]
    fields = list(PER_IMAGE_FIELDS) + ([k for k in ("hd95", "assd") if report["per_image"] and
                                        k in report["per_image"][0]])
    paths.append(write_text_atomic(out / "per_image.csv", _csv_text(report["per_image"], fields),
                                   overwrite=overwrite))
    paths.append(write_text_atomic(out / "report.md", markdown(report, plots), overwrite=overwrite))
    return paths
