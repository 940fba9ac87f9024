"""End-to-end conversion: geometry round trip, ids, determinism, loaders, crowd and mask shapes."""

from __future__ import annotations

import json
from pathlib import Path

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.annotations.rle import segmentation_to_mask
from fetalheart.classes import CLASS_NAMES

import numpy as np
import pytest
from _labelme_helpers import heart_shapes, load, mask_shape, outline_band, poly, write_labelme
from pycocotools.coco import COCO

labelme_utils = pytest.importorskip("labelme.utils")


def _labelme_mask(shape: dict, h: int, w: int) -> np.ndarray:
    if shape["shape_type"] == "mask":  # labelme's own placement (shapes_to_label)
        m = np.zeros((h, w), bool)
        crop = labelme_utils.img_b64_to_arr(shape["mask"]).astype(bool)
        x1, y1 = np.asarray(shape["points"][0]).astype(int)
        m[y1 : y1 + crop.shape[0], x1 : x1 + crop.shape[1]] = crop
        return m
    return labelme_utils.shape_to_mask((h, w), shape["points"], shape["shape_type"])


def _ann_masks(out, split="train"):
    doc = load(out / "annotations" / f"{split}.json")
    img = {i["id"]: i for i in doc["images"]}
    return doc, [(a, segmentation_to_mask(a["segmentation"], img[a["image_id"]]["height"], img[a["image_id"]]["width"]))
                 for a in doc["annotations"]]


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_round_trip_matches_labelme_rasterisation(tmp_path):
    h, w = 480, 640
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 2 * np.pi, 30))
    r = 170 * rng.uniform(0.85, 1.0, 30)
    blob = np.stack([320 + r * np.cos(t), 240 + r * np.sin(t)], 1)
    crop = np.zeros((90, 120), bool)
    crop[10:80, 5:110] = True
    crop[30:50, 40:70] = False
    shapes = [
        poly("LV", blob.tolist()),
        poly("RV", [[30.4, 20.2], [420.7, 250.9]], shape_type="rectangle"),
        poly("Spine", [[400, 300], [400, 460]], shape_type="circle"),
        mask_shape("Ao", crop, 500.6, 12.3),  # fractional box, as labelme >= 5.4 writes
    ]
    write_labelme(tmp_path / "in" / "a_0001.json", shapes, height=h, width=w)
    out = tmp_path / "out"
    convert([tmp_path / "in"], out, ConvertOptions(val_fraction=0), quiet=True)
    doc, masks = _ann_masks(out)
    assert len(masks) == len(shapes)
    for shape, (ann, m) in zip(shapes, masks, strict=True):
        ref = _labelme_mask(shape, h, w)
        iou = _iou(ref, m)
        assert iou >= 0.99, (shape["shape_type"], iou)
        if shape["shape_type"] == "mask":
            assert np.array_equal(ref, m) and isinstance(ann["segmentation"], dict)
        else:  # polygons stay polygons; differences only in the one-pixel boundary band
            assert isinstance(ann["segmentation"], list) and all(len(p) >= 6 for p in ann["segmentation"])
            assert not ((ref ^ m) & ~outline_band(shape["shape_type"], shape["points"], h, w)).any()
        # area and bbox come from exactly the written segmentation
        assert ann["area"] == int(m.sum())
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_small_shapes_differ_only_on_the_boundary(tmp_path):
    """Different rasterisers disagree on boundary pixels; for small shapes that is all they may differ in."""
    h, w = 120, 160
    shapes = heart_shapes() + [poly("MV", [[80, 90], [95, 88], [100, 100], [85, 104]])]
    write_labelme(tmp_path / "in" / "a_0001.json", shapes)
    convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    _, masks = _ann_masks(tmp_path / "out")
    for shape, (_, m) in zip(shapes, masks, strict=True):
        ref = _labelme_mask(shape, h, w)
        assert _iou(ref, m) > 0.8
        assert not ((ref ^ m) & ~outline_band(shape["shape_type"], shape["points"], h, w)).any()


