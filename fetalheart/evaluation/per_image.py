"""Per-image records: one image's ground truth, ignore regions and predictions reduced to small count arrays.

``image_record`` works on run-length encodings (``fetalheart.annotations.rle``): IoU, unions and areas
on RLEs cost a fraction of the same operations on full-resolution masks, so memory stays flat and
time small over large validation sets. ``compact_record`` / ``record_from_compact`` are the sparse
JSON form kept in report.json, from which folds are pooled and runs compared.

Ignore regions (``iscrowd: 1`` annotations, one per class for each LabelMe ``__ignore__`` shape) are
never ground truth: see ``image_record``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.annotations import rle
from fetalheart.annotations.rle import segmentation_rle
from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.evaluation.study_map import (
    IOU_THRESHOLDS,
    corrected_detections,
    float32_overlaps_from_iou,
    matterport_ap_range,
)
from fetalheart.utils.errors import FetalHeartError

import numpy as np


def annotation_rles(record: dict, crowd: bool = False) -> tuple[list[dict], np.ndarray]:
    """RLEs (pycocotools form) and contiguous class ids of one detectron2 dataset dict's annotations:
    the ground truth (``iscrowd`` 0) by default, the ignore regions (``iscrowd`` 1) with ``crowd=True``."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = [], []
    for ann in record.get("annotations", []):
        if bool(ann.get("iscrowd", 0)) != crowd or ann.get("segmentation") is None:
            continue
        r = segmentation_rle(ann["segmentation"], h, w)
        if r is not None:
            rles.append(r)
            classes.append(int(ann["category_id"]))
    return rles, np.asarray(classes, dtype=int)


def annotation_masks(record: dict, crowd: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N,H,W bool) and contiguous class ids of the ground truth (or, ``crowd=True``, ignore regions)."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = annotation_rles(record, crowd)
    return rle.decode_masks(rles, h, w), classes


@dataclass
class ImageData:
    """One image's ground truth, ignore regions and predictions, as RLEs (pycocotools form)."""

    image_id: int | str
    file_name: str
    height: int
    width: int
    gt_rles: list
    gt_classes: np.ndarray
    pred_rles: list
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    crowd_rles: list = field(default_factory=list)
    crowd_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    group: str = ""
    group_from: str = ""
    name: str = ""  # the frame's name in its COCO file (relative, as written): compare_runs pairs frames by it


def image_data(record: dict, pred_rles: list, pred_classes, pred_scores, group: tuple[str, str] = ("", ""),
               name: str = "") -> ImageData:
    """One image's ground truth (a detectron2 dataset dict) with its predictions (RLEs, contiguous classes,
    scores), its (group, where the group came from) and its COCO file name: what a model's evaluator and
    an evaluation from files both reduce with ``image_record``."""
    gt_rles, gt_classes = annotation_rles(record)
    crowd_rles, crowd_classes = annotation_rles(record, crowd=True)
    return ImageData(record["image_id"], record.get("file_name", ""), int(record["height"]), int(record["width"]),
                     gt_rles, gt_classes, pred_rles, np.asarray(pred_classes, dtype=int),
                     np.asarray(pred_scores, dtype=np.float64), crowd_rles, crowd_classes, group[0], group[1],
                     name or Path(str(record.get("file_name", ""))).name)


def ground_truth_digest(img: ImageData) -> str:
    """A hash of one image's ground truth as scored: its size and every (class, mask) of the ground truth
    and of the ignore regions, annotation order ignored. Content only (no paths, ids or times), so two
    evaluations of the same labels agree wherever the files lie, and a relabelled frame differs."""
    def masks(rles, classes):
        return sorted([int(c), rle.to_json(r)["counts"]] for c, r in zip(classes, rles, strict=True))

    doc = [int(img.height), int(img.width), masks(img.gt_rles, img.gt_classes),
           masks(img.crowd_rles, img.crowd_classes)]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:GT_DIGEST_CHARS]


#: Hex characters of a frame's ground-truth hash kept in report.json (128 bits).
GT_DIGEST_CHARS = 32


def ground_truth_summary(records: list[dict]) -> dict:
    """The report's ``ground_truth`` entry: one hash over every evaluated frame's name and ground truth."""
    pairs = sorted([str(r.get("name", "")), str(r.get("gt", ""))] for r in records)
    digest = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    return {"sha256": digest, "n_images": len(records),
            "definition": "SHA-256 over the sorted (frame name, frame ground-truth hash) pairs; a frame's hash covers "
                          "its size and every ground-truth and ignore-region mask with its class, not paths or ids"}


