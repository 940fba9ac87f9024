"""LabelMe reading: format variants, geometry helpers, images (EXIF, modes, embedded data)."""

from __future__ import annotations

import base64
import json

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.annotations.labelme import (
    LabelmeError,
    clip_polygon,
    image_info,
    is_self_intersecting,
    parse_labelme,
    safe_image_name,
)
from fetalheart.video.naming import frame_stem_and_index

import numpy as np
import pytest
from _labelme_helpers import heart_shapes, load, png_bytes, poly, write_image, write_labelme
from hypothesis import given, settings
from hypothesis import strategies as st


def test_format_variants_are_accepted(tmp_path):
    d = tmp_path / "in"
    # labelme 3.x: no shape_type, no version, no size; flags as a list; unknown extra keys
    write_labelme(d / "old_0001.json", [{"label": "LA", "points": [[10, 10], [50, 10], [30, 40]]}],
                  flags=["a"], somethingNew={"x": 1})
    doc = load(d / "old_0001.json")
    for k in ("version", "imageHeight", "imageWidth"):
        doc.pop(k)
    (d / "old_0001.json").write_text(json.dumps(doc))
    # labelme 6.2 oriented_rectangle, X-AnyLabeling rotation (with its "direction" key)
    corners = [[60, 20], [100, 40], [90, 60], [50, 40]]
    write_labelme(d / "new_0001.json", [
        poly("MV", corners, shape_type="oriented_rectangle"),
        poly("TV", corners, shape_type="rotation", direction=0.46),
    ])
    # Windows backslashes in imagePath, image in a sibling folder
    write_labelme(d / "json" / "win_0001.json", heart_shapes(), image_path="..\\imgs\\win_0001.png")
    report = convert([d], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    assert report["images"]["train"] == 3
    assert report["instances"]["total"]["MV"] == 1 and report["instances"]["total"]["TV"] == 1
    names = {i["file_name"] for i in load(tmp_path / "out/annotations/train.json")["images"]}
    assert names == {"old_0001.png", "new_0001.png", "json/win_0001.png"}


def test_embedded_image_data_is_written_byte_for_byte(tmp_path):
    data = png_bytes(np.full((120, 160, 3), 9, np.uint8))
    write_labelme(tmp_path / "in" / "e_0001.json", heart_shapes(), make_image=False,
                  image_data=base64.b64encode(data).decode())
    convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    assert (tmp_path / "out" / "images" / "e_0001.png").read_bytes() == data


@pytest.mark.parametrize("mode,arr", [
    ("RGBA", np.zeros((120, 160, 4), np.uint8)),
    ("P", np.zeros((120, 160), np.uint8)),
    ("I;16", np.full((120, 160), 4000, np.uint16)),
    ("L", np.zeros((120, 160), np.uint8)),
])
def test_image_modes(tmp_path, mode, arr):
    p = tmp_path / "x.png"
    p.write_bytes(png_bytes(arr, mode=mode))
    info = image_info(p)
    assert (info.width, info.height) == (160, 120)


def test_exif_orientation_swaps_size_and_warns_on_mismatch(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "r_0001.jpg").write_bytes(png_bytes(np.zeros((120, 160, 3), np.uint8), exif_orientation=6, fmt="JPEG"))
    assert (image_info(d / "r_0001.jpg").width, image_info(d / "r_0001.jpg").height) == (120, 160)
    write_labelme(d / "r_0001.json", [poly("LA", [[10, 10], [50, 10], [30, 100]])], image_path="r_0001.jpg",
                  make_image=False, height=120, width=160)
    report = convert([d], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    img = load(tmp_path / "out/annotations/train.json")["images"][0]
    assert (img["height"], img["width"]) == (160, 120)
    assert any("EXIF" in w for w in report["validation"]["warnings"])
    assert (tmp_path / "out/images/r_0001.jpg").read_bytes() == (d / "r_0001.jpg").read_bytes()


def test_clipping_degenerate_and_self_intersection_are_reported(tmp_path):
    shapes = [
        poly("LA", [[-20, -20], [60, -10], [50, 50]]),  # 2 points outside: clipped
        poly("RA", [[10, 10], [20, 20]]),  # < 3 points
        poly("LV", [[10, 10], [20, 20], [30, 30]]),  # collinear: zero area
        poly("RV", [[60, 60], [100, 100], [100, 60], [60, 100]]),  # bow tie
        poly("Ao", [[200, 200], [300, 200], [250, 300]]),  # entirely outside
    ]
    write_labelme(tmp_path / "in" / "a_0001.json", shapes)
    report = convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(val_fraction=0), quiet=True)
    v = report["validation"]
    assert v["points_clipped"] == 2 + 3
    assert len(v["degenerate_shapes_dropped"]) == 3
    assert len(v["self_intersecting_polygons"]) == 1
    assert report["instances"]["total"]["LA"] == 1 and report["instances"]["total"]["RV"] == 1
    segs = load(tmp_path / "out/annotations/train.json")["annotations"]
    pts = np.concatenate([np.reshape(p, (-1, 2)) for a in segs for p in a["segmentation"]])
    assert pts.min() >= 0 and pts[:, 0].max() <= 160 and pts[:, 1].max() <= 120


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 250), st.floats(-50, 250)), min_size=3, max_size=8))
def test_clip_polygon_stays_inside_and_keeps_inside_points(points):
    p = np.asarray(points)
    c = clip_polygon(p, 160, 120)
    if len(c):
        assert c[:, 0].min() >= 0 and c[:, 0].max() <= 160 and c[:, 1].min() >= 0 and c[:, 1].max() <= 120
    inside = p[(p[:, 0] >= 0) & (p[:, 0] <= 160) & (p[:, 1] >= 0) & (p[:, 1] <= 120)]
    for q in inside:
        assert np.isclose(c, q).all(axis=1).any()


def test_self_intersection_detector():
    assert is_self_intersecting(np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float))
    assert not is_self_intersecting(np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float))


def test_frame_stem_and_safe_names():
    assert frame_stem_and_index("phantom_s3_000045.png") == ("phantom_s3", 45)
    assert frame_stem_and_index("video1/frame_0001.png") == ("video1/frame", 1)
    assert frame_stem_and_index("single.png") == ("single", None)
    assert safe_image_name("..\\..\\imgs\\a.png") == "a.png"
    with pytest.raises(LabelmeError):
        safe_image_name("../..")


@pytest.mark.parametrize("doc,msg", [
    ({"shapes": [{"label": "LA", "points": [[1, "x"], [2, 3], [4, 5]]}], "imagePath": "a.png"}, "numbers"),
    ({"shapes": [{"label": "LA", "points": [[1, float("nan")], [2, 3], [4, 5]]}], "imagePath": "a.png"}, "NaN"),
    ({"shapes": [{"label": "", "points": [[1, 1]]}], "imagePath": "a.png"}, "label"),
    ({"shapes": [{"label": "LA", "points": [[1, 1]], "shape_type": "blob"}], "imagePath": "a.png"}, "unsupported"),
    ({"shapes": "nope", "imagePath": "a.png"}, "list"),
    ({"shapes": []}, "imagePath"),
])
def test_parse_rejects_bad_shapes(tmp_path, doc, msg):
    with pytest.raises(LabelmeError, match=msg):
        parse_labelme(doc, tmp_path / "a.json")


def test_write_image_helper_and_pixel_limit(tmp_path):
    p = write_image(tmp_path / "big.png", 300, 400)
    with pytest.raises(LabelmeError, match="limit"):
        image_info(p, max_pixels=1000)
