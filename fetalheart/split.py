"""Train/val splits that do not leak neighbouring frames of one video across the split.

Frames of one video are near-duplicates, so a random frame split (the study's 140/36) measures
memorisation. We split by group (video) when there are several; with a single video we split it
into contiguous time blocks and leave a guard gap of frames out between train and val blocks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from fetalheart.labelme import frame_stem_and_index
from fetalheart.utils.errors import FetalHeartError

import numpy as np

#: Frames left out on each side of a train/val boundary in a single-video split. At 30 fps this is
#: a third of a second, about one fetal cardiac cycle (120-160 bpm).
DEFAULT_GUARD_GAP = 10
#: Number of contiguous blocks a single video is cut into for a time-block split.
TIME_BLOCKS = 5

TRAIN, VAL, EXCLUDED = "train", "val", "excluded"


def default_group(name: str) -> str:
    """Group of an image name: its path without the trailing frame index (``phantom_s3_000045.png``
    -> ``phantom_s3``; ``video1/frame_0001.png`` -> ``video1/frame``)."""
    return frame_stem_and_index(name)[0]


def group_of(name: str, group_regex: str | re.Pattern | None = None) -> str:
    """Group by ``group_regex`` (first capture group, else the whole match, searched in the
    image name) or by :func:`default_group`. Raises ValueError if the regex does not match."""
    if group_regex is None:
        return default_group(name)
    pattern = re.compile(group_regex) if isinstance(group_regex, str) else group_regex
    m = pattern.search(name)
    if not m:
        raise ValueError(f"--group-regex {pattern.pattern!r} does not match {name!r}")
    return m.group(1) if pattern.groups else m.group(0)


@dataclass
class Split:
    """Assignment of every image name to train, val or excluded, and how it was made."""

    assignment: dict[str, str]
    method: str  # "grouped", "time_blocks", "val_list", "all_train"
    groups: dict[str, str] = field(default_factory=dict)  # group -> split ("mixed" for time blocks)
    notes: list[str] = field(default_factory=list)


def grouped_split(groups: dict[str, str], val_fraction: float, seed: int = 0) -> Split:
    """Whole groups go to val until val holds about ``val_fraction`` of the images.

    Groups are shuffled with ``seed``; we take the prefix of the shuffled order whose image count
    is closest to the target, keeping at least one group on each side.
    """
    members: dict[str, list[str]] = {}
    for name in sorted(groups):
        members.setdefault(groups[name], []).append(name)
    order = sorted(members)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    total = len(groups)
    target = val_fraction * total
    best_k, best_err, cum = 1, math.inf, 0
    for k in range(1, len(order)):  # k groups in val, at least one left for train
        cum += len(members[order[k - 1]])
        err = abs(cum - target)
        if err < best_err:
            best_k, best_err = k, err
    val_groups = set(order[:best_k])
    assignment = {n: (VAL if g in val_groups else TRAIN) for n, g in groups.items()}
    return Split(assignment, "grouped", {g: (VAL if g in val_groups else TRAIN) for g in sorted(members)})


def time_block_split(
    names: list[str], val_fraction: float, seed: int = 0, guard_gap: int = DEFAULT_GUARD_GAP, blocks: int = TIME_BLOCKS
) -> Split:
    """One video: cut the frames (in frame order) into ``blocks`` contiguous blocks, pick
    ``round(val_fraction * blocks)`` (>= 1) of them for val with ``seed``, and exclude the
    ``guard_gap`` train frames nearest to each train/val boundary."""
    ordered = sorted(names, key=_frame_order_key)
    n = len(ordered)
    blocks = max(1, min(blocks, n))
    n_val = min(blocks - 1, max(1, round(val_fraction * blocks)))
    bounds = np.linspace(0, n, blocks + 1).round().astype(int)
    rng = np.random.default_rng(seed)
    val_blocks = set(rng.choice(blocks, size=n_val, replace=False).tolist()) if blocks > 1 else set()
    label = np.array([TRAIN] * n, dtype=object)
    for b in val_blocks:
        label[bounds[b] : bounds[b + 1]] = VAL
    is_val = label == VAL
    if guard_gap > 0 and is_val.any():
        val_idx = np.flatnonzero(is_val)
        dist = np.full(n, np.iinfo(np.int64).max)
        for i in range(n):  # distance (in frames) to the nearest val frame; n is small
            if not is_val[i]:
                dist[i] = np.abs(val_idx - i).min()
        label[(~is_val) & (dist <= guard_gap)] = EXCLUDED
    assignment = dict(zip(ordered, label.tolist(), strict=True))
    notes = [
        "single video: split into contiguous time blocks with a guard gap of "
        f"{guard_gap} frames left out between train and val; frames of one video stay correlated "
        "across blocks, so this is weaker than a split by video"
    ]
    return Split(assignment, "time_blocks", {}, notes)


def _frame_order_key(name: str) -> tuple:
    stem, idx = frame_stem_and_index(name)
    return (stem, idx if idx is not None else -1, name)


def val_list_split(names: list[str], groups: dict[str, str], entries: list[str]) -> Split:
    """Val = images whose name, stem (name without extension) or group is listed in ``entries``.

    Every entry must match something: a typo would otherwise silently move nothing.
    """
    wanted = {e.strip() for e in entries if e.strip() and not e.strip().startswith("#")}
    matched: set[str] = set()
    assignment = {}
    for n in names:
        keys = {n, n.rsplit(".", 1)[0], n.rsplit("/", 1)[-1], n.rsplit("/", 1)[-1].rsplit(".", 1)[0], groups[n]}
        hit = keys & wanted
        matched |= hit
        assignment[n] = VAL if hit else TRAIN
    unmatched = sorted(wanted - matched)
    if unmatched:
        raise FetalHeartError(
            f"--val-list: {len(unmatched)} entr{'y' if len(unmatched) == 1 else 'ies'} match no image or group: "
            + ", ".join(unmatched[:10])
            + (" ..." if len(unmatched) > 10 else "")
        )
    return Split(assignment, "val_list")


def make_split(
    names: list[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    group_regex: str | None = None,
    val_list: list[str] | None = None,
    guard_gap: int = DEFAULT_GUARD_GAP,
) -> Split:
    """Choose and run the split: val list, else grouped (>= 2 groups), else time blocks."""
    if not 0.0 <= val_fraction < 1.0:
        raise FetalHeartError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    try:
        groups = {n: group_of(n, group_regex) for n in names}
    except (ValueError, re.error) as exc:
        raise FetalHeartError(str(exc)) from None
    if val_list is not None:
        split = val_list_split(names, groups, val_list)
    elif val_fraction == 0 or len(names) < 2:
        split = Split({n: TRAIN for n in names}, "all_train")
    elif len(set(groups.values())) >= 2:
        split = grouped_split(groups, val_fraction, seed)
    else:
        split = time_block_split(names, val_fraction, seed, guard_gap)
    if split.method != "grouped":
        split.groups = _group_sides(groups, split.assignment)
    return split


def _group_sides(groups: dict[str, str], assignment: dict[str, str]) -> dict[str, str]:
    sides: dict[str, set[str]] = {}
    for n, g in groups.items():
        if assignment[n] != EXCLUDED:
            sides.setdefault(g, set()).add(assignment[n])
    return {g: (s.pop() if len(s) == 1 else "mixed") for g, s in sorted(sides.items())}
