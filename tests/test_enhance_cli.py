"""enhance_dataset and visualize_enhancements end to end on a tiny COCO set."""

import json

from fetalheart.cli.enhance_dataset import main as enhance_main
from fetalheart.cli.visualize_enhancements import main as viz_main
from fetalheart.enhance import enhance

import cv2
import numpy as np
import pytest

from tests._enhance_helpers import fake_echo


@pytest.fixture
def tiny_coco(tmp_path):
    images = tmp_path / "images"
    (images / "vid1").mkdir(parents=True)
    entries = []
    for i in range(3):
        img = np.repeat(fake_echo(48, 64, seed=i)[..., None], 3, axis=2)
        ext = "jpg" if i == 2 else "png"
        cv2.imwrite(str(images / "vid1" / f"f{i}.{ext}"), img)
        entries.append({"id": i + 1, "file_name": f"vid1/f{i}.{ext}", "height": 48, "width": 64})
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10], "area": 100.0,
             "segmentation": [[5, 5, 15, 5, 15, 15]], "iscrowd": 0}]
    coco = {"images": entries, "annotations": anns, "categories": [{"id": 3, "name": "LV"}]}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(coco))
    return path, images


def test_enhance_dataset_writes_copies_and_json_then_caches(tiny_coco, tmp_path, capsys):
    coco_path, images = tiny_coco
    before = {p: p.read_bytes() for p in images.rglob("*.*")}
    out = tmp_path / "out"
    args = ["--coco", str(coco_path), "--images", str(images), "--spec", "ahe+clahe", "-o", str(out), "-q"]
    assert enhance_main(args) == 0
    coco_out = json.loads((out / "annotations" / "train.json").read_text())
    coco_in = json.loads(coco_path.read_text())
    assert coco_out["annotations"] == coco_in["annotations"]
    assert [im["file_name"] for im in coco_out["images"]] == ["vid1/f0.png", "vid1/f1.png", "vid1/f2.png"]
    assert coco_out["info"]["fetalheart_enhance"]["spec"] == "ahe+clahe"
    src = cv2.imread(str(images / "vid1" / "f0.png"), cv2.IMREAD_UNCHANGED)
    got = cv2.imread(str(out / "images" / "vid1" / "f0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got, enhance(src, "ahe+clahe"))
    assert {p: p.read_bytes() for p in images.rglob("*.*")} == before  # inputs untouched

    # Second run: refused without --overwrite; with it, everything comes from the cache.
    assert enhance_main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert enhance_main(args[:-1] + ["--overwrite"]) == 0
    assert "0 enhanced, 3 cached" in capsys.readouterr().err
    # Changing a parameter the spec uses invalidates the cache.
    assert enhance_main(args[:-1] + ["--overwrite", "--param", "clahe_clip_limit=3"]) == 0
    assert "3 enhanced, 0 cached" in capsys.readouterr().err


def test_enhance_dataset_parallel_matches_serial(tiny_coco, tmp_path):
    coco_path, images = tiny_coco
    for name, workers in (("a", "1"), ("b", "2")):
        assert enhance_main(["--coco", str(coco_path), "--images", str(images), "--spec", "he",
                             "-o", str(tmp_path / name), "-q", "--workers", workers]) == 0
    for f in ("f0.png", "f1.png", "f2.png"):
        a = cv2.imread(str(tmp_path / "a" / "images" / "vid1" / f), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "b" / "images" / "vid1" / f), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("extra,message", [
    (["--spec", "sharpen"], "valid names"),
    (["--spec", "he", "--param", "nope=1"], "unknown enhancement parameter"),
])
def test_enhance_dataset_errors_are_one_line(tiny_coco, tmp_path, capsys, extra, message):
    coco_path, images = tiny_coco
    rc = enhance_main(["--coco", str(coco_path), "--images", str(images), "-o", str(tmp_path / "o"), "-q"] + extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_enhance_dataset_missing_image(tiny_coco, tmp_path, capsys):
    coco_path, images = tiny_coco
    (images / "vid1" / "f1.png").unlink()
    rc = enhance_main(["--coco", str(coco_path), "--images", str(images), "--spec", "he", "-o", str(tmp_path / "o")])
    assert rc == 2 and "image not found" in capsys.readouterr().err
    assert not (tmp_path / "o" / "annotations").exists()


def test_visualize_enhancements(tiny_coco, tmp_path, capsys):
    _, images = tiny_coco
    out = tmp_path / "grid.png"
    args = [str(images / "vid1" / "f0.png"), "-o", str(out), "--specs", "original,he,ahe+clahe", "-q"]
    assert viz_main(args) == 0
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[1] > 200
    assert viz_main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert viz_main([str(tmp_path / "nope.png"), "-o", str(tmp_path / "g2.png")]) == 2
