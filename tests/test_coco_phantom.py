"""Acceptance on the synthetic phantom: instance counts per class, split by video, loaders."""

from __future__ import annotations

import csv
import json
from collections import Counter

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.annotations.split import default_group
from fetalheart.classes import CLASS_NAMES

import pytest
from pycocotools.coco import COCO

phantom = pytest.importorskip("fetalheart.phantom")
labelme_utils = pytest.importorskip("labelme.utils")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    for seed in range(3):
        spec = phantom.PhantomSpec(seconds=1.5, fps=10, size=(256, 144), seed=seed)
        phantom.make_phantom(root / f"s{seed}", spec, video=False)
    return root


def _labelme_instance_counts(labelme_dirs):
    """Ground truth as labelme itself reads the files: one instance per (label, group_id)."""
    counts = Counter()
    for d in labelme_dirs:
        for f in sorted(d.glob("*.json")):
            doc = json.loads(f.read_text())
            if not doc["shapes"]:
                continue
            name_to_value = {n: i + 1 for i, n in enumerate(CLASS_NAMES)}
            cls, ins = labelme_utils.shapes_to_label((doc["imageHeight"], doc["imageWidth"]), doc["shapes"], name_to_value)
            seen = {(c, i) for c, i in zip(cls.ravel().tolist(), ins.ravel().tolist(), strict=True) if c}
            counts.update(CLASS_NAMES[c - 1] for c, _ in seen)
    return counts


def test_phantom_counts_and_grouped_split(phantoms, tmp_path):
    dirs = [phantoms / f"s{s}" / "labelme" for s in range(3)]
    out = tmp_path / "coco"
    report = convert(dirs, out, quiet=True)
    assert dict(_labelme_instance_counts(dirs)) == {k: v for k, v in report["instances"]["total"].items() if v}
    # empty (no-heart) frames are kept as true negatives, exactly the phantom's no_heart frames
    no_heart = sum(
        row["category"] == "no_heart"
        for s in range(3)
        for row in csv.DictReader(open(phantoms / f"s{s}" / "frames.csv"))
    )
    assert report["images"]["empty_kept"] == no_heart
    assert report["split"]["method"] == "grouped"
    sides = {}
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"{split}.json"))
        for img in coco.dataset["images"]:
            sides.setdefault(default_group(img["file_name"]), set()).add(split)
        per_class = Counter(coco.cats[a["category_id"]]["name"] for a in coco.dataset["annotations"])
        assert {k: v for k, v in report["instances"][split].items() if v} == dict(per_class)
    assert set(sides) == {"phantom_s0", "phantom_s1", "phantom_s2"}
    assert all(len(v) == 1 for v in sides.values())


def test_single_phantom_video_uses_time_blocks(phantoms, tmp_path):
    report = convert([phantoms / "s0" / "labelme"], tmp_path / "one", ConvertOptions(guard_gap=2), quiet=True)
    assert report["split"]["method"] == "time_blocks"
    assert report["images"]["excluded_guard_gap"] > 0
    md = (tmp_path / "one" / "conversion_report.md").read_text()
    assert "weaker than a split by video" in md and "| LA |" in md


def test_three_phantom_videos_make_three_folds_by_video(phantoms, tmp_path):
    """Acceptance: ``tools/labelme2coco.py <3 phantom videos' LabelMe> -o OUT --folds 3``; every image in
    exactly one val fold, no video on both sides of any fold."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "cv"
    cmd = [sys.executable, str(repo / "tools" / "labelme2coco.py"),
           *[str(phantoms / f"s{s}" / "labelme") for s in range(3)], "-o", str(out), "--folds", "3"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "in 3 folds" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads((out / "conversion_report.json").read_text())
    n_images = sum(1 for s in range(3) for _ in (phantoms / f"s{s}" / "labelme").glob("*.json"))
    assert report["images"]["total"] == n_images and report["folds"]["k"] == 3
    assert report["split"]["frame_index_source"] == {"frames.csv": n_images}  # the phantom's frames.csv
    in_val = Counter()
    for i in range(3):
        sides = {}
        for split in ("train", "val"):
            coco = COCO(str(out / "annotations" / f"fold{i}_{split}.json"))
            for img in coco.dataset["images"]:
                assert img["group"] == default_group(img["file_name"])
                sides.setdefault(img["group"], set()).add(split)
                in_val[img["file_name"]] += split == "val"
        assert set(sides) == {"phantom_s0", "phantom_s1", "phantom_s2"}
        assert all(len(v) == 1 for v in sides.values())  # no video in both train and val of fold i
        assert report["folds"]["per_fold"][i]["val_groups"] == sorted(g for g, v in sides.items() if v == {"val"})
    assert len(in_val) == n_images and set(in_val.values()) == {1}  # every image in exactly one val fold
    assert not (out / "annotations" / "train.json").exists()
