"""Bad input: every problem listed (file and reason), non-zero exit, nothing written, inputs untouched."""

from __future__ import annotations

import base64
import json

from fetalheart.cli.labelme2coco import main

import numpy as np
from _labelme_helpers import heart_shapes, load, png_bytes, poly, write_labelme


def _tree_snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bad_tree(d):
    write_labelme(d / "good_0001.json", heart_shapes())
    (d / "broken_0001.json").write_text('{"shapes": [')
    write_labelme(d / "nan_0001.json", [poly("LA", [[1, 1], [5, 5], [9, 1]])])
    (d / "nan_0001.json").write_text((d / "nan_0001.json").read_text().replace("9.0", "NaN"))
    write_labelme(d / "types_0001.json", [{"label": "LA", "points": "1,2,3"}])
    write_labelme(d / "escape_0001.json", heart_shapes(), image_path="../" * 40 + "etc/passwd", make_image=False)
    write_labelme(d / "missing_0001.json", heart_shapes(), image_path="nothere.png", make_image=False)
    write_labelme(d / "unknown_0001.json", [poly("Kidney", [[1, 1], [50, 5], [9, 40]]),
                                            poly("liver", [[1, 1], [50, 5], [9, 40]])])
    big = png_bytes(np.zeros((9000, 8000), np.uint8))  # 72 Mpx, above the 64 Mpx limit
    write_labelme(d / "huge_0001.json", heart_shapes(), image_path="", make_image=False,
                  image_data=base64.b64encode(big).decode())
    return {"broken_0001.json": "invalid JSON", "nan_0001.json": "NaN", "types_0001.json": "points",
            "escape_0001.json": "not a decodable image", "missing_0001.json": "image not found",
            "unknown_0001.json": "'Kidney', 'liver'", "huge_0001.json": "limit"}


def test_all_problems_listed_nothing_written(tmp_path, capsys):
    d = tmp_path / "in"
    expected = _bad_tree(d)
    before = _tree_snapshot(d)
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "7 problems" in err
    lines = err.splitlines()
    for name, reason in expected.items():
        assert any(name in ln and reason in ln for ln in lines), (name, reason, err)
    assert not out.exists()
    assert _tree_snapshot(d) == before


def test_skip_invalid_converts_the_rest_and_reports(tmp_path):
    d = tmp_path / "in"
    expected = _bad_tree(d)
    before = _tree_snapshot(d)
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "-q", "--skip-invalid", "--val-fraction", "0"]) == 0
    rep = load(out / "conversion_report.json")
    assert rep["images"]["train"] == 1
    assert len(rep["validation"]["invalid_files"]) == len(expected)
    assert "Invalid files left out (7)" in (out / "conversion_report.md").read_text()
    assert _tree_snapshot(d) == before
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"images/good_0001.png", "annotations/train.json", "annotations/val.json",
                       "conversion_report.json", "conversion_report.md"}


def test_unknown_skip_and_ignore_label(tmp_path):
    d = tmp_path / "in"
    write_labelme(d / "a_0001.json", [poly("Kidney", [[1, 1], [50, 5], [9, 40]]),
                                      poly("blur", [[60, 60], [90, 60], [80, 90]]), *heart_shapes()])
    rep_path = tmp_path / "out"
    assert main([str(d), "-o", str(rep_path), "-q", "--unknown", "skip", "--ignore-label", "blur",
                 "--val-fraction", "0"]) == 0
    rep = load(rep_path / "conversion_report.json")
    assert rep["validation"]["unknown_labels_skipped"] == {"Kidney": 1}
    assert rep["crowd_regions"]["train"] == 1


def test_refuses_existing_dataset_without_overwrite(tmp_path, capsys):
    d = tmp_path / "in"
    write_labelme(d / "a_0001.json", heart_shapes())
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "-q"]) == 0
    first = (out / "annotations" / "train.json").read_bytes()
    assert main([str(d), "-o", str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(d), "-o", str(out), "-q", "--overwrite"]) == 0
    assert (out / "annotations" / "train.json").read_bytes() == first


def test_earlier_output_in_input_tree_is_skipped_with_a_note(tmp_path):
    d = tmp_path / "in"
    write_labelme(d / "a_0001.json", heart_shapes())
    assert main([str(d), "-o", str(d / "coco"), "-q"]) == 0  # output inside the input tree
    (d / "old").mkdir()
    (d / "old" / "train.json").write_bytes((d / "coco" / "annotations" / "train.json").read_bytes())
    (d / "notes.json.bak").write_text("{")  # not *.json: never read
    out = tmp_path / "out"
    assert main([str(d), "-o", str(out), "-q"]) == 0
    rep = load(out / "conversion_report.json")
    assert rep["images"]["train"] + rep["images"]["val"] == 1
    assert any("COCO" in s for s in rep["validation"]["skipped_non_labelme"])


def test_explicit_non_labelme_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"images": [], "annotations": []}))
    assert main([str(f), "-o", str(tmp_path / "out")]) == 2
    assert "not a LabelMe file" in capsys.readouterr().err


def test_two_different_images_under_one_name_are_a_problem(tmp_path, capsys):
    d = tmp_path / "in"
    write_labelme(d / "a_0001.json", heart_shapes(), image_path="one/x_0001.png")
    write_labelme(d / "b_0001.json", heart_shapes(), image_path="two/x_0001.png")
    assert main([str(d), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "duplicate image name 'x_0001.png'" in err and "(a different image)" in err


def test_missing_input_and_bad_options(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    write_labelme(tmp_path / "in" / "a_0001.json", heart_shapes())
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--val-fraction", "1.5"]) == 2
    assert "--val-fraction" in capsys.readouterr().err
