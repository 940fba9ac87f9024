"""Evaluation: per-class IoU/Dice with CIs, the study's mAP, reports, plots and run comparison.

Modules, by job: ``metrics`` (definitions, pure numpy), ``study_map`` (the study's Matterport mAP and a
corrected one), ``settings`` (``EVAL.*``), ``per_image`` (one image -> count arrays), ``aggregate``
(records -> report dict, cluster-bootstrap CIs), ``report`` (report files), ``plots``, ``evaluator``
(detectron2 ``DatasetEvaluator``), ``build`` (COCOEvaluator beside it), ``evaluate`` (a trained model ->
an evaluation folder), ``pooling`` (K folds -> one report) and ``compare`` (runs -> table and paired tests).

``build_evaluators(cfg, dataset_name, output_folder)`` is what ``Trainer.build_evaluator`` returns.
The detectron2-facing names load lazily, so the pure statistics modules (``metrics``, ``compare``)
import without torch or detectron2.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FetalHeartEvaluators": "fetalheart.evaluation.build",
    "PerClassCOCOEvaluator": "fetalheart.evaluation.build",
    "build_evaluators": "fetalheart.evaluation.build",
    "SegmentationMetricsEvaluator": "fetalheart.evaluation.evaluator",
    "DEFINITIONS": "fetalheart.evaluation.metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fetalheart.evaluation' has no attribute {name!r}")
