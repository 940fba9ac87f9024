"""Parity with Matterport Mask R-CNN's ``compute_ap_range`` on 20 cases run through its own code.

The reference numbers (tests/data/matterport_ap_cases.json) are facts produced by Matterport's
published ``mrcnn/utils.py``; they are vendored so CI on a clean clone has them, and checked
against the shared copy when one exists beside the repository.
"""

import json
from pathlib import Path

from fetalheart.evaluation.study_map import (
    MATTERPORT_IOU_THRESHOLDS,
    matterport_ap_range,
    matterport_overlaps,
)

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "matterport_ap_cases.json"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "matterport_ap_cases.json"
CASES = json.loads(DATA.read_text(encoding="utf-8"))["cases"]


def rect_masks(items, h, w):
    masks = np.zeros((len(items), h, w), bool)
    for k, it in enumerate(items):
        y0, x0, y1, x1 = it["rect"]
        masks[k, y0:y1, x0:x1] = True
    return masks


def test_vendored_copy_is_the_shared_reference():
    assert len(CASES) == 20
    if SHARED.is_file():
        assert DATA.read_bytes() == SHARED.read_bytes()


def test_thresholds_are_matterports_unrounded_ones():
    for case in CASES:
        assert np.array_equal(np.asarray(case["iou_thresholds"]), MATTERPORT_IOU_THRESHOLDS)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matterport_parity(case):
    h, w = case["height"], case["width"]
    gt, pred = case["gt"], case["pred"]
    overlaps = matterport_overlaps(rect_masks(pred, h, w), rect_masks(gt, h, w))
    ap = matterport_ap_range(overlaps, [g["class"] for g in gt], [p["class"] for p in pred],
                             [p["score"] for p in pred])
    np.testing.assert_allclose(ap, case["ap_per_threshold"], rtol=0, atol=1e-9)
    assert abs(float(ap.mean()) - case["ap_range"]) <= 1e-9


def test_the_quirks_are_exercised():
    # The reference set holds each documented Matterport behaviour; parity above covers them.
    by_name = {c["name"]: c for c in CASES}
    assert max(by_name["duplicate of the top detection"]["ap_per_threshold"]) == 2.0  # double match
    assert any(max(c["ap_per_threshold"]) > 1 for c in CASES if c["name"].startswith("random"))
    iou06 = by_name["iou exactly 0.6"]["ap_per_threshold"]
    assert iou06[2] == 1.0 and iou06[3] == 0.0  # float32 0.6 passes 0.6000000000000001; 0.65 misses
