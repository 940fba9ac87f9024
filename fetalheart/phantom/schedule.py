"""Frame categories of the phantom video: proportions, and contiguous runs drawn from the seed."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from fetalheart.utils.errors import FetalHeartError

import numpy as np

CATEGORIES: tuple[str, ...] = ("heart", "multiple_hearts", "out_of_focus", "no_heart")

#: Frame counts of the study's video (Syaputra et al. 2025, Table 2): 357 frames in all.
DEFAULT_PROPORTIONS: Mapping[str, int] = MappingProxyType(
    {"heart": 114, "multiple_hearts": 50, "out_of_focus": 105, "no_heart": 88}
)

def normalise_proportions(proportions: Mapping[str, float] | Sequence[float] | None) -> tuple[float, ...]:
    """Weights in CATEGORIES order, validated; None means the study's Table 2."""
    if proportions is None:
        proportions = DEFAULT_PROPORTIONS
    if isinstance(proportions, Mapping):
        unknown = sorted(set(proportions) - set(CATEGORIES))
        if unknown:
            raise FetalHeartError(
                f"unknown frame category {unknown[0]!r} in proportions; expected some of {', '.join(CATEGORIES)}"
            )
        weights = [proportions.get(c, 0) for c in CATEGORIES]
    else:
        weights = list(proportions)
        if len(weights) != len(CATEGORIES):
            raise FetalHeartError(f"proportions need {len(CATEGORIES)} values ({', '.join(CATEGORIES)})")
    try:
        weights = [float(w) for w in weights]
    except (TypeError, ValueError):
        raise FetalHeartError("proportions must be numbers") from None
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise FetalHeartError("proportions must be non-negative numbers with a positive sum")
    total = sum(weights)
    return tuple(w / total for w in weights)


def _apportion(n: int, weights: Sequence[float]) -> list[int]:
    """Largest-remainder counts; every category with weight > 0 gets a frame when n allows."""
    raw = [w * n for w in weights]
    counts = [int(math.floor(r)) for r in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i, w in enumerate(weights) if w > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


@functools.lru_cache(maxsize=32)
def schedule_runs(n_frames: int, seed: int, weights: tuple[float, ...], fps: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Category index and run id of each frame: contiguous runs, shuffled from the seed."""
    rng = np.random.default_rng([seed, n_frames, 7])
    counts = _apportion(n_frames, weights)
    typical_run = max(1.0, 1.5 * fps)  # a real clip dwells ~1-2 s on a view
    runs: list[tuple[int, int]] = []  # (category, length)
    for cat, count in enumerate(counts):
        if count == 0:
            continue
        k = max(1, min(count, int(round(count / typical_run))))
        cuts = np.sort(rng.choice(np.arange(1, count), size=k - 1, replace=False)) if k > 1 else np.array([], int)
        lengths = np.diff(np.concatenate([[0], cuts, [count]])).astype(int)
        runs.extend((cat, int(n)) for n in lengths)
    order = list(rng.permutation(len(runs)))
    # Avoid two runs of one category side by side (they would merge); a few reshuffles suffice.
    for _ in range(200):
        if all(runs[order[i]][0] != runs[order[i + 1]][0] for i in range(len(order) - 1)):
            break
        order = list(rng.permutation(len(runs)))
    cats: list[int] = []
    run_ids: list[int] = []
    for run_id, r in enumerate(order):
        cat, length = runs[r]
        cats.extend([cat] * length)
        run_ids.extend([run_id] * length)
    return tuple(cats), tuple(run_ids)


def category_schedule(
    n_frames: int, *, seed: int = 0, fps: float = 30, proportions: Mapping[str, float] | Sequence[float] | None = None
) -> list[str]:
    """The category of each frame of an ``n_frames`` video, in contiguous runs, from the seed."""
    if n_frames < 1:
        raise FetalHeartError("a phantom needs at least one frame")
    cats, _ = schedule_runs(int(n_frames), int(seed), normalise_proportions(proportions), float(fps))
    return [CATEGORIES[c] for c in cats]
