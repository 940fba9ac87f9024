"""Splits never put frames of one group on both sides; single videos get time blocks with a gap."""

from __future__ import annotations

from fetalheart.annotations.split import (
    EXCLUDED,
    TRAIN,
    VAL,
    FrameTime,
    Guard,
    default_group,
    group_of,
    make_split,
    time_block_split,
)
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.naming import frame_stem_and_index

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=8), st.floats(0.05, 0.9), st.integers(0, 5))
def test_grouped_split_never_mixes_a_group(sizes, frac, seed):
    names = [f"vid{g}_{i:05d}.png" for g, n in enumerate(sizes) for i in range(n)]
    s = make_split(names, val_fraction=frac, seed=seed)
    assert s.method == "grouped"
    sides = {}
    for n, side in s.assignment.items():
        sides.setdefault(default_group(n), set()).add(side)
    assert all(len(v) == 1 for v in sides.values())
    assert {TRAIN, VAL} <= set(s.assignment.values())  # one group at least on each side


def test_grouped_split_is_reproducible_and_seed_dependent():
    names = [f"v{g}_{i:03d}.png" for g in range(10) for i in range(10)]
    a = make_split(names, seed=0).assignment
    assert a == make_split(names, seed=0).assignment
    assert sum(v == VAL for v in a.values()) == 20
    assert any(make_split(names, seed=k).assignment != a for k in range(1, 5))


def test_single_video_time_blocks_leave_a_guard_gap():
    names = [f"phantom_s0_{i:06d}.png" for i in range(176)]
    s = make_split(names, val_fraction=0.2, seed=0, guard=Guard(10))
    assert s.method == "time_blocks" and "weaker" in s.notes[0]
    order = [s.assignment[n] for n in names]
    val_idx = [i for i, x in enumerate(order) if x == VAL]
    train_idx = [i for i, x in enumerate(order) if x == TRAIN]
    assert min(abs(i - j) for i in train_idx for j in val_idx) > 10
    assert 30 <= len(val_idx) <= 40 and order.count(EXCLUDED) <= 20
    # val frames form one contiguous block for 5 blocks and 20 %
    assert val_idx == list(range(val_idx[0], val_idx[-1] + 1))


def test_time_blocks_order_by_frame_index_not_name():
    names = [f"clip_{i}.png" for i in range(50)]  # unpadded: "clip_10" sorts before "clip_2"
    s = time_block_split(names, 0.2, seed=1, guard_gap=3)
    val = sorted(int(n[5:-4]) for n, v in s.assignment.items() if v == VAL)
    assert val == list(range(val[0], val[-1] + 1))


def test_group_regex_and_val_list():
    names = ["p01_c1_0001.png", "p01_c2_0001.png", "p02_c1_0001.png", "p03_c1_0001.png"]
    assert group_of("p01_c2_0001.png", r"^(p\d+)") == "p01"
    s = make_split(names, val_fraction=0.3, group_regex=r"^(p\d+)")
    assert s.assignment["p01_c1_0001.png"] == s.assignment["p01_c2_0001.png"]
    s = make_split(names, val_list=["p02_c1", "p03_c1_0001.png"])
    assert [s.assignment[n] for n in names] == [TRAIN, TRAIN, VAL, VAL]
    with pytest.raises(FetalHeartError, match="match no image"):
        make_split(names, val_list=["p09"])
    with pytest.raises(FetalHeartError, match="does not match"):
        make_split(names, group_regex=r"^zz")


# ------------------------------------------------------------------ frame index, val share, guard, warnings


def test_frame_index_needs_a_separator():
    assert frame_stem_and_index("case001.png") == ("case001", None)
    assert frame_stem_and_index("clip-12.png") == ("clip", 12)
    assert frame_stem_and_index("a.b.7.png") == ("a.b", 7)
    assert frame_stem_and_index("pat3/us_0004.jpg") == ("pat3/us", 4)
    names = [f"case{i:03d}.png" for i in range(1, 41)]
    s = make_split(names, val_fraction=0.2)
    assert s.method == "grouped" and len(s.groups) == 40  # 40 cases, not one "video"
    assert sum(v == VAL for v in s.assignment.values()) == 8


def _subset_sum_optimum(sizes: list[int], target: float) -> float:
    """Reference: every reachable val size by brute-force set union (independent of the code under test)."""
    reach = {0}
    for v in sizes:
        reach |= {r + v for r in reach}
    return min(abs(s - target) for s in reach if 0 < s < sum(sizes))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=2, max_size=12), st.floats(0.05, 0.9), st.integers(0, 5))
def test_val_share_is_the_closest_achievable(sizes, frac, seed):
    names = [f"vid{g}_{i:05d}.png" for g, n in enumerate(sizes) for i in range(n)]
    s = make_split(names, val_fraction=frac, seed=seed)
    n_val = sum(v == VAL for v in s.assignment.values())
    assert abs(n_val - frac * len(names)) <= _subset_sum_optimum(sizes, frac * len(names)) + 1e-9
    actual = n_val / len(names)
    share_warnings = [w for w in s.warnings if w.startswith("val holds")]  # not the single-frame-groups warning
    assert bool(share_warnings) == (abs(actual - frac) > 0.1 + 1e-12)


