"""Report writers: report.json (everything), per_class.csv, per_image.csv, report.md (for people).

All scores in the CSV and Markdown files are on a 0-1 scale, COCO AP included (detectron2 prints
it x100), so a row reads like the study's tables (mAP 0.3049 for model 14).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from fetalheart.evaluation.evaluator import json_ready
from fetalheart.utils.io import write_json_atomic, write_text_atomic

REPORT_FILES = ("report.json", "per_class.csv", "per_image.csv", "report.md")


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
            "n_images_gt": e["n_images_gt"],
            "segm_AP": _coco(report, "segm", f"AP-{name}"),
            "segm_AP50": _coco(report, "segm", f"AP50-{name}"),
            "segm_AP75": _coco(report, "segm", f"AP75-{name}"),
            "bbox_AP": _coco(report, "bbox", f"AP-{name}"),
        }
        for m in ("iou", "dice"):
            for k in ("mean", "std", "ci_low", "ci_high"):
                row[f"{m}_{k}"] = e[m][k]
        for k in ("precision", "recall", "f1", "iou", "dice", "tp", "fp", "fn"):
            row[f"inst_{k}"] = e["instance"][k]
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


PER_IMAGE_FIELDS = ("image_id", "file_name", "class", "iou", "dice", "intersection", "gt_area", "pred_area",
                    "n_gt", "n_pred", "tp", "fp", "fn", "inst_iou", "inst_dice")


def markdown(report: dict, plots: Sequence[str] = ()) -> str:
    """The human-readable report: definitions first, then summary, per-class table, empty cases."""
    o = report["overall"]
    lines = [f"# Evaluation report: {report.get('dataset', '')}", ""]
    run = report.get("run", {})
    if run:
        lines += [f"- {k}: `{v}`" for k, v in run.items()] + [""]
    lines += [f"{report['n_images']} images, {len(report['classes'])} classes. All scores on a 0-1 scale.", "",
              "## Definitions", "", report["definitions"], "", "## Summary", "",
              "| metric | value | 95% CI |", "|---|---|---|"]
    for label, task, key in (("COCO segm AP", "segm", "AP"), ("COCO segm AP50", "segm", "AP50"),
                             ("COCO segm AP75", "segm", "AP75"), ("COCO bbox AP", "bbox", "AP")):
        lines.append(f"| {label} | {_f(_coco(report, task, key))} | |")
    sm = report["study_map"]
    lines.append(f"| Study mAP (Matterport, 0.5:0.95; {sm['n_images']} images) | {_f(sm['mAP'])} | |")
    lines.append(f"| Study mAP50 | {_f(sm['mAP50'])} | |")
    for key, label in (("iou_macro", "IoU macro"), ("dice_macro", "Dice macro"),
                       ("iou_micro", "IoU micro"), ("dice_micro", "Dice micro")):
        v = o[key]
        lines.append(f"| {label} | {_f(v['mean'])} | [{_f(v['ci_low'])}, {_f(v['ci_high'])}] |")
    im = o["instance_micro"]
    lines.append(f"| Instance precision / recall / F1 | {_f(im['precision'])} / {_f(im['recall'])} / "
                 f"{_f(im['f1'])} | TP {im['tp']}, FP {im['fp']}, FN {im['fn']} |")
    lines.append(f"| Instance IoU / Dice of matches (macro) | {_f(o['instance_macro']['iou'])} / "
                 f"{_f(o['instance_macro']['dice'])} | |")
    if "hd95_macro" in o:
        lines.append(f"| HD95 / ASSD macro (px) | {_f(o['hd95_macro'], 2)} / {_f(o['assd_macro'], 2)} | |")
    lines += ["", "## Per class", "",
              "| class | n | AP | AP50 | AP75 | IoU mean +/- std [95% CI] | Dice mean +/- std [95% CI] "
              "| P | R | F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in per_class_rows(report):
        lines.append(
            f"| {r['class']} | {r['n_images_counted']} | {_f(r['segm_AP'])} | {_f(r['segm_AP50'])} | "
            f"{_f(r['segm_AP75'])} | {_f(r['iou_mean'])} +/- {_f(r['iou_std'])} [{_f(r['iou_ci_low'])}, "
            f"{_f(r['iou_ci_high'])}] | {_f(r['dice_mean'])} +/- {_f(r['dice_std'])} [{_f(r['dice_ci_low'])}, "
            f"{_f(r['dice_ci_high'])}] | {_f(r['inst_precision'])} | {_f(r['inst_recall'])} | {_f(r['inst_f1'])} |")
    if "hd95_mean" in (per_class_rows(report) or [{}])[0]:
        lines += ["", "| class | HD95 px (n, n inf) | ASSD px |", "|---|---|---|"]
        for r in per_class_rows(report):
            lines.append(f"| {r['class']} | {_f(r['hd95_mean'], 2)} ({r['hd95_n']}, {r['hd95_n_inf']}) | "
                         f"{_f(r['assd_mean'], 2)} |")
    ec = o["empty_cases"]
    lines += ["", "## Empty cases", "",
              f"Of {ec['image_class_pairs']} image x class pairs: {ec['empty_both_not_counted']} empty in both "
              f"(not counted), {ec['missed_counted_0']} present only in ground truth (missed, counted 0), "
              f"{ec['false_alarm_counted_0']} present only in prediction (false alarm, counted 0). "
              f"Images without any ground truth: {ec['images_without_ground_truth']}.", "",
              "| class | empty both | missed | false alarm |", "|---|---|---|---|"]
    for name in report["classes"]:
        e = report["per_class"][name]
        lines.append(f"| {name} | {e['n_empty_both']} | {e['n_missed']} | {e['n_false_alarm']} |")
    cm = report["confusion_matrix"]
    labels = cm["labels"]
    lines += ["", "## Confusion matrix of matched instances", "",
              "Rows: ground truth, columns: prediction; class-agnostic one-to-one matching at mask IoU >= 0.5; "
              "`background` = unmatched.", "",
              "| gt \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, cm["matrix"], strict=True):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    rk = report.get("ranking", {})
    if rk.get("best"):
        lines += ["", f"Best images (mean Dice): {', '.join(map(str, rk['best']))}; "
                      f"worst: {', '.join(map(str, rk['worst']))}."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | os.PathLike, overwrite: bool = False,
                 plots: Sequence[str] = ()) -> list[Path]:
    """Write the four report files into ``out_dir`` (atomically); returns their paths."""
    out = Path(out_dir)
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
