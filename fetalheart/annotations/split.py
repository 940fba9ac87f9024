"""Train/val splits and K folds that do not leak neighbouring frames of one video across the split.

Frames of one video are near-duplicates, so a random frame split (the study's 140/36) measures
memorisation. We split by group (video, patient with ``--group-by patient``, or what ``--group-regex``
captures) when there are several,
choosing the set of val groups whose image count is closest to the requested share. With a single
video we cut it into contiguous time blocks and leave out the train frames within a guard gap of a
val frame, measured in source-video frames or in seconds (not in extracted frames, whose spacing
depends on the extraction rate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.naming import frame_stem_and_index

import numpy as np

#: Source-video frames left out on each side of a train/val boundary in a single-video split. At 30 fps
#: this is a third of a second, about one fetal cardiac cycle (120-160 bpm).
DEFAULT_GUARD_GAP = 10
#: Number of contiguous blocks a single video is cut into for a time-block split.
TIME_BLOCKS = 5
#: The val groups are found by an exact subset-sum search while (groups x images) stays below this
#: (a table of that many bits, 32 MiB: e.g. 1,000 videos of 250 frames); beyond, by a seeded greedy fill
#: with pairwise swaps (measured within 2 images of the optimum on 300 random inputs of 21-60 groups).
EXACT_SEARCH_MAX_BITS = 2**28
#: Warn when the achieved val share misses the request by more than this (absolute fraction).
FRACTION_TOLERANCE = 0.1

TRAIN, VAL, EXCLUDED = "train", "val", "excluded"

#: How frames are grouped without a --group-regex: by video (the default) or by patient.
GROUP_BY = ("video", "patient")

DEFAULT_GROUPING = (
    "by video: an image named by a frame number alone (or a frame word and a number: 0001, frame_0001, IM_0001, "
    "img001) belongs to its folder (video1/0001.png -> video1); any other image to its path without the frame "
    "index that ends it after a '_', '-' or '.' (phantom_s3_000045.png -> phantom_s3; case001.png -> case001)"
)

#: A patient-like id at the start of a folder or file name: patient07, pat_3, subject-12, case001, pt5, id42.
_PATIENT_RE = re.compile(r"(?:^|/)((patient|pat|subject|subj|case|pt|id)[_\-]?\d+)(?![0-9])", re.IGNORECASE)
#: A file stem that is only a frame number, or a generic frame word and one (``0001``, ``frame_0001``,
#: ``IM_0001``, ``img001``, ``Image-12``): such names say nothing about the video, so their folder does
#: (``ffmpeg -i v.mp4 video1/%04d.png`` and many scanner exports write one folder per video).
_NUMBERED_FRAME_RE = re.compile(r"^(?:(?:frames?|img|images?|im|pic|picture|still|slice|f)[ _\-.]?)?(\d+)$",
                                re.IGNORECASE)
#: The group of images directly in the input folder that are named by a number only.
TOP_FOLDER = "."


def video_and_index(name: str) -> tuple[str, int | None, str]:
    """(video, frame index, rule) of an image name (relative to its input folder).

    Rule ``"folder"``: the stem is only a frame number or a frame word and number, so the video is the
    folder (``video1/0001.png`` -> ``video1``, index 1); ``"stem"``: the path without the frame index
    that ends it after a separator (``video1/clip_0007.png`` -> ``video1/clip``, 7); ``"name"``: no
    frame index, the whole path without its suffix (``case001.png`` -> ``case001``).
    """
    path = PurePosixPath(name)
    m = _NUMBERED_FRAME_RE.match(path.stem)
    if m:
        folder = path.parent.as_posix()
        return (TOP_FOLDER if folder in ("", ".") else folder), int(m.group(1)), "folder"
    video, index = frame_stem_and_index(name)
    return video, index, ("stem" if index is not None else "name")


def default_group(name: str) -> str:
    """Group (video) of an image name: see :func:`video_and_index` (``phantom_s3_000045.png`` ->
    ``phantom_s3``; ``video1/0001.png`` and ``video1/frame_0001.png`` -> ``video1``)."""
    return video_and_index(name)[0]


def patient_group(name: str) -> str:
    """Group by patient: the top folder of the image path (``p07/video2/0001.png`` -> ``p07``)."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2:
        raise ValueError(f"--group-by patient needs one folder per patient in the input folder, but {name!r} is in "
                         "none; put each patient's videos in a folder of its own, or pass --group-regex")
    return parts[0]


