"""IoU, Dice, instance matching, bootstrap CIs and boundary distances: the one place they are defined.

Definitions (also in README and at the top of every report, see ``DEFINITIONS``):

* semantic, per image and class: A = union of predicted masks of that class with score >= the
  threshold, B = union of ground-truth masks of that class; IoU = |A n B| / |A u B|,
  Dice = 2|A n B| / (|A| + |B|). Absent from both -> NaN (not counted); present in only one -> 0.
  These empty-case rules are nnU-Net's.
* instance, per image and class: one-to-one Hungarian matching on mask IoU, a match needs
  IoU >= 0.5; TP = matches, FP = unmatched predictions, FN = unmatched ground truth.
* boundary (optional): HD95 and ASSD in pixels, as MONAI computes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFINITIONS = """\
**Semantic IoU / Dice** (per image and class): A = union of the predicted masks of the class with
score >= {score_thresh}, B = union of its ground-truth masks. IoU = |A n B| / |A u B|,
Dice = 2|A n B| / (|A| + |B|). A class absent from both ground truth and prediction in an image is
not counted (NaN); present in only one of them counts 0 (nnU-Net's rules).
**Per class**: mean, standard deviation and 95% percentile-bootstrap CI ({n_boot} resamples of
images) over the images where the class is counted; n = that number of images.
**Overall**: macro = mean of the per-class means; micro = over all pixels of all images and
classes (sum of intersections / sum of unions; 2 x sum of intersections / sum of areas).
**Instance level**: in each image and class, ground-truth and predicted instances (score >=
{score_thresh}) are matched one-to-one (Hungarian on mask IoU); a pair is a match if IoU >= 0.5.
Instance IoU / Dice = mean over matches; precision = TP / (TP + FP), recall = TP / (TP + FN),
F1 = 2PR / (P + R), from counts summed over images.
**COCO AP** (segm, bbox): pycocotools COCOeval, all predictions, AP averaged over IoU
0.50:0.05:0.95 and 101 recall points, then over classes; AP50 / AP75 at one IoU.
**Study mAP** (Matterport Mask R-CNN's `compute_ap_range`, the study's code base): per image,
predictions with score >= {score_thresh} sorted by score, greedy same-class matching on mask IoU,
VOC all-point interpolated AP, averaged over IoU 0.50:0.05:0.95, then averaged over images that
have ground truth. Not numerically comparable with COCO AP; put it beside the study's numbers.
**Boundary** (optional): HD95 = max of the two directed 95th-percentile surface distances, ASSD =
mean of all surface-to-surface distances of both directions (MONAI's definitions, in pixels);
NaN when both masks are empty, inf when only one is (counted apart, excluded from means).
"""


DEFINITIONS = DEFINITIONS.replace("\n**", "\n\n**")  # one Markdown paragraph per definition


def mask_iou_matrix(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU between two stacks of boolean masks (N,H,W) x (M,H,W) -> (N,M)."""
    n, m = len(masks_a), len(masks_b)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    # One float32 matmul gives every intersection at once: much faster than N*M logical_ands.
    a = masks_a.reshape(n, -1).astype(np.float32)
    b = masks_b.reshape(m, -1).astype(np.float32)
    inter = a @ b.T
    area_a = a.sum(1)[:, None]
    area_b = b.sum(1)[None, :]
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float64)


def iou_dice(inter: float, area_a: float, area_b: float) -> tuple[float, float]:
    """IoU and Dice from an intersection and two areas; NaN when both areas are 0."""
    total = area_a + area_b
    if total == 0:
        return float("nan"), float("nan")
    return float(inter / (total - inter)), float(2.0 * inter / total)


def semantic_counts(
    gt_masks: np.ndarray,
    gt_classes: Sequence[int],
    pred_masks: np.ndarray,
    pred_classes: Sequence[int],
    num_classes: int,
) -> np.ndarray:
    """Per class (intersection, gt area, pred area) of the class unions: array (num_classes, 3).

    ``pred_masks`` must already be filtered by score.
    """
    out = np.zeros((num_classes, 3), dtype=np.int64)
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    for c in set(gt_classes.tolist()) | set(pred_classes.tolist()):
        g = gt_masks[gt_classes == c].any(0) if (gt_classes == c).any() else None
        p = pred_masks[pred_classes == c].any(0) if (pred_classes == c).any() else None
        ga = int(g.sum()) if g is not None else 0
        pa = int(p.sum()) if p is not None else 0
        inter = int(np.logical_and(g, p).sum()) if g is not None and p is not None else 0
        out[c] = (inter, ga, pa)
    return out


def semantic_iou_dice(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``iou_dice`` over rows of (intersection, area_a, area_b): NaN where both empty."""
    counts = np.asarray(counts, dtype=np.float64)
    inter, a, b = counts[..., 0], counts[..., 1], counts[..., 2]
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(total > 0, inter / (total - inter), np.nan)
        dice = np.where(total > 0, 2 * inter / total, np.nan)
    return iou, dice


def hungarian_match(iou: np.ndarray, thresh: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches (row, col, iou) maximising total IoU, keeping pairs with IoU >= thresh."""
    if iou.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= thresh]


def instance_stats(
    gt_masks: np.ndarray,
    gt_classes: Sequence[int],
    pred_masks: np.ndarray,
    pred_classes: Sequence[int],
    num_classes: int,
    iou_thresh: float = 0.5,
) -> dict[str, np.ndarray]:
    """Per class TP/FP/FN and the sum of matched IoU and Dice (same-class Hungarian matching).

    Returns arrays of length ``num_classes``: ``tp, fp, fn, iou_sum, dice_sum``.
    """
    return instance_stats_from_iou(mask_iou_matrix(gt_masks, pred_masks), gt_classes, pred_classes,
                                   num_classes, iou_thresh)


def instance_stats_from_iou(
    iou: np.ndarray, gt_classes: Sequence[int], pred_classes: Sequence[int], num_classes: int,
    iou_thresh: float = 0.5,
) -> dict[str, np.ndarray]:
    """``instance_stats`` from a precomputed (gt x pred) IoU matrix (the evaluator gets it from RLEs)."""
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    iou = np.asarray(iou, dtype=np.float64).reshape(len(gt_classes), len(pred_classes))
    out = {k: np.zeros(num_classes) for k in ("tp", "fp", "fn", "iou_sum", "dice_sum")}
    for c in set(gt_classes.tolist()) | set(pred_classes.tolist()):
        g, p = gt_classes == c, pred_classes == c
        matches = hungarian_match(iou[np.ix_(g, p)], iou_thresh)
        out["tp"][c] = len(matches)
        out["fn"][c] = g.sum() - len(matches)
        out["fp"][c] = p.sum() - len(matches)
        for _, _, v in matches:
            out["iou_sum"][c] += v
            out["dice_sum"][c] += 2 * v / (1 + v)  # Dice = 2 IoU / (1 + IoU) for one pair
    return out


def confusion_counts(
    gt_masks: np.ndarray,
    gt_classes: Sequence[int],
    pred_masks: np.ndarray,
    pred_classes: Sequence[int],
    num_classes: int,
    iou_thresh: float = 0.5,
) -> np.ndarray:
    """Class confusion of class-agnostic matches: (num_classes+1)^2, last row/col = background.

    Rows are ground truth, columns prediction; unmatched ground truth counts in the last column
    (missed), unmatched predictions in the last row (false alarm).
    """
    return confusion_from_iou(mask_iou_matrix(gt_masks, pred_masks), gt_classes, pred_classes, num_classes,
                              iou_thresh)


def confusion_from_iou(
    iou: np.ndarray, gt_classes: Sequence[int], pred_classes: Sequence[int], num_classes: int,
    iou_thresh: float = 0.5,
) -> np.ndarray:
    """``confusion_counts`` from a precomputed (gt x pred) IoU matrix."""
    cm = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    iou = np.asarray(iou, dtype=np.float64).reshape(len(gt_classes), len(pred_classes))
    matches = hungarian_match(iou, iou_thresh)
    used_g, used_p = set(), set()
    for r, c, _ in matches:
        cm[gt_classes[r], pred_classes[c]] += 1
        used_g.add(r)
        used_p.add(c)
    for r in range(len(gt_classes)):
        if r not in used_g:
            cm[gt_classes[r], num_classes] += 1
    for c in range(len(pred_classes)):
        if c not in used_p:
            cm[num_classes, pred_classes[c]] += 1
    return cm


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts; NaN where a denominator is 0."""
    p = tp / (tp + fp) if tp + fp > 0 else float("nan")
    r = tp / (tp + fn) if tp + fn > 0 else float("nan")
    f = 2 * p * r / (p + r) if (p + r) > 0 else (0.0 if tp + fp + fn > 0 else float("nan"))
    return float(p), float(r), float(f)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of ``values`` (NaN ignored); (nan, nan) if empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1 or n_boot <= 0:
        m = float(v.mean())
        return m, m
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def summarize(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """mean, std (ddof=1), 95% bootstrap CI and n over the finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = bootstrap_ci(v, n_boot, seed)
    return {
        "mean": float(v.mean()) if v.size else float("nan"),
        "std": float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size == 1 else float("nan")),
        "ci_low": lo,
        "ci_high": hi,
        "n": int(v.size),
    }


