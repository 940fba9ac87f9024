"""Figures for people: per-class bars (study Fig. 7), confusion matrix, loss curves (Fig. 5), overlays.

Matplotlib with the Agg backend (no display needed); overlays are drawn with OpenCV so that
``predict`` can reuse them on video frames without matplotlib's per-figure cost.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from fetalheart.classes import CLASS_NAMES, COLORS
from fetalheart.utils.io import atomic_path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Loss panels, when metrics.json has them: Mask R-CNN's terms, then the U-Net family's (BCE, soft Dice).
LOSS_TERMS = ("total_loss", "loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask", "loss_bce",
              "loss_dice")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return Path(path)


def _rgb(c: int) -> tuple[float, float, float]:
    r, g, b = COLORS[c % len(COLORS)]
    return r / 255, g / 255, b / 255


def per_class_bars(report: dict, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Grouped bars per class: COCO segm AP, IoU and Dice (mean, 95% CI whiskers), like Fig. 7."""
    from fetalheart.evaluation.metrics import MIN_GROUPS_FOR_BOOTSTRAP
    from fetalheart.evaluation.report import per_class_rows

    plt = pyplot()
    rows = per_class_rows(report)
    names = [r["class"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(names) + 2), 3.6))
    series = (("segm AP", "segm_AP", None), ("IoU", "iou_mean", "iou"), ("Dice", "dice_mean", "dice"))
    for k, (label, key, ci) in enumerate(series):
        vals = np.array([r[key] for r in rows], dtype=float)
        pos = x + (k - 1) * 0.27
        ax.bar(pos, np.nan_to_num(vals), 0.27, label=label)
        if ci:  # a whisker only where there is a CI: a missing one is not drawn as +-0
            lo = np.array([r[f"{ci}_ci_low"] for r in rows], float)
            hi = np.array([r[f"{ci}_ci_high"] for r in rows], float)
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(vals)
            if ok.any():
                ax.errorbar(pos[ok], vals[ok], yerr=np.vstack([vals[ok] - lo[ok], hi[ok] - vals[ok]]).clip(0),
                            fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0-1)")
    ax.set_title(f"Per-class scores ({report.get('dataset', '')}, {report['n_images']} frames of "
                 f"{report.get('n_groups', '?')} groups; whiskers: 95% CI over groups, none below "
                 f"{MIN_GROUPS_FOR_BOOTSTRAP} groups)", fontsize=9)
    ax.legend(ncol=3, fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, overwrite)


