"""COCO AP of a COCO results list against a COCO ground-truth file: pycocotools, as detectron2's COCOEvaluator.

The same steps and numbers as ``COCOEvaluator(..., use_fast_impl=False)`` (detectron2 v0.6
``_evaluate_predictions_on_coco`` and ``_derive_coco_results``, tests/test_from_files.py checks it on a
trained model): for mask AP the boxes are dropped so COCOeval uses mask areas, maxDets (1, 10, 100), all
ground-truth images; scores x100, a metric COCOeval cannot compute (-1) is NaN; per class AP, AP50 and
AP75 from COCOeval's precision array (``per_class_ap``, also for one class). Results without a box get the tight
box of their mask (pycocotools' ``toBbox``) for the box AP. No torch or detectron2 here.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np

TASKS = ("segm", "bbox")
_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_coco(json_file) -> object:
    """pycocotools' COCO of a ground-truth file (its index printout swallowed)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(json_file))


def per_class_ap(ev, class_names: Sequence[str]) -> dict[str, float]:
    """Per class AP (IoU 0.50:0.95), AP50 and AP75 (x100) from a COCOeval's precision array, for any
    number of classes: detectron2 derives per-class AP only for more than one, which left a one-class
    label set (LV only) without ``AP-LV``; its value is the overall AP then."""
    precisions = ev.eval["precision"]  # (iou, recall, class, area, maxdets)
    thresholds = np.asarray(ev.params.iouThrs)
    out = {}
    columns = [("AP", slice(None)), ("AP50", int(np.argmin(np.abs(thresholds - 0.5)))),
               ("AP75", int(np.argmin(np.abs(thresholds - 0.75))))]
    for label, t in columns:
        for k, name in enumerate(class_names):
            p = precisions[t, :, k, 0, -1]
            p = p[p > -1]
            out[f"{label}-{name}"] = float(p.mean() * 100) if p.size else float("nan")
    return out


def coco_ap(coco_gt, results: Sequence[dict], task: str, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """COCO AP/AP50/AP75/APs/APm/APl (x100) and per class AP, AP50, AP75 of ``results`` (dataset category
    ids) for ``task`` "segm" or "bbox"; every value NaN when there are no results (as detectron2)."""
    from pycocotools import mask as mask_utils
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {m: float("nan") for m in _METRICS}
    dets = copy.deepcopy(list(results))
    for d in dets:
        if task == "segm":
            d.pop("bbox", None)
        elif "bbox" not in d:
            d["bbox"] = [float(v) for v in mask_utils.toBbox(d["segmentation"])]
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {m: float(ev.stats[i] * 100) if ev.stats[i] >= 0 else float("nan") for i, m in enumerate(_METRICS)}
    if class_names is None:
        class_names = [c["name"] for c in sorted(coco_gt.cats.values(), key=lambda c: c["id"])]
    if class_names:
        out.update(per_class_ap(ev, class_names))
    return out


def coco_results_ap(coco_gt, results: Sequence[dict], class_names: Sequence[str] | None = None) -> dict[str, dict]:
    """``{"segm": {...}, "bbox": {...}}``: what the report's ``coco`` section holds."""
    return {task: coco_ap(coco_gt, results, task, class_names) for task in TASKS}
