"""Grouped K-fold cross-validation: every image in exactly one val fold, no group on both sides of a fold,
the files the lead's registration reads, and --overwrite keeping OUT self-consistent."""

from __future__ import annotations

import csv
import json

from fetalheart.annotations.convert import OUTPUT_FILES, ConvertOptions, convert
from fetalheart.annotations.split import EXCLUDED, TRAIN, VAL, Guard, default_group, make_folds
from fetalheart.cli.labelme2coco import main
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.extract import CSV_COLUMNS

import pytest
from _labelme_helpers import heart_shapes, load, poly, write_labelme
from hypothesis import given, settings
from hypothesis import strategies as st


def _check_folds(names, folds, groups):
    val_count = {n: 0 for n in names}
    for a in folds.assignments:
        assert set(a) == set(names)
        sides: dict[str, set] = {}
        for n, side in a.items():
            val_count[n] += side == VAL
            if side != EXCLUDED:
                sides.setdefault(groups[n], set()).add(side)
        assert all(len(s) == 1 for s in sides.values())  # no group on both sides of this fold
        assert TRAIN in a.values() and VAL in a.values()
    assert set(val_count.values()) == {1}  # every image in exactly one val fold


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 25), min_size=3, max_size=12), st.integers(2, 5), st.integers(0, 3))
def test_grouped_folds_partition_and_balance(sizes, k, seed):
    names = [f"vid{g}_{i:05d}.png" for g, n in enumerate(sizes) for i in range(n)]
    if len(sizes) < k:
        with pytest.raises(FetalHeartError, match=f"--folds {k} needs at least {k} groups"):
            make_folds(names, k, seed=seed)
        return
    f = make_folds(names, k, seed=seed)
    assert f.method == "grouped_folds" and f.k == k
    _check_folds(names, f, {n: default_group(n) for n in names})
    assert EXCLUDED not in {s for a in f.assignments for s in a.values()}
    # largest group first into the emptiest fold: fold sizes differ by at most the largest group
    loads = [sum(v == VAL for v in a.values()) for a in f.assignments]
    assert max(loads) - min(loads) <= max(sizes)
    assert f.assignments == make_folds(names, k, seed=seed).assignments  # deterministic for a seed


def test_single_video_folds_are_time_blocks_with_a_guard_gap():
    names = [f"echo_{2 * i:06d}.png" for i in range(60)]  # every 2nd source frame
    f = make_folds(names, 3, guard=Guard(4))
    assert f.method == "time_block_folds" and "weaker than folds by video" in f.notes[0]
    _check_folds(names, f, {n: n for n in names})  # one video: blocks, not groups, are kept apart
    idx = {n: int(n[5:11]) for n in names}
    for a in f.assignments:
        val = [idx[n] for n, s in a.items() if s == VAL]
        assert val == list(range(val[0], val[-1] + 1, 2))  # one contiguous block
        for n, s in a.items():
            assert (s == EXCLUDED) == (s != VAL and min(abs(idx[n] - v) for v in val) <= 4)
    assert [sum(s == EXCLUDED for s in a.values()) for a in f.assignments] == [2, 4, 2]


