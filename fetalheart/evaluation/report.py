"""The evaluation report: per-image records -> report dict -> report.json, per_class.csv, per_image.csv, report.md.

``summarize_records`` aggregates the per-image records ``SegmentationMetricsEvaluator`` builds
(or that ``records_from_report`` rebuilds from a report.json, which is how K fold evaluations are
pooled) into the report; every CI is a cluster bootstrap over groups (videos / patients). No
torch or detectron2 here, so pooling and comparing reports starts fast.

All scores in the CSV and Markdown files are on a 0-1 scale, COCO AP included (detectron2 prints
it x100), so a row reads like the study's tables (mAP 0.3049 for model 14).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.study_map import (
    IOU_THRESHOLDS,
    MATTERPORT_IOU_THRESHOLDS,
    MATTERPORT_MIN_SCORE,
    STUDY_MAP_MODES,
    summarize_corrected,
    summarize_matterport,
)
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import write_json_atomic, write_text_atomic

import numpy as np

REPORT_FILES = ("report.json", "per_class.csv", "per_image.csv", "report.md")
N_T = len(IOU_THRESHOLDS)


@dataclass
class EvalSettings:
    """How predictions are scored; the ``EVAL.*`` config keys of the same (upper-case) names."""

    score_thresh: float = 0.5
    study_map_mode: str = "matterport"
    study_map_min_score: float = MATTERPORT_MIN_SCORE
    bootstrap_samples: int = 1000
    seed: int = 0
    boundary_metrics: bool = False

    def __post_init__(self):
        if self.study_map_mode not in STUDY_MAP_MODES:
            raise FetalHeartError(f"EVAL.STUDY_MAP_MODE must be one of {', '.join(STUDY_MAP_MODES)}, "
                                  f"got {self.study_map_mode!r}")
        for name in ("score_thresh", "study_map_min_score"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise FetalHeartError(f"EVAL.{name.upper()} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_cfg(cls, cfg) -> EvalSettings:
        """From ``cfg.EVAL`` (keys read with defaults, so older configs without them still work)."""
        ev = cfg.get("EVAL", None) or {}
        return cls(score_thresh=float(ev.get("SCORE_THRESH", 0.5)),
                   study_map_mode=str(ev.get("STUDY_MAP_MODE", "matterport")),
                   study_map_min_score=float(ev.get("STUDY_MAP_MIN_SCORE", MATTERPORT_MIN_SCORE)),
                   bootstrap_samples=int(ev.get("BOOTSTRAP_SAMPLES", 1000)), seed=int(ev.get("SEED", 0)),
                   boundary_metrics=bool(ev.get("BOUNDARY_METRICS", False)))


# --- Aggregation ------------------------------------------------------------------------------


def _arrays(records: Sequence[dict], C: int) -> dict:
    n = len(records)
    inst = {k: np.stack([r["inst"][k] for r in records]) if n else np.zeros((0, C)) for k in M.INSTANCE_KEYS}
    counts = np.stack([r["counts"] for r in records]) if n else np.zeros((0, C, 3))
    gidx, groups = M.group_index([r.get("group", str(r["image_id"])) for r in records])
    iou, dice = M.semantic_iou_dice(counts)
    boundary = np.stack([r["boundary"] for r in records]) if n and "boundary" in records[0] else None
    return {"n": n, "counts": counts, "iou": iou, "dice": dice, "inst": inst, "gidx": gidx, "groups": groups,
            "boundary": boundary, "gt": counts[..., 1] > 0, "pred": counts[..., 2] > 0}


def _class_entry(a: dict, c: int, s: EvalSettings) -> dict:
    tp, fp, fn, ign = (float(a["inst"][k][:, c].sum()) for k in ("tp", "fp", "fn", "ignored"))
    p, r, f = M.precision_recall_f1(tp, fp, fn)
    gt, pred = a["gt"][:, c], a["pred"][:, c]
    entry = {
        "iou": M.summarize_grouped(a["iou"][:, c], a["gidx"], s.bootstrap_samples, s.seed),
        "dice": M.summarize_grouped(a["dice"][:, c], a["gidx"], s.bootstrap_samples, s.seed),
        "n_images_gt": int(gt.sum()), "n_images_pred": int(pred.sum()),
        "n_empty_both": int((~gt & ~pred).sum()), "n_missed": int((gt & ~pred).sum()),
        "n_false_alarm": int((~gt & pred).sum()),
        "instance": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "ignored": int(ign),
                     "precision": p, "recall": r, "f1": f,
                     "iou": float(a["inst"]["iou_sum"][:, c].sum() / tp) if tp else float("nan"),
                     "dice": float(a["inst"]["dice_sum"][:, c].sum() / tp) if tp else float("nan")},
    }
    if a["boundary"] is not None:
        for k, name in enumerate(("hd95", "assd")):
            v = a["boundary"][:, c, k]
            entry[name] = M.summarize_grouped(v, a["gidx"], s.bootstrap_samples, s.seed)
            entry[name]["n_inf"] = int(np.isinf(v).sum())
    return entry


def _overall(a: dict, per_class: dict, records: Sequence[dict], s: EvalSettings) -> dict:
    names = list(per_class)
    B, seed = s.bootstrap_samples, s.seed
    micro = M.micro_summary(a["counts"], a["gidx"], B, seed)
    tp, fp, fn, ign = (float(a["inst"][k].sum()) for k in ("tp", "fp", "fn", "ignored"))
    p, r, f = M.precision_recall_f1(tp, fp, fn)
    with M._quiet_nan():
        inst_macro = {k: float(np.nanmean([per_class[c]["instance"][k] for c in names]))
                      for k in ("iou", "dice", "precision", "recall", "f1")}
    gt, pred, n = a["gt"], a["pred"], a["n"]
    out = {
        "n_frames": n, "n_groups": len(a["groups"]),
        "iou_macro": M.macro_summary(a["iou"], a["gidx"], B, seed),
        "dice_macro": M.macro_summary(a["dice"], a["gidx"], B, seed),
        "iou_micro": micro["iou"], "dice_micro": micro["dice"],
        "instance_macro": inst_macro,
        "instance_micro": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "ignored": int(ign),
                           "precision": p, "recall": r, "f1": f},
        "empty_cases": {
            "image_class_pairs": int(n * len(names)),
            "empty_both_not_counted": int((~gt & ~pred).sum()),
            "missed_counted_0": int((gt & ~pred).sum()),
            "false_alarm_counted_0": int((~gt & pred).sum()),
            "images_without_ground_truth": int((~gt.any(1)).sum()) if n else 0,
        },
        "ignore_regions": {"frames_with": int(sum(r.get("n_crowd", 0) > 0 for r in records)),
                           "regions": int(sum(r.get("n_crowd", 0) for r in records)),
                           "predictions_ignored": int(ign)},
    }
    if a["boundary"] is not None:
        with M._quiet_nan():
            for m in ("hd95", "assd"):
                out[f"{m}_macro"] = float(np.nanmean([per_class[c][m]["mean"] for c in names]))
    return out


def _study_map(records: Sequence[dict], a: dict, class_names: Sequence[str], s: EvalSettings) -> dict:
    n, C = a["n"], len(class_names)
    ap = np.stack([r["study_ap"] for r in records]) if n else np.zeros((0, N_T))
    mp = summarize_matterport(ap)
    with M._quiet_nan():
        per_image = np.where(np.isfinite(ap).all(1), ap.mean(1), np.nan) if n else np.zeros(0)
    ci = M.summarize_grouped(per_image, a["gidx"], s.bootstrap_samples, s.seed)
    mp.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], n_groups=ci["n_groups"])
    dets = np.concatenate([np.asarray(r["dets"]).reshape(-1, 2 + N_T) for r in records]) if n else np.zeros((0, 12))
    n_gt = np.stack([r["n_gt"] for r in records]).sum(0) if n else np.zeros(C)
    corr = summarize_corrected(dets, n_gt, class_names)
    corr["n_images"] = n
    sel = mp if s.study_map_mode == "matterport" else corr
    return {"mode": s.study_map_mode, "min_score": s.study_map_min_score, "mAP": sel["mAP"], "mAP50": sel["mAP50"],
            "mAP75": sel["mAP75"], "n_images": mp["n_images"] if sel is mp else n, "matterport": mp, "corrected": corr}


def _per_image_rows(records: Sequence[dict], a: dict, class_names: Sequence[str]) -> list[dict]:
    rows = []
    iou, dice, counts, b = a["iou"], a["dice"], a["counts"], a["boundary"]
    for i, rec in enumerate(records):
        for c in np.flatnonzero(np.isfinite(dice[i])):
            tpc = rec["inst"]["tp"][c]
            row = {"image_id": rec["image_id"], "file_name": rec["file_name"], "group": rec.get("group", ""),
                   "class": class_names[c], "iou": float(iou[i, c]), "dice": float(dice[i, c]),
                   "intersection": int(counts[i, c, 0]), "gt_area": int(counts[i, c, 1]),
                   "pred_area": int(counts[i, c, 2]), "n_gt": int(rec["n_gt"][c]), "n_pred": int(rec["n_pred"][c]),
                   "tp": int(tpc), "fp": int(rec["inst"]["fp"][c]), "fn": int(rec["inst"]["fn"][c]),
                   "inst_iou": float(rec["inst"]["iou_sum"][c] / tpc) if tpc else float("nan"),
                   "inst_dice": float(rec["inst"]["dice_sum"][c] / tpc) if tpc else float("nan")}
            if b is not None:
                row["hd95"], row["assd"] = float(b[i, c, 0]), float(b[i, c, 1])
            rows.append(row)
    return rows


def _ranking(records: Sequence[dict], dice: np.ndarray) -> dict:
    with M._quiet_nan():
        scores = [float(np.nanmean(d)) if np.isfinite(d).any() else float("nan") for d in dice]
    order = [i for i in np.argsort(scores, kind="stable") if np.isfinite(scores[i])]
    k = min(3, len(order) // 2) if len(order) > 1 else len(order)
    return {"worst": [records[i]["image_id"] for i in order[:k]],
            "best": [records[i]["image_id"] for i in order[::-1][:k]],
            "image_mean_dice": {str(r["image_id"]): scores[i] for i, r in enumerate(records)}}


def _group_source(records: Sequence[dict]) -> str:
    n_coco = sum(r.get("group_from") == "coco" for r in records)
    if n_coco == len(records) and records:
        return "the COCO image's `group` key"
    rule = "the file name without its trailing `_<frame index>`"
    return f"the COCO image's `group` key for {n_coco} frames, else {rule}" if n_coco else rule


def summarize_records(records: Sequence[dict], class_names: Sequence[str] = CLASS_NAMES,
                      settings: EvalSettings | None = None) -> dict:
    """Aggregate per-image records into the report dict (per class, overall, study mAP, per image, ...)."""
    s = settings or EvalSettings()
    C = len(class_names)
    a = _arrays(records, C)
    per_class = {name: _class_entry(a, c, s) for c, name in enumerate(class_names)}
    confusion = sum((r["confusion"] for r in records), np.zeros((C + 1, C + 1), dtype=np.int64))
    group_source = _group_source(records)
    return {
        "definitions": M.DEFINITIONS.format(score_thresh=s.score_thresh, n_boot=s.bootstrap_samples,
                                            study_min_score=s.study_map_min_score, study_mode=s.study_map_mode,
                                            group_source=group_source),
        "settings": {**asdict(s), "bootstrap": "percentile, cluster (groups resampled)",
                     "groups": group_source, "instance_match_iou": 0.5,
                     "study_map_iou_thresholds": {"matterport": MATTERPORT_IOU_THRESHOLDS.tolist(),
                                                  "corrected": IOU_THRESHOLDS.tolist()}},
        "classes": list(class_names),
        "n_images": a["n"],
        "n_groups": len(a["groups"]),
        "per_class": per_class,
        "overall": _overall(a, per_class, records, s),
        "study_map": _study_map(records, a, class_names, s),
        "confusion_matrix": {"labels": [*class_names, "background"], "rows": "ground truth",
                             "columns": "prediction", "matrix": confusion.tolist()},
        "ranking": _ranking(records, a["dice"]),
        "per_image": _per_image_rows(records, a, class_names),
        "images": [compact_record(r) for r in records],
    }


def flat_results(report: dict) -> dict[str, float]:
    """The flat floats EvalHook / BestCheckpointer read, e.g. ``fetalheart/dice_macro``."""
    o, sm = report["overall"], report["study_map"]
    out = {
        "dice_macro": o["dice_macro"]["mean"], "iou_macro": o["iou_macro"]["mean"],
        "dice_micro": o["dice_micro"]["mean"], "iou_micro": o["iou_micro"]["mean"],
        "dice_macro_ci_low": o["dice_macro"]["ci_low"], "dice_macro_ci_high": o["dice_macro"]["ci_high"],
        "inst_dice_macro": o["instance_macro"]["dice"], "inst_iou_macro": o["instance_macro"]["iou"],
        "precision": o["instance_micro"]["precision"], "recall": o["instance_micro"]["recall"],
        "f1": o["instance_micro"]["f1"],
        "study_mAP": sm["mAP"], "study_mAP50": sm["mAP50"], "study_mAP75": sm["mAP75"],
        "study_mAP_matterport": sm["matterport"]["mAP"], "study_mAP_corrected": sm["corrected"]["mAP"],
    }
    for name, e in report["per_class"].items():
        out[f"dice-{name}"] = e["dice"]["mean"]
        out[f"iou-{name}"] = e["iou"]["mean"]
    if "hd95_macro" in o:
        out["hd95_macro"], out["assd_macro"] = o["hd95_macro"], o["assd_macro"]
    return {k: float(v) for k, v in out.items()}


# --- Compact per-image records in report.json (what pooling folds and compare_runs read) ---------

_CLASS_FIELDS = ("inter", "gt_area", "pred_area", "n_gt", "n_pred", *M.INSTANCE_KEYS)


def compact_record(rec: dict) -> dict:
    """A JSON-ready, sparse form of one image's record (classes that occur only)."""
    C = len(rec["counts"])
    rows = np.concatenate([rec["counts"], rec["n_gt"][:, None], rec["n_pred"][:, None],
                           np.stack([rec["inst"][k] for k in M.INSTANCE_KEYS], 1)], 1)
    if "boundary" in rec:
        rows = np.concatenate([rows, rec["boundary"]], 1)
    used = np.flatnonzero(np.abs(np.nan_to_num(rows[:, :len(_CLASS_FIELDS)])).sum(1) > 0)
    cm = np.asarray(rec["confusion"])
    return {
        "image_id": rec["image_id"], "file_name": rec["file_name"], "group": rec.get("group", ""),
        "group_from": rec.get("group_from", ""), "height": rec.get("height"), "width": rec.get("width"),
        "n_crowd": int(rec.get("n_crowd", 0)), "num_classes": C,
        "classes": {str(c): [_num(v) for v in rows[c]] for c in used},
        "confusion": [[int(i), int(j), int(cm[i, j])] for i, j in zip(*np.nonzero(cm), strict=True)],
        "study_ap": [_num(v) for v in rec["study_ap"]],
        "dets": [[_num(v) for v in d] for d in np.asarray(rec["dets"]).reshape(-1, 2 + N_T)],
    }


