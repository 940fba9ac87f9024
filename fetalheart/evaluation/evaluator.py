"""``SegmentationMetricsEvaluator``: per-class IoU/Dice (semantic + instance) and the study's mAP.

A detectron2 ``DatasetEvaluator`` used beside ``COCOEvaluator``. ``process`` reduces each image to
a few small count arrays (no masks are kept, except the RLE of predictions for the best/worst
overlays), so memory stays flat over large validation sets; ``evaluate`` aggregates them with
bootstrap CIs and returns detectron2-style flat floats under ``"fetalheart"``. The full report
(per class, per image, confusion matrix) is kept in ``self.report``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.study_map import IOU_THRESHOLDS, image_ap_from_iou, summarize_study_map

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def annotation_rles(record: dict) -> tuple[list[dict], np.ndarray]:
    """Ground-truth RLEs (pycocotools form) and contiguous class ids of one detectron2 dataset dict."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = [], []
    for ann in record.get("annotations", []):
        seg = ann.get("segmentation")
        if seg is None:
            continue
        if isinstance(seg, list):  # polygons
            seg = [p for p in seg if len(p) >= 6]
            if not seg:
                continue
            rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_util.frPyObjects(seg, h, w)
        else:
            rle = dict(seg)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
        rles.append(rle)
        classes.append(int(ann["category_id"]))
    return rles, np.asarray(classes, dtype=int)


def annotation_masks(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth masks (N,H,W bool) and contiguous class ids of one detectron2 dataset dict."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = annotation_rles(record)
    if not rles:
        return np.zeros((0, h, w), dtype=bool), classes
    rles = [{"size": r["size"], "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"]}
            for r in rles]
    return np.stack([mask_util.decode(r).astype(bool) for r in rles]), classes


def encode_masks(masks: np.ndarray) -> list[dict]:
    """Compressed RLE (JSON-ready) of a stack of boolean masks."""
    out = []
    for m in masks:
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


def decode_masks(rles: Sequence[dict], h: int, w: int) -> np.ndarray:
    """Inverse of ``encode_masks``."""
    if not rles:
        return np.zeros((0, h, w), dtype=bool)
    rles = [{"size": r["size"], "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"]}
            for r in rles]
    return np.stack([mask_util.decode(r).astype(bool) for r in rles])


