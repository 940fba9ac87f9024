"""The phantom held against real echo: shared/tools/echo_stats.py's statistics inside the target ranges."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fetalheart.phantom.realism import (
    REFERENCE,
    STATISTICS,
    frame_statistics,
    outside_targets,
    targets,
    video_statistics,
)

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared(rel: str) -> Path | None:
    """``shared/<rel>`` beside the checkout (main) or two levels up (a worktree), if there."""
    for base in (ROOT.parent, ROOT.parent.parent):
        p = base / "shared" / rel
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="module")
def demo_frames(tmp_path_factory):
    """Frames as the demo gets them: a 640x360 phantom video (H.264), extracted with the demo's
    options (every 3rd frame, auto-crop, out-of-focus frames dropped by the sharpness filter)."""
    from fetalheart.phantom import PhantomSpec, make_phantom
    from fetalheart.pipeline.study import StudyPlan
    from fetalheart.video.extract import ExtractOptions, extract_frames

    root = tmp_path_factory.mktemp("realism")
    info = make_phantom(root / "phantom", PhantomSpec(seconds=4, size=(640, 360), seed=0), quiet=True)
    res = extract_frames([info["video"]], root / "frames", ExtractOptions(**StudyPlan(output=root).extract), quiet=True)
    assert len(res.kept) >= 20
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in res.kept]


def test_vendored_targets_are_the_shared_reference():
    assert set(targets()) == set(STATISTICS)
    assert all(lo < hi for lo, hi in targets().values())
    shared = _shared("reference/echo_statistics.json")
    if shared is not None:
        assert REFERENCE.read_bytes() == shared.read_bytes()


def test_statistics_are_the_shared_tools(demo_frames):
    tool = _shared("tools/echo_stats.py")
    if tool is None:
        pytest.skip("shared/tools/echo_stats.py is not beside this checkout")
    spec = importlib.util.spec_from_file_location("echo_stats", tool)
    es = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(es)
    for g in demo_frames[:3]:
        ours, theirs = frame_statistics(g), es.frame_stats(g, es.sector_mask(g))
        assert set(ours) == set(theirs)
        for k in ours:
            assert ours[k] == pytest.approx(theirs[k], rel=1e-9, nan_ok=True), k


def test_phantom_frames_inside_real_echo_ranges(demo_frames):
    stats = video_statistics(demo_frames)
    assert outside_targets(stats) == [], stats


def test_outside_targets_names_the_statistic():
    stats = {k: (lo + hi) / 2 for k, (lo, hi) in targets().items()}
    assert outside_targets(stats) == []
    stats["p50"] = 130.0  # the old phantom's median grey level
    (line,) = outside_targets(stats)
    assert line.startswith("p50 130 outside")


def test_a_flat_cartoon_fails_the_check():
    # Flat grey regions with sharp edges (no speckle): not echo-like, whatever the grey levels.
    g = np.zeros((360, 640), np.uint8)
    g[40:330, 120:520] = 130
    g[100:200, 200:300] = 20
    assert outside_targets(video_statistics([g]))
