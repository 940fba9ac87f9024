"""Compare evaluated runs: one row per model, mean +/- std over folds and seeds, pooled CIs, paired tests.

Each run contributes its ``report.json``: the summary numbers and the per-frame records (counts per
class, group). Runs of one model (same study id / name, enhancement and momentum) on several folds
and seeds are grouped. The paired test against a baseline uses one class set per frame for both
models, keeps empty frames (so false alarms count) and treats groups (fold x video/patient), not
frames, as the samples; see ``COMPARE_DEFINITIONS``. (``pooling.pool_folds`` pools the out-of-fold
evaluations of one model's K folds into one report first.)

No torch or detectron2 import here: a comparison of finished runs starts in a second.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.evaluation.metrics import group_index, macro_summary, quiet_nan
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import read_json

import numpy as np
import yaml

METRICS = ("segm_AP", "study_mAP", "corrected_mAP", "iou", "dice")
METRIC_LABELS = {"segm_AP": "COCO segm AP", "study_mAP": "study mAP (Matterport)",
                 "corrected_mAP": "mAP (corrected)", "iou": "IoU", "dice": "Dice"}
#: With n groups the smallest two-sided exact Wilcoxon p is 2 / 2**n: 0.0625 for 5, 0.031 for 6.
MIN_GROUPS_FOR_TEST = 6

COMPARE_DEFINITIONS = """\
**Per-run numbers** (COCO segm AP, study mAP (Matterport), corrected mAP, IoU and Dice macro) come
from each run's report. A model evaluated on K folds shows the mean over folds +/- the standard
deviation over folds (n = folds); with several seeds (per fold), seeds are averaged first and
"s seeds" is the standard deviation over seeds (mean over folds; n = seeds).
**Pooled [95% CI]**: IoU / Dice macro recomputed from the per-frame counts of all the model's runs (the
out-of-fold frames of its K folds together; a frame's Dice averaged over seeds), with a cluster
bootstrap CI resampling groups (n = frames / groups).
**Paired comparison with the baseline**: on every frame evaluated for both models (same fold), one
class set for both: the classes in the ground truth or predicted by either model. A model's frame
score is its mean Dice over that set; a class absent from both its prediction and the ground truth
counts 1 (a correct empty output: Metrics Reloaded's empty-reference case, made explicit), a frame
whose set is empty scores 1 for both. Empty frames are therefore kept and a false alarm on one costs
that model a 0. Frame scores are averaged per group (fold x video/patient; a group is in one
validation fold), and groups are the samples: effect size = mean over groups of (model - baseline)
with a 95% percentile bootstrap CI over groups (scipy.stats.bootstrap, {n_boot} resamples), and,
with >= {min_groups} groups, a two-sided Wilcoxon signed-rank test on the group means (scipy) with
the matched-pairs rank-biserial correlation r; p-values Holm-corrected over the table. With fewer
groups no p-value is given (with 5 groups the smallest possible two-sided p is 0.0625): the CI then
describes frames of those groups only, not other videos.
"""
COMPARE_DEFINITIONS = COMPARE_DEFINITIONS.replace("\n**", "\n\n**")


@dataclass
class Frame:
    """One evaluated frame of one run: its group and the (intersection, gt area, pred area) per class
    counted there (a class absent from both ground truth and prediction is not listed)."""

    file_name: str
    group: str
    counts: dict[int, tuple[float, float, float]]


@dataclass
class EvaluatedRun:
    """One evaluation of one trained model."""

    path: Path
    label: str
    enhance: str
    momentum: float
    model_id: int
    seed: int | None
    dataset: str
    metrics: dict[str, float]
    fold: int = -1
    classes: list[str] = field(default_factory=list)
    frames: dict[str, Frame] = field(default_factory=dict)
    family: str = ""  # "Mask R-CNN R50-FPN", "Unet resnet34", ...: runs of every family share one table


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are left out and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.where(np.isfinite(p))[0]
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


# --- Paired statistics over groups ------------------------------------------------------------


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


def group_means(values: np.ndarray, groups: Sequence) -> tuple[np.ndarray, list]:
    """Mean of ``values`` per group (groups in order of first appearance) and the group labels."""
    gidx, labels = group_index(groups)
    v = np.asarray(values, dtype=np.float64)
    return np.bincount(gidx, weights=v, minlength=len(labels)) / np.bincount(gidx, minlength=len(labels)), labels


def mean_diff_ci(d: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-group differences (scipy.stats.bootstrap); NaN for < 2."""
    from fetalheart.evaluation.metrics import bootstrap_rng

    from scipy.stats import bootstrap

    d = np.asarray(d, dtype=np.float64)
    if d.size < 2 or n_boot <= 0:
        return float("nan"), float("nan")
    res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile",
                    **bootstrap_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_group_test(a: np.ndarray, b: np.ndarray, groups: Sequence, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05, min_groups: int = MIN_GROUPS_FOR_TEST) -> dict:
    """Paired comparison of per-frame scores ``a`` vs ``b`` with groups as the samples.

    Returns n_frames, n_groups, mean_diff (mean over groups of a - b) with its bootstrap CI,
    median_diff, and (with >= ``min_groups`` groups) the two-sided Wilcoxon signed-rank p on the
    group means and the rank-biserial r; else p is NaN and ``note`` says why.
    """
    from scipy.stats import wilcoxon

    ma, labels = group_means(a, groups)
    mb, _ = group_means(b, groups)
    d = ma - mb
    n = len(labels)
    lo, hi = mean_diff_ci(d, n_boot, seed, alpha)
    res = {"n_frames": int(len(a)), "n_groups": n, "mean_diff": float(d.mean()) if n else float("nan"),
           "median_diff": float(np.median(d)) if n else float("nan"), "ci_low": lo, "ci_high": hi,
           "p": float("nan"), "statistic": float("nan"), "rank_biserial": float("nan"), "note": ""}
    if n < min_groups:
        res["note"] = ("no frame evaluated for both models" if n == 0 else
                       "1 group: no test and no CI (one video says nothing about others)" if n == 1 else
                       f"{n} groups: no test (needs >= {min_groups}); the CI covers frames of {n} groups only")
        return res
    res["rank_biserial"] = rank_biserial(d)
    if np.all(d == 0):  # scipy refuses all-zero differences; there is no evidence of a difference
        res["p"] = 1.0
        return res
    t = wilcoxon(ma, mb, alternative="two-sided")
    res["p"], res["statistic"] = float(t.pvalue), float(t.statistic)
    return res


# --- Loading runs -----------------------------------------------------------------------------


def _find_reports(path: Path, dataset: str | None) -> list[Path]:
    if (path / "report.json").is_file():
        return [path / "report.json"]
    found = sorted(path.glob("eval/*/report.json"))
    if dataset:
        found = [p for p in found if p.parent.name == dataset]
    return found


def _read_config(report_path: Path) -> dict:
    for cand in (report_path.parent / "config.yaml", report_path.parent.parent.parent / "config.yaml"):
        if cand.is_file():
            try:
                return yaml.safe_load(cand.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise FetalHeartError(f"cannot read {cand}: {str(exc).splitlines()[0]}") from None
    return {}


def _f(v) -> float:
    return float("nan") if v is None else float(v)


def _regroup(file_name: str, pattern: re.Pattern) -> str:
    m = pattern.search(file_name)
    if not m:
        raise FetalHeartError(f"--group-regex {pattern.pattern!r} does not match {file_name!r}")
    return m.group(1) if pattern.groups else m.group(0)


def _frames(rep: dict, path: Path, group_regex: re.Pattern | None) -> dict[str, Frame]:
    if "images" not in rep:
        raise FetalHeartError(f"{path} has no per-frame records (written by an older fetalheart): "
                              "re-run tools/evaluate.py --overwrite")
    out = {}
    for img in rep["images"]:
        name = str(img.get("file_name", ""))
        group = _regroup(name, group_regex) if group_regex else str(img.get("group") or name)
        counts = {int(c): (float(v[0]), float(v[1]), float(v[2])) for c, v in img["classes"].items()
                  if v[1] or v[2]}
        out[str(img["image_id"])] = Frame(name, group, counts)
    return out


def _run_metrics(rep: dict) -> dict[str, float]:
    o, sm = rep.get("overall", {}), rep.get("study_map", {})
    return {"segm_AP": _f(rep.get("coco", {}).get("segm", {}).get("AP")) / 100.0,
            "study_mAP": _f(sm.get("matterport", {}).get("mAP", sm.get("mAP"))),
            "corrected_mAP": _f(sm.get("corrected", {}).get("mAP")),
            "iou": _f(o.get("iou_macro", {}).get("mean")), "dice": _f(o.get("dice_macro", {}).get("mean"))}


def load_run(report_path: Path, group_regex: str | None = None) -> EvaluatedRun:
    """Read one evaluation folder (report.json; config.yaml beside it or in the run for older reports)."""
    rep = read_json(report_path)
    cfg = _read_config(report_path)
    run = rep.get("run", {})
    solver, inp, study = cfg.get("SOLVER", {}), cfg.get("INPUT", {}), cfg.get("STUDY", {})
    enhance = str(run.get("enhance", inp.get("ENHANCE", "original")) or "original")
    momentum = _f(run["momentum"]) if "momentum" in run else _f(solver.get("MOMENTUM"))  # Adam: none (NaN)
    model_id = int(run.get("study_model_id", study.get("MODEL_ID", 0)) or 0)
    name = run.get("study_name") or study.get("NAME") or ""
    run_dir = report_path.parent.parent.parent if report_path.parent.parent.name == "eval" else report_path.parent
    family = str(run.get("family", ""))
    label = name or (f"model {model_id}" if model_id else f"{family} {enhance}" if family else
                     f"{enhance} m={momentum:g}" if enhance else run_dir.name)
    seed = run.get("seed", cfg.get("SEED"))
    fold = run.get("fold", cfg.get("DATASETS", {}).get("FOLD", -1))
    try:
        pattern = re.compile(group_regex) if group_regex else None
    except re.error as exc:
        raise FetalHeartError(f"--group-regex {group_regex!r} is not a valid regular expression: {exc}") from None
    return EvaluatedRun(report_path.parent, label, enhance, momentum, model_id, None if seed is None else int(seed),
                        rep.get("dataset", ""), _run_metrics(rep),
                        fold=-1 if fold in (None, "pooled") else int(fold), classes=list(rep.get("classes", [])),
                        frames=_frames(rep, report_path, pattern), family=family)


def load_runs(paths: Sequence[str | os.PathLike], dataset: str | None = None,
              group_regex: str | None = None) -> list[EvaluatedRun]:
    """Every evaluation found under the given run or eval folders."""
    runs = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise FetalHeartError(f"not a folder: {p}")
        reports = _find_reports(p, dataset)
        if not reports:
            raise FetalHeartError(f"no report.json in {p} or {p}/eval/*/ (run tools/evaluate.py first)")
        if len(reports) > 1 and dataset is None:
            names = ", ".join(r.parent.name for r in reports)
            raise FetalHeartError(f"{p} has evaluations on several datasets ({names}); choose one with --dataset")
        runs.extend(load_run(r, group_regex) for r in reports)
    return runs


# --- Per-frame scores -------------------------------------------------------------------------


def _dice(counts: tuple[float, float, float] | None) -> float:
    """Dice of one class on one frame; a class absent from both ground truth and prediction: 1."""
    if counts is None:
        return 1.0
    inter, g, p = counts
    return 2.0 * inter / (g + p) if g + p > 0 else 1.0


def _frame_score(frames: Sequence[Frame], classes: set[int]) -> float:
    """Mean over ``frames`` (one per run: seeds) of the mean Dice over ``classes`` (1 when empty)."""
    if not classes:
        return 1.0
    return float(np.mean([np.mean([_dice(f.counts.get(c)) for c in classes]) for f in frames]))


def _frames_by_key(runs: Sequence[EvaluatedRun]) -> dict[tuple[int, str], list[Frame]]:
    out: dict[tuple[int, str], list[Frame]] = defaultdict(list)
    for r in runs:
        for image_id, fr in r.frames.items():
            out[(r.fold, image_id)].append(fr)
    return out


def paired_frame_scores(model: Sequence[EvaluatedRun], baseline: Sequence[EvaluatedRun]
                        ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per frame evaluated for both (same fold): each model's score over one shared class set, and
    the frame's group ``fold:group``. See ``COMPARE_DEFINITIONS``."""
    fa, fb = _frames_by_key(model), _frames_by_key(baseline)
    a, b, groups = [], [], []
    for key in sorted(set(fa) & set(fb)):
        classes = set().union(*(f.counts for f in fa[key] + fb[key]))
        a.append(_frame_score(fa[key], classes))
        b.append(_frame_score(fb[key], classes))
        groups.append(f"{key[0]}:{fa[key][0].group}" if key[0] >= 0 else fa[key][0].group)
    return np.asarray(a), np.asarray(b), groups


def pooled_semantic(runs: Sequence[EvaluatedRun], n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """IoU / Dice macro over all frames of a model's runs (folds pooled, seeds averaged per frame and
    class where counted), with cluster-bootstrap CIs over ``fold:group``."""
    C = max((len(r.classes) for r in runs), default=0) or 1 + max(
        (c for r in runs for f in r.frames.values() for c in f.counts), default=0)
    by_key = _frames_by_key(runs)
    keys = sorted(by_key)
    iou, dice = np.full((len(keys), C), np.nan), np.full((len(keys), C), np.nan)
    for i, key in enumerate(keys):
        for c in set().union(*(f.counts for f in by_key[key])):
            vals = np.array([f.counts[c] for f in by_key[key] if c in f.counts])
            inter, tot = vals[:, 0], vals[:, 1] + vals[:, 2]
            iou[i, c], dice[i, c] = float(np.mean(inter / (tot - inter))), float(np.mean(2 * inter / tot))
    groups = [f"{k[0]}:{by_key[k][0].group}" if k[0] >= 0 else by_key[k][0].group for k in keys]
    gidx, _ = group_index(groups)
    return {"iou": macro_summary(iou, gidx, n_boot, seed), "dice": macro_summary(dice, gidx, n_boot, seed)}


# --- The table --------------------------------------------------------------------------------


def _is_original(enhance: str) -> bool:
    return enhance.strip().lower() in ("original", "none", "")


def _spread(runs: Sequence[EvaluatedRun], metric: str) -> dict[str, float]:
    """Mean over folds of the seed means; std over folds (n = folds) and mean within-fold std over seeds."""
    by_fold: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        by_fold[r.fold].append(r.metrics[metric])
    with quiet_nan():
        fold_means = np.array([np.nanmean(v) for v in by_fold.values()])
        seed_stds = [np.nanstd(v, ddof=1) for v in by_fold.values() if np.isfinite(v).sum() > 1]
        ok = fold_means[np.isfinite(fold_means)]
        return {metric: float(ok.mean()) if ok.size else float("nan"),
                f"{metric}_fold_std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                f"{metric}_seed_std": float(np.mean(seed_stds)) if seed_stds else float("nan")}


def _model_row(key: tuple, rs: list[EvaluatedRun], n_boot: int, seed: int) -> dict:
    label, enhance, _, model_id = key
    momentum = rs[0].momentum
    folds = sorted({r.fold for r in rs})
    if -1 in folds and len(folds) > 1:
        raise FetalHeartError(f"model {label!r} mixes fold runs (DATASETS.FOLD >= 0) with other runs; "
                              "compare the fold evaluations (or one pooled report) only")
    row = {"model": label, "family": rs[0].family, "model_id": model_id, "enhance": enhance, "momentum": momentum, "n_runs": len(rs),
           "n_folds": len([f for f in folds if f >= 0]), "n_seeds": len({r.seed for r in rs}),
           "runs": [str(r.path) for r in rs]}
    for m in METRICS:
        row.update(_spread(rs, m))
    pooled = pooled_semantic(rs, n_boot, seed)
    for m in ("iou", "dice"):
        p = pooled[m]
        row.update({f"{m}_pooled": p["mean"], f"{m}_ci_low": p["ci_low"], f"{m}_ci_high": p["ci_high"]})
    row.update(n_frames=pooled["dice"]["n"], n_groups=pooled["dice"]["n_groups"])
    return row


def _baseline_for(row: dict, rows: list[dict], baseline: str | None) -> dict | None:
    if baseline:
        cands = [b for b in rows if baseline in (b["model"], str(b["model_id"]))]
        if not cands:
            raise FetalHeartError(f"baseline {baseline!r} matches no model (use a model name or study id)")
        return cands[0]
    cands = [b for b in rows if _is_original(b["enhance"]) and
             (b["momentum"] == row["momentum"] or (math.isnan(b["momentum"]) and math.isnan(row["momentum"])))]
    return cands[0] if cands else None


def _verdict(t: dict, alpha: float) -> str:
    p = t.get("p_holm", float("nan"))
    if not np.isfinite(p):
        return f"no test ({t['n_groups']} groups)"
    if p >= alpha:
        return "n.s."
    sign = t["rank_biserial"] if t["rank_biserial"] != 0 else t["mean_diff"]
    return "better" if sign > 0 else "worse"


def compare(runs: Sequence[EvaluatedRun], baseline: str | None = None, rank_by: str = "segm_AP",
            alpha: float = 0.05, n_boot: int = 1000, seed: int = 0) -> dict:
    """The comparison table (one row per model, folds and seeds grouped) with ranks and paired tests."""
    if rank_by not in METRICS:
        raise FetalHeartError(f"--rank-by must be one of {', '.join(METRICS)}")
    groups: dict[tuple, list[EvaluatedRun]] = defaultdict(list)
    for r in runs:
        # NaN (no momentum: Adam) is not equal to itself: key it as None so such runs group too.
        groups[(r.label, r.enhance, None if math.isnan(r.momentum) else r.momentum, r.model_id)].append(r)
    rows = [_model_row(k, rs, n_boot, seed) for k, rs in groups.items()]
    runs_of = {id(row): rs for row, rs in zip(rows, groups.values(), strict=True)}
    for m in METRICS:  # rank 1 = best; NaN ranks last
        vals = np.array([-r[m] if np.isfinite(r[m]) else np.inf for r in rows])
        for rank, i in enumerate(np.argsort(vals, kind="stable")):
            rows[i][f"rank_{m}"] = rank + 1
    for r in rows:
        r["mean_rank"] = float(np.mean([r[f"rank_{m}"] for m in METRICS]))
    tests = []
    for r in rows:
        b = _baseline_for(r, rows, baseline)
        if b is None or b is r:
            r["baseline"] = None if b is None else "(baseline)"
            continue
        a_scores, b_scores, frame_groups = paired_frame_scores(runs_of[id(r)], runs_of[id(b)])
        r["baseline"] = b["model"]
        r["test"] = paired_group_test(a_scores, b_scores, frame_groups, n_boot, seed, alpha)
        tests.append(r)
    for r, p in zip(tests, holm([r["test"]["p"] for r in tests]), strict=True):
        r["test"]["p_holm"] = p
        r["verdict"] = _verdict(r["test"], alpha)
    order = sorted(rows, key=lambda r: r[f"rank_{rank_by}"])
    return {"rows": order, "rank_by": rank_by, "alpha": alpha, "best": order[0]["model"] if order else None,
            "n_comparisons": len(tests), "n_tested": int(sum(np.isfinite(r["test"]["p"]) for r in tests)),
            "bootstrap_samples": n_boot, "seed": seed, "min_groups": MIN_GROUPS_FOR_TEST,
            "definitions": COMPARE_DEFINITIONS.format(n_boot=n_boot, min_groups=MIN_GROUPS_FOR_TEST),
            "test": "paired per-frame Dice (shared class set, empty frames kept), averaged per group; "
                    "two-sided Wilcoxon signed-rank over groups, Holm-corrected; mean difference with "
                    "cluster bootstrap CI"}


# --- Output -----------------------------------------------------------------------------------


def _fmt(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def _pm(r, m):
    s = _fmt(r[m])
    if r["n_folds"] > 1:
        s += f" +/- {_fmt(r[f'{m}_fold_std'])} ({r['n_folds']} folds)"
    if np.isfinite(r.get(f"{m}_seed_std", float("nan"))):
        s += f", s {_fmt(r[f'{m}_seed_std'])} ({r['n_seeds']} seeds)"
    return s


def _runs_cell(r: dict) -> str:
    return f"{r['n_folds']} x {r['n_seeds']}" if r["n_folds"] else f"{r['n_seeds']} seed{'s' * (r['n_seeds'] > 1)}"


def _row_line(r: dict, rank_key: str) -> str:
    t = r.get("test", {})
    eff = (f"{_fmt(t['mean_diff'])} [{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}]" if t else "-")
    return (f"| {r[rank_key]} | {r['model']} | {r.get('family') or '-'} | {r['enhance']} | {_fmt(r['momentum'], 2)} | {_runs_cell(r)} | "
            f"{_pm(r, 'segm_AP')} | {_pm(r, 'study_mAP')} | {_pm(r, 'corrected_mAP')} | {_pm(r, 'iou')} | "
            f"{_pm(r, 'dice')} | {_fmt(r['dice_pooled'])} [{_fmt(r['dice_ci_low'])}, {_fmt(r['dice_ci_high'])}] | "
            f"{r['n_frames']} / {r['n_groups']} | {r.get('baseline') or '-'} | {eff} | "
            f"{_fmt(t.get('rank_biserial'), 2) if t else ''} | {t.get('n_groups', '')} | {_fmt(t.get('p'), 4) if t else ''} | "
            f"{_fmt(t.get('p_holm'), 4) if t else ''} | {r.get('verdict', '')} |")


def comparison_markdown(table: dict) -> str:
    rows = table["rows"]
    notes = sorted({f"{r['model']}: {r['test']['note']}" for r in rows if r.get("test", {}).get("note")})
    lines = ["# Model comparison", "",
             f"{len(rows)} models; ranked by {METRIC_LABELS[table['rank_by']]}; best: **{table['best']}**. "
             "All scores 0-1. Runs = folds x seeds; a value without '(K folds)' or 's' comes from one "
             "evaluation (its frames / groups in that column). Paired tests: "
             f"{table['n_tested']} of {table['n_comparisons']} comparisons had enough groups for a test "
             f"(alpha {table['alpha']}, Holm).", "", "## Definitions", "", table["definitions"], "",
             "| rank | model | family | enhance | momentum | runs | COCO segm AP | study mAP (Matterport) | mAP (corrected) | "
             "IoU | Dice | Dice pooled [95% CI] | frames / groups | baseline | mean dDice [95% CI] | r | "
             "n groups | p | p Holm | verdict |", "|" + "---|" * 20]
    rank_key = f"rank_{table['rank_by']}"
    lines += [_row_line(r, rank_key) for r in rows]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("model", "family", "model_id", "enhance", "momentum", "n_runs", "n_folds", "n_seeds",
              *[f"{m}{s}" for m in METRICS for s in ("", "_fold_std", "_seed_std")],
              "iou_pooled", "iou_ci_low", "iou_ci_high", "dice_pooled", "dice_ci_low", "dice_ci_high",
              "n_frames", "n_groups", *[f"rank_{m}" for m in METRICS], "mean_rank", "baseline",
              "paired_n_frames", "paired_n_groups", "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high",
              "median_diff", "rank_biserial", "p", "p_holm", "verdict", "note")


def comparison_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in table["rows"]:
        t = r.get("test", {})
        row = {**r, "paired_n_frames": t.get("n_frames", ""), "paired_n_groups": t.get("n_groups", ""),
               "mean_diff": t.get("mean_diff", ""), "mean_diff_ci_low": t.get("ci_low", ""),
               "mean_diff_ci_high": t.get("ci_high", ""), "median_diff": t.get("median_diff", ""),
               "rank_biserial": t.get("rank_biserial", ""), "p": t.get("p", ""), "p_holm": t.get("p_holm", ""),
               "note": t.get("note", "")}
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in CSV_FIELDS})
    return buf.getvalue()


def comparison_figure(table: dict, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Grouped bars per model (COCO AP, both mAPs, IoU, Dice; pooled CI whiskers), like the study's Fig. 6."""
    from fetalheart.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    rows = sorted(table["rows"], key=lambda r: (r["model_id"] or 10**6, r["model"]))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) * 2 + 2), 3.8))
    width = 0.16
    for k, m in enumerate(METRICS):
        vals = np.array([r[m] for r in rows], float)
        err = None
        if m in ("iou", "dice"):
            pooled = np.array([r[f"{m}_pooled"] for r in rows], float)
            lo = np.array([r[f"{m}_ci_low"] for r in rows], float)
            hi = np.array([r[f"{m}_ci_high"] for r in rows], float)
            vals = pooled
            err = np.nan_to_num(np.vstack([vals - lo, hi - vals]).clip(0))
        ax.bar(x + (k - 2) * width, np.nan_to_num(vals), width, yerr=err, capsize=2, label=METRIC_LABELS[m])
    for i, r in enumerate(rows):
        if r.get("verdict") in ("better", "worse"):
            ax.text(i, 1.01, "*", ha="center", fontsize=12)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right"
                  if len(rows) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score (0-1)")
    ax.set_title("Models compared (IoU/Dice pooled, 95% cluster CI; * = paired Dice differs from baseline, "
                 "Holm p < alpha)", fontsize=8)
    ax.legend(ncol=5, fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, overwrite)


def write_comparison(table: dict, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """comparison.{json,csv,md,png} in ``out_dir``."""
    from fetalheart.utils.io import json_ready, write_json_atomic, write_text_atomic

    out = Path(out_dir)
    names = ("comparison.json", "comparison.csv", "comparison.md", "comparison.png")
    if not overwrite:
        for n in names:
            if (out / n).exists():
                raise FetalHeartError(f"{out / n} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_json_atomic(out / "comparison.json", json_ready(table)),
        write_text_atomic(out / "comparison.csv", comparison_csv(table)),
        write_text_atomic(out / "comparison.md", comparison_markdown(table) + "\n![comparison](comparison.png)\n"),
        comparison_figure(table, out / "comparison.png"),
    ]