def confusion_matrix_plot(report: dict, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Heat map of the class confusion of matched instances (rows: ground truth)."""
    plt = pyplot()
    cm = np.asarray(report["confusion_matrix"]["matrix"])
    labels = report["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i, j in zip(*np.nonzero(cm), strict=True):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), [s[:5] for s in labels], rotation=60, fontsize=8)
    ax.set_yticks(range(len(labels)), [s[:5] for s in labels], fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("Matched instances (mask IoU >= 0.5)", fontsize=9)
    return save_figure(fig, path, overwrite)


def read_metrics_json(path: str | os.PathLike) -> list[dict]:
    """detectron2's JSONWriter file (one JSON object per line); unreadable lines are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:  # a run killed mid-write leaves a partial last line
                continue
            if isinstance(obj, dict) and "iteration" in obj:
                rows.append(obj)
    return rows


def loss_curves(metrics_path: str | os.PathLike, path: str | os.PathLike, overwrite: bool = True) -> Path | None:
    """One panel per loss term, train vs validation (``val_`` prefix), like the study's Fig. 5.

    Returns None when metrics.json holds no loss at all.
    """
    rows = read_metrics_json(metrics_path)
    terms = [t for t in LOSS_TERMS if any(t in r or f"val_{t}" in r for r in rows)]
    if not terms:
        return None
    plt = pyplot()
    cols = 3
    nrows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(11, 3 * nrows), squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        for key, label, style in ((term, "train", "-"), (f"val_{term}", "validation", "o-")):
            pts = [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                it, v = zip(*pts, strict=True)
                ax.plot(it, v, style, label=label, markersize=3)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, overwrite)


def draw_instances(
    image_bgr: np.ndarray,
    masks: np.ndarray,
    classes: Sequence[int],
    scores: Sequence[float] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    alpha: float = 0.4,
) -> np.ndarray:
    """Filled translucent masks, outlines and labels in each structure's colour (a new BGR image)."""
    out = image_bgr.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    overlay = out.copy()
    labels = []
    for k, (m, c) in enumerate(zip(masks, classes, strict=True)):
        if not m.any():
            continue
        r, g, b = COLORS[int(c) % len(COLORS)]
        overlay[m] = (b, g, r)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        labels.append((contours, (b, g, r), int(c), None if scores is None else float(scores[k])))
    out = cv2.addWeighted(overlay, alpha, out, 1 - alpha, 0)
    scale = max(0.35, min(out.shape[:2]) / 700)
    for contours, color, c, s in labels:
        cv2.drawContours(out, contours, -1, color, max(1, int(round(scale * 2))), cv2.LINE_AA)
        x, y, _, _ = cv2.boundingRect(np.concatenate(contours))
        text = class_names[c] if c < len(class_names) else str(c)
        if s is not None:
            text += f" {s:.2f}"
        cv2.putText(out, text, (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(1, int(scale * 2)), cv2.LINE_AA)
    return out


def side_by_side(image_bgr: np.ndarray, gt: tuple, pred: tuple, title: str = "",
                 class_names: Sequence[str] = CLASS_NAMES) -> np.ndarray:
    """Ground truth (left) and prediction (right) overlays of one image, with a caption bar."""
    left = draw_instances(image_bgr, gt[0], gt[1], None, class_names)
    right = draw_instances(image_bgr, pred[0], pred[1], pred[2], class_names)
    sep = np.full((left.shape[0], 4, 3), 255, np.uint8)
    panel = np.concatenate([left, sep, right], axis=1)
    bar = np.zeros((22, panel.shape[1], 3), np.uint8)
    cv2.putText(bar, f"ground truth | prediction   {title}", (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def write_image(path: str | os.PathLike, image_bgr: np.ndarray, overwrite: bool = True,
                max_side: int = 1024) -> Path:
    """Write a PNG/JPEG atomically, downscaled to ``max_side`` so report images stay small."""
    h, w = image_bgr.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        image_bgr = cv2.resize(image_bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    with atomic_path(path, overwrite) as tmp:
        if not cv2.imwrite(str(tmp), image_bgr):
            raise OSError(f"cannot write image {path}")
    return Path(path)


def write_plots(report: dict, out_dir: str | os.PathLike, metrics_json: str | os.PathLike | None = None,
                n_overlays: int = 3) -> list[str]:
    """All report figures into ``out_dir/plots``; returns paths relative to ``out_dir``."""
    from fetalheart.annotations.rle import decode_masks
    from fetalheart.evaluation.per_image import annotation_masks

    out = Path(out_dir)
    made = [per_class_bars(report, out / "plots" / "per_class.png"),
            confusion_matrix_plot(report, out / "plots" / "confusion_matrix.png")]
    if metrics_json and Path(metrics_json).is_file():
        p = loss_curves(metrics_json, out / "plots" / "loss_curves.png")
        if p:
            made.append(p)
    gt = report.get("_gt_records") or {}
    preds = report.get("predictions") or {}
    for kind in ("best", "worst"):
        for rank, image_id in enumerate(report.get("ranking", {}).get(kind, [])[:n_overlays]):
            rec = gt.get(image_id)
            if rec is None or str(image_id) not in preds:
                continue
            image = cv2.imread(rec["file_name"], cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("cannot read %s for the overlay", rec["file_name"])
                continue
            gm, gc = annotation_masks(rec)
            p = preds[str(image_id)]
            pm = decode_masks(p["rles"], *gm.shape[1:])
            dice = report["ranking"]["image_mean_dice"].get(str(image_id), np.nan)
            img = side_by_side(image, (gm, gc), (pm, p["classes"], p["scores"]),
                               f"{Path(rec['file_name']).name}  mean Dice {dice:.3f}")
            made.append(write_image(out / "plots" / f"{kind}_{rank + 1}.png", img, max_side=900))
    return [str(Path(p).relative_to(out)) for p in made]
