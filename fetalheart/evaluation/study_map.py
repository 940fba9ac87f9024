"""The study's mAP: Matterport Mask R-CNN's ``utils.compute_ap_range``, re-implemented on masks.

The study (Syaputra et al., 2025) used the Matterport code base, whose mAP is per image: greedy
same-class matching of score-sorted predictions, VOC all-point interpolation, averaged over IoU
0.50:0.05:0.95, then averaged over images. COCO AP pools all images per class and interpolates
at 101 recall points, so the two numbers differ; we report both, each under its own name.
"""

from __future__ import annotations

from collections.abc import Sequence

from fetalheart.evaluation.metrics import mask_iou_matrix

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


def compute_matches(
    overlaps: np.ndarray,
    gt_classes: Sequence[int],
    pred_classes: Sequence[int],
    iou_threshold: float = 0.5,
    sorted_ixs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Matterport's ``compute_matches`` on a precomputed (pred x gt) IoU matrix, preds score-sorted.

    ``sorted_ixs`` (each row's gt indices by decreasing IoU, as Matterport orders them) may be
    passed to share one argsort between the 10 thresholds. Returns (gt_match, pred_match):
    index of the matched partner or -1.
    """
    n_pred, n_gt = overlaps.shape
    if sorted_ixs is None:
        sorted_ixs = np.argsort(overlaps, axis=1)[:, ::-1]
    gt_match = [-1] * n_gt
    pred_match = -np.ones(n_pred, dtype=int)
    ov = overlaps.tolist()
    gtc, prc = list(gt_classes), list(pred_classes)
    for i, row in enumerate(sorted_ixs.tolist()):
        for j in row:
            if gt_match[j] > -1:
                continue
            if ov[i][j] < iou_threshold:
                break
            if prc[i] == gtc[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return np.asarray(gt_match, dtype=int), pred_match


def voc_ap(pred_match: np.ndarray, n_gt: int) -> float:
    """Matterport's ``compute_ap`` interpolation: all-point VOC AP from the match vector."""
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float64) / n_gt
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    idx = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return float(np.sum((recalls[idx] - recalls[idx - 1]) * precisions[idx]))


def image_ap(
    gt_masks: np.ndarray,
    gt_classes: Sequence[int],
    pred_masks: np.ndarray,
    pred_classes: Sequence[int],
    pred_scores: Sequence[float],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> np.ndarray:
    """AP of one image at each IoU threshold (NaN if the image has no ground truth)."""
    return image_ap_from_iou(mask_iou_matrix(pred_masks, gt_masks), gt_classes, pred_classes, pred_scores,
                             iou_thresholds)


def image_ap_from_iou(
    overlaps: np.ndarray,
    gt_classes: Sequence[int],
    pred_classes: Sequence[int],
    pred_scores: Sequence[float],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> np.ndarray:
    """``image_ap`` from a precomputed (pred x gt) mask IoU matrix (any prediction order)."""
    if len(gt_classes) == 0:
        return np.full(len(iou_thresholds), np.nan)
    overlaps = np.asarray(overlaps, dtype=np.float64).reshape(len(pred_classes), len(gt_classes))
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    overlaps = overlaps[order]
    pred_classes = np.asarray(pred_classes, dtype=int)[order]
    gt_classes = np.asarray(gt_classes, dtype=int)
    sorted_ixs = np.argsort(overlaps, axis=1)[:, ::-1]
    return np.array([voc_ap(compute_matches(overlaps, gt_classes, pred_classes, t, sorted_ixs)[1], len(gt_classes))
                     for t in iou_thresholds])


def summarize_study_map(per_image_ap: np.ndarray) -> dict[str, float]:
    """mAP (mean over 0.5:0.95 then images), mAP50, mAP75, over images that have ground truth."""
    ap = np.asarray(per_image_ap, dtype=np.float64).reshape(-1, len(IOU_THRESHOLDS))
    ap = ap[np.isfinite(ap).all(1)]
    if len(ap) == 0:
        return {"mAP": float("nan"), "mAP50": float("nan"), "mAP75": float("nan"), "n_images": 0}
    return {
        "mAP": float(ap.mean(1).mean()),
        "mAP50": float(ap[:, 0].mean()),
        "mAP75": float(ap[:, 5].mean()),
        "n_images": int(len(ap)),
    }
