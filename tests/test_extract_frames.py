"""tools/extract_frames.py and fetalheart.video.extract: sampling, timestamps, crop, sharpness, bad input.

Reference frame lists come from ffmpeg's showinfo filter (ffprobe is not shipped by
imageio-ffmpeg; see tests/_video_helpers.py). Videos are small (320x180, 3 s) except the phantom.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from fetalheart.cli.extract_frames import main as cli_main
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.extract import (
    DUPLICATE,
    KEPT,
    OUT_OF_FOCUS,
    ExtractOptions,
    PartialVideoError,
    extract_frames,
    format_summary,
)
from fetalheart.video.geometry import FrameGeometry, make_geometry, parse_resize
from fetalheart.video.io import parse_time

import cv2
import numpy as np
import pytest
from _video_helpers import make_h264, reference_timestamps, truncate_copy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    v = {
        "bframes": make_h264(d / "bframes.mp4"),
        # variable frame rate: frames 10-24 dropped, the gap stays in the timestamps
        "vfr": make_h264(d / "vfr.mp4", vf="select='not(between(n,10,24))'", bframes=2),
        "faststart": make_h264(d / "faststart.mp4", faststart=True),
        "still": make_h264(d / "still.mp4", seconds=1, size="160x90", source="color=c=gray:"),
    }
    v["trunc_moov"] = truncate_copy(v["bframes"], d / "trunc_moov.mp4", 0.5)  # index at the end: lost
    v["trunc_data"] = truncate_copy(v["faststart"], d / "trunc_data.mp4", 0.5)  # index first: data cut
    (d / "notes.mp4").write_text("this is not a video\n")
    (d / "empty.mp4").write_bytes(b"")
    (d / "folder.mp4").mkdir()
    v["text"], v["empty"], v["folder"], v["missing"] = (d / "notes.mp4", d / "empty.mp4", d / "folder.mp4",
                                                         d / "missing.mp4")  # fmt: skip
    v["ref"] = {k: reference_timestamps(v[k]) for k in ("bframes", "vfr", "faststart")}
    return v


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from fetalheart.phantom import PhantomSpec, make_phantom

    d = tmp_path_factory.mktemp("phantom")
    info = make_phantom(d, PhantomSpec(seconds=3, fps=30, size=(480, 270), seed=1))
    meta = json.loads((d / "phantom.json").read_text())
    cats = {int(r["frame_index"]): r["category"] for r in csv.DictReader((d / "frames.csv").open())}
    return {"video": Path(info["video"]), "meta": meta, "categories": cats}


def _csv_rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "frames.csv").open()))


# --------------------------------------------------------------------------- frames and timestamps


@pytest.mark.parametrize("name", ["bframes", "vfr"])
def test_every_frame_matches_ffmpeg_reference(videos, tmp_path, name):
    ref = videos["ref"][name]
    res = extract_frames([videos[name]], tmp_path, ExtractOptions(min_sharpness=None), quiet=True)
    assert [r.frame_index for r in res.records] == list(range(len(ref)))
    np.testing.assert_allclose([r.timestamp for r in res.records], ref, atol=1e-3)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [f"{name}_{i:06d}.png" for i in range(len(ref))]
    assert res.videos[0].partial is None and res.videos[0].decoded == len(ref)
    rows = _csv_rows(tmp_path)
    assert [int(r["frame_index"]) for r in rows] == list(range(len(ref)))
    np.testing.assert_allclose([float(r["timestamp"]) for r in rows], ref, atol=1e-3)
    # decoded pixels are the video's frames: frame 45 compared to OpenCV's own sequential read
    cap = cv2.VideoCapture(str(videos[name]))
    for _ in range(46):
        ok, frame = cap.read()
    assert ok and np.array_equal(cv2.imread(str(tmp_path / f"{name}_000045.png")), frame)


def test_vfr_has_the_gap(videos):
    ref = videos["ref"]["vfr"]
    assert len(ref) == 75 and ref[10] - ref[9] == pytest.approx(16 / 30, abs=1e-3)  # fixture sanity


def test_every_start_end(videos, tmp_path):
    ref = videos["ref"]["vfr"]
    res = extract_frames([videos["vfr"]], tmp_path, ExtractOptions(every=4, start="0:00.2", end=2.0), quiet=True)
    in_range = [i for i, t in enumerate(ref) if 0.2 - 1e-6 <= t < 2.0 - 1e-6]
    assert [r.frame_index for r in res.records] == in_range[::4]
    assert res.records[0].timestamp >= 0.2 - 1e-6 and res.records[-1].timestamp < 2.0


def test_fps_sampling_follows_presentation_time(videos, tmp_path):
    res = extract_frames([videos["vfr"]], tmp_path, ExtractOptions(fps=5, min_sharpness=None), quiet=True)
    ts = np.array([r.timestamp for r in res.records])
    slots = np.floor(ts * 5 + 1e-6)
    assert len(set(slots)) == len(slots)  # at most one sample per 1/5 s slot of presentation time
    assert len(ts) == pytest.approx(3.0 * 5 - 2, abs=1)  # 15 slots, ~2 fall inside the 0.5 s gap
    assert not any(0.3 < t < 0.8 for t in ts)  # no frame exists there


def test_max_frames_and_jpg(videos, tmp_path):
    res = extract_frames([videos["bframes"]], tmp_path, ExtractOptions(every=2, max_frames=5, fmt="jpg"), quiet=True)
    assert [p.name for p in res.kept] == [f"bframes_{i:06d}.jpg" for i in range(0, 10, 2)]
    assert all(cv2.imread(str(p)) is not None for p in res.kept)


def test_several_videos_and_summary(videos, tmp_path):
    res = extract_frames([videos["bframes"], videos["vfr"]], tmp_path, ExtractOptions(every=15), quiet=True)
    assert {Path(r.source).stem for r in res.records} == {"bframes", "vfr"}
    table = format_summary(res)
    assert "bframes" in table and "vfr" in table and "total" in table
    meta = json.loads(res.json_path.read_text())
    assert [v["stem"] for v in meta["videos"]] == ["bframes", "vfr"]


# --------------------------------------------------------------------------- geometry


def test_resize_modes():
    g = make_geometry((1280, 720), (200, 60, 860, 640), parse_resize("512"))
    assert g.output_size == (512, 381) and g.pad == (0, 0)
    g = make_geometry((1280, 720), None, parse_resize("512x512"))
    assert g.output_size == (512, 512) and g.pad == (0, 112)
    with pytest.raises(FetalHeartError):
        make_geometry((320, 180), (300, 0, 100, 100), None)


@pytest.mark.parametrize("resize", [None, 96, (128, 128)])
def test_map_points_follows_the_pixels(resize):
    """A bright square in the source lands where map_points says, after crop+resize+pad."""
    src = np.zeros((180, 320, 3), np.uint8)
    src[100:120, 200:230] = 255
    g = make_geometry((320, 180), (40, 20, 240, 150), resize)
    out = g.apply(src)
    assert out.shape[:2] == g.output_size[::-1]
    ys, xs = np.nonzero(out[..., 0] > 127)
    (x0, y0), (x1, y1) = g.map_points([[200, 100], [230, 120]])
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1
    pts = np.array([[12.5, 7.0], [300.0, 170.0]])
    np.testing.assert_allclose(g.unmap_points(g.map_points(pts)), pts)
    assert FrameGeometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_geometry_recorded_and_loadable(videos, tmp_path):
    res = extract_frames([videos["bframes"]], tmp_path, ExtractOptions(every=30, crop="10,20,200,100", resize=100), quiet=True)
    g = FrameGeometry.load(tmp_path)
    assert g == res.geometry() and g.crop == (10, 20, 200, 100) and g.output_size == (100, 50)
    assert cv2.imread(str(res.kept[0])).shape == (50, 100, 3)


def test_parse_time():
    assert parse_time("90") == 90 and parse_time("1:30") == 90 and parse_time("00:01:30.5") == 90.5
    with pytest.raises(FetalHeartError):
        parse_time("1m30")


# --------------------------------------------------------------------------- phantom: crop, sharpness


def test_auto_crop_contains_sector_and_excludes_text(phantom, tmp_path):
    res = extract_frames([phantom["video"]], tmp_path, ExtractOptions(every=10, auto_crop=True), quiet=True)
    x, y, w, h = res.crop
    sx, sy, sw, sh = phantom["meta"]["sector_bbox"]
    assert x <= sx and y <= sy and x + w >= sx + sw and y + h >= sy + sh, (res.crop, phantom["meta"]["sector_bbox"])
    assert phantom["meta"]["text_boxes"], "phantom has no text boxes to test against"
    for tx, ty, tw, th in phantom["meta"]["text_boxes"]:
        overlap_w = min(x + w, tx + tw) - max(x, tx)
        overlap_h = min(y + h, ty + th) - max(y, ty)
        assert overlap_w <= 0 or overlap_h <= 0, f"text box {(tx, ty, tw, th)} inside crop {res.crop}"
    assert cv2.imread(str(res.kept[0])).shape[:2] == (h, w)


def test_sharpness_filter_against_phantom_categories(phantom, tmp_path):
    res = extract_frames([phantom["video"]], tmp_path, ExtractOptions(min_sharpness="auto"), quiet=True)
    truth = np.array([phantom["categories"][r.frame_index] == "out_of_focus" for r in res.records])
    dropped = np.array([r.status == OUT_OF_FOCUS for r in res.records])
    tp = int((dropped & truth).sum())
    precision = tp / max(1, dropped.sum())
    recall = tp / max(1, truth.sum())
    print(f"\nphantom 480x270, {len(truth)} frames, {truth.sum()} out of focus: "
          f"dropped {dropped.sum()}, precision {precision:.3f}, recall {recall:.3f}, "
          f"threshold {res.videos[0].sharpness_threshold:.1f}")  # fmt: skip
    assert truth.sum() > 0 and (~truth).sum() > 0
    assert precision >= 0.9 and recall >= 0.9
    assert {p.name for p in res.kept} == {r.file for r in res.records if r.status == KEPT}
    assert not any(r.file for r in res.records if r.status == OUT_OF_FOCUS)  # not written


def test_keep_all_writes_dropped_frames_and_says_why(phantom, tmp_path):
    res = extract_frames([phantom["video"]], tmp_path, ExtractOptions(every=3, keep_all=True, min_sharpness="auto"), quiet=True)
    assert len(res.written) == len(res.records) and res.counts[OUT_OF_FOCUS] > 0
    rows = _csv_rows(tmp_path)
    assert {r["status"] for r in rows} == {KEPT, OUT_OF_FOCUS}
    assert all(r["file"] for r in rows)


def test_dedupe_drops_a_still_scene(videos, tmp_path):
    res = extract_frames([videos["still"]], tmp_path, ExtractOptions(dedupe=1.0, min_sharpness=None), quiet=True)
    assert res.counts[KEPT] == 1 and res.counts[DUPLICATE] == len(res.records) - 1 > 0
    res2 = extract_frames([videos["bframes"]], tmp_path / "moving", ExtractOptions(every=10, dedupe=1.0), quiet=True)
    assert res2.counts[DUPLICATE] == 0


# --------------------------------------------------------------------------- bad input (CLI, in process)


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli_main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line_error(rc, err, *needles):
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "key, needle",
    [("missing", "no such file"), ("folder", "is a directory"), ("text", "not a video"),
     ("empty", "empty (0 bytes)"), ("trunc_moov", "moov atom")],
)  # fmt: skip
def test_bad_video_one_line_no_output(videos, tmp_path, capsys, key, needle):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, videos[key], "-o", out, "-q")
    _assert_one_line_error(rc, err, needle)
    assert not out.exists()


def test_truncated_video_extracts_what_decodes(videos, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, videos["trunc_data"], "-o", out, "-q", "--min-sharpness", "off")
    _assert_one_line_error(rc, err, "decoding stopped after frame", "--allow-partial")
    frames = sorted(out.glob("*.png"))
    assert 0 < len(frames) < len(videos["ref"]["faststart"])
    assert all(cv2.imread(str(p)) is not None for p in frames)  # complete files only
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    meta = json.loads((out / "extraction.json").read_text())
    assert meta["videos"][0]["partial"]
    rc, _, err = _run(capsys, videos["trunc_data"], "-o", out, "-q", "--overwrite", "--allow-partial")
    assert rc == 0 and err == ""
    with pytest.raises(PartialVideoError) as exc:
        extract_frames([videos["trunc_data"]], tmp_path / "lib", quiet=True)
    assert exc.value.result.videos[0].decoded == len(frames)


def test_unwritable_output(videos, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, _, err = _run(capsys, videos["bframes"], "-o", blocker / "sub", "-q")
    _assert_one_line_error(rc, err, "cannot write to output directory")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rc, _, err = _run(capsys, videos["bframes"], "-o", ro, "-q")
            _assert_one_line_error(rc, err, "cannot write")
        finally:
            ro.chmod(0o700)


def test_existing_frames_need_overwrite(videos, tmp_path, capsys):
    rc, out, _ = _run(capsys, videos["bframes"], "-o", tmp_path, "--every", "30")
    assert rc == 0 and "bframes" in out and "kept" in out
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    rc, _, err = _run(capsys, videos["bframes"], "-o", tmp_path, "--every", "30", "-q")
    _assert_one_line_error(rc, err, "--overwrite")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # untouched
    rc, _, _ = _run(capsys, videos["bframes"], "-o", tmp_path, "--every", "30", "-q", "--overwrite")
    assert rc == 0


@pytest.mark.parametrize("args, needle", [(["--every", "0"], "--every"), (["--crop", "1,2,3"], "crop"),
                                          (["--start", "5", "--end", "2"], "--end"),
                                          (["--min-sharpness", "blurry"], "min-sharpness")])  # fmt: skip
def test_bad_options(videos, tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as exc:  # argparse errors exit 2 (usage + one error line)
        rc = cli_main([str(videos["bframes"]), "-o", str(tmp_path / "o"), "-q", *args])
        raise SystemExit(rc)
    err = capsys.readouterr().err
    assert exc.value.code != 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_console_script_help_and_run(videos, tmp_path):
    from fetalheart.cli.extract_frames import build_parser

    text = build_parser().format_help()
    assert "--auto-crop" in text and "example" in text
    tool = REPO / "tools" / "extract_frames.py"  # one real process: exit status and stderr as a user sees them
    r = subprocess.run([sys.executable, str(tool), str(videos["missing"]), "-o", str(tmp_path)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
