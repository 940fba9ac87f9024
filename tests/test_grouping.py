"""Groups hold on real layouts (issue 19 item 1): folders of numbered frames, patient/video/frames
nesting (by video, or by patient with --group-by patient), extract_frames names, and a warning that
says how the groups were formed when most of them hold a single frame."""

from __future__ import annotations

import json

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.annotations.split import (
    EXCLUDED,
    TOP_FOLDER,
    TRAIN,
    VAL,
    Guard,
    default_group,
    make_folds,
    make_split,
    video_and_index,
)
from fetalheart.cli.labelme2coco import main
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.naming import frame_name

import pytest
from _labelme_helpers import heart_shapes, load, write_labelme


@pytest.mark.parametrize("name, video, index", [
    ("video1/0001.png", "video1", 1),  # ffmpeg -i v.mp4 video1/%04d.png
    ("video1/frame_0001.png", "video1", 1),
    ("exam/IM_0001.png", "exam", 1),
    ("exam/img001.jpg", "exam", 1),
    ("exam/Image-12.png", "exam", 12),
    ("p07/clip2/0003.png", "p07/clip2", 3),  # nested patient/video/frames: the video
    ("0001.png", TOP_FOLDER, 1),  # numbered frames directly in the input folder: one video
    (frame_name("phantom_s3", 45, "png"), "phantom_s3", 45),  # what extract_frames writes
    (frame_name("0001", 45, "png"), "0001", 45),  # a video named by number, extracted
    (frame_name("IM_0001", 7, "png"), "IM_0001", 7),
    ("video1/clip-12.png", "video1/clip", 12),
    ("case001.png", "case001", None),  # an id, not a frame number: its own group
])
def test_video_of_a_frame_name(name, video, index):
    assert video_and_index(name)[:2] == (video, index)
    assert default_group(name) == video


def _numbered(root, videos=3, frames=20, nested: str = ""):
    for v in range(videos):
        for i in range(1, frames + 1):
            write_labelme(root / nested / f"video{v}" / f"{i:04d}.json", heart_shapes(i % 7))


def _sides(coco_dir) -> dict[str, set[str]]:
    sides: dict[str, set[str]] = {}
    for side in (TRAIN, VAL):
        for im in load(coco_dir / "annotations" / f"{side}.json")["images"]:
            sides.setdefault(im["group"], set()).add(side)
    return sides


def test_three_folders_of_numbered_frames_split_by_folder(tmp_path, capsys):
    _numbered(tmp_path / "in")
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--val-fraction", "0.34", "-q"]) == 0
    sides = _sides(tmp_path / "out")
    assert sorted(sides) == ["video0", "video1", "video2"]
    assert all(len(s) == 1 for s in sides.values())  # no video on both sides
    rep = json.loads((tmp_path / "out" / "conversion_report.json").read_text())
    assert (rep["images"]["train"], rep["images"]["val"]) == (40, 20) and rep["split"]["n_groups"] == 3
    assert "60 images named by a frame number alone" in rep["split"]["grouping"]
    assert "(video0/0001.png -> video0)" in rep["split"]["grouping"]
    assert "Grouping (3 groups): by video" in (tmp_path / "out" / "conversion_report.md").read_text()
    assert rep["split"]["warnings"] == []


def test_one_folder_of_numbered_frames_is_one_video_with_a_guard_gap():
    names = [f"video1/{i:04d}.png" for i in range(1, 61)]
    s = make_split(names, val_fraction=0.2, guard=Guard(2))
    assert s.method == "time_blocks" and set(s.image_groups.values()) == {"video1"}
    assert list(s.assignment.values()).count(EXCLUDED) in (2, 4)  # the index in the name is the frame index


def test_nested_patient_video_frames_by_video_and_by_patient(tmp_path, capsys):
    names = [f"patient{p:02d}/clip{c}/{i:04d}.png" for p in range(4) for c in range(2) for i in range(5)]
    by_video = make_split(names, val_fraction=0.25)
    assert len(by_video.groups) == 8 and "patient00/clip1" in by_video.groups
    # grouping by video while the top folders are patient ids: the warning names --group-by patient
    assert len(by_video.warnings) == 1 and "--group-by patient" in by_video.warnings[0]
    by_patient = make_split(names, val_fraction=0.25, group_by="patient")
    assert sorted(by_patient.groups) == [f"patient{p:02d}" for p in range(4)] and by_patient.warnings == []
    assert by_patient.grouping.startswith("by patient (--group-by patient)")
    folds = make_folds(names, 4, group_by="patient")
    for a in folds.assignments:  # each patient in the val side of exactly one fold, never on both sides
        assert len({n.split("/")[0] for n, s in a.items() if s == VAL}) == 1
    # through the tool: every image's COCO group is its patient
    for p in range(3):
        for c in range(2):
            for i in range(3):
                write_labelme(tmp_path / "in" / f"p{p}" / f"clip{c}" / f"{i:04d}.json", heart_shapes(i))
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--group-by", "patient", "-q"]) == 0
    assert sorted(_sides(tmp_path / "out")) == ["p0", "p1", "p2"]
    assert all(len(s) == 1 for s in _sides(tmp_path / "out").values())


def test_group_by_patient_needs_patient_folders_and_excludes_a_regex(tmp_path, capsys):
    with pytest.raises(FetalHeartError, match="--group-by patient needs one folder per patient"):
        make_split(["a_0001.png", "b_0001.png"], group_by="patient")
    with pytest.raises(FetalHeartError, match="mutually exclusive"):
        make_split(["p1/a_0001.png", "p2/b_0001.png"], group_by="patient", group_regex="^(p.)")
    with pytest.raises(FetalHeartError, match="--group-by must be video or patient"):
        make_split(["p1/a_0001.png", "p2/b_0001.png"], group_by="hospital")
    with pytest.raises(SystemExit):
        main([str(tmp_path), "-o", str(tmp_path / "o"), "--group-by", "patient", "--group-regex", "x"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_most_groups_of_one_frame_warn_in_terminal_and_report(tmp_path, capsys):
    # 12 scans, each its own group of one frame: one frame per video is fine, frames of one video are a leak
    for i in range(12):
        write_labelme(tmp_path / "in" / f"scan{i:02d}_0001.json", heart_shapes(i))
    rep = convert([tmp_path / "in"], tmp_path / "out", ConvertOptions(), quiet=True)
    err = capsys.readouterr().err
    (warning,) = rep["split"]["warnings"]
    assert warning.startswith("12 of 12 groups hold a single frame; grouping by video: 12 images belong to their "
                              "path without the frame index")
    assert "(scan00_0001.png -> scan00)" in warning and "--group-regex" in warning
    assert f"warning: {warning}" in err
    assert warning in (tmp_path / "out" / "conversion_report.md").read_text()
    # a few singletons among real videos do not warn
    names = [f"v{g}_{i:03d}.png" for g in range(4) for i in range(10)] + ["odd_001.png"]
    assert make_split(names, val_fraction=0.2).warnings == []
