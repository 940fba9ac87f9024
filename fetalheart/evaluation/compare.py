"""Compare evaluated runs: a table of models, ranks, seeds, and paired tests against a baseline.

Each run contributes its ``report.json`` (summary numbers) and ``per_image.csv`` (per-image Dice,
for the paired test). Runs of the same model (same study id / name, enhancement and momentum)
with different seeds are grouped: the table shows their mean and spread over seeds, and the
paired test uses the per-image Dice averaged over seeds.

Paired test: Wilcoxon signed-rank (scipy) on per-image mean Dice of the model vs its baseline
(default: Original enhancement at the same momentum) over the images both were evaluated on,
two-sided, then Holm's step-down correction over all comparisons in the table.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.evaluation.metrics import _quiet_nan
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import yaml

METRICS = ("segm_AP", "study_mAP", "iou", "dice")
METRIC_LABELS = {"segm_AP": "COCO segm AP", "study_mAP": "study mAP", "iou": "IoU", "dice": "Dice"}


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
    ci: dict[str, tuple[float, float]]
    per_image_dice: dict[str, float] = field(default_factory=dict)


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


def paired_wilcoxon(a: dict[str, float], b: dict[str, float]) -> dict:
    """Two-sided Wilcoxon signed-rank on the images in both; returns n, p, mean/median difference a-b."""
    from scipy.stats import wilcoxon

    keys = sorted(k for k in set(a) & set(b) if np.isfinite(a[k]) and np.isfinite(b[k]))
    x = np.array([a[k] for k in keys])
    y = np.array([b[k] for k in keys])
    res = {"n": len(keys), "p": float("nan"), "statistic": float("nan"),
           "mean_diff": float(np.mean(x - y)) if keys else float("nan"),
           "median_diff": float(np.median(x - y)) if keys else float("nan")}
    if len(keys) == 0:
        return res
    if np.allclose(x, y):  # identical: scipy refuses all-zero differences; no evidence of a difference
        res["p"] = 1.0
        return res
    t = wilcoxon(x, y, alternative="two-sided")
    res["p"], res["statistic"] = float(t.pvalue), float(t.statistic)
    return res


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


def load_run(report_path: Path) -> EvaluatedRun:
    """Read one evaluation folder (report.json, per_image.csv, config.yaml beside or in the run)."""
    try:
        rep = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetalHeartError(f"cannot read {report_path}: {exc}") from None
    cfg = _read_config(report_path)
    run = rep.get("run", {})
    solver, inp, study = cfg.get("SOLVER", {}), cfg.get("INPUT", {}), cfg.get("STUDY", {})
    enhance = str(run.get("enhance", inp.get("ENHANCE", "original")) or "original")
    momentum = float(run.get("momentum", solver.get("MOMENTUM", float("nan"))))
    model_id = int(run.get("study_model_id", study.get("MODEL_ID", 0)) or 0)
    name = run.get("study_name") or study.get("NAME") or ""
    run_dir = report_path.parent.parent.parent if report_path.parent.parent.name == "eval" else report_path.parent
    label = name or (f"model {model_id}" if model_id else f"{enhance} m={momentum:g}" if enhance else run_dir.name)
    o = rep.get("overall", {})
    coco = rep.get("coco", {}).get("segm", {})
    metrics = {
        "segm_AP": _f(coco.get("AP")) / 100.0,
        "study_mAP": _f(rep.get("study_map", {}).get("mAP")),
        "iou": _f(o.get("iou_macro", {}).get("mean")),
        "dice": _f(o.get("dice_macro", {}).get("mean")),
    }
    ci = {k: (_f(o.get(f"{k}_macro", {}).get("ci_low")), _f(o.get(f"{k}_macro", {}).get("ci_high")))
          for k in ("iou", "dice")}
    per_image: dict[str, list[float]] = defaultdict(list)
    csv_path = report_path.parent / "per_image.csv"
    if csv_path.is_file():
        with open(csv_path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                per_image[str(row["image_id"])].append(float(row["dice"]))
    seed = cfg.get("SEED")
    return EvaluatedRun(report_path.parent, label, enhance, momentum, model_id,
                        None if seed is None else int(seed), rep.get("dataset", ""), metrics, ci,
                        {k: float(np.mean(v)) for k, v in per_image.items()})


def load_runs(paths: Sequence[str | os.PathLike], dataset: str | None = None) -> list[EvaluatedRun]:
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
        runs.extend(load_run(r) for r in reports)
    return runs


def _is_original(enhance: str) -> bool:
    return enhance.strip().lower() in ("original", "none", "")


def compare(runs: Sequence[EvaluatedRun], baseline: str | None = None, rank_by: str = "segm_AP",
            alpha: float = 0.05) -> dict:
    """The comparison table (one row per model, seeds grouped) with ranks and Holm-corrected tests."""
    if rank_by not in METRICS:
        raise FetalHeartError(f"--rank-by must be one of {', '.join(METRICS)}")
    groups: dict[tuple, list[EvaluatedRun]] = defaultdict(list)
    for r in runs:
        groups[(r.label, r.enhance, r.momentum, r.model_id)].append(r)
    rows = []
    for (label, enhance, momentum, model_id), rs in groups.items():
        row = {"model": label, "model_id": model_id, "enhance": enhance, "momentum": momentum,
               "n_seeds": len(rs), "runs": [str(r.path) for r in rs]}
        for m in METRICS:
            vals = np.array([r.metrics[m] for r in rs], dtype=float)
            row[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            row[f"{m}_seed_std"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else float("nan")
        with _quiet_nan():  # missing CIs (None in JSON) stay NaN
            for m in ("iou", "dice"):
                row[f"{m}_ci_low"] = float(np.nanmean([r.ci[m][0] for r in rs]))
                row[f"{m}_ci_high"] = float(np.nanmean([r.ci[m][1] for r in rs]))
            keys = set().union(*(r.per_image_dice for r in rs))
            per_image = {k: float(np.nanmean([r.per_image_dice.get(k, np.nan) for r in rs])) for k in keys}
        row["dice_image_std"] = float(np.std(list(per_image.values()), ddof=1)) if len(per_image) > 1 else float("nan")
        row["_per_image"] = per_image
        rows.append(row)

    for m in METRICS:  # rank 1 = best; NaN ranks last
        vals = np.array([-r[m] if np.isfinite(r[m]) else np.inf for r in rows])
        for rank, i in enumerate(np.argsort(vals, kind="stable")):
            rows[i][f"rank_{m}"] = rank + 1
    for r in rows:
        r["mean_rank"] = float(np.mean([r[f"rank_{m}"] for m in METRICS]))

    def find_baseline(row):
        if baseline:
            cands = [b for b in rows if baseline in (b["model"], str(b["model_id"]))]
            if not cands:
                raise FetalHeartError(f"baseline {baseline!r} matches no model (use a model name or study id)")
            return cands[0]
        cands = [b for b in rows if _is_original(b["enhance"]) and
                 (b["momentum"] == row["momentum"] or (math.isnan(b["momentum"]) and math.isnan(row["momentum"])))]
        return cands[0] if cands else None

    tests = []
    for r in rows:
        b = find_baseline(r)
        if b is None or b is r:
            r["baseline"] = None if b is None else "(baseline)"
            continue
        t = paired_wilcoxon(r["_per_image"], b["_per_image"])
        r["baseline"] = b["model"]
        r["test"] = t
        tests.append(r)
    for r, p in zip(tests, holm([r["test"]["p"] for r in tests]), strict=True):
        r["test"]["p_holm"] = p
        t = r["test"]
        r["verdict"] = ("n/a" if not np.isfinite(p) else "n.s." if p >= alpha else
                        "better" if t["median_diff"] > 0 or (t["median_diff"] == 0 and t["mean_diff"] > 0) else "worse")
    order = sorted(rows, key=lambda r: r[f"rank_{rank_by}"])
    best = order[0] if order else None
    for r in rows:
        r.pop("_per_image")
    return {"rows": order, "rank_by": rank_by, "alpha": alpha, "best": best["model"] if best else None,
            "n_comparisons": len(tests),
            "test": "two-sided Wilcoxon signed-rank on per-image mean Dice vs baseline, Holm-corrected"}


def _fmt(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"


def _pm(r, m):
    s = f"{_fmt(r[m])}"
    if r["n_seeds"] > 1:
        s += f" +/- {_fmt(r[f'{m}_seed_std'])} (seeds)"
    return s


def comparison_markdown(table: dict) -> str:
    rows = table["rows"]
    lines = ["# Model comparison", "",
             f"{len(rows)} models; ranked by {METRIC_LABELS[table['rank_by']]}; best: **{table['best']}**. "
             "All scores 0-1. IoU/Dice are macro means with the 95% bootstrap CI over images; "
             "'std img' = standard deviation over images of the per-image mean Dice; with several seeds, "
             "+/- is the standard deviation over seeds.", "",
             f"Paired test: {table['test']} ({table['n_comparisons']} comparisons, alpha {table['alpha']}).", "",
             "| rank | model | enhance | momentum | seeds | COCO segm AP | study mAP | IoU [95% CI] | "
             "Dice [95% CI] | std img | baseline | median dDice | n | p | p Holm | verdict |",
             "|" + "---|" * 16]
    rank_key = f"rank_{table['rank_by']}"
    for r in rows:
        t = r.get("test", {})
        lines.append(
            f"| {r[rank_key]} | {r['model']} | {r['enhance']} | {_fmt(r['momentum'], 2)} | "
            f"{r['n_seeds']} | {_pm(r, 'segm_AP')} | {_pm(r, 'study_mAP')} | {_pm(r, 'iou')} "
            f"[{_fmt(r['iou_ci_low'])}, {_fmt(r['iou_ci_high'])}] | {_pm(r, 'dice')} "
            f"[{_fmt(r['dice_ci_low'])}, {_fmt(r['dice_ci_high'])}] | {_fmt(r['dice_image_std'])} | "
            f"{r.get('baseline') or '-'} | {_fmt(t.get('median_diff'))} | {t.get('n', '')} | "
            f"{_fmt(t.get('p'), 4)} | {_fmt(t.get('p_holm'), 4)} | {r.get('verdict', '')} |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("model", "model_id", "enhance", "momentum", "n_seeds", "segm_AP", "segm_AP_seed_std", "study_mAP",
              "study_mAP_seed_std", "iou", "iou_seed_std", "iou_ci_low", "iou_ci_high", "dice", "dice_seed_std",
              "dice_ci_low", "dice_ci_high", "dice_image_std", "rank_segm_AP", "rank_study_mAP", "rank_iou",
              "rank_dice", "mean_rank", "baseline", "n_paired", "median_diff", "mean_diff", "p", "p_holm", "verdict")


def comparison_csv(table: dict) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in table["rows"]:
        t = r.get("test", {})
        row = {**r, "n_paired": t.get("n", ""), "median_diff": t.get("median_diff", ""),
               "mean_diff": t.get("mean_diff", ""), "p": t.get("p", ""), "p_holm": t.get("p_holm", "")}
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in CSV_FIELDS})
    return buf.getvalue()


def comparison_figure(table: dict, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Grouped bars per model (COCO AP, study mAP, IoU, Dice with CI whiskers), like the study's Fig. 6."""
    from fetalheart.evaluation.plots import _plt, _save

    plt = _plt()
    rows = sorted(table["rows"], key=lambda r: (r["model_id"] or 10**6, r["model"]))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows) * 2 + 2), 3.8))
    width = 0.2
    for k, m in enumerate(METRICS):
        vals = np.array([r[m] for r in rows], float)
        err = None
        if m in ("iou", "dice"):
            lo = np.array([r[f"{m}_ci_low"] for r in rows], float)
            hi = np.array([r[f"{m}_ci_high"] for r in rows], float)
            err = np.nan_to_num(np.vstack([vals - lo, hi - vals]).clip(0))
        ax.bar(x + (k - 1.5) * width, np.nan_to_num(vals), width, yerr=err, capsize=2, label=METRIC_LABELS[m])
    for i, r in enumerate(rows):
        if r.get("verdict") in ("better", "worse"):
            ax.text(i, 1.01, "*", ha="center", fontsize=12)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=45 if len(rows) > 6 else 0, ha="right"
                  if len(rows) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score (0-1)")
    ax.set_title("Models compared (* = Dice differs from baseline, Holm p < alpha)", fontsize=9)
    ax.legend(ncol=4, fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, overwrite)


def write_comparison(table: dict, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """comparison.{json,csv,md,png} in ``out_dir``."""
    from fetalheart.evaluation.evaluator import json_ready
    from fetalheart.utils.io import write_json_atomic, write_text_atomic

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
