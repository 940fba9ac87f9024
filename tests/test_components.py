"""Semantic maps -> instances (connected components per class, the score rule) and prediction-map files."""

import json

from fetalheart.annotations.components import components, label_map_to_instances, probabilities_to_instances
from fetalheart.annotations.semantic import (
    Frame,
    SemanticOptions,
    frames_by_stem,
    parse_label_values,
    read_semantic_file,
    semantic_results,
)
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage


@pytest.mark.parametrize("seed", range(5))
def test_components_are_scipy_8_connected_labels(seed):
    # external reference: scipy.ndimage.label with the full 3x3 structuring element (8-connectivity)
    mask = np.random.default_rng(seed).random((40, 50)) > 0.7
    ours = components(mask)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    ref = sorted((labels == k for k in range(1, n + 1)), key=lambda m: tuple(np.argwhere(m)[0]))
    assert len(ours) == n
    assert all(np.array_equal(a, b) for a, b in zip(sorted(ours, key=lambda m: tuple(np.argwhere(m)[0])), ref, strict=True))
    big = components(mask, min_area=3)
    assert len(big) == sum(int((labels == k).sum()) >= 3 for k in range(1, n + 1))


def test_diagonal_pixels_are_one_component_and_empty_is_none():
    m = np.zeros((5, 5), bool)
    m[1, 1] = m[2, 2] = True
    assert len(components(m)) == 1
    assert components(np.zeros((4, 4), bool)) == []


def test_probability_instances_and_score_rules():
    p = np.zeros((3, 10, 12), np.float32)
    p[0, 1:4, 1:4] = 0.6
    p[0, 2, 2] = 0.9  # mean (8 x 0.6 + 0.9) / 9, max 0.9
    p[0, 7:9, 8:11] = 0.8  # a second LA component
    p[2, 5:8, 0:3] = 0.49  # below the threshold: nothing
    mean = probabilities_to_instances(p, 0.5)
    assert mean.classes.tolist() == [0, 0] and mean.masks.shape == (2, 10, 12)
    assert mean.scores[0] == pytest.approx((8 * 0.6 + 0.9) / 9, abs=1e-6) and mean.scores[1] == pytest.approx(0.8)
    mx = probabilities_to_instances(p, 0.5, score_rule="max")
    assert mx.scores.tolist() == pytest.approx([0.9, 0.8])
    assert len(probabilities_to_instances(p, 0.5, min_area=7)) == 1  # the 6-pixel component is dropped
    assert len(probabilities_to_instances(p, 0.45)) == 3
    with pytest.raises(ValueError, match="score rule"):
        probabilities_to_instances(p, score_rule="median")


def test_label_map_instances_score_one_and_skip_unnamed_values():
    lab = np.zeros((8, 8), np.int64)
    lab[0:2, 0:2] = 100
    lab[5:7, 5:7] = 100
    lab[3, 3] = 200
    lab[7, 0] = 7  # not in the map: not a structure
    found = label_map_to_instances(lab, {100: 2, 200: 0})
    assert sorted(found.classes.tolist()) == [0, 2, 2] and set(found.scores.tolist()) == {1.0}
    assert found.masks.sum() == 9


def test_prediction_files_to_results(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "v1/a_000001.png", "height": 10, "width": 12},
                       {"id": 9, "file_name": "v1/a_000002.png", "height": 10, "width": 12}]}
    frames = frames_by_stem(coco)
    assert frames["a_000001"] == Frame(7, "v1/a_000001.png", 10, 12)
    lab = np.zeros((10, 12), np.uint8)
    lab[2:5, 3:7] = 2
    cv2.imwrite(str(tmp_path / "a_000001.png"), lab)
    probs = np.zeros((4, 1, 10, 12), np.float32)  # nnU-Net's (C + background, 1, H, W)
    probs[0] = 1.0
    probs[3, 0, 6:9, 0:2] = 0.7
    probs[0, 0, 6:9, 0:2] = 0.3
    np.savez_compressed(tmp_path / "a_000002.npz", probabilities=probs)
    assert read_semantic_file(tmp_path / "a_000002.npz")[1].shape == (4, 10, 12)
    results, summary = semantic_results(tmp_path, frames, [11, 12, 13], {1: 0, 2: 1, 3: 2})
    by_image = {r["image_id"]: r for r in results}
    assert len(results) == 2 and summary["files"] == 2 and summary["frames_without_file"] == 0
    assert by_image[7]["category_id"] == 12 and by_image[7]["score"] == 1.0 and by_image[7]["bbox"] == [3, 2, 4, 3]
    assert mask_utils.area(by_image[7]["segmentation"]) == 12
    assert by_image[9]["category_id"] == 13 and by_image[9]["score"] == pytest.approx(0.7)


def test_prediction_files_bad_input(tmp_path):
    frames = {"a": Frame(1, "a.png", 10, 12)}
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(FetalHeartError, match="name no ground-truth frame"):
        semantic_results(tmp_path, frames, [1], {1: 0})
    (tmp_path / "b.png").unlink()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((9, 12), np.uint8))
    with pytest.raises(FetalHeartError, match="map size"):
        semantic_results(tmp_path, frames, [1], {1: 0}, SemanticOptions())
    np.save(tmp_path / "a.npy", np.zeros((5, 10, 12), np.float32))
    with pytest.raises(FetalHeartError, match="5 probability channels for 1 classes"):
        semantic_results(tmp_path, frames, [1], {1: 0})
    assert parse_label_values("1=LV, 3=LA", []) == {1: "LV", 3: "LA"}
    assert parse_label_values(None, ["LA", "RA"]) == {1: "LA", 2: "RA"}
    with pytest.raises(FetalHeartError, match="VALUE=CLASS"):
        parse_label_values("LV", [])
    json.dumps(parse_label_values("2=RV", []))
