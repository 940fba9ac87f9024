"""Splits never put frames of one group on both sides; single videos get time blocks with a gap."""

from __future__ import annotations

from fetalheart.split import EXCLUDED, TRAIN, VAL, default_group, group_of, make_split, time_block_split
from fetalheart.utils.errors import FetalHeartError

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
    s = make_split(names, val_fraction=0.2, seed=0, guard_gap=10)
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