def test_folds_options_are_checked(tmp_path, capsys):
    for v in ("v1", "v2"):
        for i in range(3):
            write_labelme(tmp_path / "in" / f"{v}_{i:03d}.json", heart_shapes())
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), "-o", str(out), "--folds", "3", "-q"]) == 2
    assert "--folds 3 needs at least 3 groups (videos), found 2: v1, v2" in capsys.readouterr().err
    assert main([str(tmp_path / "in"), "-o", str(out), "--folds", "1", "-q"]) == 2
    assert "--folds must be 0 (no folds) or at least 2" in capsys.readouterr().err
    (tmp_path / "val.txt").write_text("v1\n")
    assert main([str(tmp_path / "in"), "-o", str(out), "--folds", "2", "--val-list", str(tmp_path / "val.txt")]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: mutually exclusive
        main([str(tmp_path / "in"), "-o", str(out), "--guard-gap", "3", "--guard-seconds", "0.5"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert not out.exists()


def _three_videos(root, n=4):
    for v in ("va", "vb", "vc"):
        for i in range(n + (v == "va")):
            shapes = heart_shapes(i) + ([poly("__ignore__", [[0, 100], [30, 100], [30, 119]])] if i == 0 else [])
            write_labelme(root / f"{v}_{i:03d}.json", shapes)


def test_fold_files_report_and_ids_match_the_plain_split(tmp_path):
    _three_videos(tmp_path / "in")
    plain = convert([tmp_path / "in"], tmp_path / "plain", ConvertOptions(val_fraction=0.3), quiet=True)
    rep = convert([tmp_path / "in"], tmp_path / "cv", ConvertOptions(folds=3), quiet=True)
    ann = tmp_path / "cv" / "annotations"
    assert sorted(p.name for p in ann.iterdir()) == sorted(
        f"fold{i}_{s}.json" for i in range(3) for s in ("train", "val"))
    # exactly the layout registration and run_study rely on
    assert rep["folds"]["k"] == 3
    assert [set(f) for f in rep["folds"]["per_fold"]] == [{"fold", "train", "val", "val_groups", "excluded"}] * 3
    assert sorted(g for f in rep["folds"]["per_fold"] for g in f["val_groups"]) == ["va", "vb", "vc"]
    assert rep["images"]["total"] == 13 == plain["images"]["total"]
    # per-fold instance counts add up to the whole dataset's, as the COCO files say
    total = rep["instances"]["total"]
    assert {c: sum(f[c] for f in rep["instances"]["val_per_fold"]) for c in total} == total
    assert rep["crowd_regions"] == {"total": 3, "val_per_fold": [1, 1, 1]}
    assert rep["ignore_regions_note"] == plain["ignore_regions_note"]
    ids = {}
    for i, f in enumerate(rep["folds"]["per_fold"]):
        tr, va = load(ann / f"fold{i}_train.json"), load(ann / f"fold{i}_val.json")
        assert (len(tr["images"]), len(va["images"])) == (f["train"], f["val"])
        assert {im["group"] for im in va["images"]} == set(f["val_groups"])
        assert not {im["group"] for im in tr["images"]} & set(f["val_groups"])
        for im in tr["images"] + va["images"]:
            assert ids.setdefault(im["file_name"], im["id"]) == im["id"]
        assert sum(a["iscrowd"] == 0 for a in va["annotations"]) == sum(rep["instances"]["val_per_fold"][i].values())
    for s in ("train", "val"):
        for im in load(tmp_path / "plain" / "annotations" / f"{s}.json")["images"]:
            assert ids[im["file_name"]] == im["id"] and im["group"] == im["file_name"][:2]
    md = (tmp_path / "cv" / "conversion_report.md").read_text()
    assert "## Folds (3-fold cross-validation)" in md and "trained as background" in md


def test_outputs_check_covers_fold_files_and_overwrite_removes_stale_ones(tmp_path, capsys):
    assert "annotations/fold*_train.json" in OUTPUT_FILES and "annotations/fold*_val.json" in OUTPUT_FILES
    _three_videos(tmp_path / "in")
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), "-o", str(out), "--folds", "3", "-q"]) == 0
    for f in ("conversion_report.json", "conversion_report.md"):
        (out / f).unlink()
    (out / "annotations" / "notes.json").write_text("{}")  # not ours: never deleted
    assert main([str(tmp_path / "in"), "-o", str(out), "-q"]) == 2  # the fold files alone mark a dataset
    assert "fold0_train.json" in capsys.readouterr().err
    assert main([str(tmp_path / "in"), "-o", str(out), "-q", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["notes.json", "train.json", "val.json"]
    assert main([str(tmp_path / "in"), "-o", str(out), "-q", "--overwrite", "--folds", "2"]) == 0
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "fold0_train.json", "fold0_val.json", "fold1_train.json", "fold1_val.json", "notes.json"]


def test_frames_csv_gives_source_index_and_time_for_guard_seconds(tmp_path):
    """extract_frames layout: frames + frames.csv in one folder, LabelMe files elsewhere pointing at them.
    Frame files are numbered 0..n-1 here while frames.csv says each is every 3rd source frame: the
    guard must use frames.csv."""
    frames, lm = tmp_path / "frames", tmp_path / "labelme"
    rows = []
    for i in range(40):
        write_labelme(lm / f"clip_{i:06d}.json", heart_shapes(), image_path=f"../frames/clip_{i:06d}.png")
        rows.append({"source": "/videos/clip.mp4", "frame_index": 3 * i, "timestamp": f"{3 * i / 30:.6f}",
                     "file": f"clip_{i:06d}.png", "sharpness": "1.0", "mean_intensity": "40.0", "status": "kept"})
    rows.append({**rows[-1], "frame_index": 999, "file": "", "status": "blurry"})  # not written: no file
    with open(frames / "frames.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    rep = convert([lm], tmp_path / "s", ConvertOptions(val_fraction=0.2, seed=3, guard_seconds=0.35), quiet=True)
    assert rep["split"]["method"] == "time_blocks" and rep["split"]["frame_index_source"] == {"frames.csv": 40}
    assert rep["split"]["guard"] == {"unit": "seconds", "value": 0.35, "applied": True}
    sides = {im["file_name"]: s for s in ("train", "val")
             for im in load(tmp_path / "s" / "annotations" / f"{s}.json")["images"]}
    val_t = [3 * int(n[5:11]) / 30 for n, s in sides.items() if s == VAL]
    for i in range(40):
        name, t = f"clip_{i:06d}.png", 3 * i / 30
        near = min(abs(t - v) for v in val_t) <= 0.35
        assert (name not in sides) == (sides.get(name) != VAL and near)  # excluded exactly when near val
    assert rep["images"]["excluded_guard_gap"] == sum(1 for i in range(40) if f"clip_{i:06d}.png" not in sides)
    # in source frames: 6 source frames are 2 extracted frames each side
    rep = convert([lm], tmp_path / "f", ConvertOptions(val_fraction=0.2, seed=3, guard_gap=6), quiet=True)
    assert rep["split"]["guard"]["unit"] == "source_frames" and rep["images"]["excluded_guard_gap"] in (2, 4)
    md = (tmp_path / "f" / "conversion_report.md").read_text()
    assert "Guard gap: 6 source-video frames, applied" in md and "from frames.csv for 40 images" in md
    assert json.loads((tmp_path / "f" / "conversion_report.json").read_text())["options"]["guard_gap"] == 6


def test_fraction_miss_warns_on_stderr_and_in_the_report(tmp_path, capsys):
    for i in range(20):
        write_labelme(tmp_path / "in" / f"big_{i:03d}.json", heart_shapes())
    write_labelme(tmp_path / "in" / "small_000.json", heart_shapes())
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--val-fraction", "0.3"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: val holds 4.8% of the images, not the requested 30%") == 1
    rep = load(tmp_path / "out" / "conversion_report.json")
    assert rep["split"]["warnings"] and rep["split"]["grouping_rule"] == "file_name"
    assert "## Warnings" in (tmp_path / "out" / "conversion_report.md").read_text()