def group_of(name: str, group_regex: str | re.Pattern | None = None, group_by: str = "video") -> str:
    """Group by ``group_regex`` (first capture group, else the whole match, searched in the
    image name), else by patient (``group_by="patient"``) or video (:func:`default_group`).
    Raises ValueError if the regex does not match or an image has no patient folder."""
    if group_regex is None:
        return patient_group(name) if group_by == "patient" else default_group(name)
    pattern = re.compile(group_regex) if isinstance(group_regex, str) else group_regex
    m = pattern.search(name)
    if not m:
        raise ValueError(f"--group-regex {pattern.pattern!r} does not match {name!r}")
    return m.group(1) if pattern.groups else m.group(0)


# ------------------------------------------------------------------------------------- frame times


@dataclass(frozen=True)
class FrameTime:
    """Where an image sits in its source video: frame index and time, when known.

    ``video`` tells frames of different videos apart (two videos' frame 10 are not neighbours).
    """

    video: str
    index: int | None = None  # source-video frame index
    seconds: float | None = None  # presentation time in the source video


def frame_time_from_name(name: str) -> FrameTime:
    """The fallback when no ``frames.csv`` knows the image: the index parsed from the name is taken
    as the source frame index (true for ``extract_frames`` output, which names frames by it, and for
    ``ffmpeg``'s ``%04d.png``, which numbers the decoded frames)."""
    video, idx, _ = video_and_index(name)
    return FrameTime(video, idx, None)


@dataclass(frozen=True)
class Guard:
    """Guard gap of a time-block split: in source frames (``frames``) or in seconds (``seconds``)."""

    frames: int | None = DEFAULT_GUARD_GAP
    seconds: float | None = None

    @property
    def unit(self) -> str:
        return "seconds" if self.seconds is not None else "source_frames"

    @property
    def value(self) -> float:
        return float(self.seconds) if self.seconds is not None else float(self.frames or 0)

    def describe(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds:g} s"
        return f"{self.frames} source-video frame{'s' if self.frames != 1 else ''}"


# ------------------------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Assignment of every image name to train, val or excluded, and how it was made."""

    assignment: dict[str, str]
    method: str  # "grouped", "time_blocks", "val_list", "all_train"
    groups: dict[str, str] = field(default_factory=dict)  # group -> split ("mixed" for time blocks)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grouping: str = DEFAULT_GROUPING
    image_groups: dict[str, str] = field(default_factory=dict)  # image name -> group
    guard: Guard | None = None  # set for time-block splits


@dataclass
class Folds:
    """K train/val assignments: every image in exactly one val fold, no group on both sides of a fold."""

    assignments: list[dict[str, str]]
    method: str  # "grouped_folds" or "time_block_folds"
    fold_of_group: dict[str, int] = field(default_factory=dict)  # empty for time-block folds
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grouping: str = DEFAULT_GROUPING
    image_groups: dict[str, str] = field(default_factory=dict)
    guard: Guard | None = None

    @property
    def k(self) -> int:
        return len(self.assignments)

    def val_groups(self, fold: int) -> list[str]:
        """Groups with images in val of ``fold``, sorted."""
        a = self.assignments[fold]
        return sorted({self.image_groups[n] for n, side in a.items() if side == VAL})


