"""Paired statistics over groups (videos / patients) and seeds: power before p-values, honest intervals.

A comparison of two models has as many independent samples as it has groups, not frames, and a
model trained once more with another seed is another sample of the training. So:

* **Power first.** With n groups the smallest two-sided exact Wilcoxon signed-rank p is 2 / 2**n (all
  n differences of one sign), and the smallest Holm-adjusted p in a family of m comparisons is
  m x 2 / 2**n. When that cannot reach alpha no p-value is printed: "cannot reach alpha with n groups
  and m comparisons" (``reachability``), never "n.s.".
* **Intervals by the number of groups.** A percentile bootstrap of n resampled groups is too narrow
  for small n (with 2-3 groups it is the range of the group means), so it is used from
  ``MIN_GROUPS_FOR_BOOTSTRAP`` groups on; below, a t-interval over the group differences (n - 1 df);
  with one group, none.
* **Training variation.** With several seeds per model the variance of the mean difference is
  video variance / n + seed variance of each model / its seeds (a two-component, conservative
  estimate: a seed x video interaction is counted in both), with Welch-Satterthwaite degrees of
  freedom for the t-interval. The verdict needs that interval to exclude 0.

No torch or detectron2 here; scipy.stats does the arithmetic (tests/test_paired_stats.py checks
every number against scipy called directly on the same values).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from fetalheart.evaluation.metrics import MIN_GROUPS_FOR_BOOTSTRAP

import numpy as np

#: Exact sign-flip enumeration (ties and zeros handled exactly) up to this many groups.
_EXACT_MAX = 16


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p with n paired samples: 2 / 2**n (1 for n = 0)."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0 ** n)


def min_adjusted_p(n: int, m: int) -> float:
    """Smallest Holm-adjusted p in a family of m comparisons of n groups each: min(1, m x 2 / 2**n)."""
    return min(1.0, max(int(m), 1) * min_wilcoxon_p(n))


def groups_needed(m: int, alpha: float = 0.05) -> int:
    """Fewest groups with which one of m comparisons can reach p < alpha after Holm."""
    n = 1
    while min_adjusted_p(n, m) >= alpha:
        n += 1
    return n


def cannot_reach(n: int, m: int) -> str:
    return f"cannot reach alpha with {n} group{'s' * (n != 1)} and {m} comparison{'s' * (m != 1)}"


def reachability(n: int, m: int, alpha: float = 0.05) -> dict:
    """Before any test: the smallest reachable adjusted p and whether it can reach alpha (and why not)."""
    p_min = min_adjusted_p(n, m)
    ok = p_min < alpha
    return {"n_groups": int(n), "family": int(m), "min_p": p_min, "reachable": ok,
            "note": "" if ok else cannot_reach(n, m)}


def reachable_p_table(ns: Sequence[int] = range(3, 13), ms: Sequence[int] = (1, 10, 20), alpha: float = 0.05) -> str:
    """Markdown table of the smallest reachable (Holm-)adjusted p for n groups and family sizes m."""
    head = "| groups n | " + " | ".join(f"m = {m}" for m in ms) + " |"
    lines = [head, "|---|" + "---|" * len(ms)]
    for n in ns:
        cells = []
        for m in ms:
            r = reachability(n, m, alpha)
            cells.append(f"{r['min_p']:.4g}" + ("" if r["reachable"] else " (cannot reach alpha)"))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    need = ", ".join(f"m = {m}: {groups_needed(m, alpha)}" for m in ms)
    lines += ["", f"Groups needed for p < {alpha:g} to be possible at all: {need}."]
    return "\n".join(lines)


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-) of the nonzero differences
    (Kerby 2014): +1 when every group favours the first model."""
    from scipy.stats import rankdata

    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    r = rankdata(np.abs(d))
    return float((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def wilcoxon_p(d: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank (p, statistic) of the differences ``d``: exact sign-flip
    enumeration for up to 16 groups (ties and zeros exact), scipy's default above; p = 1 when all 0."""
    from scipy.stats import PermutationMethod, wilcoxon

    d = np.asarray(d, dtype=np.float64)
    if d.size == 0:
        return float("nan"), float("nan")
    if np.all(d == 0):  # scipy refuses all-zero differences; there is no evidence of a difference
        return 1.0, 0.0
    method = PermutationMethod(n_resamples=np.inf) if d.size <= _EXACT_MAX else "auto"
    t = wilcoxon(d, alternative="two-sided", method=method)
    return float(t.pvalue), float(t.statistic)


def t_interval(mean: float, var_of_mean: float, df: float, alpha: float = 0.05) -> tuple[float, float]:
    """mean +/- t_{1 - alpha/2, df} sqrt(var_of_mean); NaN when df or the variance is undefined."""
    from scipy.stats import t

    if not (np.isfinite(var_of_mean) and np.isfinite(df) and df > 0):
        return float("nan"), float("nan")
    h = float(t.ppf(1 - alpha / 2, df)) * math.sqrt(var_of_mean)
    return mean - h, mean + h


def bootstrap_mean_ci(d: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-group values (scipy.stats.bootstrap)."""
    from fetalheart.evaluation.metrics import bootstrap_rng

    from scipy.stats import bootstrap

    d = np.asarray(d, dtype=np.float64)
    res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile",
                    **bootstrap_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _seed_part(x: np.ndarray) -> tuple[float, float, int]:
    """(variance of the model's mean due to seeds, std over seeds of the per-seed means, seeds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.nanmean(x, axis=0) if len(x) else np.zeros(0)
    k = int(np.isfinite(per_seed).sum())
    if k < 2:
        return 0.0, float("nan"), k
    sd = float(np.nanstd(per_seed, ddof=1))
    return sd ** 2 / k, sd, k


def paired_effect(xa: np.ndarray, xb: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                  min_boot: int = MIN_GROUPS_FOR_BOOTSTRAP) -> dict:
    """Effect of model a over model b from group means per seed: ``xa`` (groups, seeds of a), ``xb``
    (groups, seeds of b), NaN for a seed that did not evaluate a group.

    Returns the mean difference over groups (seeds averaged first) with its interval and how it was
    made (``ci_method``), the video and seed spreads, the Wilcoxon p over groups and the
    rank-biserial r. See the module docstring for the choices.
    """
    xa, xb = (np.asarray(x, dtype=np.float64) for x in (xa, xb))
    xa, xb = (x[:, None] if x.ndim == 1 else x for x in (xa, xb))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.nanmean(xa, 1) - np.nanmean(xb, 1)
    n = int(d.size)
    va, sda, ka = _seed_part(xa)
    vb, sdb, kb = _seed_part(xb)
    res = {"n_groups": n, "n_seeds": [ka, kb], "mean_diff": float(d.mean()) if n else float("nan"),
           "median_diff": float(np.median(d)) if n else float("nan"),
           "video_sd": float(d.std(ddof=1)) if n > 1 else float("nan"), "seed_sd": [sda, sdb],
           "ci_low": float("nan"), "ci_high": float("nan"), "ci_method": "none", "df": float("nan"),
           "p": float("nan"), "statistic": float("nan"), "rank_biserial": float("nan"), "note": ""}
    if n == 0:
        res["note"] = "no frame evaluated for both models"
        return res
    v_video = res["video_sd"] ** 2 / n if n > 1 else float("nan")
    seeds = ka > 1 or kb > 1
    if n == 1 and not seeds:
        res["note"] = "1 group: no test and no interval (one video says nothing about others)"
        return res
    if seeds:
        parts = [(v_video, n - 1), (va, ka - 1), (vb, kb - 1)]
        parts = [(v, df) for v, df in parts if np.isfinite(v) and v > 0 and df > 0]
        var = sum(v for v, _ in parts)
        # no variance anywhere (identical seeds, one constant difference): the groups' df
        df = var ** 2 / sum(v ** 2 / df for v, df in parts) if parts else float(max(n - 1, 0) or "nan")
        res["ci_low"], res["ci_high"] = t_interval(res["mean_diff"], var, df, alpha)
        res["df"] = float(df)
        res["ci_method"] = (f"t, video + seed variance ({n} groups, {ka} x {kb} seeds, "
                            f"Welch-Satterthwaite df {df:.1f})")
        if n == 1:
            res["note"] = "1 group: the interval covers seed variation on this video only"
    elif n < min_boot or n_boot <= 0:
        res["ci_low"], res["ci_high"] = t_interval(res["mean_diff"], v_video, n - 1, alpha)
        res["df"] = float(n - 1)
        res["ci_method"] = f"t over {n} groups (df {n - 1})"
    else:
        res["ci_low"], res["ci_high"] = bootstrap_mean_ci(d, n_boot, seed, alpha)
        res["ci_method"] = f"percentile bootstrap over {n} groups ({n_boot} resamples)"
    if n >= 2:
        res["p"], res["statistic"] = wilcoxon_p(d)
        res["rank_biserial"] = rank_biserial(d)
    return res


def interval_excludes_zero(res: dict) -> bool:
    lo, hi = res.get("ci_low", float("nan")), res.get("ci_high", float("nan"))
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


if __name__ == "__main__":  # python -m fetalheart.evaluation.paired: the table of docs/statistics.md
    print(reachable_p_table())
