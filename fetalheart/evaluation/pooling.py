"""Pooling the K fold evaluations of one model into one out-of-fold report.

Every frame was in exactly one validation fold, so the folds' per-frame records (report.json) pool
into one report as if the union had been evaluated at once: IoU/Dice, instance counts and both mAPs
from the records, COCO AP from COCOeval on the union of predictions and ground truth. That pooled COCO
AP ranks the detections of K different models together (their scores are not comparable), so it is
labelled "pooled over K models" and the mean +/- std of the folds' own COCO AP (``coco_folds``) is
kept beside it as the primary number. No torch or detectron2 here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import read_json

_POOL_KEYS = ("score_thresh", "study_map_mode", "study_map_min_score", "boundary_metrics")


def _union_coco(paths: Sequence[Path]) -> dict:
    """One COCO ground truth from the folds' validation files (image ids must be unique across folds;
    annotation ids are renumbered, as each fold file numbers its own)."""
    images, anns, cats = [], [], None
    for p in paths:
        d = read_json(p)
        if cats is not None and d.get("categories") != cats:
            raise FetalHeartError(f"{p}: categories differ from the other folds' ground truth")
        cats = d.get("categories")
        images += d.get("images", [])
        anns += [{**a, "id": len(anns) + k + 1} for k, a in enumerate(d.get("annotations", []))]
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        raise FetalHeartError("image ids repeat across the folds' ground truth: cannot pool")
    return {"images": images, "annotations": anns, "categories": cats or []}


def pooled_coco(reports: Sequence[dict], eval_dirs: Sequence[Path]) -> tuple[dict, str]:
    """COCOeval (segm, bbox) of the union of the folds' ``coco_instances_results.json`` against the
    union of their validation ground truth; ({}, why) when a file is missing."""
    from fetalheart.evaluation.coco_ap import coco_results_ap

    from pycocotools.coco import COCO

    gt_files = [r.get("ground_truth_json") for r in reports]
    res_files = [Path(d) / "coco_instances_results.json" for d in eval_dirs]
    missing = [str(p) for p in res_files if not p.is_file()] + \
              [f"ground truth of {d}" for d, g in zip(eval_dirs, gt_files, strict=True) if not g or not Path(g).is_file()]
    if missing:
        return {}, f"COCO AP not pooled: missing {', '.join(missing)}"
    results = [r for p in res_files for r in json.loads(p.read_text(encoding="utf-8"))]
    if not results:
        return {}, "COCO AP not pooled: no predictions in any fold"
    gt = COCO()
    gt.dataset = _union_coco([Path(g) for g in gt_files])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return coco_results_ap(gt, results), ""


def fold_coco_spread(reports: Sequence[dict]) -> dict:
    """Mean and std (ddof=1, 0-1 scale) over the folds' own COCO AP: the primary K-fold number for a
    ranking-based AP, as each fold's detections come from one model."""
    import numpy as np

    out = {}
    for task in ("segm", "bbox"):
        v = np.array([float(r.get("coco", {}).get(task, {}).get("AP", np.nan) or np.nan) for r in reports])
        v = v[np.isfinite(v)]
        if v.size:
            out[task] = {"mean": float(v.mean()) / 100, "std": float(v.std(ddof=1)) / 100 if v.size > 1 else float("nan"),
                         "n_folds": int(v.size)}
    return out


def pool_folds(eval_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, overwrite: bool = False) -> dict:
    """Pool one model's K out-of-fold evaluations into one report written to ``out_dir``; returns it.

    IoU/Dice, instance counts and both mAPs are recomputed from the folds' per-frame records (the
    study mAP is a mean over frames, the corrected mAP re-ranks all frames' detections); COCO AP is
    COCOeval on the union of the folds' predictions and validation ground truth. The folds must have
    been evaluated with the same settings and classes, on disjoint image ids.
    """
    from fetalheart.evaluation.aggregate import flat_results, summarize_records
    from fetalheart.evaluation.per_image import records_from_report
    from fetalheart.evaluation.report import write_report
    from fetalheart.evaluation.settings import EvalSettings

    dirs = [Path(d) for d in eval_dirs]
    if not dirs:
        raise FetalHeartError("pool_folds needs at least one evaluation folder")
    reports = [read_json(d / "report.json") for d in dirs]
    first = reports[0]
    for d, r in zip(dirs[1:], reports[1:], strict=True):
        if r.get("classes") != first.get("classes"):
            raise FetalHeartError(f"{d}: classes differ from {dirs[0]}")
        if any(r.get("settings", {}).get(k) != first.get("settings", {}).get(k) for k in _POOL_KEYS):
            raise FetalHeartError(f"{d}: evaluated with other settings than {dirs[0]} ({', '.join(_POOL_KEYS)})")
    records = [rec for r in reports for rec in records_from_report(r)]
    ids = [str(rec["image_id"]) for rec in records]
    if len(set(ids)) != len(ids):
        raise FetalHeartError("the same image id appears in several folds: these are not out-of-fold evaluations")
    st = first.get("settings", {})
    settings = EvalSettings(**{k: st[k] for k in (*_POOL_KEYS, "bootstrap_samples", "seed") if k in st})
    report = summarize_records(records, first["classes"], settings)
    folds = [r.get("run", {}).get("fold", -1) for r in reports]
    report["dataset"] = "pooled out-of-fold: " + ", ".join(str(r.get("dataset", "")) for r in reports)
    report["run"] = {**first.get("run", {}), "fold": "pooled", "folds": folds, "pooled_from": [str(d) for d in dirs]}
    report["coco"], note = pooled_coco(reports, dirs)
    report["coco_folds"] = fold_coco_spread(reports)
    report["notes"] = [note] if note else []
    report["notes"].append(f"COCO AP and the corrected mAP here rank the detections of {len(dirs)} models (one per "
                           "fold) together, whose scores are not comparable: read the mean +/- std over folds "
                           "(coco_folds) for them; the study mAP, IoU and Dice pool per frame.")
    report["summary"] = flat_results(report)
    write_report(report, out_dir, overwrite=overwrite)
    return report

