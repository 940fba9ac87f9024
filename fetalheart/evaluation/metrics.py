"""IoU, Dice, instance matching, cluster-bootstrap CIs and boundary distances: the one place they are defined.

Definitions (at the top of every report and in docs/metrics.md, see ``DEFINITIONS``):

* semantic, per image and class: A = union of predicted masks of that class with score >= the
  threshold, B = union of ground-truth masks of that class, both minus the image's ignore (crowd)
  regions of that class; IoU = |A n B| / |A u B|, Dice = 2|A n B| / (|A| + |B|). Absent from both ->
  NaN (not counted); present in only one -> 0.
* instance, per image and class: one-to-one Hungarian matching on mask IoU, a match needs
  IoU >= 0.5 (pairs below it are zeroed before the assignment); TP = matches, FN = unmatched ground truth, FP = unmatched predictions except those
  COCO would match to an ignore region (intersection / prediction area >= 0.5): those are ignored.
* uncertainty: percentile cluster bootstrap, resampling groups (videos / patients), never frames;
  none below ``MIN_GROUPS_FOR_BOOTSTRAP`` groups.
* boundary (optional): HD95 and ASSD in pixels, as MONAI computes them.

No torch or detectron2 here: a statistics tool importing this module starts in a second.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

DEFINITIONS = """\
**Units of n**: a *frame* is one evaluated image; a *group* is the video or patient it comes from
({group_source}). Frames of one group are near-duplicates, so every CI resamples whole groups
(percentile cluster bootstrap, {n_boot} resamples) and every n says what it counts. With fewer than
{min_boot} groups no CI is given ("n/a"): a bootstrap of 2-3 groups is the range of their means, not
a 95% interval (docs/statistics.md).
**Ignore regions**: `iscrowd: 1` annotations (LabelMe `__ignore__` shapes) are never ground truth.
Their pixels are removed from the prediction and the ground truth of that class before IoU/Dice are
counted; a prediction that COCO would match to one (after no real ground truth matched it:
intersection / prediction area >= the IoU threshold) is neither a true nor a false positive in the
instance counts, the confusion matrix and both mAPs. COCO AP honours iscrowd itself.
**Semantic IoU / Dice** (per frame and class): A = union of the predicted masks of the class with
score >= {score_thresh}, B = union of its ground-truth masks, both outside ignore regions.
IoU = |A n B| / |A u B|, Dice = 2|A n B| / (|A| + |B|). Present in only one of A, B: 0. Absent from
both: undefined (0/0, Metrics Reloaded's empty-reference case): not counted in the per-class means
(a correct empty output says nothing about how well the class is outlined); compare_runs' paired
per-frame score counts it 1 instead, so that false alarms on empty frames are penalised.
**Per class**: mean and standard deviation over the frames where the class is counted (n = frames);
95% CI: cluster bootstrap over the groups that contain such frames (n groups given beside it).
**Overall**: macro = mean of the per-class means; micro = over all pixels of all frames and
classes (sum of intersections / sum of unions; 2 x sum of intersections / sum of areas). CIs: cluster
bootstrap, the statistic recomputed from the resampled groups' sums (n = groups).
**Instance level**: in each frame and class, ground-truth and predicted instances (score >=
{score_thresh}) are matched one-to-one (Hungarian on mask IoU, pairs below 0.5 zeroed first: the most
matches with IoU >= 0.5, then the largest total IoU).
Instance IoU / Dice = mean over matches; precision = TP / (TP + FP), recall = TP / (TP + FN),
F1 = 2PR / (P + R), from counts summed over frames (n = instances; no CI).
**COCO AP** (segm, bbox): pycocotools COCOeval, all predictions, AP averaged over IoU
0.50:0.05:0.95 and 101 recall points, then over classes; AP50 / AP75 at one IoU (pooled: no CI).
**Study mAP, Matterport** (the study's code base, Matterport Mask R-CNN `utils.compute_ap_range`,
reproduced exactly on 20 reference cases): per frame, predictions with score >= {study_min_score}
(Matterport's DETECTION_MIN_CONFIDENCE) in score order each take the same-class ground truth of highest
mask IoU that is not already taken by a prediction other than the top-scoring one (Matterport tests
`gt_match > 0`, so a duplicate of the top detection is a second true positive and per-threshold AP
can exceed 1); IoU in float32 against the unrounded thresholds `np.arange(0.5, 1.0, 0.05)` (an IoU
of exactly 0.6 is 0.6000000238 in float32 and passes 0.6000000000000001; exactly 0.65 is
0.6499999762 and misses 0.6500000000000001); VOC all-point AP with float32 recall; mean over the 10
thresholds, then over the frames that have ground truth (n = frames; AP is undefined without ground
truth, so false alarms on empty frames do not count here). CI: cluster bootstrap. *Deviation from
Matterport*: its `compute_ap` scores a frame with no ground truth and no prediction 0 (recall padded
to [0, 1], precision 0), which lowers its mean, and a frame with no ground truth but predictions NaN
(0 / 0 recall); fetalheart leaves every frame without ground truth out of this mean.
**mAP, corrected per class** (what the study's Eq. 5 states, mAP = mean over classes of AP): per
class, the predictions (score >= {study_min_score}) of all frames in score order, each matched
one-to-one to the untaken same-class ground truth of highest IoU in its frame (no double matching),
float64 IoU against 0.50, 0.55, ..., 0.95; VOC all-point AP per class and threshold, mean over
thresholds, then over the classes that have ground truth (n = classes; false alarms on empty frames
count). Pooled: no CI.
**Study mAP column**: EVAL.STUDY_MAP_MODE = `{study_mode}` is the one shown as "study mAP" (flat key
`study_mAP`); both variants are always reported under their own names. Neither is comparable with
COCO AP.
**Boundary** (optional): HD95 = max of the two directed 95th-percentile surface distances, ASSD =
mean of all surface-to-surface distances of both directions (MONAI's definitions, in pixels, ignore
regions removed); NaN when both masks are empty, inf when only one is (counted apart, excluded from
means).
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


def crowd_overlap(pred_masks: np.ndarray, crowd_masks: np.ndarray) -> np.ndarray:
    """COCO's IoU of a prediction with a crowd region: |P n K| / |P| (pred x crowd); 0 for empty P."""
    n, m = len(pred_masks), len(crowd_masks)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    p = pred_masks.reshape(n, -1).astype(np.float64)
    inter = p @ crowd_masks.reshape(m, -1).astype(np.float64).T
    area = p.sum(1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, inter / area, 0.0)


def crowd_ignorable(crowd_iou: np.ndarray, pred_classes: Sequence[int], crowd_classes: Sequence[int]) -> np.ndarray:
    """Per prediction, the highest crowd overlap with an ignore region of its own class (0 if none)."""
    crowd_iou = np.asarray(crowd_iou, dtype=np.float64).reshape(len(pred_classes), len(crowd_classes))
    if crowd_iou.size == 0:
        return np.zeros(len(pred_classes))
    same = np.asarray(pred_classes, dtype=int)[:, None] == np.asarray(crowd_classes, dtype=int)[None, :]
    return np.where(same, crowd_iou, 0.0).max(1)


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
    crowd_masks: np.ndarray | None = None,
    crowd_classes: Sequence[int] = (),
) -> np.ndarray:
    """Per class (intersection, gt area, pred area) of the class unions outside that class's ignore
    regions: array (num_classes, 3). The reference the evaluator's RLE path is tested against.

    ``pred_masks`` must already be filtered by score.
    """
    out = np.zeros((num_classes, 3), dtype=np.int64)
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    crowd_classes = np.asarray(crowd_classes, dtype=int)
    shape = (gt_masks if len(gt_masks) else pred_masks).shape[1:]
    for c in set(gt_classes.tolist()) | set(pred_classes.tolist()):
        g = gt_masks[gt_classes == c].any(0) if (gt_classes == c).any() else np.zeros(shape, bool)
        p = pred_masks[pred_classes == c].any(0) if (pred_classes == c).any() else np.zeros(shape, bool)
        if crowd_masks is not None and (crowd_classes == c).any():
            keep = ~crowd_masks[crowd_classes == c].any(0)
            g, p = g & keep, p & keep
        out[c] = (int((g & p).sum()), int(g.sum()), int(p.sum()))
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
    """One-to-one matches (row, col, iou) with IoU >= thresh: the most matches, then the largest total IoU.

    Pairs below the threshold are zeroed before the assignment (maximising raw IoU first can trade two
    true positives for one: ``[[0.99, 0.5], [0.5, 0.3]]``), and each admissible pair weighs one more than
    any sum of IoUs can, so a further match always wins over a higher total IoU.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    ok = iou >= thresh
    weight = np.where(ok, iou + min(iou.shape) + 1.0, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


INSTANCE_KEYS = ("tp", "fp", "fn", "iou_sum", "dice_sum", "ignored")


def instance_stats(
    gt_masks: np.ndarray,
    gt_classes: Sequence[int],
    pred_masks: np.ndarray,
    pred_classes: Sequence[int],
    num_classes: int,
    iou_thresh: float = 0.5,
    crowd_masks: np.ndarray | None = None,
    crowd_classes: Sequence[int] = (),
) -> dict[str, np.ndarray]:
    """Per class TP/FP/FN, ignored predictions and the sum of matched IoU and Dice.

    Returns arrays of length ``num_classes``: ``tp, fp, fn, iou_sum, dice_sum, ignored``.
    """
    ignore = None
    if crowd_masks is not None and len(crowd_masks):
        ignore = crowd_ignorable(crowd_overlap(pred_masks, crowd_masks), pred_classes, crowd_classes) >= iou_thresh
    return instance_stats_from_iou(mask_iou_matrix(gt_masks, pred_masks), gt_classes, pred_classes,
                                   num_classes, iou_thresh, ignore)


def instance_stats_from_iou(
    iou: np.ndarray, gt_classes: Sequence[int], pred_classes: Sequence[int], num_classes: int,
    iou_thresh: float = 0.5, ignore_pred: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``instance_stats`` from a precomputed (gt x pred) IoU matrix (the evaluator gets it from RLEs).

    ``ignore_pred`` flags predictions COCO would match to an ignore region of their class: when no
    ground truth matches them they are counted as ``ignored``, not as false positives.
    """
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    ignore = np.zeros(len(pred_classes), bool) if ignore_pred is None else np.asarray(ignore_pred, bool)
    iou = np.asarray(iou, dtype=np.float64).reshape(len(gt_classes), len(pred_classes))
    out = {k: np.zeros(num_classes) for k in INSTANCE_KEYS}
    for c in set(gt_classes.tolist()) | set(pred_classes.tolist()):
        g, p = gt_classes == c, pred_classes == c
        matches = hungarian_match(iou[np.ix_(g, p)], iou_thresh)
        matched = np.zeros(int(p.sum()), bool)
        matched[[m[1] for m in matches]] = True
        n_ignored = int((~matched & ignore[p]).sum())
        out["tp"][c] = len(matches)
        out["fn"][c] = g.sum() - len(matches)
        out["fp"][c] = p.sum() - len(matches) - n_ignored
        out["ignored"][c] = n_ignored
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
    iou_thresh: float = 0.5, ignore_pred: np.ndarray | None = None,
) -> np.ndarray:
    """``confusion_counts`` from a precomputed (gt x pred) IoU matrix; unmatched predictions flagged in
    ``ignore_pred`` (inside an ignore region) are not false alarms."""
    cm = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    gt_classes = np.asarray(gt_classes, dtype=int)
    pred_classes = np.asarray(pred_classes, dtype=int)
    ignore = np.zeros(len(pred_classes), bool) if ignore_pred is None else np.asarray(ignore_pred, bool)
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
        if c not in used_p and not ignore[c]:
            cm[num_classes, pred_classes[c]] += 1
    return cm


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts; NaN where a denominator is 0."""
    p = tp / (tp + fp) if tp + fp > 0 else float("nan")
    r = tp / (tp + fn) if tp + fn > 0 else float("nan")
    f = 2 * p * r / (p + r) if (p + r) > 0 else (0.0 if tp + fp + fn > 0 else float("nan"))
    return float(p), float(r), float(f)


# --- Uncertainty: frames of one video are not independent, so every CI resamples groups. ---


def group_index(groups: Sequence) -> tuple[np.ndarray, list]:
    """Integer group index per item and the group labels (in order of first appearance)."""
    labels: dict = {}
    idx = np.array([labels.setdefault(g, len(labels)) for g in groups], dtype=np.int64)
    return idx, list(labels)


def group_sums(values: np.ndarray, gidx: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums per group: (n, k) values -> (n_groups, k)."""
    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(len(gidx), -1) if v.size else v.reshape(0, v.shape[-1] if v.ndim > 1 else 1)
    out = np.zeros((n_groups, v.shape[1]))
    np.add.at(out, np.asarray(gidx, dtype=np.int64), v)
    return out


def bootstrap_rng(seed: int) -> dict:
    """``scipy.stats.bootstrap``'s seeded-generator keyword for the installed scipy (``rng`` or ``random_state``)."""
    from scipy.stats import bootstrap

    gen = np.random.default_rng(seed)  # scipy >= 1.15 calls it rng, older releases random_state
    return {"rng": gen} if "rng" in inspect.signature(bootstrap).parameters else {"random_state": gen}


#: A percentile bootstrap resampling n groups is the range of a handful of values for small n (with
#: 2-3 groups, the min and max of the group means), not a 95% interval: none below this many groups.
MIN_GROUPS_FOR_BOOTSTRAP = 10


def cluster_bootstrap_ci(
    columns: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_groups: int = MIN_GROUPS_FOR_BOOTSTRAP,
) -> tuple[float, float]:
    """Percentile CI of ``statistic(column sums)`` resampling the rows (one row per group).

    ``columns`` is (n_groups, k): per group sums (e.g. sum of Dice and number of frames). Wraps
    ``scipy.stats.bootstrap(paired=True)``, which resamples the same groups in every column: a
    cluster bootstrap of a ratio. ``statistic`` maps (..., k) summed columns to (...). NaN (no CI)
    below ``min_groups`` groups (``MIN_GROUPS_FOR_BOOTSTRAP``; never below 2: one video gives no
    between-video spread).
    """
    from scipy.stats import bootstrap

    cols = np.asarray(columns, dtype=np.float64)
    if cols.ndim != 2 or len(cols) < max(2, min_groups) or n_boot <= 0:
        return float("nan"), float("nan")

    def stat(*samples, axis=-1):
        return statistic(np.stack([s.sum(axis=axis) for s in samples], axis=-1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap(tuple(cols.T), stat, n_resamples=n_boot, paired=True, vectorized=True,
                        confidence_level=1 - alpha, method="percentile", **bootstrap_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _ratio(s: np.ndarray) -> np.ndarray:
    return s[..., 0] / s[..., 1]


def summarize_grouped(values: np.ndarray, gidx: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> dict[str, float]:
    """Mean, std (ddof=1) and n over the finite values (frames), with a cluster-bootstrap CI of the mean.

    The CI resamples the groups that hold at least one finite value (``n_groups``).
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    v, g = v[ok], np.asarray(gidx)[ok]
    _, g = np.unique(g, return_inverse=True)
    n_groups = int(g.max()) + 1 if v.size else 0
    sums = group_sums(np.stack([v, np.ones_like(v)], 1), g, n_groups)
    lo, hi = cluster_bootstrap_ci(sums, _ratio, n_boot, seed, alpha)
    return {
        "mean": float(v.mean()) if v.size else float("nan"),
        "std": float(v.std(ddof=1)) if v.size > 1 else (0.0 if v.size == 1 else float("nan")),
        "ci_low": lo,
        "ci_high": hi,
        "n": int(v.size),
        "n_groups": n_groups,
    }


def _macro(s: np.ndarray) -> np.ndarray:
    c = s.shape[-1] // 2
    with np.errstate(invalid="ignore", divide="ignore"), quiet_nan():
        return np.nanmean(s[..., :c] / s[..., c:], axis=-1)


def macro_summary(per_frame: np.ndarray, gidx: np.ndarray, n_boot: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, float]:
    """Macro mean (mean over classes of the per-class means over frames) with a cluster CI.

    ``per_frame`` is (n_frames, n_classes), NaN where a class is not counted. Groups without any
    counted value add nothing to any mean and are left out of the resampling.
    """
    x = np.asarray(per_frame, dtype=np.float64)
    ok = np.isfinite(x)
    g_all = np.asarray(gidx)
    keep = ok.any(1) if x.size else np.zeros(len(x), bool)
    _, g = np.unique(g_all[keep], return_inverse=True)
    n_groups = int(g.max()) + 1 if keep.any() else 0
    sums = group_sums(np.concatenate([np.where(ok, x, 0.0), ok], 1)[keep], g, n_groups)
    point = float(_macro(sums.sum(0))) if n_groups else float("nan")
    lo, hi = cluster_bootstrap_ci(sums, _macro, n_boot, seed, alpha)
    return {"mean": point, "ci_low": lo, "ci_high": hi, "n": int(keep.sum()), "n_groups": n_groups}


def _micro_iou(s: np.ndarray) -> np.ndarray:
    return s[..., 0] / (s[..., 1] + s[..., 2] - s[..., 0])


def _micro_dice(s: np.ndarray) -> np.ndarray:
    return 2 * s[..., 0] / (s[..., 1] + s[..., 2])


def micro_summary(counts: np.ndarray, gidx: np.ndarray, n_boot: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """Micro IoU and Dice (pixel sums over all frames and classes) with cluster CIs.

    ``counts`` is (n_frames, n_classes, 3) of (intersection, gt area, pred area).
    """
    c = np.asarray(counts, dtype=np.float64).reshape(len(gidx), -1, 3).sum(1)
    keep = (c[:, 1] + c[:, 2]) > 0
    _, g = np.unique(np.asarray(gidx)[keep], return_inverse=True)
    n_groups = int(g.max()) + 1 if keep.any() else 0
    sums = group_sums(c[keep], g, n_groups)
    out = {}
    for name, fn in (("iou", _micro_iou), ("dice", _micro_dice)):
        with np.errstate(invalid="ignore", divide="ignore"):
            point = float(fn(sums.sum(0))) if n_groups else float("nan")
        lo, hi = cluster_bootstrap_ci(sums, fn, n_boot, seed, alpha)
        out[name] = {"mean": point, "ci_low": lo, "ci_high": hi, "n": int(keep.sum()), "n_groups": n_groups}
    return out


@contextlib.contextmanager
def quiet_nan() -> Iterator[None]:
    """Silence numpy's 'Mean of empty slice' warnings: all-NaN columns are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


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
