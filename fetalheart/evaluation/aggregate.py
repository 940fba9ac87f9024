"""Aggregation: per-image records -> the report dict (per class, overall, the study's mAP, ranking).

``summarize_records`` aggregates the records ``SegmentationMetricsEvaluator`` builds (or that
``per_image.records_from_report`` rebuilds from a report.json, which is how K fold evaluations are
pooled); every CI is a cluster bootstrap over groups (videos / patients). No torch or detectron2
here, so pooling and comparing reports starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.per_image import N_T, compact_record, ground_truth_summary
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.evaluation.study_map import (
    IOU_THRESHOLDS,
    MATTERPORT_IOU_THRESHOLDS,
    summarize_corrected,
    summarize_matterport,
)

import numpy as np

#: What a report.json holds; bumped when its content changes, so cached evaluations are redone
#: (the pipeline's evaluation key holds it). 2: per-frame names and ground-truth hashes (compare_runs pairs
#: frames by name and refuses other ground truth).
REPORT_VERSION = 2


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
    with M.quiet_nan():
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
        with M.quiet_nan():
            for m in ("hd95", "assd"):
                out[f"{m}_macro"] = float(np.nanmean([per_class[c][m]["mean"] for c in names]))
    return out


def _study_map(records: Sequence[dict], a: dict, class_names: Sequence[str], s: EvalSettings) -> dict:
    n, C = a["n"], len(class_names)
    ap = np.stack([r["study_ap"] for r in records]) if n else np.zeros((0, N_T))
    mp = summarize_matterport(ap)
    with M.quiet_nan():
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
    with M.quiet_nan():
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
        "report_version": REPORT_VERSION,
        "definitions": M.DEFINITIONS.format(score_thresh=s.score_thresh, n_boot=s.bootstrap_samples,
                                            study_min_score=s.study_map_min_score, study_mode=s.study_map_mode,
                                            group_source=group_source, min_boot=M.MIN_GROUPS_FOR_BOOTSTRAP),
        "settings": {**asdict(s), "bootstrap": f"percentile, cluster (groups resampled), from {M.MIN_GROUPS_FOR_BOOTSTRAP} groups",
                     "groups": group_source, "instance_match_iou": 0.5,
                     "study_map_iou_thresholds": {"matterport": MATTERPORT_IOU_THRESHOLDS.tolist(),
                                                  "corrected": IOU_THRESHOLDS.tolist()}},
        "classes": list(class_names),
        "ground_truth": ground_truth_summary(records),
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

