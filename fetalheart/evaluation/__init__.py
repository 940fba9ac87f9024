"""Evaluation: per-class IoU/Dice with CIs, the study's mAP, reports, plots and run comparison.

``build_evaluators(cfg, dataset_name, output_folder)`` is what ``Trainer.build_evaluator`` returns.
"""

from fetalheart.evaluation.build import FetalHeartEvaluators, PerClassCOCOEvaluator, build_evaluators
from fetalheart.evaluation.evaluator import SegmentationMetricsEvaluator
from fetalheart.evaluation.metrics import DEFINITIONS

__all__ = [
    "DEFINITIONS",
    "FetalHeartEvaluators",
    "PerClassCOCOEvaluator",
    "SegmentationMetricsEvaluator",
    "build_evaluators",
]
