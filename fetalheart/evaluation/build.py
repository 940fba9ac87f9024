"""``build_evaluators``: COCOEvaluator (segm + bbox) beside SegmentationMetricsEvaluator.

The combined results stay detectron2-shaped, ``{"segm": {...}, "bbox": {...}, "fetalheart": {...}}``,
so EvalHook and BestCheckpointer read "segm/AP" or "fetalheart/dice_macro". When given an output
folder, the combined evaluator also writes report.json / per_class.csv / per_image.csv / report.md
there, so ``train_net.py --eval-only`` and ``tools/evaluate.py`` produce the same files.
"""

from __future__ import annotations

import logging

from fetalheart import _compat
from fetalheart.evaluation.evaluator import SegmentationMetricsEvaluator

from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm

logger = logging.getLogger(__name__)


class PerClassCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator that also reports per-class AP50 and AP75 (the report's per-class table), and
    per-class AP for a one-class label set (detectron2 derives per-class AP only for several classes).
    """

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        from fetalheart.evaluation.coco_ap import per_class_ap

        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if coco_eval is None or not class_names:
            return results
        results.update(per_class_ap(coco_eval, class_names))  # also AP-<name> for a one-class label set
        return results


class FetalHeartEvaluators(DatasetEvaluators):
    """DatasetEvaluators that merges COCO results into the segmentation report and writes it."""

    def __init__(self, evaluators, output_dir: str | None = None):
        super().__init__(evaluators)
        self.output_dir = output_dir
        self.report: dict | None = None

    def process(self, inputs, outputs):
        # Let the segmentation evaluator reuse the mask RLEs COCOEvaluator has just encoded.
        coco = next((e for e in self._evaluators if isinstance(e, COCOEvaluator)), None)
        before = len(getattr(coco, "_predictions", [])) if coco is not None else 0
        for ev in self._evaluators:
            if isinstance(ev, SegmentationMetricsEvaluator):
                ev.process(inputs, outputs, coco_predictions=self._coco_rles(coco, before, inputs))
            else:
                ev.process(inputs, outputs)

    @staticmethod
    def _coco_rles(coco, before: int, inputs) -> list | None:
        preds = getattr(coco, "_predictions", None)
        if not isinstance(preds, list) or len(preds) != before + len(inputs):
            return None
        new = preds[before:]
        if any(p.get("image_id") != i.get("image_id") or "instances" not in p for p, i in zip(new, inputs, strict=True)):
            return None
        return [p["instances"] for p in new]

    @property
    def segmentation(self) -> SegmentationMetricsEvaluator | None:
        return next((e for e in self._evaluators if isinstance(e, SegmentationMetricsEvaluator)), None)

    def evaluate(self):
        results = super().evaluate()
        seg = self.segmentation
        if comm.is_main_process() and seg is not None and seg.report is not None:
            seg.report["coco"] = {k: dict(v) for k, v in results.items() if k in ("segm", "bbox")}
            self.report = seg.report
            if self.output_dir:
                from fetalheart.evaluation.report import write_report

                write_report(self.report, self.output_dir, overwrite=True)
                logger.info("evaluation report written to %s", self.output_dir)
        return results


def build_evaluators(cfg, dataset_name: str, output_folder: str | None = None) -> FetalHeartEvaluators:
    """The evaluators for one dataset, configured from ``cfg.EVAL`` (see fetalheart.config)."""
    coco = PerClassCOCOEvaluator(dataset_name, tasks=("segm", "bbox"), output_dir=output_folder,
                                 **_compat.coco_evaluator_kwargs())
    seg = SegmentationMetricsEvaluator.from_config(cfg, dataset_name)
    return FetalHeartEvaluators([coco, seg], output_dir=output_folder)
