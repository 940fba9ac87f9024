"""The phantom held against real echo: shared/tools/echo_stats.py's statistics inside the target ranges."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fetalheart.phantom import category_schedule, render_frame
from fetalheart.phantom.realism import (
    REFERENCE,
    STATISTICS,
    frame_statistics,
    outside_targets,
    targets,
    video_statistics,
)

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
def demo_frames():
    """In-focus frames of a demo-sized phantom video (640x360, 6 s): what the demo keeps.

    The demo's extraction drops out-of-focus frames (``min_sharpness: auto``), so they are not
    held against in-focus real echo; every 9th frame of the rest keeps the test fast.
    """
    n = 180
    cats = category_schedule(n, seed=0)
    keep = [i for i in range(n) if cats[i] != "out_of_focus"][::9]
    return [render_frame(i, seed=0, size=(640, 360), n_frames=n)[0][:, :, 0] for i in keep]


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
