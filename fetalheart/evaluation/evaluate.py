"""One call from a trained model to a complete evaluation folder (what ``tools/evaluate.py`` runs).

model + dataset -> inference with the model's own enhancement (the lead's test mapper) ->
COCOEvaluator + SegmentationMetricsEvaluator -> report.{json,md}, per_class.csv, per_image.csv,
plots/*.png, env.json + config.yaml.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.evaluation.report import REPORT_FILES, write_report
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np

logger = logging.getLogger(__name__)


class _ProgressLoader:
    """A data loader wrapper that shows a tqdm bar (inference_on_dataset only logs every 5 s)."""

    def __init__(self, loader, quiet: bool, desc: str):
        self.loader, self.quiet, self.desc = loader, quiet, desc

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        from tqdm import tqdm

        yield from tqdm(self.loader, total=len(self.loader), desc=self.desc, disable=self.quiet, unit="img")


def run_summary(cfg) -> dict:
    """What identifies the model in reports and in compare_runs (which groups runs by model and pairs
    fold runs by ``fold``; -1 = not a fold run)."""
    return {
        "weights": cfg.MODEL.WEIGHTS,
        "enhance": cfg.INPUT.ENHANCE,
        "momentum": float(cfg.SOLVER.MOMENTUM),
        "study_model_id": int(cfg.STUDY.MODEL_ID),
        "study_name": cfg.STUDY.NAME,
        "fold": int(cfg.DATASETS.get("FOLD", -1)),
        "seed": int(cfg.SEED),
    }


def write_plots(report: dict, out_dir: str | os.PathLike, metrics_json: str | os.PathLike | None = None,
                n_overlays: int = 3) -> list[str]:
    """All report figures into ``out_dir/plots``; returns paths relative to ``out_dir``."""
    from fetalheart.annotations.rle import decode_masks
    from fetalheart.evaluation import plots
    from fetalheart.evaluation.per_image import annotation_masks

    out = Path(out_dir)
    made = [plots.per_class_bars(report, out / "plots" / "per_class.png"),
            plots.confusion_matrix_plot(report, out / "plots" / "confusion_matrix.png")]
    if metrics_json and Path(metrics_json).is_file():
        p = plots.loss_curves(metrics_json, out / "plots" / "loss_curves.png")
        if p:
            made.append(p)
    gt = report.get("_gt_records") or {}
    preds = report.get("predictions") or {}
    for kind in ("best", "worst"):
        for rank, image_id in enumerate(report.get("ranking", {}).get(kind, [])[:n_overlays]):
            rec = gt.get(image_id)
            if rec is None or str(image_id) not in preds:
                continue
            image = cv2.imread(rec["file_name"], cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("cannot read %s for the overlay", rec["file_name"])
                continue
            gm, gc = annotation_masks(rec)
            p = preds[str(image_id)]
            pm = decode_masks(p["rles"], *gm.shape[1:])
            dice = report["ranking"]["image_mean_dice"].get(str(image_id), np.nan)
            img = plots.side_by_side(image, (gm, gc), (pm, p["classes"], p["scores"]),
                                     f"{Path(rec['file_name']).name}  mean Dice {dice:.3f}")
            made.append(plots.write_image(out / "plots" / f"{kind}_{rank + 1}.png", img, max_side=900))
    return [str(Path(p).relative_to(out)) for p in made]


def evaluate_model(cfg, dataset_name: str, output_dir: str | os.PathLike, overwrite: bool = False,
                   quiet: bool = False) -> dict:
    """Evaluate ``cfg.MODEL.WEIGHTS`` on a registered dataset; write the full report folder."""
    from fetalheart.collect_env import write_run_info
    from fetalheart.data.loaders import build_test_loader
    from fetalheart.evaluation.build import build_evaluators
    from fetalheart.modeling.load import load_model_for_inference

    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import inference_on_dataset

    out = Path(output_dir)
    existing = [f for f in REPORT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise FetalHeartError(f"{out / existing[0]} exists; pass --overwrite to replace it")
    if dataset_name not in DatasetCatalog.list():
        raise FetalHeartError(f"dataset {dataset_name!r} is not registered; set DATASETS.ROOT or --dataset")
    model = load_model_for_inference(cfg)
    loader = _ProgressLoader(build_test_loader(cfg, dataset_name), quiet, f"evaluate {dataset_name}")
    evaluators = build_evaluators(cfg, dataset_name, str(out))
    results = inference_on_dataset(model, loader, evaluators)
    report = evaluators.report
    if report is None:
        raise FetalHeartError("evaluation produced no report (no images?)")
    report["run"] = run_summary(cfg)
    from fetalheart.data.enhancement_changes import enhancement_changes

    report["enhancement_changes"] = enhancement_changes(cfg, [dataset_name], quiet=quiet)
    report["_gt_records"] = {d["image_id"]: d for d in DatasetCatalog.get(dataset_name)}
    weights_dir = Path(cfg.MODEL.WEIGHTS).parent
    plots = write_plots(report, out, weights_dir / "metrics.json")
    del report["_gt_records"]
    write_report(report, out, overwrite=True, plots=plots)
    write_run_info(out, cfg, extra={"dataset": dataset_name, "run": report["run"]})
    return {"results": results, "report": report, "plots": plots}


def default_output_dir(weights: str, dataset_name: str) -> Path:
    """``<dir of weights>/eval/<dataset>``, the layout compare_runs looks for."""
    return Path(weights).resolve().parent / "eval" / dataset_name
