"""Files as LabelMe-compatible tools write them, one test per variant, each asserting what the converter
produced (images, instances per class, crowd regions, unknown keys).

The files are written here from the formats' documentation (labelme's ``_label_file.py`` keys per
version; X-AnyLabeling's user guide, section "Saving Label Data"), not copied from anyone's files.
"""

from __future__ import annotations

import base64
import json

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.cli.labelme2coco import main

import numpy as np
import pytest
from _labelme_helpers import coco_masks, load, outline_band, png_bytes, write_image

labelme_utils = pytest.importorskip("labelme.utils")

H, W = 120, 160


def _nonzero(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if v}


def _xanylabeling_shape(label, points, shape_type, **extra):
    """A shape with every key X-AnyLabeling's user guide lists."""
    s = {"label": label, "score": None, "points": points, "group_id": None, "description": None,
         "difficult": False, "shape_type": shape_type, "flags": None, "attributes": {}, "kie_linking": []}
    s.update(extra)
    return s


def test_xanylabeling_file_with_webp_image(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    arr = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    (d / "scan_000001.webp").write_bytes(png_bytes(arr, fmt="WEBP"))
    axis = [[20.0, 15.0], [70.0, 15.0], [70.0, 55.0], [20.0, 55.0]]  # 4 corners, as X-AnyLabeling writes
    rotated = [[100.0, 20.0], [140.0, 40.0], [125.0, 70.0], [85.0, 50.0]]  # a rectangle turned by ~27 degrees
    shapes = [
        _xanylabeling_shape("LA", axis, "rectangle", visible=True),
        _xanylabeling_shape("RA", rotated, "rectangle", score=0.87),
        _xanylabeling_shape("LV", [[20, 70], [70, 72], [60, 110], [25, 105]], "polygon", difficult=True),
        _xanylabeling_shape("__ignore__", [[100, 90], [150, 90], [150, 115], [100, 115]], "rectangle"),
    ]
    doc = {"version": "2.4.4", "flags": {}, "shapes": shapes, "imagePath": "scan_000001.webp",
           "imageData": None, "imageHeight": H, "imageWidth": W, "text": ""}
    (d / "scan_000001.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    report = convert([d], out, ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1
    assert _nonzero(report["instances"]["total"]) == {"LA": 1, "RA": 1, "LV": 1}
    assert report["crowd_regions"]["train"] == 1
    assert report["validation"]["four_point_rectangles"] == 3
    assert report["validation"]["unknown_keys"] == {
        "text": 1, "shapes[].attributes": 4, "shapes[].difficult": 4, "shapes[].kie_linking": 4,
        "shapes[].score": 4, "shapes[].visible": 1,
    }
    assert report["validation"]["invalid_files"] == [] and report["validation"]["self_intersecting_polygons"] == []
    assert report["ignore_regions_note"].startswith("Ignore regions (iscrowd=1) are trained as background")
    # listed once in the Markdown report, with counts
    md = (out / "conversion_report.md").read_text()
    assert md.count("`shapes[].score` 4") == 1 and "trained as background" in md
    # the image is copied byte for byte and detectron2 reads it at the annotated size
    assert (out / "images" / "scan_000001.webp").read_bytes() == (d / "scan_000001.webp").read_bytes()
    from detectron2.data.detection_utils import read_image

    assert read_image(str(out / "images" / "scan_000001.webp"), format="BGR").shape == (H, W, 3)
    # geometry: labelme's own rasterisation of the same rectangle (2-point form for the axis-aligned
    # one, oriented_rectangle for the turned one) differs only on the boundary
    masks = [m for a, m in coco_masks(out) if not a["iscrowd"]]
    refs = [("rectangle", [axis[0], axis[2]]), ("oriented_rectangle", rotated), ("polygon", shapes[2]["points"])]
    for (stype, pts), m in zip(refs, masks, strict=True):
        ref = labelme_utils.shape_to_mask((H, W), pts, stype)
        assert not ((ref ^ m) & ~outline_band(stype, pts, H, W)).any(), stype
        assert (ref & m).sum() / (ref | m).sum() > 0.9


def test_labelme_tutorial_style_file_embeds_the_image_and_names_itself(tmp_path):
    """imagePath names the JSON file itself; the image is only in imageData (LabelMe opens it)."""
    d = tmp_path / "in"
    d.mkdir()
    jpg = png_bytes(np.full((H, W, 3), 90, np.uint8), fmt="JPEG")
    doc = {
        "version": "4.0.0", "flags": {},
        "shapes": [
            {"label": "Spine", "points": [[30, 30], [90, 30], [80, 90]], "group_id": None, "shape_type": "polygon",
             "flags": {}},
            {"label": "Ao", "points": [[110, 40], [110, 60]], "group_id": None, "shape_type": "circle", "flags": {}},
        ],
        "lineColor": [0, 255, 0, 128], "fillColor": [255, 0, 0, 128],
        "imagePath": "tutorial_obj3.json", "imageData": base64.b64encode(jpg).decode(),
        "imageHeight": H, "imageWidth": W,
    }  # fmt: skip
    (d / "tutorial_obj3.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    report = convert([d], out, ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1
    assert _nonzero(report["instances"]["total"]) == {"Spine": 1, "Ao": 1}
    assert report["validation"]["unknown_keys"] == {}  # lineColor/fillColor are labelme 3.x/4.x keys
    assert any("used the embedded imageData" in w for w in report["validation"]["warnings"])
    assert [i["file_name"] for i in load(out / "annotations" / "train.json")["images"]] == ["tutorial_obj3.jpg"]
    assert (out / "images" / "tutorial_obj3.jpg").read_bytes() == jpg


def test_broken_image_data_falls_back_to_image_path_and_both_broken_is_one_clear_error(tmp_path, capsys):
    d = tmp_path / "in"
    write_image(d / "good_000001.png", H, W)
    base = {"version": "5.4.1", "flags": {}, "imageHeight": H, "imageWidth": W,
            "shapes": [{"label": "LA", "points": [[10, 10], [60, 10], [40, 50]], "group_id": None,
                        "description": "", "shape_type": "polygon", "flags": {}, "mask": None}]}  # fmt: skip
    garbage = base64.b64encode(b"not an image at all").decode()
    (d / "good_000001.json").write_text(json.dumps({**base, "imagePath": "good_000001.png", "imageData": garbage}))
    report = convert([d], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1 and report["instances"]["total"]["LA"] == 1
    (d / "bad_000001.json").write_text(json.dumps({**base, "imagePath": "bad_000001.json", "imageData": garbage}))
    assert main([str(d), "-o", str(tmp_path / "out2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(ln for ln in err.splitlines() if "bad_000001.json:" in ln)
    assert "imagePath 'bad_000001.json': not a decodable image" in line and "embedded imageData" in line


def test_labelme_3x_file_without_shape_type_group_id_or_size(tmp_path):
    """labelme 3.x: shapes carry line_color/fill_color and no shape_type/group_id; no image size."""
    d = tmp_path / "in"
    write_image(d / "old_000001.jpg", H, W, fmt="JPEG")
    doc = {
        "flags": {}, "lineColor": [0, 255, 0, 128], "fillColor": [255, 0, 0, 128],
        "shapes": [
            {"label": "LA", "line_color": None, "fill_color": None, "points": [[10, 10], [60, 12], [40, 50]]},
            {"label": "la", "line_color": [1, 2, 3, 255], "fill_color": None, "points": [[80, 10], [120, 12], [100, 50]]},
            {"label": "RV", "line_color": None, "fill_color": None, "points": [[10, 70], [60, 70], [40, 110]]},
        ],
        "imagePath": "old_000001.jpg", "imageData": None,
    }  # fmt: skip
    (d / "old_000001.json").write_text(json.dumps(doc))
    report = convert([d], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1
    assert _nonzero(report["instances"]["total"]) == {"LA": 2, "RV": 1}  # no group_id: each shape an instance
    assert report["validation"]["unknown_keys"] == {} and report["validation"]["warnings"] == []
    img = load(tmp_path / "out" / "annotations" / "train.json")["images"][0]
    assert (img["height"], img["width"]) == (H, W)  # from the image, the file has no size


def test_labelme_4x_file_with_groups_and_shapes_without_area(tmp_path):
    d = tmp_path / "in"
    write_image(d / "v4_000001.bmp", H, W, fmt="BMP")

    def shape(label, pts, stype, gid=None):
        return {"label": label, "points": pts, "group_id": gid, "shape_type": stype, "flags": {}}

    doc = {
        "version": "4.5.13", "flags": {"good_view": True},
        "shapes": [
            shape("MV", [[40, 40], [55, 38], [50, 60]], "polygon", 1),  # a valve in two leaflets
            shape("MV", [[60, 40], [75, 42], [65, 60]], "polygon", 1),
            shape("LV", [[10, 70], [50, 110]], "rectangle"),
            shape("Spine", [[120, 90], [120, 105]], "circle"),
            shape("Ao", [[5, 5], [30, 5], [40, 20]], "linestrip"),
            shape("Ao", [[5, 5], [30, 30]], "line"),
            shape("PV", [[90, 20]], "point"),
        ],
        "imagePath": "v4_000001.bmp", "imageData": None, "imageHeight": H, "imageWidth": W,
    }  # fmt: skip
    (d / "v4_000001.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    report = convert([d], out, ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1
    assert _nonzero(report["instances"]["total"]) == {"MV": 1, "LV": 1, "Spine": 1}
    assert report["validation"]["ignored_shape_types"] == {"line": 1, "linestrip": 1, "point": 1}
    assert report["validation"]["unknown_keys"] == {}
    mv = [a for a, _ in coco_masks(out) if a["category_id"] == 7]
    assert len(mv) == 1 and len(mv[0]["segmentation"]) == 2
    from detectron2.data.detection_utils import read_image

    assert read_image(str(out / "images" / "v4_000001.bmp"), format="BGR").shape == (H, W, 3)


def test_labelme_5x_file_with_mask_and_description_and_tiff_image(tmp_path):
    d = tmp_path / "in"
    write_image(d / "v5_000001.tif", H, W, fmt="TIFF")
    crop = np.zeros((30, 40), bool)
    crop[5:25, 5:35] = True
    mask_b64 = base64.b64encode(png_bytes(crop.astype(np.uint8) * 255)).decode()
    doc = {
        "version": "5.5.0", "flags": {},
        "shapes": [
            {"label": "RA", "points": [[50.0, 40.0], [89.0, 69.0]], "group_id": None, "description": "drawn by AI",
             "shape_type": "mask", "flags": {}, "mask": mask_b64},
            {"label": "TV", "points": [[10, 10], [40, 10], [25, 30]], "group_id": None, "description": "",
             "shape_type": "polygon", "flags": {}, "mask": None},
        ],
        "imagePath": "v5_000001.tif", "imageData": None, "imageHeight": H, "imageWidth": W,
    }  # fmt: skip
    (d / "v5_000001.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    report = convert([d], out, ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1
    assert _nonzero(report["instances"]["total"]) == {"RA": 1, "TV": 1}
    assert report["mask_format"] == "bitmask" and report["validation"]["unknown_keys"] == {}
    ra = next(m for a, m in coco_masks(out) if a["category_id"] == 2)
    expected = np.zeros((H, W), bool)
    expected[45:65, 55:85] = True
    assert np.array_equal(ra, expected)
    from detectron2.data.detection_utils import read_image

    assert read_image(str(out / "images" / "v5_000001.tif"), format="BGR").shape == (H, W, 3)


@pytest.mark.parametrize("n_points", [3, 5])
def test_rectangles_need_2_or_4_points(tmp_path, capsys, n_points):
    d = tmp_path / "in"
    write_image(d / "r_000001.png", H, W)
    pts = [[10, 10], [50, 10], [50, 50], [10, 50], [5, 30]][:n_points]
    doc = {"version": "5.4.1", "flags": {}, "imagePath": "r_000001.png", "imageData": None,
           "shapes": [{"label": "LA", "points": pts, "shape_type": "rectangle", "group_id": None, "flags": {}}]}
    (d / "r_000001.json").write_text(json.dumps(doc))
    assert main([str(d), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert f"rectangle needs 2 points (or 4 corners), found {n_points}" in capsys.readouterr().err


def test_unknown_image_size_written_as_minus_one_takes_the_image_size(tmp_path):
    """X-AnyLabeling's JSON template carries imageHeight/imageWidth -1 until the image is known."""
    d = tmp_path / "in"
    write_image(d / "xa_000001.png", H, W)
    doc = {"version": "2.4.0", "flags": {}, "imagePath": "xa_000001.png", "imageData": None,
           "imageHeight": -1, "imageWidth": -1,
           "shapes": [{"label": "LV", "points": [[10, 10], [60, 12], [40, 50]], "shape_type": "polygon"}]}
    (d / "xa_000001.json").write_text(json.dumps(doc))
    report = convert([d], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 1 and report["validation"]["warnings"] == []
    img = load(tmp_path / "out" / "annotations" / "train.json")["images"][0]
    assert (img["height"], img["width"]) == (H, W)