def choose_val_groups(sizes: dict[str, int], val_fraction: float, seed: int = 0) -> set[str]:
    """The set of groups (at least one on each side) whose image count is closest to
    ``val_fraction`` of all images; the seed chooses among equally close sets.

    Exact (a subset-sum search over all sets of groups) while its bit table stays below
    ``EXACT_SEARCH_MAX_BITS``; beyond that, a seeded greedy fill with pairwise swaps.
    """
    names = sorted(sizes)
    if len(names) < 2:
        raise ValueError("a grouped split needs at least 2 groups")
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    target = val_fraction * total
    if len(names) * (total + 1) <= EXACT_SEARCH_MAX_BITS:
        return _exact_val_groups(names, sizes, target, rng)
    return _greedy_val_groups(names, sizes, target, rng)


def _exact_val_groups(names: list[str], sizes: dict[str, int], target: float, rng) -> set[str]:
    """Subset sum over image counts: ``rows[i]`` has bit s set when some set of the first i groups
    (in seeded order) holds exactly s images. The closest reachable s in (0, total) is optimal;
    walking the rows back recovers one set that reaches it."""
    order = [names[i] for i in rng.permutation(len(names))]
    total = sum(sizes.values())
    rows = [1]
    for g in order:
        rows.append(rows[-1] | (rows[-1] << sizes[g]))
    bits = np.unpackbits(np.frombuffer(rows[-1].to_bytes(total // 8 + 1, "little"), np.uint8), bitorder="little")
    sums = np.flatnonzero(bits[1:total]) + 1  # neither no group nor every group in val
    err = np.abs(sums - target)
    best = sums[err <= err.min() + 1e-9]
    s = int(best[rng.integers(len(best))])
    val = set()
    for i in range(len(order), 0, -1):
        if not (rows[i - 1] >> s) & 1:  # s is not reachable without group i: take it
            val.add(order[i - 1])
            s -= sizes[order[i - 1]]
    return val


def _greedy_val_groups(names: list[str], sizes: dict[str, int], target: float, rng) -> set[str]:
    order = [names[i] for i in rng.permutation(len(names))]
    val, cur = set(), 0
    for g in order:  # first fit in seeded order: different seeds give different sets
        if abs(cur + sizes[g] - target) < abs(cur - target):
            val.add(g)
            cur += sizes[g]
    if not val:  # at least one group on each side
        val.add(min(order, key=lambda g: sizes[g]))
    elif len(val) == len(order):
        val.remove(min(order, key=lambda g: abs(cur - sizes[g] - target)))
    cur = sum(sizes[g] for g in val)
    for _ in range(len(names)):  # pairwise swaps while one brings val closer to the target
        train = sorted((g for g in order if g not in val), key=lambda g: sizes[g])
        if not train:
            break
        tsizes = np.array([sizes[g] for g in train])
        best = (abs(cur - target), None, None)
        for a in sorted(val):
            want = target - (cur - sizes[a])
            j = int(np.clip(np.searchsorted(tsizes, want), 0, len(train) - 1))
            for jj in {j, max(j - 1, 0)}:
                e = abs(cur - sizes[a] + tsizes[jj] - target)
                if e < best[0] - 1e-9:
                    best = (e, a, train[jj])
        if best[1] is None:
            break
        val.remove(best[1])
        val.add(best[2])
        cur += sizes[best[2]] - sizes[best[1]]
    return val


def grouped_split(groups: dict[str, str], val_fraction: float, seed: int = 0) -> Split:
    """Whole groups go to val: the set whose image count is closest to ``val_fraction``."""
    sizes: dict[str, int] = {}
    for g in groups.values():
        sizes[g] = sizes.get(g, 0) + 1
    val_groups = choose_val_groups(sizes, val_fraction, seed)
    assignment = {n: (VAL if g in val_groups else TRAIN) for n, g in groups.items()}
    return Split(assignment, "grouped", {g: (VAL if g in val_groups else TRAIN) for g in sorted(sizes)})


def _ordered(names: list[str], times: dict[str, FrameTime]) -> list[str]:
    """Frames in time order: by video, then source frame index (else name)."""
    return sorted(names, key=lambda n: (times[n].video, times[n].index if times[n].index is not None else -1, n))


def _guard_exclude(ordered: list[str], label: np.ndarray, times: dict[str, FrameTime], guard: Guard) -> None:
    """Mark EXCLUDED every train frame within the guard gap of a val frame of the same video.

    Distances are in source frames (``times[n].index``, or the frame's position among its video's
    frames when no index is known) or in seconds (``times[n].seconds``).
    """
    if guard.value <= 0:
        return
    by_video: dict[str, list[int]] = {}
    for i, n in enumerate(ordered):
        by_video.setdefault(times[n].video, []).append(i)
    for members in by_video.values():
        pos = _positions(members, ordered, times, guard)
        is_val = label[members] == VAL
        if not is_val.any():
            continue
        val_pos = np.sort(pos[is_val])
        j = np.clip(np.searchsorted(val_pos, pos), 1, len(val_pos))
        near = np.minimum(np.abs(pos - val_pos[j - 1]), np.abs(pos - val_pos[np.minimum(j, len(val_pos) - 1)]))
        for k, i in enumerate(members):
            if label[i] == TRAIN and near[k] <= guard.value + 1e-9:
                label[i] = EXCLUDED


def _positions(members: list[int], ordered: list[str], times: dict[str, FrameTime], guard: Guard) -> np.ndarray:
    if guard.seconds is not None:
        return np.array([times[ordered[i]].seconds for i in members], dtype=np.float64)
    idx = [times[ordered[i]].index for i in members]
    if any(x is None for x in idx):  # no index known: the position in time order stands in
        return np.arange(len(members), dtype=np.float64)
    return np.array(idx, dtype=np.float64)


def _block_bounds(n: int, blocks: int) -> np.ndarray:
    return np.linspace(0, n, blocks + 1).round().astype(int)


def time_block_split(
    names: list[str],
    val_fraction: float,
    seed: int = 0,
    guard_gap: int = DEFAULT_GUARD_GAP,
    blocks: int = TIME_BLOCKS,
    *,
    times: dict[str, FrameTime] | None = None,
    guard: Guard | None = None,
) -> Split:
    """One video: cut the frames (in time order) into ``blocks`` contiguous blocks, pick
    ``round(val_fraction * blocks)`` (>= 1) of them for val with ``seed``, and exclude the train
    frames within the guard gap (``guard``, else ``guard_gap`` source frames) of a val frame."""
    times = times or {n: frame_time_from_name(n) for n in names}
    guard = guard or Guard(frames=guard_gap)
    ordered = _ordered(names, times)
    n = len(ordered)
    blocks = max(1, min(blocks, n))
    n_val = min(blocks - 1, max(1, round(val_fraction * blocks)))
    bounds = _block_bounds(n, blocks)
    rng = np.random.default_rng(seed)
    val_blocks = set(rng.choice(blocks, size=n_val, replace=False).tolist()) if blocks > 1 else set()
    label = np.array([TRAIN] * n, dtype=object)
    for b in val_blocks:
        label[bounds[b] : bounds[b + 1]] = VAL
    _guard_exclude(ordered, label, times, guard)
    assignment = dict(zip(ordered, label.tolist(), strict=True))
    notes = [
        f"single video: split into {blocks} contiguous time blocks with a guard gap of {guard.describe()} "
        "left out of train next to val; frames of one video stay correlated across blocks, so this is "
        "weaker than a split by video"
    ]
    return Split(assignment, "time_blocks", {}, notes, guard=guard)


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


# ------------------------------------------------------------------------------------ the entry points


def _groups_for(names: list[str], group_regex: str | None, group_by: str = "video") -> dict[str, str]:
    if group_by not in GROUP_BY:
        raise FetalHeartError(f"--group-by must be {' or '.join(GROUP_BY)}, got {group_by!r}")
    if group_regex is not None and group_by != "video":
        raise FetalHeartError("--group-by and --group-regex are mutually exclusive: give one")
    try:
        return {n: group_of(n, group_regex, group_by) for n in names}
    except (ValueError, re.error) as exc:
        raise FetalHeartError(str(exc)) from None


def _times_for(names: list[str], times: dict[str, FrameTime] | None, guard: Guard) -> dict[str, FrameTime]:
    times = {n: (times or {}).get(n) or frame_time_from_name(n) for n in names}
    if guard.seconds is not None:
        missing = [n for n in names if times[n].seconds is None]
        if missing:
            raise FetalHeartError(
                f"--guard-seconds needs each frame's time, known from a frames.csv of extract_frames beside the "
                f"images; {len(missing)} image(s) have none (e.g. {missing[0]}): use --guard-gap (source frames)"
            )
    return times


def describe_grouping(names: list[str], groups: dict[str, str], group_regex: str | None = None,
                      group_by: str = "video") -> str:
    """How the groups of these images were formed, in words, with the counts and an example per rule."""
    if group_regex is not None:
        return f"--group-regex {group_regex!r}: its first capture group (or the whole match) searched in the image path"
    if group_by == "patient":
        example = f" ({names[0]} -> {groups[names[0]]})" if names else ""
        return f"by patient (--group-by patient): the top folder of each image's path{example}"
    by_rule: dict[str, list[str]] = {}
    for n in names:
        by_rule.setdefault(video_and_index(n)[2], []).append(n)
    words = {"folder": "named by a frame number alone (or a frame word and a number) belong to their folder",
             "stem": "belong to their path without the frame index that ends it after a '_', '-' or '.'",
             "name": "have no frame index after a '_', '-' or '.', so each path is its own group"}
    parts = [f"{len(by_rule[r])} image{'s' if len(by_rule[r]) != 1 else ''} {words[r]} "
             f"({by_rule[r][0]} -> {groups[by_rule[r][0]]})" for r in ("folder", "stem", "name") if r in by_rule]
    return "by video: " + ("; ".join(parts) if parts else "no images")


def make_split(
    names: list[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    group_regex: str | None = None,
    val_list: list[str] | None = None,
    guard: Guard | None = None,
    times: dict[str, FrameTime] | None = None,
    group_by: str = "video",
) -> Split:
    """Choose and run the split: val list, else grouped (>= 2 groups), else time blocks.

    ``times`` gives each image's source frame index / time (default: the index in its name);
    ``guard`` is the single-video guard gap (default ``DEFAULT_GUARD_GAP`` source frames);
    ``group_by``: "video" (default) or "patient" (the top folder), when there is no ``group_regex``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise FetalHeartError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    groups = _groups_for(names, group_regex, group_by)
    guard = guard or Guard()
    if val_list is not None:
        split = val_list_split(names, groups, val_list)
    elif val_fraction == 0 or len(names) < 2:
        split = Split({n: TRAIN for n in names}, "all_train")
    elif len(set(groups.values())) >= 2:
        split = grouped_split(groups, val_fraction, seed)
    else:
        split = time_block_split(names, val_fraction, seed, times=_times_for(names, times, guard), guard=guard)
    if split.method != "grouped":
        split.groups = _group_sides(groups, split.assignment)
    split.grouping = describe_grouping(names, groups, group_regex, group_by)
    split.image_groups = groups
    split.warnings += _fraction_warning(split, val_fraction) + grouping_warnings(names, groups, group_regex, group_by,
                                                                                split.grouping)
    return split


def make_folds(
    names: list[str],
    k: int,
    *,
    seed: int = 0,
    group_regex: str | None = None,
    guard: Guard | None = None,
    times: dict[str, FrameTime] | None = None,
    group_by: str = "video",
) -> Folds:
    """Grouped K-fold cross-validation: each group's images go to the val side of exactly one fold.

    Groups are placed largest first into the fold with the fewest images so far (ties between
    equal-sized groups broken by ``seed``), which balances image counts. A single group is cut into
    ``k`` contiguous time blocks instead, with the guard gap left out of train (weaker than by video).
    """
    if k < 2:
        raise FetalHeartError(f"--folds must be at least 2, got {k}")
    groups = _groups_for(names, group_regex, group_by)
    guard = guard or Guard()
    distinct = sorted(set(groups.values()))
    if len(distinct) == 1:
        folds = _time_block_folds(names, k, _times_for(names, times, guard), guard)
    elif len(distinct) < k:
        raise FetalHeartError(
            f"--folds {k} needs at least {k} groups (videos), found {len(distinct)}: {', '.join(distinct[:10])}; "
            "use fewer folds, or a --group-regex or folder layout with more groups"
        )
    else:
        folds = _grouped_folds(groups, k, seed)
    folds.grouping = describe_grouping(names, groups, group_regex, group_by)
    folds.image_groups = groups
    folds.warnings += grouping_warnings(names, groups, group_regex, group_by, folds.grouping)
    return folds


def _grouped_folds(groups: dict[str, str], k: int, seed: int) -> Folds:
    sizes: dict[str, int] = {}
    for g in groups.values():
        sizes[g] = sizes.get(g, 0) + 1
    names = sorted(sizes)
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    order = sorted(shuffled, key=lambda g: -sizes[g])  # stable: the seed orders equal sizes
    load = [0] * k
    fold_of: dict[str, int] = {}
    for g in order:
        f = min(range(k), key=lambda i: (load[i], i))
        fold_of[g] = f
        load[f] += sizes[g]
    assignments = [{n: (VAL if fold_of[g] == f else TRAIN) for n, g in groups.items()} for f in range(k)]
    return Folds(assignments, "grouped_folds", dict(sorted(fold_of.items())))


def _time_block_folds(names: list[str], k: int, times: dict[str, FrameTime], guard: Guard) -> Folds:
    if len(names) < k:
        raise FetalHeartError(f"--folds {k}: a single video of {len(names)} images cannot make {k} folds")
    ordered = _ordered(names, times)
    bounds = _block_bounds(len(ordered), k)
    assignments = []
    for f in range(k):
        label = np.array([TRAIN] * len(ordered), dtype=object)
        label[bounds[f] : bounds[f + 1]] = VAL
        _guard_exclude(ordered, label, times, guard)
        assignments.append(dict(zip(ordered, label.tolist(), strict=True)))
    notes = [
        f"single video: {k} folds of contiguous time blocks, each fold's train leaving out the frames within "
        f"{guard.describe()} of its val block; frames of one video stay correlated across blocks, so this is "
        "weaker than folds by video"
    ]
    return Folds(assignments, "time_block_folds", {}, notes, guard=guard)


def _group_sides(groups: dict[str, str], assignment: dict[str, str]) -> dict[str, str]:
    sides: dict[str, set[str]] = {}
    for n, g in groups.items():
        if assignment[n] != EXCLUDED:
            sides.setdefault(g, set()).add(assignment[n])
    return {g: (s.pop() if len(s) == 1 else "mixed") for g, s in sorted(sides.items())}


# ---------------------------------------------------------------------------------------- warnings


def _fraction_warning(split: Split, requested: float) -> list[str]:
    if split.method not in ("grouped", "time_blocks"):
        return []
    sides = list(split.assignment.values())
    n_train, n_val = sides.count(TRAIN), sides.count(VAL)
    actual = n_val / max(1, n_train + n_val)
    if abs(actual - requested) <= FRACTION_TOLERANCE + 1e-12:
        return []
    how = (f"the closest split by whole groups that {len(split.groups)} groups allow" if split.method == "grouped"
           else "whole time blocks")
    return [
        f"val holds {actual:.1%} of the images, not the requested {requested:.0%} "
        f"({n_val} val / {n_train} train images: {how})"
    ]


#: Warn when more than this share of the groups (at least ``SINGLE_FRAME_MIN_GROUPS`` of them) hold one frame.
SINGLE_FRAME_SHARE = 0.5
SINGLE_FRAME_MIN_GROUPS = 3


def single_frame_warning(groups: dict[str, str], grouping: str) -> list[str]:
    """Most groups hold one frame: either one labelled frame per video (fine), or the grouping did not
    find the videos and every frame is its own group (a leak the split cannot see). Say how it grouped."""
    sizes: dict[str, int] = {}
    for g in groups.values():
        sizes[g] = sizes.get(g, 0) + 1
    single = sum(1 for c in sizes.values() if c == 1)
    if len(sizes) < SINGLE_FRAME_MIN_GROUPS or single <= SINGLE_FRAME_SHARE * len(sizes):
        return []
    return [f"{single} of {len(sizes)} groups hold a single frame; grouping {grouping}. If several of these frames "
            "come from one video, that video can be on both sides of the split: put each video's frames in a folder "
            "of its own, name them <video>_<frame>, or pass --group-regex"]


def grouping_warnings(names: list[str], groups: dict[str, str], group_regex: str | None, group_by: str,
                      grouping: str) -> list[str]:
    """Warnings about the grouping: by video while the names carry patient ids; numbered names with no
    separator before the number (each then is its own group); else most groups holding one frame."""
    named = [] if group_regex is not None or group_by != "video" else _patient_warning(names, groups)
    unseparated = [] if group_regex is not None or group_by != "video" else _unseparated_warning(names, groups)
    return named + (unseparated or single_frame_warning(groups, grouping))


def _patient_warning(names: list[str], groups: dict[str, str]) -> list[str]:
    patients: dict[str, set[str]] = {}
    word, top_folders = "", True
    for n in names:
        m = _PATIENT_RE.search(n)
        if m:
            patients.setdefault(m.group(1).lower(), set()).add(groups[n])
            word = word or m.group(2).lower()
            top_folders &= m.start(1) == 0 and n[m.end(1):].startswith("/")
    if not patients:
        return []
    hint = "--group-by patient" if top_folders else f"--group-regex '(?i)(?:^|/)({word}[_-]?[0-9]+)'"
    multi = {p: g for p, g in patients.items() if len(g) > 1}
    example = next(iter(sorted(multi or patients)))
    if multi:
        what = (f"{len(multi)} of {len(patients)} patient ids span several groups (e.g. '{example}' in "
                f"{len(multi[example])}), so one patient can be in both train and val")
    else:
        what = (f"each of the {len(patients)} patient ids (e.g. '{example}') is in one group here, but a "
                "patient with several videos would be split across train and val")
    return [f"grouping is by video while the names carry patient ids: {what}; "
            f"to group by patient pass {hint}"]


def _unseparated_warning(names: list[str], groups: dict[str, str]) -> list[str]:
    prefixes: dict[str, int] = {}
    for n in names:
        stem = PurePosixPath(n).with_suffix("").as_posix()
        m = re.match(r"^(.*?[^0-9/])([0-9]+)$", stem)
        if m and groups[n] == stem and not _PATIENT_RE.search(n):
            prefixes[m.group(1)] = prefixes.get(m.group(1), 0) + 1
    crowded = {p: c for p, c in prefixes.items() if c >= 2}
    if not crowded:
        return []
    p, c = max(crowded.items(), key=lambda kv: (kv[1], kv[0]))
    return [f"{c} images named '{p}<number>' have no '_', '-' or '.' before the number, so each is its own "
            f"group: if they are frames of one video, name them '{p}_<frame>' or pass "
            f"--group-regex '^({re.escape(p)})[0-9]+'"]