def _num(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def record_from_compact(img: dict, boundary: bool = False) -> dict:
    """Inverse of ``compact_record`` (JSON null -> NaN; a null boundary distance is inf when exactly one
    of the two masks is empty, as ``boundary_metrics`` returns, else NaN)."""
    C = int(img["num_classes"])
    width = len(_CLASS_FIELDS) + (2 if boundary else 0)
    rows = np.zeros((C, width))
    if boundary:
        rows[:, -2:] = np.nan
    for c, vals in img["classes"].items():
        rows[int(c)] = [np.nan if v is None else v for v in vals]
    cm = np.zeros((C + 1, C + 1), dtype=np.int64)
    for i, j, v in img["confusion"]:
        cm[i, j] = v
    rec = {k: img.get(k) for k in ("image_id", "file_name", "group", "group_from", "height", "width", "n_crowd")}
    rec.update(counts=rows[:, :3].astype(np.int64), n_gt=rows[:, 3].astype(np.int64),
               n_pred=rows[:, 4].astype(np.int64), confusion=cm,
               inst={k: rows[:, 5 + i] for i, k in enumerate(M.INSTANCE_KEYS)},
               study_ap=np.array([np.nan if v is None else v for v in img["study_ap"]], dtype=np.float64),
               dets=np.asarray(img["dets"], dtype=np.float64).reshape(-1, 2 + N_T))
    if boundary:
        b = rows[:, -2:]
        one_empty = (rows[:, 1] > 0) != (rows[:, 2] > 0)
        rec["boundary"] = np.where(np.isnan(b) & one_empty[:, None], np.inf, b)
    return rec


def records_from_report(report: dict) -> list[dict]:
    """The per-image records a report.json was built from (for pooling folds and paired comparisons)."""
    if "images" not in report:
        raise FetalHeartError("report.json has no per-image records (written by an older fetalheart): "
                              "re-run tools/evaluate.py --overwrite")
    boundary = bool(report.get("settings", {}).get("boundary_metrics", False))
    return [record_from_compact(img, boundary) for img in report["images"]]


# --- Writers -----------------------------------------------------------------------------------


def json_ready(obj):
    """Recursively replace NaN/inf with None and numpy scalars with Python ones, for report.json."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
    lines = ["| metric | value | 95% CI (cluster bootstrap) | n |", "|---|---|---|---|"]
    n_frames = report["n_images"]
    for label, task, key in (("COCO segm AP", "segm", "AP"), ("COCO segm AP50", "segm", "AP50"),
                             ("COCO segm AP75", "segm", "AP75"), ("COCO bbox AP", "bbox", "AP")):
        lines.append(f"| {label} | {_f(_coco(report, task, key))} | (pooled, none) | {n_frames} frames |")
    mp, co = sm["matterport"], sm["corrected"]
    shown = " (shown as study mAP)"
    lines += [f"| Study mAP, Matterport{shown if sm['mode'] == 'matterport' else ''} | {_f(mp['mAP'])} | {_ci(mp)} | "
              f"{mp['n_images']} frames with ground truth / {mp.get('n_groups', '')} groups |",
              f"| Study mAP50 / mAP75, Matterport | {_f(mp['mAP50'])} / {_f(mp['mAP75'])} | | |",
              f"| mAP, corrected per class{shown if sm['mode'] == 'corrected' else ''} | {_f(co['mAP'])} | "
              f"(pooled, none) | {co['n_classes']} classes, {co['n_images']} frames |",
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
    from fetalheart.enhance.stats import changes_table

    lines = ["", "## Enhancement", "", f"What `{stats['spec']}` changed on these frames ({stats['definition']}).", "",
             changes_table(stats)]
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