def bootstrap_macro_ci(
    per_image: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """CI of the macro mean (mean over classes of per-class means) resampling images.

    ``per_image`` is (n_images, n_classes) with NaN where a class is not counted.
    """
    x = np.asarray(per_image, dtype=np.float64)
    if x.size == 0 or not np.isfinite(x).any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    with np.errstate(invalid="ignore"), _quiet_nan():
        stats = np.nanmean(np.nanmean(x[idx], axis=1), axis=1)
    stats = stats[np.isfinite(stats)]
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_micro_ci(
    counts: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """CIs of micro IoU and Dice resampling images; ``counts`` is (n_images, n_classes, 3)."""
    c = np.asarray(counts, dtype=np.float64).sum(1)  # (n_images, 3)
    if len(c) == 0:
        nan = (float("nan"), float("nan"))
        return {"iou": nan, "dice": nan}
    rng = np.random.default_rng(seed)
    s = c[rng.integers(0, len(c), size=(n_boot, len(c)))].sum(1)
    iou, dice = semantic_iou_dice(s)
    out = {}
    for name, v in (("iou", iou), ("dice", dice)):
        v = v[np.isfinite(v)]
        out[name] = tuple(float(q) for q in np.quantile(v, [alpha / 2, 1 - alpha / 2])) if v.size else (
            float("nan"), float("nan"))
    return out


class _quiet_nan:
    """Silence numpy's 'Mean of empty slice' warnings: all-NaN columns are expected here."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def _surface(mask: np.ndarray) -> np.ndarray:
    # MONAI's get_mask_edges: the mask XOR its binary erosion (a one-pixel inner border).
    from scipy.ndimage import binary_erosion

    return mask ^ binary_erosion(mask)


def surface_distances(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each surface pixel of ``pred`` to ``gt``'s surface, and the reverse.

    As MONAI's ``get_surface_distance`` (Euclidean distance transform of the other surface).
    """
    from scipy.ndimage import distance_transform_edt

    pred, gt = pred.astype(bool), gt.astype(bool)
    # Crop to the joint bounding box (+1 px): distances inside are unchanged, the EDT is cheaper.
    ys, xs = np.nonzero(pred | gt)
    y0, y1 = max(ys.min() - 1, 0), ys.max() + 2
    x0, x1 = max(xs.min() - 1, 0), xs.max() + 2
    pred, gt = pred[y0:y1, x0:x1], gt[y0:y1, x0:x1]
    ep, eg = _surface(pred), _surface(gt)
    d_to_gt = distance_transform_edt(~eg)
    d_to_pred = distance_transform_edt(~ep)
    return d_to_gt[ep], d_to_pred[eg]


def boundary_metrics(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(HD95, ASSD) in pixels; NaN if both empty, inf if only one is empty (MONAI's convention)."""
    has_p, has_g = bool(pred.any()), bool(gt.any())
    if not has_p and not has_g:
        return float("nan"), float("nan")
    if has_p != has_g:
        return float("inf"), float("inf")
    a, b = surface_distances(pred, gt)
    hd95 = max(float(np.percentile(a, 95)), float(np.percentile(b, 95)))
    assd = float(np.concatenate([a, b]).mean())
    return hd95, assd
