"""One dataset image per picture (issue 19 item 4): the same image file, the same bytes or the same
pixels annotated by two LabelMe files is one image when their shapes agree, else a one-line problem
naming both files; never two images the split could put on both sides."""

from __future__ import annotations

import base64
import io
import json
import shutil

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.annotations.duplicates import pixel_digest
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest
from _labelme_helpers import heart_shapes, load, write_image, write_labelme
from PIL import Image


def _images(out) -> list[dict]:
    return [im for s in ("train", "val") for im in load(out / "annotations" / f"{s}.json")["images"]]


def _videos(root, n=3):
    for v in range(n):
        for i in range(2):
            write_labelme(root / f"v{v}_{i:04d}.json", heart_shapes(i))


def test_one_image_file_annotated_in_two_folders(tmp_path, capsys):
    frames = tmp_path / "frames"
    write_image(frames / "clip_0007.png")
    _videos(tmp_path / "in")
    for batch in ("batch1", "batch2"):
        write_labelme(tmp_path / "in" / batch / "clip_0007.json", heart_shapes(3), image_path="../../frames/clip_0007.png",
                      make_image=False)
    rep = convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(), quiet=False)
    names = [im["file_name"] for im in _images(tmp_path / "out")]
    assert len(names) == 7 and "batch1/clip_0007.png" in names and "batch2/clip_0007.png" not in names
    (merged,) = rep["validation"]["duplicate_images_merged"]
    assert "batch2/clip_0007.json: the same image file as" in merged and "batch1/clip_0007.json" in merged
    assert "one dataset image each" in capsys.readouterr().err
    assert "Duplicate images merged (one dataset image each) (1)" in (tmp_path / "out" / "conversion_report.md").read_text()

    # different shapes: only a person can tell which is right; one line names both files, nothing written
    write_labelme(tmp_path / "in" / "batch2" / "clip_0007.json", heart_shapes(5), image_path="../../frames/clip_0007.png",
                  make_image=False)
    with pytest.raises(FetalHeartError) as exc:
        convert([tmp_path / "in"], tmp_path / "out2", ConvertOptions(), quiet=True)
    (line,) = [x for x in str(exc.value).splitlines() if "annotate" in x]
    assert "batch2/clip_0007.json and " in line and "batch1/clip_0007.json annotate the same image file" in line
    assert "different shapes: keep one of them" in line and not (tmp_path / "out2").exists()


def test_a_copied_frame_is_the_same_image(tmp_path):
    _videos(tmp_path / "in")
    write_labelme(tmp_path / "in" / "a" / "us_0001.json", heart_shapes(1))
    (tmp_path / "in" / "b").mkdir()
    shutil.copy(tmp_path / "in" / "a" / "us_0001.png", tmp_path / "in" / "b" / "scan_0042.png")
    write_labelme(tmp_path / "in" / "b" / "scan_0042.json", heart_shapes(2), make_image=False)
    with pytest.raises(FetalHeartError, match="annotate the same image bytes .* with different shapes"):
        convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(), quiet=True)
    # with --skip-invalid the second file is left out and listed
    rep = convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(skip_invalid=True), quiet=True)
    assert [p for p in rep["validation"]["invalid_files"] if "scan_0042.json and" in p]
    assert "b/scan_0042.png" not in [im["file_name"] for im in _images(tmp_path / "out")]


def test_embedded_image_data_and_its_file_have_the_same_pixels(tmp_path):
    _videos(tmp_path / "in")
    png = write_image(tmp_path / "in" / "a" / "us_0001.png")
    write_labelme(tmp_path / "in" / "a" / "us_0001.json", heart_shapes(1), make_image=False)
    # LabelMe's imageData is a re-encode of the file: other bytes, the same pixels
    buf = io.BytesIO()
    Image.open(png).save(buf, "PNG", compress_level=9, optimize=True)
    assert buf.getvalue() != png.read_bytes() and pixel_digest(buf.getvalue()) == pixel_digest(png)
    write_labelme(tmp_path / "in" / "b" / "copy_0001.json", heart_shapes(1), image_path="",
                  image_data=base64.b64encode(buf.getvalue()).decode(), make_image=False)
    rep = convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(), quiet=True)
    (merged,) = rep["validation"]["duplicate_images_merged"]
    assert "copy_0001.json: the same pixels as" in merged
    assert len(_images(tmp_path / "out")) == 7


def test_pixel_digest_sees_pixels_not_encoding(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.bmp")
    arr[0, 0, 0] ^= 1
    Image.fromarray(arr).save(tmp_path / "c.png")
    assert pixel_digest(tmp_path / "a.png") == pixel_digest(tmp_path / "b.bmp") != pixel_digest(tmp_path / "c.png")
    assert json.dumps(pixel_digest(tmp_path / "a.png"))  # a plain hex string
