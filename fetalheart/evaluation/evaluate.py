"""One call from a trained model to a complete evaluation folder (what ``tools/evaluate.py`` runs).

Predict, then evaluate from files: the model (either family) runs over the dataset with its own
enhancement (the test loader), its detections become COCO results (``predict_dataset``, detectron2's
``instances_to_coco_json``), and ``from_files.evaluate_predictions`` evaluates those results exactly as
it evaluates any tool's: report.{json,md}, per_class.csv, per_image.csv, plots/*.png, the results
file and env.json + config.yaml. ``tools/evaluate.py --predictions <that results file>`` therefore
reproduces a model's report number for number.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.evaluation.plots import write_plots
from fetalheart.utils.errors import FetalHeartError

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

logger = logging.getLogger(__name__)

__all__ = ["CocoResults", "default_output_dir", "evaluate_model", "predict_dataset", "run_summary", "write_plots"]


class _ProgressLoader:
    """A data loader wrapper that shows a tqdm bar (inference_on_dataset only logs every 5 s)."""

    def __init__(self, loader, quiet: bool, desc: str):
        self.loader, self.quiet, self.desc = loader, quiet, desc

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        from tqdm import tqdm

        yield from tqdm(self.loader, total=len(self.loader), desc=self.desc, disable=self.quiet, unit="img")


class CocoResults(DatasetEvaluator):
    """Collects a model's detections as COCO results with the dataset's category ids (what COCOEvaluator
    keeps and writes as coco_instances_results.json), in loader order."""

    def __init__(self, dataset_name: str):
        meta = MetadataCatalog.get(dataset_name)
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        self._to_dataset_id = {v: k for k, v in id_map.items()} if id_map else None
        self.results: list[dict] = []

    def reset(self):
        self.results = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs, strict=True):
            if "instances" in out:
                self.results.extend(instances_to_coco_json(out["instances"].to("cpu"), inp["image_id"]))

    def evaluate(self):
        results = self.results
        if comm.get_world_size() > 1:
            comm.synchronize()
            results = list(itertools.chain(*comm.gather(results, dst=0)))
        if self._to_dataset_id:
            for r in results:
                r["category_id"] = self._to_dataset_id[r["category_id"]]
        self.results = results
        return {}


def run_summary(cfg) -> dict:
    """What identifies the model in reports and in compare_runs (which groups runs by model and pairs
    fold runs by ``fold``; -1 = not a fold run). Adam (the U-Net recipe) has no momentum: NaN."""
    from fetalheart.config import model_label, small_structures_label

    momentum = float(cfg.SOLVER.MOMENTUM) if cfg.SOLVER.get("OPTIMIZER", "SGD") == "SGD" else math.nan
    return {
        "weights": cfg.MODEL.WEIGHTS,
        "family": model_label(cfg),
        "enhance": cfg.INPUT.ENHANCE,
        "momentum": momentum,
        "study_model_id": int(cfg.STUDY.MODEL_ID),
        "study_name": cfg.STUDY.NAME + small_structures_label(cfg) if cfg.STUDY.NAME else "",
        "fold": int(cfg.DATASETS.get("FOLD", -1)),
        "seed": int(cfg.SEED),
    }


def predict_dataset(cfg, dataset_name: str, quiet: bool = False) -> list[dict]:
    """``cfg.MODEL.WEIGHTS`` over a registered dataset (test-time preprocessing) -> COCO results."""
    from fetalheart.data.loaders import build_test_loader
    from fetalheart.modeling.load import load_model_for_inference

    from detectron2.evaluation import inference_on_dataset

    model = load_model_for_inference(cfg)
    loader = _ProgressLoader(build_test_loader(cfg, dataset_name), quiet, f"predict {dataset_name}")
    collector = CocoResults(dataset_name)
    inference_on_dataset(model, loader, collector)
    return collector.results


def evaluate_model(cfg, dataset_name: str, output_dir: str | os.PathLike, overwrite: bool = False,
                   quiet: bool = False) -> dict:
    """Evaluate ``cfg.MODEL.WEIGHTS`` on a registered dataset: predict, then evaluate the results file."""
    from fetalheart.data.enhancement_changes import enhancement_changes
    from fetalheart.evaluation.from_files import (
        GroundTruth,
        ReportContext,
        check_output,
        evaluate_predictions,
        normalize_results,
    )
    from fetalheart.evaluation.settings import EvalSettings

    out = Path(output_dir)
    check_output(out, overwrite)
    gt = GroundTruth.of(dataset_name)
    if not gt.records:
        raise FetalHeartError(f"dataset {dataset_name!r} has no images to evaluate")
    results, _ = normalize_results(predict_dataset(cfg, dataset_name, quiet), gt)
    context = ReportContext(run=run_summary(cfg), metrics_json=Path(cfg.MODEL.WEIGHTS).parent / "metrics.json",
                            enhancement_changes=enhancement_changes(cfg, [dataset_name], quiet=quiet), cfg=cfg,
                            overwrite=True)
    report = evaluate_predictions(gt, results, out, EvalSettings.from_cfg(cfg), context)
    return {"results": {"segm": report["coco"]["segm"], "bbox": report["coco"]["bbox"], "fetalheart": report["summary"]},
            "report": report}


def default_output_dir(weights: str, dataset_name: str) -> Path:
    """``<dir of weights>/eval/<dataset>``, the layout compare_runs looks for."""
    return Path(weights).resolve().parent / "eval" / dataset_name
