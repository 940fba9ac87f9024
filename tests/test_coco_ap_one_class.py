"""Per-class COCO AP for a one-class label set (issue 20: LV-only set had overall AP 41.4, LV AP NaN)."""

import contextlib
import io
import logging

from fetalheart.evaluation.coco_ap import coco_ap

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _rle(x0, y0, x1, y1, size=32):
    m = np.zeros((size, size), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(m)
    r["counts"] = r["counts"].decode()
    return r


def _one_class_gt() -> COCO:
    images = [{"id": i, "file_name": f"f{i}.png", "height": 32, "width": 32} for i in (1, 2, 3)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "segmentation": _rle(4, 4, 20, 20), "area": 256.0,
             "bbox": [4, 4, 16, 16], "iscrowd": 0} for i in (1, 2, 3)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "LV"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


# one exact hit, one IoU 0.75 hit (16x12 of 16x16), one miss with a false alarm elsewhere
RESULTS = [{"image_id": 1, "category_id": 1, "segmentation": _rle(4, 4, 20, 20), "score": 0.9},
           {"image_id": 2, "category_id": 1, "segmentation": _rle(4, 4, 20, 16), "score": 0.8},
           {"image_id": 3, "category_id": 1, "segmentation": _rle(24, 24, 30, 30), "score": 0.7}]


def test_one_class_label_set_has_a_per_class_ap_equal_to_the_overall_ap():
    out = coco_ap(_one_class_gt(), RESULTS, "segm")
    assert np.isfinite(out["AP-LV"]) and out["AP-LV"] == pytest.approx(out["AP"], abs=1e-9)
    assert out["AP50-LV"] == pytest.approx(out["AP50"], abs=1e-9) and 0 < out["AP"] < 100


def test_detectron2_evaluator_derives_the_one_class_ap_too():
    from fetalheart.evaluation.build import PerClassCOCOEvaluator

    gt = _one_class_gt()
    dets = [{k: v for k, v in r.items()} for r in RESULTS]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    evaluator = PerClassCOCOEvaluator.__new__(PerClassCOCOEvaluator)  # no dataset needed to derive results
    evaluator._logger = logging.getLogger("test")
    res = evaluator._derive_coco_results(ev, "segm", class_names=["LV"])
    assert res["AP-LV"] == pytest.approx(res["AP"], abs=1e-9) and np.isfinite(res["AP75-LV"])