def _rle_iou(a: list[dict], b: list[dict]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_util.iou(a, b, [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def image_record(
    image_id,
    file_name: str,
    gt_rles: list[dict],
    gt_classes: np.ndarray,
    pred_rles: list[dict],
    pred_classes: np.ndarray,
    pred_scores: np.ndarray,
    num_classes: int,
    height: int,
    width: int,
    score_thresh: float = 0.5,
    boundary: bool = False,
    keep_predictions: bool = True,
) -> dict:
    """Everything the report needs from one image, as small arrays.

    Works on run-length encodings (pycocotools): IoU, unions and areas on RLEs cost a fraction
    of the same operations on full-resolution boolean masks, which keeps this evaluator's time
    small beside COCOEvaluator's. One IoU matrix serves the instance matching, the confusion
    matrix and the study's mAP.
    """
    keep = np.flatnonzero(np.asarray(pred_scores) >= score_thresh)
    pr = [pred_rles[i] for i in keep]
    pc = np.asarray(pred_classes, dtype=int)[keep]
    ps = np.asarray(pred_scores, dtype=np.float64)[keep]
    gc = np.asarray(gt_classes, dtype=int)
    iou = _rle_iou(gt_rles, pr)  # (gt, pred)
    counts = np.zeros((num_classes, 3), dtype=np.int64)
    unions = {}
    for c in set(gc.tolist()) | set(pc.tolist()):
        g = [gt_rles[i] for i in np.flatnonzero(gc == c)]
        p = [pr[i] for i in np.flatnonzero(pc == c)]
        ug = mask_util.merge(g, intersect=False) if g else None
        up = mask_util.merge(p, intersect=False) if p else None
        inter = int(mask_util.area(mask_util.merge([ug, up], intersect=True))) if g and p else 0
        counts[c] = (inter, int(mask_util.area(ug)) if g else 0, int(mask_util.area(up)) if p else 0)
        unions[c] = (ug, up)
    rec = {
        "image_id": image_id,
        "file_name": file_name,
        "height": int(height),
        "width": int(width),
        "counts": counts,
        "n_gt": np.bincount(gc, minlength=num_classes)[:num_classes],
        "n_pred": np.bincount(pc, minlength=num_classes)[:num_classes],
        "inst": M.instance_stats_from_iou(iou, gc, pc, num_classes),
        "confusion": M.confusion_from_iou(iou, gc, pc, num_classes),
        "study_ap": image_ap_from_iou(iou.T, gc, pc, ps),
    }
    if boundary:
        b = np.full((num_classes, 2), np.nan)
        empty = np.zeros((height, width), bool)
        for c, (ug, up) in unions.items():
            g = mask_util.decode(ug).astype(bool) if ug is not None else empty
            p = mask_util.decode(up).astype(bool) if up is not None else empty
            b[c] = M.boundary_metrics(p, g)
        rec["boundary"] = b
    if keep_predictions:
        rec["pred"] = {"rles": [_json_rle(r) for r in pr], "classes": pc.tolist(), "scores": ps.tolist()}
    return rec


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _json_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _nan_to_none(x):
    """JSON has no NaN/inf: write null (and say so in the report)."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def summarize_records(
    records: Sequence[dict],
    class_names: Sequence[str] = CLASS_NAMES,
    score_thresh: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Aggregate per-image records into the report dict (per class, overall, per image, ...)."""
    C = len(class_names)
    n = len(records)
    counts = np.stack([r["counts"] for r in records]) if n else np.zeros((0, C, 3))
    iou, dice = M.semantic_iou_dice(counts)  # (n, C)
    inst = {k: np.stack([r["inst"][k] for r in records]) if n else np.zeros((0, C))
            for k in ("tp", "fp", "fn", "iou_sum", "dice_sum")}
    boundary = np.stack([r["boundary"] for r in records]) if n and "boundary" in records[0] else None
    gt_present = counts[..., 1] > 0
    pred_present = counts[..., 2] > 0

    per_class = {}
    for c, name in enumerate(class_names):
        tp, fp, fn = (float(inst[k][:, c].sum()) for k in ("tp", "fp", "fn"))
        p, r, f = M.precision_recall_f1(tp, fp, fn)
        entry = {
            "iou": M.summarize(iou[:, c], n_boot, seed),
            "dice": M.summarize(dice[:, c], n_boot, seed),
            "n_images_gt": int(gt_present[:, c].sum()),
            "n_images_pred": int(pred_present[:, c].sum()),
            "n_empty_both": int((~gt_present[:, c] & ~pred_present[:, c]).sum()),
            "n_missed": int((gt_present[:, c] & ~pred_present[:, c]).sum()),
            "n_false_alarm": int((~gt_present[:, c] & pred_present[:, c]).sum()),
            "instance": {
                "tp": int(tp), "fp": int(fp), "fn": int(fn),
                "precision": p, "recall": r, "f1": f,
                "iou": float(inst["iou_sum"][:, c].sum() / tp) if tp else float("nan"),
                "dice": float(inst["dice_sum"][:, c].sum() / tp) if tp else float("nan"),
            },
        }
        if boundary is not None:
            for k, name_b in enumerate(("hd95", "assd")):
                v = boundary[:, c, k]
                entry[name_b] = M.summarize(v, n_boot, seed)
                entry[name_b]["n_inf"] = int(np.isinf(v).sum())
        per_class[name] = entry

    def macro(key):
        with M._quiet_nan():
            return float(np.nanmean([per_class[k][key]["mean"] for k in class_names]))

    tot = counts.sum((0, 1)) if n else np.zeros(3)
    micro_iou, micro_dice = M.semantic_iou_dice(tot)
    micro_ci = M.bootstrap_micro_ci(counts, n_boot, seed)
    iou_ci = M.bootstrap_macro_ci(iou, n_boot, seed)
    dice_ci = M.bootstrap_macro_ci(dice, n_boot, seed)
    tp, fp, fn = (float(inst[k].sum()) for k in ("tp", "fp", "fn"))
    p, r, f = M.precision_recall_f1(tp, fp, fn)
    with M._quiet_nan():
        inst_macro = {k: float(np.nanmean([per_class[c]["instance"][k] for c in class_names]))
                      for k in ("iou", "dice", "precision", "recall", "f1")}
    overall = {
        "iou_macro": {"mean": macro("iou"), "ci_low": iou_ci[0], "ci_high": iou_ci[1]},
        "dice_macro": {"mean": macro("dice"), "ci_low": dice_ci[0], "ci_high": dice_ci[1]},
        "iou_micro": {"mean": float(micro_iou), "ci_low": micro_ci["iou"][0], "ci_high": micro_ci["iou"][1]},
        "dice_micro": {"mean": float(micro_dice), "ci_low": micro_ci["dice"][0], "ci_high": micro_ci["dice"][1]},
        "instance_macro": inst_macro,
        "instance_micro": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": p, "recall": r, "f1": f},
        "empty_cases": {
            "image_class_pairs": int(n * C),
            "empty_both_not_counted": int((~gt_present & ~pred_present).sum()),
            "missed_counted_0": int((gt_present & ~pred_present).sum()),
            "false_alarm_counted_0": int((~gt_present & pred_present).sum()),
            "images_without_ground_truth": int((~gt_present.any(1)).sum()) if n else 0,
        },
    }
    if boundary is not None:
        with M._quiet_nan():
            overall["hd95_macro"] = float(np.nanmean([per_class[c]["hd95"]["mean"] for c in class_names]))
            overall["assd_macro"] = float(np.nanmean([per_class[c]["assd"]["mean"] for c in class_names]))

    study = summarize_study_map(np.stack([r["study_ap"] for r in records]) if n else np.zeros((0, 10)))
    confusion = sum((r["confusion"] for r in records), np.zeros((C + 1, C + 1), dtype=np.int64))

    per_image = []
    image_scores = []
    for i, rec in enumerate(records):
        with M._quiet_nan():
            image_scores.append(float(np.nanmean(dice[i])) if np.isfinite(dice[i]).any() else np.nan)
        for c, name in enumerate(class_names):
            if not np.isfinite(dice[i, c]):
                continue
            tpc = rec["inst"]["tp"][c]
            row = {
                "image_id": rec["image_id"], "file_name": rec["file_name"], "class": name,
                "iou": float(iou[i, c]), "dice": float(dice[i, c]),
                "intersection": int(counts[i, c, 0]), "gt_area": int(counts[i, c, 1]),
                "pred_area": int(counts[i, c, 2]),
                "n_gt": int(rec["n_gt"][c]), "n_pred": int(rec["n_pred"][c]),
                "tp": int(tpc), "fp": int(rec["inst"]["fp"][c]), "fn": int(rec["inst"]["fn"][c]),
                "inst_iou": float(rec["inst"]["iou_sum"][c] / tpc) if tpc else float("nan"),
                "inst_dice": float(rec["inst"]["dice_sum"][c] / tpc) if tpc else float("nan"),
            }
            if boundary is not None:
                row["hd95"], row["assd"] = float(boundary[i, c, 0]), float(boundary[i, c, 1])
            per_image.append(row)
    order = [i for i in np.argsort(image_scores, kind="stable") if np.isfinite(image_scores[i])]
    k = min(3, len(order) // 2) if len(order) > 1 else len(order)
    ranking = {
        "worst": [records[i]["image_id"] for i in order[:k]],
        "best": [records[i]["image_id"] for i in order[::-1][:k]],
        "image_mean_dice": {str(records[i]["image_id"]): image_scores[i] for i in range(n)},
    }
    return {
        "definitions": M.DEFINITIONS.format(score_thresh=score_thresh, n_boot=n_boot),
        "settings": {"score_thresh": score_thresh, "bootstrap_samples": n_boot, "seed": seed,
                     "instance_match_iou": 0.5, "study_map_iou_thresholds": IOU_THRESHOLDS.tolist(),
                     "boundary_metrics": boundary is not None},
        "classes": list(class_names),
        "n_images": n,
        "per_class": per_class,
        "overall": overall,
        "study_map": study,
        "confusion_matrix": {"labels": [*class_names, "background"], "rows": "ground truth",
                             "columns": "prediction", "matrix": confusion.tolist()},
        "ranking": ranking,
        "per_image": per_image,
    }


def flat_results(report: dict) -> dict[str, float]:
    """The flat floats EvalHook / BestCheckpointer read, e.g. ``fetalheart/dice_macro``."""
    o = report["overall"]
    out = {
        "dice_macro": o["dice_macro"]["mean"], "iou_macro": o["iou_macro"]["mean"],
        "dice_micro": o["dice_micro"]["mean"], "iou_micro": o["iou_micro"]["mean"],
        "dice_macro_ci_low": o["dice_macro"]["ci_low"], "dice_macro_ci_high": o["dice_macro"]["ci_high"],
        "inst_dice_macro": o["instance_macro"]["dice"], "inst_iou_macro": o["instance_macro"]["iou"],
        "precision": o["instance_micro"]["precision"], "recall": o["instance_micro"]["recall"],
        "f1": o["instance_micro"]["f1"],
        "study_mAP": report["study_map"]["mAP"], "study_mAP50": report["study_map"]["mAP50"],
        "study_mAP75": report["study_map"]["mAP75"],
    }
    for name, e in report["per_class"].items():
        out[f"dice-{name}"] = e["dice"]["mean"]
        out[f"iou-{name}"] = e["iou"]["mean"]
    if "hd95_macro" in o:
        out["hd95_macro"], out["assd_macro"] = o["hd95_macro"], o["assd_macro"]
    return {k: float(v) for k, v in out.items()}


class SegmentationMetricsEvaluator(DatasetEvaluator):
    """Per-class semantic and instance IoU/Dice with bootstrap CIs, plus the study's mAP.

    Ground truth comes from the registered dataset's dicts (``DatasetCatalog.get``), so it is the
    annotation itself, not a resized copy. Predictions must be at the original resolution, which
    detectron2's meta-architectures return when inputs carry ``height`` / ``width``.
    """

    def __init__(
        self,
        dataset_name: str,
        score_thresh: float = 0.5,
        bootstrap_samples: int = 1000,
        boundary_metrics: bool = False,
        seed: int = 0,
        distributed: bool = True,
        keep_predictions: bool = True,
    ):
        self.dataset_name = dataset_name
        self.score_thresh = float(score_thresh)
        self.bootstrap_samples = int(bootstrap_samples)
        self.boundary_metrics = bool(boundary_metrics)
        self.seed = int(seed)
        self.distributed = distributed
        self.keep_predictions = keep_predictions
        meta = MetadataCatalog.get(dataset_name)
        self.class_names = list(getattr(meta, "thing_classes", CLASS_NAMES))
        self._gt: dict | None = None
        self.report: dict | None = None
        self._records: list[dict] = []

    def _ground_truth(self) -> dict:
        if self._gt is None:
            self._gt = {d["image_id"]: d for d in DatasetCatalog.get(self.dataset_name)}
        return self._gt

    def reset(self) -> None:
        self._records = []
        self.report = None

    def process(self, inputs, outputs, coco_predictions: list[list[dict]] | None = None) -> None:
        """Reduce each image to count arrays. ``coco_predictions`` (per input, COCOEvaluator's
        instances_to_coco_json output in instance order) lets us reuse its mask RLEs instead of
        encoding every mask a second time."""
        gt_by_id = self._ground_truth()
        for k, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
            record = gt_by_id.get(inp["image_id"])
            if record is None:
                raise KeyError(f"image_id {inp['image_id']!r} not in dataset {self.dataset_name!r}")
            gt_rles, gt_classes = annotation_rles(record)
            h, w = int(record["height"]), int(record["width"])
            inst = out["instances"].to("cpu")
            if len(inst) and inst.has("pred_masks"):
                pm = inst.pred_masks.numpy()
                if pm.shape[1:] != (h, w):
                    raise ValueError(f"prediction size {pm.shape[1:]} != annotation size {(h, w)} for image "
                                     f"{inp['image_id']}: pass height/width in the inputs")
                keep = inst.scores.numpy() >= self.score_thresh
                coco = coco_predictions[k] if coco_predictions is not None else None
                if coco is not None and len(coco) == len(inst):
                    pred_rles = [_bytes_rle(coco[i]["segmentation"]) for i in np.flatnonzero(keep)]
                else:  # encode only what passes the threshold
                    pred_rles = mask_util.encode(np.asfortranarray(pm[keep].transpose(1, 2, 0).astype(np.uint8)))
                classes, scores = inst.pred_classes.numpy()[keep], inst.scores.numpy()[keep]
            else:
                pred_rles, classes, scores = [], np.zeros(0, int), np.zeros(0)
            self._records.append(image_record(
                inp["image_id"], record.get("file_name", inp.get("file_name", "")), gt_rles, gt_classes,
                list(pred_rles), classes, scores, len(self.class_names), h, w, self.score_thresh,
                self.boundary_metrics, self.keep_predictions,
            ))

    def evaluate(self):
        records = self._records
        if self.distributed and comm.get_world_size() > 1:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(records, dst=0)))
            if not comm.is_main_process():
                return {}
        if not records:
            logger.warning("SegmentationMetricsEvaluator received no images")
        self.report = summarize_records(records, self.class_names, self.score_thresh,
                                        self.bootstrap_samples, self.seed)
        self.report["dataset"] = self.dataset_name
        self.report["predictions"] = {str(r["image_id"]): r["pred"] for r in records if "pred" in r}
        return {"fetalheart": flat_results(self.report)}


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
    return _nan_to_none(obj)
