"""The study's mAP two ways: Matterport's ``compute_ap_range`` exactly, and the per-class mAP Eq. 5 states.

The study (Syaputra et al., 2025) used the Matterport Mask R-CNN code base, whose mAP is computed
per image and then averaged over images. Its ``compute_matches`` tests ``gt_match[j] > 0`` instead of
``> -1``, so a ground truth taken by the top-scoring prediction (index 0) can be taken again (per-
threshold AP up to 2), computes mask IoU in float32 and compares it with the unrounded thresholds of
``np.arange(0.5, 1.0, 0.05)``, and its recall is float32. ``matterport_ap_range`` reproduces all of
that (checked on 20 cases run through Matterport's code: tests/test_matterport_parity.py) so the
numbers can stand beside the study's.

The corrected variant is what the paper's Eq. 5 describes (mAP = mean over classes of AP): per class,
the predictions of all images ranked by score, one-to-one matching in each image, exact thresholds
0.50:0.05:0.95, VOC all-point AP; then the mean over classes that have ground truth.

Ignore (crowd) regions, absent from Matterport, follow COCOeval in both: a prediction left unmatched
at threshold t whose overlap with an ignore region of its class (intersection / prediction area) is
>= t is dropped from the ranking at that threshold (neither true nor false positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Matterport's default thresholds, unrounded on purpose (0.6000000000000001, 0.6500000000000001, ...).
MATTERPORT_IOU_THRESHOLDS = np.arange(0.5, 1.0, 0.05)
#: The corrected variant's thresholds, exactly 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)
STUDY_MAP_MODES = ("matterport", "corrected")
#: Matterport's DETECTION_MIN_CONFIDENCE: detections below it never leave its model.
MATTERPORT_MIN_SCORE = 0.7


def float32_overlaps(inter: np.ndarray, area_pred: np.ndarray, area_gt: np.ndarray) -> np.ndarray:
    """(pred x gt) IoU with Matterport's ``compute_overlaps_masks`` arithmetic (float32 throughout).

    Pixel counts below 2**24 are exact in float32, so only the division rounds, as in Matterport.
    """
    inter = np.asarray(inter, dtype=np.float32).reshape(len(area_pred), len(area_gt))
    union = np.asarray(area_pred, np.float32)[:, None] + np.asarray(area_gt, np.float32)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / union
    return np.nan_to_num(out, nan=0.0)


def float32_overlaps_from_iou(iou: np.ndarray, area_pred: np.ndarray, area_gt: np.ndarray) -> np.ndarray:
    """``float32_overlaps`` from pycocotools' float64 IoU: the intersection is recovered exactly
    (I = IoU (A + B) / (1 + IoU), rounded to the integer it is), so no mask is decoded."""
    iou = np.asarray(iou, dtype=np.float64).reshape(len(area_pred), len(area_gt))
    total = np.asarray(area_pred, np.float64)[:, None] + np.asarray(area_gt, np.float64)[None, :]
    inter = np.rint(iou * total / (1.0 + iou))
    return float32_overlaps(inter, area_pred, area_gt)


def matterport_overlaps(pred_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """float32 (pred x gt) mask IoU of two (N,H,W) stacks, as Matterport computes it."""
    p = pred_masks.reshape(len(pred_masks), -1).astype(np.float32)
    g = gt_masks.reshape(len(gt_masks), -1).astype(np.float32)
    return float32_overlaps(p @ g.T, p.sum(1), g.sum(1))


def matterport_matches(
    overlaps: np.ndarray, gt_classes: Sequence[int], pred_classes: Sequence[int], iou_threshold: float,
    sorted_ixs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Matterport's ``compute_matches`` loop on score-sorted (pred x gt) float32 overlaps.

    For each prediction, ground truths by decreasing IoU: skip those with ``gt_match > 0`` (the
    quirk: a match by prediction 0 does not count as taken), stop below the threshold, take the
    first of the same class. Returns (gt_match, pred_match) with -1 for unmatched.
    """
    n_pred, n_gt = overlaps.shape
    if sorted_ixs is None:
        sorted_ixs = np.argsort(overlaps, axis=1)[:, ::-1]
    gt_match = [-1] * n_gt
    pred_match = -np.ones(n_pred, dtype=int)
    ov, gtc, prc = overlaps.tolist(), list(gt_classes), list(pred_classes)
    for i, row in enumerate(sorted_ixs.tolist()):
        for j in row:
            if gt_match[j] > 0:
                continue
            if ov[i][j] < iou_threshold:
                break
            if prc[i] == gtc[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return np.asarray(gt_match), pred_match


def matterport_voc_ap(pred_match: np.ndarray, n_gt: int) -> float:
    """Matterport's ``compute_ap`` interpolation: VOC all-point AP, recall in float32."""
    hits = np.cumsum(np.asarray(pred_match) > -1)
    precisions = hits / (np.arange(len(hits)) + 1)
    recalls = hits.astype(np.float32) / int(n_gt)  # a Python int keeps float32, as len() does there
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    idx = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return float(np.sum((recalls[idx] - recalls[idx - 1]) * precisions[idx]))


def matterport_ap_range(
    overlaps: np.ndarray,
    gt_classes: Sequence[int],
    pred_classes: Sequence[int],
    pred_scores: Sequence[float],
    iou_thresholds: Sequence[float] = MATTERPORT_IOU_THRESHOLDS,
    crowd_overlap: np.ndarray | None = None,
) -> np.ndarray:
    """Per-threshold AP of one image as Matterport's ``compute_ap_range`` computes it (before its mean).

    ``overlaps`` is the float32 (pred x gt) IoU in any prediction order; ``crowd_overlap`` (per
    prediction, overlap with an ignore region of its class) drops unmatched predictions COCO-style.
    NaN everywhere when the image has no ground truth (Matterport divides by zero there).
    """
    if len(gt_classes) == 0:
        return np.full(len(iou_thresholds), np.nan)
    order = np.argsort(np.asarray(pred_scores))[::-1]  # Matterport's own sort, ties included
    ov = np.asarray(overlaps, dtype=np.float32).reshape(len(pred_classes), len(gt_classes))[order]
    pc = np.asarray(pred_classes)[order]
    crowd = None if crowd_overlap is None else np.asarray(crowd_overlap, dtype=np.float64)[order]
    sorted_ixs = np.argsort(ov, axis=1)[:, ::-1]
    aps = []
    for t in iou_thresholds:
        pred_match = matterport_matches(ov, gt_classes, pc, t, sorted_ixs)[1]
        if crowd is not None:
            pred_match = pred_match[(pred_match > -1) | (crowd < t)]
        aps.append(matterport_voc_ap(pred_match, len(gt_classes)))
    return np.array(aps)


def corrected_detections(
    overlaps: np.ndarray,
    gt_classes: Sequence[int],
    pred_classes: Sequence[int],
    pred_scores: Sequence[float],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    crowd_overlap: np.ndarray | None = None,
) -> np.ndarray:
    """One image's predictions for the pooled per-class AP: rows (class, score, outcome per threshold).

    Outcome 1 = true positive, 0 = false positive, -1 = ignored (unmatched, inside an ignore region).
    Matching: score order, each prediction takes the untaken same-class ground truth of highest
    float64 IoU >= t (one-to-one, COCO's rule).
    """
    n_pred, n_gt, n_t = len(pred_classes), len(gt_classes), len(iou_thresholds)
    ov = np.asarray(overlaps, dtype=np.float64).reshape(n_pred, n_gt)
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    pc, gc = np.asarray(pred_classes, dtype=int), np.asarray(gt_classes, dtype=int)
    crowd = np.zeros(n_pred) if crowd_overlap is None else np.asarray(crowd_overlap, dtype=np.float64)
    out = np.zeros((n_pred, 2 + n_t))
    out[:, 0], out[:, 1] = pc, np.asarray(pred_scores, dtype=np.float64)
    # Per prediction, its same-class ground truths by decreasing IoU (plain lists: this runs per image).
    cands = [[(float(ov[i, j]), int(j)) for j in np.argsort(-ov[i], kind="stable") if gc[j] == pc[i]]
             for i in range(n_pred)]
    for k, t in enumerate(iou_thresholds):
        taken = [False] * n_gt
        for i in order:
            j = next((j for v, j in cands[i] if v >= t and not taken[j]), -1) if cands[i] else -1
            if j >= 0:
                taken[j] = True
                out[i, 2 + k] = 1
            elif crowd[i] >= t:
                out[i, 2 + k] = -1
    return out


def _all_point_ap(outcomes: np.ndarray, n_gt: int) -> np.ndarray:
    """VOC all-point AP per column of score-ordered outcomes (1 TP, 0 FP, -1 ignored: skipped)."""
    tp = np.cumsum(outcomes == 1, axis=0)
    seen = np.cumsum(outcomes >= 0, axis=0)
    prec = np.where(seen > 0, tp / np.maximum(seen, 1), 0.0)
    zeros = np.zeros((1, outcomes.shape[1]))
    prec = np.concatenate([zeros, prec, zeros])
    rec = np.concatenate([zeros, tp / n_gt, zeros + 1])
    envelope = np.maximum.accumulate(prec[::-1], axis=0)[::-1]
    return (np.diff(rec, axis=0) * envelope[1:]).sum(0)


def pooled_class_ap(detections: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """(n_classes, n_thresholds) AP from the detections of all images (``corrected_detections`` rows,
    concatenated) and the ground-truth count per class; NaN for classes without ground truth."""
    dets = np.asarray(detections, dtype=np.float64)
    if dets.ndim != 2:
        dets = dets.reshape(-1, 2 + len(IOU_THRESHOLDS))
    n_gt = np.asarray(n_gt)
    n_t = dets.shape[1] - 2
    ap = np.full((len(n_gt), n_t), np.nan)
    for c in np.flatnonzero(n_gt > 0):
        d = dets[dets[:, 0] == c]
        d = d[np.argsort(-d[:, 1], kind="stable")]
        ap[c] = _all_point_ap(d[:, 2:], int(n_gt[c])) if len(d) else 0.0
    return ap


def summarize_matterport(per_image_ap: np.ndarray, thresholds: Sequence[float] = MATTERPORT_IOU_THRESHOLDS
                         ) -> dict[str, float]:
    """Matterport mAP: mean over thresholds then over images with ground truth; also mAP50, mAP75."""
    ap = np.asarray(per_image_ap, dtype=np.float64).reshape(-1, len(thresholds))
    ap = ap[np.isfinite(ap).all(1)]
    if len(ap) == 0:
        return {"mAP": float("nan"), "mAP50": float("nan"), "mAP75": float("nan"), "n_images": 0}
    i75 = int(np.argmin(np.abs(np.asarray(thresholds) - 0.75)))
    return {"mAP": float(ap.mean(1).mean()), "mAP50": float(ap[:, 0].mean()), "mAP75": float(ap[:, i75].mean()),
            "n_images": int(len(ap))}


def summarize_corrected(detections: np.ndarray, n_gt: np.ndarray, class_names: Sequence[str]) -> dict:
    """Corrected mAP: per-class AP (mean over thresholds), then the mean over classes with ground truth."""
    ap = pooled_class_ap(detections, n_gt)
    has = np.isfinite(ap).all(1)
    i75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    if not has.any():
        nan = float("nan")
        return {"mAP": nan, "mAP50": nan, "mAP75": nan, "n_classes": 0, "per_class": {}}
    return {"mAP": float(ap[has].mean(1).mean()), "mAP50": float(ap[has, 0].mean()),
            "mAP75": float(ap[has, i75].mean()), "n_classes": int(has.sum()),
            "per_class": {class_names[c]: float(ap[c].mean()) for c in np.flatnonzero(has)}}