def test_two_unequal_videos_every_seed_takes_the_small_one_and_warns():
    names = [f"big_{i:03d}.png" for i in range(100)] + [f"small_{i:03d}.png" for i in range(10)]
    for seed in range(4):
        s = make_split(names, val_fraction=0.2, seed=seed)
        assert {n for n, v in s.assignment.items() if v == VAL} == {n for n in names if n.startswith("small")}
        assert len(s.warnings) == 1 and "9.1%" in s.warnings[0] and "20%" in s.warnings[0]


def test_greedy_beyond_exact_limit_stays_close(monkeypatch):
    import random

    import fetalheart.annotations.split as split_mod

    rng = random.Random(7)
    sizes = [rng.randint(1, 80) for _ in range(40)]
    names = [f"vid{g}_{i:05d}.png" for g, n in enumerate(sizes) for i in range(n)]
    exact = make_split(names, val_fraction=0.3, seed=1)
    monkeypatch.setattr(split_mod, "EXACT_SEARCH_MAX_BITS", 0)
    greedy = make_split(names, val_fraction=0.3, seed=1)
    best = _subset_sum_optimum(sizes, 0.3 * len(names))
    n_exact = sum(v == VAL for v in exact.assignment.values())
    n_greedy = sum(v == VAL for v in greedy.assignment.values())
    assert abs(n_exact - 0.3 * len(names)) == pytest.approx(best)
    assert abs(n_greedy - 0.3 * len(names)) <= best + 2


def test_guard_gap_counts_source_frames_not_extracted_frames():
    # every 5th source frame was extracted: a 10-frame guard is 2 extracted frames each side
    names = [f"echo_{5 * i:06d}.png" for i in range(100)]
    s = make_split(names, val_fraction=0.2, seed=0, guard=Guard(10))
    idx = {n: int(n[5:11]) for n in names}
    val = [idx[n] for n, v in s.assignment.items() if v == VAL]
    for n, side in s.assignment.items():
        dist = min(abs(idx[n] - v) for v in val)
        assert (side == EXCLUDED) == (side != VAL and dist <= 10)
    assert list(s.assignment.values()).count(EXCLUDED) in (2, 4)  # one or two boundaries
    assert s.guard is not None and s.guard.unit == "source_frames"


def test_guard_seconds_uses_frame_times_and_needs_them():
    names = [f"echo_{i:06d}.png" for i in range(60)]
    times = {n: FrameTime("echo", 3 * i, 3 * i / 30) for i, n in enumerate(names)}  # every 3rd frame at 30 fps
    s = make_split(names, val_fraction=0.2, seed=2, guard=Guard(None, 0.25), times=times)
    val_t = [times[n].seconds for n, v in s.assignment.items() if v == VAL]
    for n, side in s.assignment.items():
        near = min(abs(times[n].seconds - t) for t in val_t) <= 0.25
        assert (side == EXCLUDED) == (side != VAL and near)
    assert s.guard.unit == "seconds" and "0.25 s" in s.notes[0]
    with pytest.raises(FetalHeartError, match="--guard-seconds needs"):
        make_split(names, val_fraction=0.2, guard=Guard(None, 0.25))


def test_guard_never_reaches_across_videos():
    # one patient (group) with two videos: video b's frame 0 is not a neighbour of video a's last frame
    names = [f"p1/a_{i:04d}.png" for i in range(50)] + [f"p1/b_{i:04d}.png" for i in range(50)]
    times = {n: FrameTime(n.split("_")[0], int(n[-8:-4])) for n in names}
    s = time_block_split(names, 0.1, seed=1, times=times, guard_gap=3, blocks=10)
    assert [n for n, v in s.assignment.items() if v == VAL] == names[40:50]  # the last block of video a
    assert [s.assignment[n] for n in names[36:54]] == [TRAIN] + [EXCLUDED] * 3 + [VAL] * 10 + [TRAIN] * 4
    for n, side in s.assignment.items():
        same = [m for m, v in s.assignment.items() if v == VAL and times[m].video == times[n].video]
        near = any(abs(times[m].index - times[n].index) <= 3 for m in same)
        assert (side == EXCLUDED) == (side != VAL and near)


def test_patient_ids_in_names_warn_and_suggest_a_group_regex():
    names = [f"patient{p:02d}_clip{c}_{i:04d}.png" for p in range(4) for c in range(2) for i in range(5)]
    s = make_split(names, val_fraction=0.25)
    assert len(s.warnings) == 1 and "patient ids" in s.warnings[0] and "--group-regex" in s.warnings[0]
    regex = s.warnings[0].split("--group-regex ")[1].strip("'")
    by_patient = make_split(names, val_fraction=0.25, group_regex=regex)
    assert by_patient.warnings == [] and len(by_patient.groups) == 4
    assert make_split([f"pt{p}/us_{i:03d}.png" for p in range(3) for i in range(4)], val_fraction=0.3).warnings
    assert make_split([f"vid{g}_{i:03d}.png" for g in range(3) for i in range(4)], val_fraction=0.3).warnings == []


def test_numbered_names_without_separator_warn():
    s = make_split([f"echo{i:03d}.png" for i in range(30)], val_fraction=0.2)
    assert len(s.warnings) == 1 and "'echo<number>'" in s.warnings[0]
    # a generic frame word is no video name: frame000..frame029 are frames of one video (time blocks)
    assert make_split([f"frame{i:03d}.png" for i in range(30)], val_fraction=0.2).method == "time_blocks"