def _semantic(img: ImageData, seg: np.ndarray, num_classes: int) -> tuple[np.ndarray, dict]:
    """Per class (intersection, gt area, pred area) outside that class's ignore regions, and the unions."""
    gc, pc = np.asarray(img.gt_classes, dtype=int), np.asarray(img.pred_classes, dtype=int)[seg]
    kc = np.asarray(img.crowd_classes, dtype=int)
    pr = [img.pred_rles[i] for i in seg]
    counts = np.zeros((num_classes, 3), dtype=np.int64)
    unions = {}
    for c in set(gc.tolist()) | set(pc.tolist()):
        ug, up = rle.union(img.gt_rles, np.flatnonzero(gc == c)), rle.union(pr, np.flatnonzero(pc == c))
        uk = rle.union(img.crowd_rles, np.flatnonzero(kc == c))
        area = rle.intersection_area
        counts[c] = (area(ug, up) - area(ug, up, uk), area(ug) - area(ug, uk), area(up) - area(up, uk))
        unions[c] = (ug, up, uk)
    return counts, unions


def _boundary(unions: dict, num_classes: int, h: int, w: int) -> np.ndarray:
    b = np.full((num_classes, 2), np.nan)
    empty = np.zeros((h, w), bool)
    for c, (ug, up, uk) in unions.items():
        keep = ~rle.decode(uk) if uk is not None else ~empty
        g = rle.decode(ug) & keep if ug is not None else empty
        p = rle.decode(up) & keep if up is not None else empty
        b[c] = M.boundary_metrics(p, g)
    return b


def image_record(img: ImageData, num_classes: int, settings: EvalSettings | None = None,
                 keep_predictions: bool = True) -> dict:
    """Everything the report needs from one image, as small arrays.

    Works on run-length encodings (pycocotools): IoU, unions and areas on RLEs cost a fraction of
    the same operations on full-resolution masks, which keeps this evaluator's time small beside
    COCOEvaluator's. One (gt x pred) IoU matrix serves the instance matching, the confusion matrix
    and both mAPs. Predictions with score >= ``score_thresh`` count for IoU/Dice and instances,
    those with score >= ``study_map_min_score`` for the mAPs.
    """
    s = settings or EvalSettings()
    scores = np.asarray(img.pred_scores, dtype=np.float64)
    pc, gc = np.asarray(img.pred_classes, dtype=int), np.asarray(img.gt_classes, dtype=int)
    iou = rle.iou(img.gt_rles, img.pred_rles)  # (gt, pred)
    crowd = M.crowd_ignorable(rle.iou(img.pred_rles, img.crowd_rles, crowd=True), pc, img.crowd_classes)
    seg = np.flatnonzero(scores >= s.score_thresh)
    counts, unions = _semantic(img, seg, num_classes)
    ignore = crowd[seg] >= 0.5
    st = np.flatnonzero(scores >= s.study_map_min_score)
    area_p = rle.areas([img.pred_rles[i] for i in st])
    area_g = rle.areas(img.gt_rles)
    rec = {
        "image_id": img.image_id, "file_name": img.file_name, "group": img.group, "group_from": img.group_from,
        "name": img.name, "gt": ground_truth_digest(img),
        "height": int(img.height), "width": int(img.width), "n_crowd": len(img.crowd_rles),
        "counts": counts,
        "n_gt": np.bincount(gc, minlength=num_classes)[:num_classes],
        "n_pred": np.bincount(pc[seg], minlength=num_classes)[:num_classes],
        "inst": M.instance_stats_from_iou(iou[:, seg], gc, pc[seg], num_classes, 0.5, ignore),
        "confusion": M.confusion_from_iou(iou[:, seg], gc, pc[seg], num_classes, 0.5, ignore),
        "study_ap": matterport_ap_range(float32_overlaps_from_iou(iou[:, st].T, area_p, area_g), gc, pc[st],
                                        scores[st], crowd_overlap=crowd[st]),
        "dets": corrected_detections(iou[:, st].T, gc, pc[st], scores[st], crowd_overlap=crowd[st]),
    }
    if s.boundary_metrics:
        rec["boundary"] = _boundary(unions, num_classes, int(img.height), int(img.width))
    if keep_predictions:
        rec["pred"] = {"rles": [rle.to_json(img.pred_rles[i]) for i in seg], "classes": pc[seg].tolist(),
                       "scores": scores[seg].tolist()}
    return rec



# --- Compact per-image records in report.json (what pooling folds and compare_runs read) ---------

N_T = len(IOU_THRESHOLDS)


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
        "image_id": rec["image_id"], "file_name": rec["file_name"], "name": rec.get("name", ""),
        "gt": rec.get("gt", ""), "group": rec.get("group", ""), "group_from": rec.get("group_from", ""),
        "height": rec.get("height"), "width": rec.get("width"),
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
    rec = {k: img.get(k) for k in ("image_id", "file_name", "name", "gt", "group", "group_from", "height", "width",
                                   "n_crowd")}
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

