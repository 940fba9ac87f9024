"""The synthetic echo phantom: outputs, LabelMe validity, determinism, categories, image statistics."""

from __future__ import annotations

import csv
import importlib.util
import json
import time

from fetalheart.classes import CLASS_NAMES
from fetalheart.cli.make_phantom import main as cli_main
from fetalheart.phantom import (
    CATEGORIES,
    DEFAULT_PROPORTIONS,
    PhantomSpec,
    category_schedule,
    is_simple_polygon,
    make_phantom,
    render_frame,
)
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np
import pytest

W, H = 1280, 720


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """One 2-second 1280x720 phantom (60 frames), timed, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("phantom")
    start = time.perf_counter()
    summary = make_phantom(out, PhantomSpec(seconds=2.0, fps=30, size=(W, H), seed=0))
    elapsed = time.perf_counter() - start
    rows = list(csv.DictReader((out / "frames.csv").open()))
    meta = json.loads((out / "phantom.json").read_text())
    docs = [json.loads(p.read_text()) for p in sorted((out / "labelme").glob("*.json"))]
    return {"out": out, "summary": summary, "elapsed": elapsed, "rows": rows, "meta": meta, "docs": docs}


def _mask(shapes, label=None, group=None, size=(W, H)):
    m = np.zeros((size[1], size[0]), np.uint8)
    for s in shapes:
        if (label is None or s["label"] == label) and (group is None or s["group_id"] == group):
            cv2.fillPoly(m, [np.round(np.array(s["points"])).astype(np.int32)], 1)
    return m.astype(bool)


def _frames(phantom, category):
    return [int(r["frame_index"]) for r in phantom["rows"] if r["category"] == category]


def _image(phantom, i):
    return cv2.imread(str(phantom["out"] / phantom["rows"][i]["file"]), cv2.IMREAD_GRAYSCALE)


def test_generation_speed_and_outputs(phantom):
    # The acceptance: 60 frames at 1280x720 incl. PNG + JSON + video in < 20 s on 2 CPU cores.
    assert phantom["elapsed"] < 20.0, f"phantom took {phantom['elapsed']:.1f} s"
    out, s = phantom["out"], phantom["summary"]
    assert s["n_frames"] == 60 and sum(s["counts"].values()) == 60
    assert len(list((out / "frames").glob("phantom_s0_*.png"))) == 60
    assert len(phantom["docs"]) == 60
    assert (out / "frames" / "phantom_s0_000059.png").exists()
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"
    cap = cv2.VideoCapture(str(out / "phantom_s0.mp4"))
    assert cap.isOpened()
    assert round(cap.get(cv2.CAP_PROP_FPS)) == 30
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n == 0:
            assert frame.shape == (H, W, 3)
            png = cv2.imread(str(out / "frames" / "phantom_s0_000000.png"))
            # H.264 is lossy, but the video shows the same picture as the PNG.
            assert np.abs(frame.astype(int) - png.astype(int)).mean() < 12
        n += 1
    assert n == 60


def test_frames_csv_and_categories(phantom):
    rows = phantom["rows"]
    assert list(rows[0]) == ["file", "frame_index", "timestamp", "category"]
    assert [int(r["frame_index"]) for r in rows] == list(range(60))
    assert float(rows[30]["timestamp"]) == pytest.approx(1.0)
    cats = [r["category"] for r in rows]
    assert set(cats) == set(CATEGORIES)  # all four appear in 60 frames
    changes = sum(a != b for a, b in zip(cats, cats[1:], strict=False))
    assert changes <= 6, "categories should come in contiguous runs"
    counts = {c: cats.count(c) for c in CATEGORIES}
    assert counts == phantom["summary"]["counts"]
    # Study proportions 114/50/105/88 of 357 -> about 19/8/18/15 of 60.
    for c in CATEGORIES:
        assert abs(counts[c] - 60 * DEFAULT_PROPORTIONS[c] / 357) <= 1


def test_schedule_properties():
    for seed in range(8):
        cats = category_schedule(60, seed=seed)
        assert set(cats) == set(CATEGORIES)
    assert category_schedule(60, seed=1) != category_schedule(60, seed=2)
    long = category_schedule(357, seed=0)
    assert {c: long.count(c) for c in CATEGORIES} == dict(DEFAULT_PROPORTIONS)
    assert set(category_schedule(30, proportions={"heart": 1})) == {"heart"}
    assert "no_heart" not in category_schedule(100, proportions=[1, 1, 1, 0])
    assert len(category_schedule(2, seed=0)) == 2
    for bad in ({"hearts": 1}, {"heart": -1}, [0, 0, 0, 0], [1, 2]):
        with pytest.raises(FetalHeartError):
            category_schedule(10, proportions=bad)


def test_labelme_files_load_and_match_schema(phantom):
    out = phantom["out"]
    files = sorted((out / "labelme").glob("*.json"))
    for path, doc in zip(files, phantom["docs"], strict=True):
        assert doc["imageData"] is None
        assert doc["imagePath"] == f"../frames/{path.stem}.png"
        assert (path.parent / doc["imagePath"]).resolve() == (out / "frames" / f"{path.stem}.png").resolve()
        assert (doc["imageHeight"], doc["imageWidth"]) == (H, W)
        assert isinstance(doc["version"], str) and isinstance(doc["flags"], dict)
        for s in doc["shapes"]:
            assert s["shape_type"] == "polygon" and s["label"] in CLASS_NAMES
            assert isinstance(s["flags"], dict)
            assert s["group_id"] is None or isinstance(s["group_id"], int)
    if importlib.util.find_spec("labelme") is None:
        return
    from labelme import LabelFile

    for path in files[::6]:  # labelme re-reads the PNG each time: a sample keeps the test fast
        lf = LabelFile(str(path))
        assert len(lf.shapes) == len(json.loads(path.read_text())["shapes"])
        assert lf.image_data


def test_classes_per_category(phantom):
    for i, (row, doc) in enumerate(zip(phantom["rows"], phantom["docs"], strict=True)):
        shapes, cat = doc["shapes"], row["category"]
        if cat == "no_heart":
            assert shapes == [], f"frame {i}"
        elif cat == "multiple_hearts":
            for g in (0, 1):
                assert {s["label"] for s in shapes if s["group_id"] == g} == set(CLASS_NAMES), f"frame {i}"
            assert {s["group_id"] for s in shapes} == {0, 1}
        else:
            assert {s["label"] for s in shapes} == set(CLASS_NAMES), f"frame {i}"
            assert {s["group_id"] for s in shapes} == {0}  # one heart: multi-part structures stay one instance


def test_polygons_valid_inside_image_and_sector(phantom):
    meta = phantom["meta"]
    x, y, w, h = meta["sector_bbox"]
    apex, radius = np.array(meta["sector"]["apex"]), meta["sector"]["radius"]
    half = np.radians(meta["sector"]["half_angle_deg"])
    for doc in phantom["docs"]:
        for s in doc["shapes"]:
            p = np.array(s["points"], float)
            assert len(p) >= 3 and is_simple_polygon(p)
            assert cv2.contourArea(p.astype(np.float32)) > 0
            assert (p >= 0).all() and (p[:, 0] <= W - 1).all() and (p[:, 1] <= H - 1).all()
            assert (p[:, 0] >= x).all() and (p[:, 0] < x + w).all() and (p[:, 1] >= y).all() and (p[:, 1] < y + h).all()
            d = p - apex
            assert (np.hypot(*d.T) <= radius + 1.5).all()
            assert (np.abs(np.arctan2(d[:, 0], d[:, 1])) <= half + 0.01).all()


def test_is_simple_polygon():
    assert is_simple_polygon([[0, 0], [10, 0], [10, 10], [0, 10]])
    assert not is_simple_polygon([[0, 0], [10, 10], [10, 0], [0, 10]])  # bow tie
    assert not is_simple_polygon([[0, 0], [10, 0], [5, 0]])  # no area
    assert not is_simple_polygon([[0, 0], [4, 0], [2, 2], [4, 4], [0, 4], [2, 2]])  # touches itself
    assert not is_simple_polygon([[0, 0], [1, 1]])


def test_structure_clipped_by_sector_edge():
    # A heart pushed to the side of the fan: every polygon still lies inside the fan.
    from fetalheart.phantom.anatomy import HALF_ANGLE, ellipse, sector_for
    from fetalheart.phantom.groundtruth import labelme_shapes

    sector = sector_for((320, 240))
    cx, cy = sector.point(0.6, HALF_ANGLE)  # centred on the fan's edge
    structs = {n: [ellipse(cx, cy, 30, 20)] for n in CLASS_NAMES}
    shapes = labelme_shapes(structs, [], sector, (320, 240), None)
    assert len(shapes) == len(CLASS_NAMES)
    full = np.pi * 30 * 20
    for s in shapes:
        m = _mask([s], size=(320, 240))
        assert 0.3 * full < m.sum() < 0.7 * full  # about half of it is cut away
        # Polygon simplification may cross the fan edge by under a pixel, never more.
        assert cv2.dilate(sector.mask, np.ones((3, 3), np.uint8))[m].all()


def test_same_seed_identical_files_different_seed_differs(tmp_path):
    kw = dict(seconds=0.3, fps=30, size=(320, 180))
    a, b, c = (make_phantom(tmp_path / n, PhantomSpec(seed=s, **kw), video=False) for n, s in (("a", 5), ("b", 5), ("c", 6)))
    rel = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(rel) == 2 * 9 + 2
    for r in rel:
        assert (tmp_path / "a" / r).read_bytes() == (tmp_path / "b" / r).read_bytes(), r
    assert a["counts"] == b["counts"]
    pa = sorted((tmp_path / "a" / "frames").glob("*.png"))
    pc = sorted((tmp_path / "c" / "frames").glob("*.png"))
    assert all(x.read_bytes() != y.read_bytes() for x, y in zip(pa, pc, strict=True))


def test_render_frame_matches_written_frame(phantom):
    for i in (0, 37):
        img, shapes, cat = render_frame(i, seed=0, fps=30, size=(W, H), n_frames=60)
        assert cat == phantom["rows"][i]["category"]
        assert np.array_equal(img, cv2.imread(str(phantom["out"] / phantom["rows"][i]["file"])))
        assert shapes == phantom["docs"][i]["shapes"]


def test_out_of_focus_frames_are_much_less_sharp(phantom):
    x, y, w, h = phantom["meta"]["sector_bbox"]
    # Inside the fan only: its straight edges are sharp in every frame.
    x, y, w, h = x + w // 3, y + h // 4, w // 3, h // 2

    def sharpness(i):
        # At half size: the speckle grain is sized like real echo relative to the sector (~10 px at
        # 1280x720), so at full size 8-bit rounding (Laplacian variance ~1.7) would dominate.
        crop = _image(phantom, i)[y : y + h, x : x + w]
        half = cv2.resize(crop, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return cv2.Laplacian(half.astype(np.float64), cv2.CV_64F).var()

    sharp = np.median([sharpness(i) for i in _frames(phantom, "heart")])
    blurred = np.median([sharpness(i) for i in _frames(phantom, "out_of_focus")])
    assert blurred < 0.2 * sharp, (blurred, sharp)


def test_blood_pools_dark_myocardium_bright_speckled(phantom):
    kernel = np.ones((3, 3), np.uint8)
    blood, myo, spine = [], [], []
    for i in _frames(phantom, "heart")[::3]:
        img, shapes = _image(phantom, i).astype(float), phantom["docs"][i]["shapes"]
        anything = _mask(shapes)
        for lab in ("LA", "RA", "LV", "RV"):
            m = cv2.erode(_mask(shapes, lab).astype(np.uint8), kernel, iterations=3).astype(bool)
            blood.append(img[m])
        lv = _mask(shapes, "LV").astype(np.uint8)
        ring = cv2.dilate(lv, kernel, iterations=10).astype(bool) & ~cv2.dilate(lv, kernel, iterations=4).astype(bool)
        ring &= ~cv2.dilate(anything.astype(np.uint8), kernel, iterations=4).astype(bool)
        myo.append(img[ring])
        spine.append(img[_mask(shapes, "Spine")])
    blood, myo, spine = np.concatenate(blood), np.concatenate(myo), np.concatenate(spine)
    assert blood.size > 1000 and myo.size > 1000
    assert myo.mean() > blood.mean() + 35  # clear contrast between wall and cavity (real echo: ~60 vs ~15)
    assert np.median(myo) > 2.5 * np.median(blood)
    assert spine.mean() > myo.mean()  # bone is the brightest echo
    assert myo.std() > 8  # speckle: the myocardium is textured, not flat


def test_cardiac_cycle_moves_chambers_and_valves():
    lv_area, mv_parts = [], []
    for i in range(0, 14):  # one fetal heart cycle (130-155 bpm) at 30 fps
        _, shapes, _ = render_frame(i, seed=2, size=(320, 180), category="heart")
        lv_area.append(_mask(shapes, "LV", size=(320, 180)).sum())
        mv_parts.append(sum(s["label"] == "MV" for s in shapes))
    assert max(lv_area) > 1.1 * min(lv_area)
    assert {1, 2} <= set(mv_parts)  # closed: one band; open: two leaflets


def test_scatterers_decorrelate_over_frames_and_speckle_is_rayleigh(monkeypatch):
    from fetalheart.phantom import echo
    from fetalheart.phantom.anatomy import sector_for

    shape = (192, 256)
    frames = [np.concatenate([a.ravel() for a in echo.scatterers(3, i, shape)]).astype(np.float64) for i in range(10)]
    s0 = frames[0]
    assert s0.mean() == pytest.approx(0.0, abs=0.02) and s0.std() == pytest.approx(1.0, abs=0.02)
    corr = [np.corrcoef(s0, f)[0, 1] for f in frames]
    assert 0.5 < corr[1] < 0.99  # neighbours partly correlated
    assert abs(corr[8]) < 0.1  # two key frames apart: independent
    # Homogeneous tissue through the PSF: one look gives Rayleigh speckle (std/mean 0.52), the
    # compounded looks a smoother one; the mean level does not depend on the number of looks.
    sector = sector_for((320, 240))
    refl = np.ones(sector.beam_shape, np.float32)
    spec = np.zeros_like(refl)
    monkeypatch.setattr(echo, "LOOKS", 1)
    one = echo.beam_envelope(refl, spec, sector, seed=1, index=0)[10:-10, 10:-10].astype(np.float64)
    monkeypatch.undo()
    many = echo.beam_envelope(refl, spec, sector, seed=1, index=0)[10:-10, 10:-10].astype(np.float64)
    assert one.std() / one.mean() == pytest.approx(np.sqrt(4 / np.pi - 1), abs=0.06)
    assert many.std() / many.mean() < 0.7 * one.std() / one.mean()
    for env in (one, many):  # I and Q of unit variance each: mean power 2
        assert (env**2).mean() == pytest.approx(2.0, rel=0.1)


def test_metadata_sector_and_text_boxes(phantom):
    meta = phantom["meta"]
    assert meta["seed"] == 0 and meta["size"] == [W, H] and meta["fps"] == 30 and meta["n_frames"] == 60
    assert meta["name"] == "phantom_s0"
    x, y, w, h = meta["sector_bbox"]
    img = _image(phantom, _frames(phantom, "heart")[0])
    inside = img[y : y + h, x : x + w]
    assert inside[:, 0].any() and inside[:, -1].any() and inside[0].any() and inside[-1].any()
    outside = img.copy()
    outside[y : y + h, x : x + w] = 0
    assert meta["text_boxes"]
    for bx, by, bw, bh in meta["text_boxes"]:
        # Margin overlays lie outside the sector box, so cropping to it removes them.
        assert bx + bw <= x or bx >= x + w
        assert outside[by : by + bh, bx : bx + bw].max() > 100
        outside[by : by + bh, bx : bx + bw] = 0
    assert outside.max() == 0, "pixels outside the sector box and the text boxes must be black"


def test_refuses_to_overwrite_and_cli(tmp_path, capsys):
    out = tmp_path / "p"
    assert cli_main(["-o", str(out), "--seconds", "0.1", "--size", "160x120", "--frames-only", "-q"]) == 0
    assert not list(out.glob("*.mp4"))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(list((out / "frames").glob("*.png"))) == 3
    with pytest.raises(FetalHeartError, match="overwrite"):
        make_phantom(out, PhantomSpec(seconds=0.1, size=(160, 120), seed=1), video=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert cli_main(["-o", str(out), "--seconds", "0.1", "--size", "160x120", "--frames-only", "-q"]) == 2
    err = capsys.readouterr().err
    assert "overwrite" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        cli_main(["-o", str(out), "--size", "big"])
    assert exc.value.code == 2
    assert cli_main(["-o", str(tmp_path / "q"), "--proportions", "heart=1,bogus=2", "-q"]) == 2


def test_failure_midway_leaves_no_partial_video(tmp_path, monkeypatch):
    from fetalheart.phantom import writer

    real = writer.render_frame

    def flaky(i, **kw):
        if i == 3:
            raise KeyboardInterrupt
        return real(i, **kw)

    monkeypatch.setattr(writer, "render_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_phantom(tmp_path, PhantomSpec(seconds=0.2, size=(160, 120)))
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.rglob(".*"))
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3  # finished frames are complete files
