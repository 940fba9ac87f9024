"""Compare evaluated runs: one row per model, mean +/- std over folds and seeds, pooled CIs, paired tests.

Each run contributes its ``report.json``: the summary numbers and the per-frame records (counts per
class, group). Runs of one model (same study id / name, enhancement and momentum) on several folds
and seeds are grouped. The paired test against a baseline uses one class set per frame for both
models, keeps empty frames (so false alarms count) and treats groups (fold x video/patient), not
frames, as the samples; see ``COMPARE_DEFINITIONS``. The statistics (smallest reachable p before any
test, intervals by the number of groups, seed variance) live in ``paired``; docs/statistics.md says
when a comparison can reach a verdict. (``pooling.pool_folds`` pools the out-of-fold evaluations of
one model's K folds into one report first.)

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
from dataclasses import dataclass, field, replace
from pathlib import Path

from fetalheart.evaluation.metrics import group_index, macro_summary, quiet_nan
from fetalheart.evaluation.paired import (
    MIN_GROUPS_FOR_BOOTSTRAP,
    cannot_reach,
    interval_excludes_zero,
    paired_effect,
    rank_biserial,  # noqa: F401 (part of this module's interface)
    reachability,
)
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import read_json

import numpy as np
import yaml

METRICS = ("segm_AP", "study_mAP", "corrected_mAP", "iou", "dice")
METRIC_LABELS = {"segm_AP": "COCO segm AP", "study_mAP": "study mAP (Matterport)",
                 "corrected_mAP": "mAP (corrected)", "iou": "IoU", "dice": "Dice"}
#: The metrics with a per-frame value, so a paired test over groups: study mAP (Matterport's per-frame
#: AP), IoU and Dice. COCO AP and the corrected mAP rank all frames' detections: one number per run.
PAIRED_METRICS = ("study_mAP", "iou", "dice")

COMPARE_DEFINITIONS = """\
**Per-run numbers** (COCO segm AP, study mAP (Matterport), corrected mAP, IoU and Dice macro) come
from each run's report. A model evaluated on K folds shows the mean over folds +/- the standard
deviation over folds (n = folds): for the ranking-based APs (COCO AP, corrected mAP) this is the
number to read, as they rank detections within one model; a pool_folds report's COCO AP ranks the
detections of K different models together and is labelled "pooled over K models". With several
seeds (per fold), seeds are averaged first and "s" is the standard deviation over seeds (n = seeds).
**Pooled [95% CI]**: IoU / Dice macro recomputed from the per-frame counts of all the model's runs
(the out-of-fold frames of its K folds together; a frame's Dice averaged over seeds), with a
percentile cluster bootstrap CI resampling groups from {min_boot} groups on (n = frames / groups);
below {min_boot} groups no CI ("no CI": a bootstrap of 2-3 groups is their range, not an interval).
**Paired comparison**: on every frame evaluated for both models (same fold), one class set for
both: the classes in the ground truth or predicted by either model. A model's frame score is its
mean Dice (or IoU) over that set; a class absent from both its prediction and the ground truth
counts 1 (a correct empty output: Metrics Reloaded's empty-reference case, made explicit), a frame
whose set is empty scores 1 for both. Empty frames are therefore kept and a false alarm on one costs
that model a 0. For the study mAP the frame score is Matterport's per-frame AP (frames with ground
truth). Frame scores are averaged per group (fold x video/patient; a group is in one validation
fold) and per seed; groups are the samples. Effect size = mean over groups of (model - baseline),
seeds averaged, with a 95% interval: with one seed per model a percentile bootstrap over groups
(scipy.stats.bootstrap, {n_boot} resamples) from {min_boot} groups on, else a t-interval over the
group differences (n - 1 df); with several seeds a t-interval whose variance is video variance / n
+ each model's seed variance / its seeds (Welch-Satterthwaite df), so training variation counts.
The test is a two-sided exact Wilcoxon signed-rank test on the group differences with the
matched-pairs rank-biserial correlation r. **Power before p-values**: with n groups the smallest
possible two-sided p is 2 / 2**n, and m x 2 / 2**n after Holm over m comparisons; a test that
cannot reach alpha prints "cannot reach alpha with n groups and m comparisons", not a p-value.
Each model against its baseline alone is a family of 1 ("p alone"); all the table's comparisons of
one metric are one family (Holm, "p Holm"). With several seeds a verdict also needs the interval to
exclude 0. **Best**: the top-ranked model is called best only when the interval of its difference
to the runner-up (on the ranking metric; per group for a per-frame metric, per fold x seed for COCO
AP and the corrected mAP) excludes 0.
"""
COMPARE_DEFINITIONS = COMPARE_DEFINITIONS.replace("\n**", "\n\n**")


@dataclass
class Frame:
    """One evaluated frame of one run: its group and the (intersection, gt area, pred area) per class
    counted there (a class absent from both ground truth and prediction is not listed)."""

    file_name: str
    group: str
    counts: dict[int, tuple[float, float, float]]
    ap: float = float("nan")  # Matterport's per-frame AP (mean over its thresholds); NaN without ground truth
    gt: str = ""  # hash of the frame's ground truth as scored ("": a report written before it was recorded)


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
    settings: dict = field(default_factory=dict)  # the report's scoring settings (EVAL.*)
    pooled_models: int = 0  # K for a pool_folds report: its COCO AP ranks the detections of K models


def holm(pvalues: Sequence[float], m: int | None = None) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are left out and stay NaN).

    ``m`` is the family size (default: the finite p-values); a comparison that could not be tested
    is still one of the family, so the table passes the number of comparisons."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.where(np.isfinite(p))[0]
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = max(len(order), m or 0), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


# --- Paired statistics over groups ------------------------------------------------------------


def group_means(values: np.ndarray, groups: Sequence) -> tuple[np.ndarray, list]:
    """Mean of ``values`` per group (groups in order of first appearance) and the group labels."""
    gidx, labels = group_index(groups)
    v = np.asarray(values, dtype=np.float64)
    return np.bincount(gidx, weights=v, minlength=len(labels)) / np.bincount(gidx, minlength=len(labels)), labels


def mean_diff_ci(d: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """The interval ``paired_effect`` gives the mean of per-group differences (one seed): percentile
    bootstrap from MIN_GROUPS_FOR_BOOTSTRAP groups, a t-interval below, NaN for < 2."""
    d = np.asarray(d, dtype=np.float64)
    r = paired_effect(d[:, None], np.zeros((len(d), 1)), n_boot, seed, alpha)
    return r["ci_low"], r["ci_high"]


def paired_group_test(a: np.ndarray, b: np.ndarray, groups: Sequence, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Paired comparison of per-frame scores ``a`` vs ``b`` (one seed each) with groups as the samples:
    ``paired_effect`` on the group means, plus n_frames and whether alpha is reachable alone."""
    ma, _ = group_means(a, groups)
    mb, _ = group_means(b, groups)
    res = paired_effect(ma[:, None], mb[:, None], n_boot, seed, alpha)
    res["n_frames"] = int(len(a))
    if not reachability(res["n_groups"], 1, alpha)["reachable"] and not res["note"]:
        res["note"] = f"{res['n_groups']} groups: {cannot_reach(res['n_groups'], 1)} even alone"
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


def _frame_name(img: dict) -> str:
    """The name a frame is paired by: its file name in the COCO file (relative, the same wherever the
    dataset lies); a report from before it was recorded: the base name of the image path."""
    return str(img.get("name") or Path(str(img.get("file_name", img.get("image_id", "")))).name)


def _frames(rep: dict, path: Path, group_regex: re.Pattern | None) -> dict[str, Frame]:
    """The report's frames keyed by ``_frame_name`` (not image ids: two conversions of the same labels
    may number the frames differently)."""
    if "images" not in rep:
        raise FetalHeartError(f"{path} has no per-frame records (written by an older fetalheart): "
                              "re-run tools/evaluate.py --overwrite")
    out = {}
    for img in rep["images"]:
        name = str(img.get("file_name", ""))
        group = _regroup(name, group_regex) if group_regex else str(img.get("group") or name)
        counts = {int(c): (float(v[0]), float(v[1]), float(v[2])) for c, v in img["classes"].items()
                  if v[1] or v[2]}
        ap = [np.nan if v is None else float(v) for v in img.get("study_ap", [])]
        key = _frame_name(img)
        if key in out:
            hint = "" if img.get("name") else " (an older report, named by base name: re-run tools/evaluate.py --overwrite)"
            raise FetalHeartError(f"{path}: two evaluated frames are named {key!r}: frames are paired by name{hint}")
        out[key] = Frame(name, group, counts, float(np.mean(ap)) if ap else float("nan"), str(img.get("gt") or ""))
    return out


def _run_metrics(rep: dict) -> dict[str, float]:
    o, sm = rep.get("overall", {}), rep.get("study_map", {})
    folds = rep.get("coco_folds", {}).get("segm")  # a pooled report: the folds' mean, not the pooled ranking
    return {"segm_AP": folds["mean"] if folds else _f(rep.get("coco", {}).get("segm", {}).get("AP")) / 100.0,
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
                        frames=_frames(rep, report_path, pattern), family=family,
                        settings={k: rep.get("settings", {}).get(k) for k in COMPARABLE_SETTINGS},
                        pooled_models=len(run.get("folds", [])) if fold == "pooled" else 0)


#: Scoring settings two runs must share to be compared (how a prediction becomes a number).
COMPARABLE_SETTINGS = ("score_thresh", "study_map_mode", "study_map_min_score")


def _settings_difference(a: EvaluatedRun, b: EvaluatedRun) -> str | None:
    diff = [k for k in COMPARABLE_SETTINGS if None not in (a.settings.get(k), b.settings.get(k))
            and a.settings.get(k) != b.settings.get(k)]
    if not diff:
        return None
    vals = "; ".join(f"EVAL.{k.upper()} {b.settings[k]} vs {a.settings[k]}" for k in diff)
    return f"{b.path} and {a.path} were scored with different settings ({vals})"


def _example(names: Sequence[str]) -> str:
    return f"{len(names)} frame{'s' * (len(names) != 1)}, e.g. {sorted(names)[0]}"


def _ground_truth_difference(a: EvaluatedRun, b: EvaluatedRun) -> str | None:
    """How two evaluations of one fold differ in what they were scored on: other frames, or the same
    frames with other ground truth (by each frame's hash; None when they agree)."""
    only_a, only_b = sorted(set(a.frames) - set(b.frames)), sorted(set(b.frames) - set(a.frames))
    relabelled = sorted(k for k in set(a.frames) & set(b.frames)
                        if a.frames[k].gt and b.frames[k].gt and a.frames[k].gt != b.frames[k].gt)
    parts = []
    if relabelled:
        parts.append(f"different ground truth on {_example(relabelled)}")
    if only_b:
        parts.append(f"{_example(only_b)} only in {b.path}")
    if only_a:
        parts.append(f"{_example(only_a)} only in {a.path}")
    if not parts:
        return None
    fold = f" (fold {a.fold})" if a.fold >= 0 else ""
    return f"{b.path} and {a.path} were evaluated on different ground truth{fold}: {'; '.join(parts)}"


def check_comparable(runs: Sequence[EvaluatedRun], allow_different: bool = False) -> list[str]:
    """Refuse runs scored differently: other EVAL settings, or (in the same fold) other frames or other
    ground truth (each frame's hash in report.json), in one line naming both runs. Their numbers measure
    different things. ``allow_different``: return those lines instead (the table then states them).
    Different class lists are always refused: class ids would not mean the same structure."""
    notes: list[str] = []
    if not runs:
        return notes
    first = runs[0]
    first_of_fold: dict[int, EvaluatedRun] = {}
    for r in runs:
        if r.classes and first.classes and r.classes != first.classes:
            raise FetalHeartError(f"{r.path} was evaluated with classes {r.classes}, {first.path} with "
                                  f"{first.classes}: not comparable")
        ref = first_of_fold.setdefault(r.fold, r)
        found = [_settings_difference(first, r) if r is not first else None,
                 _ground_truth_difference(ref, r) if r is not ref else None]
        for line in filter(None, found):
            if not allow_different:
                raise FetalHeartError(f"{line}: re-evaluate them alike, or pass --allow-different to compare anyway")
            notes.append(line)
    return notes


def unchecked_ground_truth(runs: Sequence[EvaluatedRun]) -> str | None:
    """A note when some runs' reports predate ground-truth hashes (their frames are paired by name only)."""
    unchecked = [str(r.path) for r in runs if r.frames and not any(f.gt for f in r.frames.values())]
    if not unchecked:
        return None
    return (f"ground truth not checked for {len(unchecked)} run(s), e.g. {unchecked[0]}: their report.json predates "
            "ground-truth hashes (re-run tools/evaluate.py --overwrite)")


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


def _iou(counts: tuple[float, float, float] | None) -> float:
    """IoU of one class on one frame; absent from both: 1 (as ``_dice``)."""
    if counts is None:
        return 1.0
    inter, g, p = counts
    return inter / (g + p - inter) if g + p > 0 else 1.0


def _score(frame: Frame, classes: set[int], metric: str) -> float:
    """One run's score of one frame: mean Dice / IoU over ``classes`` (1 when empty) or its study AP."""
    if metric == "study_mAP":
        return frame.ap
    if not classes:
        return 1.0
    f = _iou if metric == "iou" else _dice
    return float(np.mean([f(frame.counts.get(c)) for c in classes]))


def _frame_score(frames: Sequence[Frame], classes: set[int], metric: str = "dice") -> float:
    """Mean over ``frames`` (one per run: seeds) of ``_score``."""
    return float(np.mean([_score(f, classes, metric) for f in frames]))


def _frames_by_key(runs: Sequence[EvaluatedRun]) -> dict[tuple[int, str], list[Frame]]:
    return {k: [f for _, f in v] for k, v in _seeded_frames(runs).items()}


def _seeded_frames(runs: Sequence[EvaluatedRun]) -> dict[tuple[int, str], list[tuple[int, Frame]]]:
    out: dict[tuple[int, str], list[tuple[int, Frame]]] = defaultdict(list)
    for i, r in enumerate(runs):
        for image_id, fr in r.frames.items():
            out[(r.fold, image_id)].append((i if r.seed is None else r.seed, fr))
    return out


def _group_of(key: tuple[int, str], frame: Frame) -> str:
    return f"{key[0]}:{frame.group}" if key[0] >= 0 else frame.group


def paired_frame_scores(model: Sequence[EvaluatedRun], baseline: Sequence[EvaluatedRun], metric: str = "dice"
                        ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per frame evaluated for both (same fold): each model's score over one shared class set (seeds
    averaged), and the frame's group ``fold:group``. See ``COMPARE_DEFINITIONS``."""
    xa, xb, groups = paired_seed_scores(model, baseline, metric)
    with quiet_nan():
        return np.nanmean(xa, 1), np.nanmean(xb, 1), groups


def paired_seed_scores(model: Sequence[EvaluatedRun], baseline: Sequence[EvaluatedRun], metric: str = "dice"
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``paired_frame_scores`` per seed: (frames, seeds of model) and (frames, seeds of baseline)
    scores (NaN where a seed did not evaluate the frame), frames without a value (study AP of a frame
    without ground truth) left out."""
    fa, fb = _seeded_frames(model), _seeded_frames(baseline)
    sa = sorted({s for v in fa.values() for s, _ in v})
    sb = sorted({s for v in fb.values() for s, _ in v})
    a, b, groups = [], [], []
    for key in sorted(set(fa) & set(fb)):
        classes = set().union(*(f.counts for _, f in fa[key] + fb[key]))
        ra, rb = np.full(len(sa), np.nan), np.full(len(sb), np.nan)
        for s, f in fa[key]:
            ra[sa.index(s)] = _score(f, classes, metric)
        for s, f in fb[key]:
            rb[sb.index(s)] = _score(f, classes, metric)
        if not (np.isfinite(ra).any() and np.isfinite(rb).any()):
            continue
        a.append(ra)
        b.append(rb)
        groups.append(_group_of(key, fa[key][0][1]))
    return (np.asarray(a).reshape(-1, len(sa)), np.asarray(b).reshape(-1, len(sb)), groups)


def group_seed_means(x: np.ndarray, groups: Sequence) -> np.ndarray:
    """(frames, seeds) -> (groups, seeds): the mean over each group's frames, per seed."""
    gidx, labels = group_index(groups)
    out = np.full((len(labels), x.shape[1]), np.nan)
    with quiet_nan():
        for g in range(len(labels)):
            out[g] = np.nanmean(x[gidx == g], 0)
    return out


def paired_comparison(model: Sequence[EvaluatedRun], baseline: Sequence[EvaluatedRun], metric: str,
                      n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``paired_effect`` of ``model`` over ``baseline`` on ``metric`` (per-frame metric: groups x seeds;
    a per-run metric such as COCO AP: folds x seeds, one value per evaluation)."""
    if metric in PAIRED_METRICS:
        xa, xb, groups = paired_seed_scores(model, baseline, metric)
        res = paired_effect(group_seed_means(xa, groups), group_seed_means(xb, groups), n_boot, seed, alpha)
        res.update(n_frames=int(len(xa)), unit="groups")
        return res
    folds = sorted({r.fold for r in model} & {r.fold for r in baseline})

    def by_fold(runs):
        seeds = sorted({r.seed or 0 for r in runs})
        x = np.full((len(folds), len(seeds)), np.nan)
        for r in runs:
            if r.fold in folds:
                x[folds.index(r.fold), seeds.index(r.seed or 0)] = r.metrics[metric]
        return x

    res = paired_effect(by_fold(model), by_fold(baseline), n_boot, seed, alpha)
    res.update(n_frames=0, unit="folds")
    if res["n_groups"] == 1 and not np.isfinite(res["ci_low"]):
        res["note"] = (f"{METRIC_LABELS[metric]} is one number per evaluation: 1 fold x 1 seed gives no interval "
                       "(rank by study_mAP, iou or dice for a paired per-video test)")
    return res


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
    out = {"iou": macro_summary(iou, gidx, n_boot, seed), "dice": macro_summary(dice, gidx, n_boot, seed)}
    for v in out.values():  # no percentile bootstrap of a handful of groups: it is their range, not a CI
        v["ci_method"] = f"percentile cluster bootstrap over {v['n_groups']} groups"
        if v["n_groups"] < MIN_GROUPS_FOR_BOOTSTRAP:
            v["ci_low"] = v["ci_high"] = float("nan")
            v["ci_method"] = f"none ({v['n_groups']} group{'s' * (v['n_groups'] != 1)} < {MIN_GROUPS_FOR_BOOTSTRAP})"
    return out


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
    row = {"model": label, "family": rs[0].family, "model_id": model_id, "enhance": enhance, "momentum": momentum,
           "n_runs": len(rs), "n_folds": len([f for f in folds if f >= 0]), "n_seeds": len({r.seed for r in rs}),
           "pooled_models": max(r.pooled_models for r in rs), "runs": [str(r.path) for r in rs]}
    for m in METRICS:
        row.update(_spread(rs, m))
    pooled = pooled_semantic(rs, n_boot, seed)
    for m in ("iou", "dice"):
        p = pooled[m]
        row.update({f"{m}_pooled": p["mean"], f"{m}_ci_low": p["ci_low"], f"{m}_ci_high": p["ci_high"]})
    row.update(n_frames=pooled["dice"]["n"], n_groups=pooled["dice"]["n_groups"], ci_method=pooled["dice"]["ci_method"])
    return row


def _baseline_for(row: dict, rows: list[dict], baseline: str | None) -> dict | None:
    if baseline:
        return _find_row(rows, baseline, "baseline")
    cands = [b for b in rows if _is_original(b["enhance"]) and
             (b["momentum"] == row["momentum"] or (math.isnan(b["momentum"]) and math.isnan(row["momentum"])))]
    return cands[0] if cands else None


def _find_row(rows: list[dict], name: str, what: str) -> dict:
    cands = [b for b in rows if name in (b["model"], str(b["model_id"]))]
    if not cands:
        raise FetalHeartError(f"{what} {name!r} matches no model (use a model name or study id)")
    return cands[0]


def verdict(t: dict, p_adj: float, m: int, alpha: float) -> str:
    """The words for one test in a family of ``m``: never "n.s." for a test that could not succeed."""
    reach = reachability(t["n_groups"], m, alpha)
    if t["n_groups"] < 2:
        return f"no test ({t['n_groups']} group{'s' * (t['n_groups'] != 1)})"
    if not reach["reachable"]:
        return reach["note"]
    if not np.isfinite(p_adj) or p_adj >= alpha:
        return "n.s."
    if max(t.get("n_seeds", [1, 1])) > 1 and not interval_excludes_zero(t):
        return "n.s. with seed variation (interval crosses 0)"
    sign = t["rank_biserial"] if t["rank_biserial"] != 0 else t["mean_diff"]
    return "better" if sign > 0 else "worse"


def _annotate(t: dict, p_adj: float, m: int, alpha: float) -> None:
    """Family-of-m fields of one test: adjusted p, smallest reachable p, verdict."""
    reach = reachability(t["n_groups"], m, alpha)
    t.update(p_holm=p_adj if m > 1 else t["p"], family=m, min_p=reach["min_p"], reachable=reach["reachable"],
             verdict=verdict(t, p_adj if m > 1 else t["p"], m, alpha))


def _best(rows: list[dict], runs_of: dict, rank_by: str, n_boot: int, seed: int, alpha: float) -> dict:
    """The top model is called best only when the interval of its difference to the runner-up excludes 0."""
    ranked = [r for r in rows if np.isfinite(r[rank_by])]
    if len(ranked) < 2:
        return {"best": ranked[0]["model"] if ranked else None, "runner_up": None,
                "note": "one model: nothing to rank" if ranked else "no model has a value"}
    top, second = ranked[0], ranked[1]
    t = paired_comparison(runs_of[id(top)], runs_of[id(second)], rank_by, n_boot, seed, alpha)
    ok = interval_excludes_zero(t) and t["mean_diff"] > 0
    diff = f"{_fmt(t['mean_diff'])} [{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}] ({t['ci_method']})"
    if ok:
        note = f"{top['model']} is best: difference to the runner-up {second['model']} {diff}"
    elif np.isfinite(t["ci_low"]):
        note = (f"no model is best: {top['model']} leads {second['model']} by {diff}, an interval that "
                "crosses 0")
    else:
        note = f"no model is best: {top['model']} leads {second['model']} by {_fmt(t['mean_diff'])}, with no " \
               f"interval ({t['note'] or t['ci_method']})"
    return {"best": top["model"] if ok else None, "leader": top["model"], "runner_up": second["model"],
            "difference": t, "note": note}


def _test_against_baselines(rows: list[dict], runs_of: dict, baseline: str | None, test_metric: str, n_boot: int,
                            seed: int, alpha: float) -> list[dict]:
    """Each row against its baseline on every per-frame metric, alone and in the family (Holm over all)."""
    tested = []
    for r in rows:
        b = _baseline_for(r, rows, baseline)
        if b is None or b is r:
            r["baseline"] = None if b is None else "(baseline)"
            continue
        r["baseline"] = b["model"]
        r["tests"] = {m: paired_comparison(runs_of[id(r)], runs_of[id(b)], m, n_boot, seed, alpha)
                      for m in PAIRED_METRICS}
        tested.append(r)
    for metric in PAIRED_METRICS:
        adjusted = holm([r["tests"][metric]["p"] for r in tested], m=len(tested))
        for r, p in zip(tested, adjusted, strict=True):
            t = r["tests"][metric]
            t["alone"] = {"p": t["p"], **{k: v for k, v in reachability(t["n_groups"], 1, alpha).items()
                                          if k in ("min_p", "reachable")}, "verdict": verdict(t, t["p"], 1, alpha)}
            _annotate(t, p, len(tested), alpha)
    for r in tested:
        r["test"] = r["tests"][test_metric]
        r["verdict"] = r["test"]["verdict"]
        r["verdict_alone"] = r["test"]["alone"]["verdict"]
    return tested


def _primary(rows: list[dict], runs_of: dict, primary: tuple[str, str], n_boot: int, seed: int, alpha: float) -> dict:
    """The user's primary pair (a, b), every per-frame metric, a family of 1."""
    ra, rb = _find_row(rows, primary[0], "--primary"), _find_row(rows, primary[1], "--primary")
    if ra is rb:
        raise FetalHeartError("--primary needs two different models")
    prim = {"a": ra["model"], "b": rb["model"], "tests": {}}
    for metric in PAIRED_METRICS:
        t = paired_comparison(runs_of[id(ra)], runs_of[id(rb)], metric, n_boot, seed, alpha)
        _annotate(t, t["p"], 1, alpha)
        prim["tests"][metric] = t
    return prim


@dataclass
class CompareOptions:
    """How ``compare`` builds its table (the compare_runs flags of the same names)."""

    baseline: str | None = None  # model name or study id (default: Original at the same momentum)
    rank_by: str = "segm_AP"
    alpha: float = 0.05
    n_boot: int = 1000
    seed: int = 0
    test_metric: str = "dice"  # per-frame metric of the table's p-value and verdict columns
    primary: tuple[str, str] | None = None  # one more pair (a, b), tested as its own family of 1
    allow_different: bool = False  # compare runs scored differently; the table then lists how


def compare(runs: Sequence[EvaluatedRun], options: CompareOptions | None = None, **changes) -> dict:
    """The comparison table (one row per model, folds and seeds grouped) with ranks and paired tests.

    Every model is tested against its baseline on each per-frame metric: alone (a family of 1, the
    primary question "is this model better than the baseline?") and within the family of all the
    table's comparisons (Holm). ``options`` (a ``CompareOptions``; ``changes`` replace its fields, e.g.
    ``compare(runs, n_boot=0)``). Runs scored differently are refused (``check_comparable``) unless
    ``allow_different``; the table then lists how they differ.
    """
    o = replace(options or CompareOptions(), **changes)
    baseline, rank_by, alpha, n_boot, seed = o.baseline, o.rank_by, o.alpha, o.n_boot, o.seed
    test_metric, primary = o.test_metric, o.primary
    if rank_by not in METRICS:
        raise FetalHeartError(f"--rank-by must be one of {', '.join(METRICS)}")
    if test_metric not in PAIRED_METRICS:
        raise FetalHeartError(f"--test-metric must be one of {', '.join(PAIRED_METRICS)}")
    differences = check_comparable(runs, o.allow_different)
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
    tested = _test_against_baselines(rows, runs_of, baseline, test_metric, n_boot, seed, alpha)
    m_family = len(tested)
    order = sorted(rows, key=lambda r: r[f"rank_{rank_by}"])
    best = _best(order, runs_of, rank_by, n_boot, seed, alpha)
    prim = _primary(rows, runs_of, primary, n_boot, seed, alpha) if primary else None
    n_groups = max((r["test"]["n_groups"] for r in tested), default=0)
    return {"rows": order, "rank_by": rank_by, "alpha": alpha, "best": best["best"], "best_vs_runner_up": best,
            "test_metric": test_metric, "primary": prim, "differences": differences,
            "unchecked": unchecked_ground_truth(runs),
            "n_comparisons": m_family, "n_tested": int(sum(np.isfinite(r["test"]["p"]) for r in tested)),
            "power": {"n_groups": n_groups, "family": reachability(n_groups, max(m_family, 1), alpha),
                      "alone": reachability(n_groups, 1, alpha)},
            "bootstrap_samples": n_boot, "seed": seed, "min_groups_for_bootstrap": MIN_GROUPS_FOR_BOOTSTRAP,
            "definitions": COMPARE_DEFINITIONS.format(n_boot=n_boot, min_boot=MIN_GROUPS_FOR_BOOTSTRAP),
            "test": f"paired per-frame {METRIC_LABELS[test_metric]} (shared class set, empty frames kept), "
                    "averaged per group; two-sided exact Wilcoxon signed-rank over groups, alone and "
                    "Holm-corrected over the table; mean difference with a t or bootstrap interval"}


# --- Output -----------------------------------------------------------------------------------


def _fmt(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def _pm(r, m):
    s = _fmt(r[m])
    if r["n_folds"] > 1:
        s += f" +/- {_fmt(r[f'{m}_fold_std'])} ({r['n_folds']} folds)"
    if np.isfinite(r.get(f"{m}_seed_std", float("nan"))):
        s += f", s {_fmt(r[f'{m}_seed_std'])} ({r['n_seeds']} seeds)"
    if r.get("pooled_models") and m == "segm_AP":
        s += f" (mean of {r['pooled_models']} fold models)"
    if r.get("pooled_models") and m == "corrected_mAP":
        s += f" (pooled over {r['pooled_models']} models)"
    return s


def _runs_cell(r: dict) -> str:
    return f"{r['n_folds']} x {r['n_seeds']}" if r["n_folds"] else f"{r['n_seeds']} seed{'s' * (r['n_seeds'] > 1)}"


def _p_cell(t: dict, p: float, m: int) -> str:
    """The p-value, or why there is none: a test that cannot reach alpha prints no p."""
    if not t:
        return ""
    if t["n_groups"] < 2:
        return "no test"
    if not reachability(t["n_groups"], m)["reachable"]:
        return cannot_reach(t["n_groups"], m)
    return _fmt(p, 4)


def _effect_cell(t: dict) -> str:
    if not t:
        return "-"
    ci = f" [{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}]" if np.isfinite(t["ci_low"]) else " (no interval)"
    return f"{_fmt(t['mean_diff'])}{ci}"


def _spread_cell(t: dict) -> str:
    if not t:
        return ""
    seeds = ", ".join(_fmt(v) for v, k in zip(t["seed_sd"], t["n_seeds"], strict=True) if k > 1)
    return f"{_fmt(t['video_sd'])} / {seeds or '1 seed'}"


def _row_line(r: dict, rank_key: str) -> str:
    t = r.get("test", {})
    dice_ci = (f" [{_fmt(r['dice_ci_low'])}, {_fmt(r['dice_ci_high'])}]" if np.isfinite(r["dice_ci_low"])
               else " (no CI)")
    alone = t.get("alone", {})
    return (f"| {r[rank_key]} | {r['model']} | {r.get('family') or '-'} | {r['enhance']} | {_fmt(r['momentum'], 2)} | "
            f"{_runs_cell(r)} | {_pm(r, 'segm_AP')} | {_pm(r, 'study_mAP')} | {_pm(r, 'corrected_mAP')} | "
            f"{_pm(r, 'iou')} | {_pm(r, 'dice')} | {_fmt(r['dice_pooled'])}{dice_ci} | "
            f"{r['n_frames']} / {r['n_groups']} | {r.get('baseline') or '-'} | {_effect_cell(t)} | "
            f"{_spread_cell(t)} | {_fmt(t.get('rank_biserial'), 2) if t else ''} | {t.get('n_groups', '')} | "
            f"{_p_cell(t, alone.get('p', float('nan')), 1)} | {alone.get('verdict', '')} | "
            f"{_p_cell(t, t.get('p_holm', float('nan')), t.get('family', 1))} | {r.get('verdict', '')} |")


def _metric_tests_lines(rows: list[dict]) -> list[str]:
    """Effect [interval] (method) and p alone / in the family, for every per-frame metric."""
    lines = ["| model | baseline | metric | n groups | mean diff [95% interval] | interval | video sd / seed sd | "
             "p alone | verdict alone | p Holm | verdict in family |", "|" + "---|" * 11]
    for r in rows:
        for metric, t in r.get("tests", {}).items():
            lines.append(f"| {r['model']} | {r['baseline']} | {METRIC_LABELS[metric]} | {t['n_groups']} | "
                         f"{_effect_cell(t)} | {t['ci_method']} | {_spread_cell(t)} | "
                         f"{_p_cell(t, t['alone']['p'], 1)} | {t['alone']['verdict']} | "
                         f"{_p_cell(t, t['p_holm'], t['family'])} | {t['verdict']} |")
    return lines


def primary_lines(table: dict) -> list[str]:
    """The named primary comparison (its own family of 1), or a line saying the default."""
    prim = table.get("primary")
    if not prim:
        return ["Primary comparisons: each model against its baseline, one at a time (a family of 1: "
                "columns 'p alone' / 'verdict alone'); the family of all comparisons is Holm-corrected "
                "(columns 'p Holm' / 'verdict in family')."]
    out = [f"Primary comparison (chosen with --primary, a family of 1): **{prim['a']}** vs **{prim['b']}**", "",
           "| metric | n groups | mean diff [95% interval] | interval | video sd / seed sd | r | p | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    for metric, t in prim["tests"].items():
        out.append(f"| {METRIC_LABELS[metric]} | {t['n_groups']} | {_effect_cell(t)} | {t['ci_method']} | "
                   f"{_spread_cell(t)} | {_fmt(t['rank_biserial'], 2)} | {_p_cell(t, t['p'], 1)} | {t['verdict']} |")
    return out


def _differences_lines(table: dict) -> list[str]:
    diffs = table.get("differences") or []
    if not diffs:
        return []
    return ["**Compared anyway (--allow-different): these runs were not scored alike, so their differences "
            "below mix the models with what differs here:**", "", *[f"- {d}" for d in diffs], ""]


def comparison_markdown(table: dict) -> str:
    rows = table["rows"]
    notes = sorted({f"{r['model']}: {r['test']['note']}" for r in rows if r.get("test", {}).get("note")})
    pw, m = table["power"], table["n_comparisons"]
    best = table["best_vs_runner_up"]
    n = pw["n_groups"]
    power = (f"Power before p-values: with {n} group{'s' * (n != 1)} the smallest two-sided exact Wilcoxon p is "
             f"{pw['alone']['min_p']:.4g} alone and {pw['family']['min_p']:.4g} after Holm over the {m} "
             f"comparison{'s' * (m != 1)}; ")
    if not pw["alone"]["reachable"]:
        power += f"alpha cannot be reached even alone ({cannot_reach(n, 1)})."
    elif not pw["family"]["reachable"]:
        power += f"alpha is reachable alone but not in the family ({cannot_reach(n, max(m, 1))})."
    else:
        power += "alpha is reachable alone and in the family."
    if not m:
        power = "No comparison with a baseline (no Original-enhancement model at a shared momentum; see --baseline)."
    lines = ["# Model comparison", "",
             f"{len(rows)} models; ranked by {METRIC_LABELS[table['rank_by']]}; "
             f"best: **{table['best'] or 'none'}** ({best['note']}). "
             "All scores 0-1. Runs = folds x seeds; a value without '(K folds)' or 's' comes from one "
             "evaluation (its frames / groups in that column). Paired tests on "
             f"{METRIC_LABELS[table['test_metric']]}: {table['n_tested']} of {m} comparisons had a test "
             f"(alpha {table['alpha']}).", "", *_differences_lines(table), power, "", *primary_lines(table), "", "## Definitions", "",
             table["definitions"], "",
             "| rank | model | family | enhance | momentum | runs | COCO segm AP | study mAP (Matterport) | "
             "mAP (corrected) | IoU | Dice | Dice pooled [95% CI] | frames / groups | baseline | "
             f"mean d{METRIC_LABELS[table['test_metric']]} [95% interval] | video sd / seed sd | r | n groups | "
             "p alone | verdict alone | p Holm | verdict in family |", "|" + "---|" * 22]
    rank_key = f"rank_{table['rank_by']}"
    lines += [_row_line(r, rank_key) for r in rows]
    if any(r.get("tests") for r in rows):
        lines += ["", "## Paired differences on every per-frame metric", "", *_metric_tests_lines(rows)]
    if notes or table.get("unchecked"):
        lines += ["", *[f"- {n}" for n in notes + [table.get("unchecked")] if n]]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("model", "family", "model_id", "enhance", "momentum", "n_runs", "n_folds", "n_seeds", "pooled_models",
              *[f"{m}{s}" for m in METRICS for s in ("", "_fold_std", "_seed_std")],
              "iou_pooled", "iou_ci_low", "iou_ci_high", "dice_pooled", "dice_ci_low", "dice_ci_high", "ci_method",
              "n_frames", "n_groups", *[f"rank_{m}" for m in METRICS], "mean_rank", "baseline",
              "paired_n_frames", "paired_n_groups", "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high",
              "mean_diff_ci_method", "video_sd", "seed_sd", "median_diff", "rank_biserial", "p", "min_p_alone",
              "verdict_alone", "p_holm", "min_p_holm", "verdict", "note")


def comparison_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in table["rows"]:
        t = r.get("test", {})
        row = {**r, "paired_n_frames": t.get("n_frames", ""), "paired_n_groups": t.get("n_groups", ""),
               "mean_diff": t.get("mean_diff", ""), "mean_diff_ci_low": t.get("ci_low", ""),
               "mean_diff_ci_high": t.get("ci_high", ""), "mean_diff_ci_method": t.get("ci_method", ""),
               "video_sd": t.get("video_sd", ""), "seed_sd": " ".join(f"{v:.6g}" for v in t.get("seed_sd", [])),
               "median_diff": t.get("median_diff", ""), "rank_biserial": t.get("rank_biserial", ""),
               "p": t.get("p", ""), "min_p_alone": t.get("alone", {}).get("min_p", ""),
               "p_holm": t.get("p_holm", ""), "min_p_holm": t.get("min_p", ""), "note": t.get("note", "")}
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in CSV_FIELDS})
    return buf.getvalue()


def comparison_figure(table: dict, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Grouped bars per model (COCO AP, both mAPs, IoU, Dice), like the study's Fig. 6. IoU/Dice carry
    their pooled CI whiskers where there is one; where there is none, no whisker (never a zero-width one)
    but the bar's n; the title states n."""
    from fetalheart.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    rows = sorted(table["rows"], key=lambda r: (r["model_id"] or 10**6, r["model"]))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) * 2 + 2), 3.8))
    width = 0.16
    for k, m in enumerate(METRICS):
        vals = np.array([r[f"{m}_pooled"] if m in ("iou", "dice") else r[m] for r in rows], float)
        pos = x + (k - 2) * width
        ax.bar(pos, np.nan_to_num(vals), width, label=METRIC_LABELS[m])
        if m in ("iou", "dice"):
            lo = np.array([r[f"{m}_ci_low"] for r in rows], float)
            hi = np.array([r[f"{m}_ci_high"] for r in rows], float)
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(vals)
            if ok.any():
                err = np.vstack([vals[ok] - lo[ok], hi[ok] - vals[ok]]).clip(0)
                ax.errorbar(pos[ok], vals[ok], yerr=err, fmt="none", ecolor="black", capsize=2, lw=0.8)
    for i, r in enumerate(rows):
        if not np.isfinite(r["dice_ci_low"]):
            g = r["n_groups"]
            ax.text(i + width * 1.5, 0.02, f"n = {g} video{'s' * (g != 1)}\nno CI", ha="center", va="bottom",
                    fontsize=6, rotation=90)
        if r.get("verdict") in ("better", "worse"):
            ax.text(i, 1.01, "*", ha="center", fontsize=12)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right"
                  if len(rows) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score (0-1)")
    groups = sorted({r["n_groups"] for r in rows})
    frames = sorted({r["n_frames"] for r in rows})
    n_text = (f"n = {', '.join(map(str, groups))} group{'s' * (groups != [1])} (videos), "
              f"{', '.join(map(str, frames))} frames")
    anyway = " - COMPARED ANYWAY: not scored alike (comparison.md)" if table.get("differences") else ""
    ax.set_title(f"Models compared, {n_text}{anyway}\nIoU/Dice pooled; whiskers: 95% cluster-bootstrap CI from "
                 f"{table['min_groups_for_bootstrap']} groups on, none below; * = paired "
                 f"{METRIC_LABELS[table['test_metric']]} differs from baseline (Holm)", fontsize=7)
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