def test_group_id_parts_crowd_ids_and_loaders(tmp_path):
    shapes = [
        poly("LA", [[10, 10], [40, 10], [40, 40]], group_id=1),
        poly("LA", [[60, 60], [90, 60], [90, 90]], group_id=1),  # same instance, second part
        poly("LA", [[100, 10], [140, 10], [140, 40]]),  # no group id: its own instance
        poly("__ignore__", [[0, 100], [30, 100], [30, 119]]),
        poly("RA", [[5, 5]], shape_type="point"),
        poly("RA", [[5, 5], [50, 50]], shape_type="line"),
    ]
    for v in ("vidA", "vidB"):
        for i in range(3):
            write_labelme(tmp_path / "in" / f"{v}_{i:03d}.json", shapes)
    write_labelme(tmp_path / "in" / "vidA_003.json", [])  # a true negative
    out = tmp_path / "out"
    report = convert([tmp_path / "in"], out, ConvertOptions(val_fraction=0.5), quiet=True)
    train, val = load(out / "annotations" / "train.json"), load(out / "annotations" / "val.json")
    assert set(train) == {"info", "licenses", "images", "annotations", "categories"}
    assert [c["name"] for c in train["categories"]] == list(CLASS_NAMES)
    assert [c["id"] for c in train["categories"]] == list(range(1, 11))
    ann_ids = [a["id"] for d in (train, val) for a in d["annotations"]]
    img_ids = [i["id"] for d in (train, val) for i in d["images"]]
    assert min(ann_ids) == 1 and len(set(ann_ids)) == len(ann_ids)
    assert min(img_ids) == 1 and len(set(img_ids)) == len(img_ids) == 7
    la = [a for a in train["annotations"] if a["category_id"] == 1 and not a["iscrowd"]]
    assert sorted(len(a["segmentation"]) for a in la) == sorted([2, 1] * (len(la) // 2))
    crowd = [a for a in train["annotations"] if a["iscrowd"]]
    assert len(crowd) == 10 * len([i for i in train["images"] if i["file_name"] != "vidA_003.png"])
    assert all(isinstance(a["segmentation"], dict) for a in crowd)
    assert report["validation"]["ignored_shape_types"] == {"line": 6, "point": 6}
    assert report["instances"]["total"]["LA"] == 12 and report["images"]["empty_kept"] == 1
    # pycocotools and detectron2 load it
    coco = COCO(str(out / "annotations" / "train.json"))
    for a in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(a).sum() == a["area"]
    from detectron2.data.datasets import load_coco_json

    dicts = load_coco_json(str(out / "annotations" / "train.json"), str(out / "images"), "fh_test_loader")
    assert len(dicts) == len(train["images"])
    assert sum(len(d["annotations"]) for d in dicts) == len(train["annotations"])
    assert all((out / "images" / d["file_name"].split("images/")[-1]).is_file() for d in dicts)


def test_output_is_byte_identical_and_images_not_reencoded(tmp_path):
    for i in range(4):
        write_labelme(tmp_path / "in" / "v1" / f"clip_{i:04d}.json", heart_shapes(i))
        write_labelme(tmp_path / "in" / "v2" / f"clip_{i:04d}.json", heart_shapes(i))
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        convert([tmp_path / "in"], out, quiet=True, jobs=1)
        outs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    reports = [json.loads(o.pop(Path("conversion_report.json"))) for o in outs]
    assert reports[0]["instances"] == reports[1]["instances"]  # reports differ only in the output path
    outs = [{k: v for k, v in o.items() if k.suffix != ".md"} for o in outs]
    assert outs[0] == outs[1]
    # folder-per-video layout: names keep the sub-folder, groups are v1/clip and v2/clip
    assert (tmp_path / "out0" / "images" / "v1" / "clip_0000.png").read_bytes() == (
        tmp_path / "in" / "v1" / "clip_0000.png").read_bytes()


def test_link_mode_symlinks(tmp_path):
    write_labelme(tmp_path / "in" / "a_0001.json", heart_shapes())
    convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(val_fraction=0, link=True), quiet=True)
    target = tmp_path / "out" / "images" / "a_0001.png"
    assert target.is_symlink() and target.resolve() == (tmp_path / "in" / "a_0001.png").resolve()


def test_parallel_equals_serial(tmp_path):
    for i in range(70):
        write_labelme(tmp_path / "in" / f"v{i % 3}_{i:04d}.json", heart_shapes(i % 5))
    convert([tmp_path / "in"], tmp_path / "s", quiet=True, jobs=1)
    convert([tmp_path / "in"], tmp_path / "p", quiet=True, jobs=2)
    for f in ("annotations/train.json", "annotations/val.json"):
        assert (tmp_path / "s" / f).read_bytes() == (tmp_path / "p" / f).read_bytes()
