"""``SegmentationMetricsEvaluator``: per-class IoU/Dice (semantic + instance) and the study's mAP.

A detectron2 ``DatasetEvaluator`` used beside ``COCOEvaluator``. ``process`` reduces each image to
a few small count arrays (``per_image.image_record``: no masks are kept, except the RLE of
predictions for the best/worst overlays), so memory stays flat over large validation sets;
``evaluate`` aggregates them (``aggregate.summarize_records``: cluster-bootstrap CIs over videos) and
returns detectron2-style flat floats under ``"fetalheart"``. The full report is kept in ``self.report``.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.annotations import rle
from fetalheart.annotations.split import default_group
from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation.aggregate import flat_results, summarize_records
from fetalheart.evaluation.per_image import image_data, image_record
from fetalheart.evaluation.settings import EvalSettings

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def _coco_images(dataset_name: str) -> list[dict]:
    """The ``images`` of the dataset's COCO file ([] when it has no ``json_file``): detectron2's
    ``load_coco_json`` drops unknown image keys and makes ``file_name`` absolute, so the file is read here."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file", None)
    if not json_file or not Path(json_file).is_file():
        return []
    with open(json_file, encoding="utf-8") as f:
        return json.load(f).get("images", [])


def dataset_index(dataset_name: str) -> tuple[dict, dict]:
    """(image id -> (group, where it came from), image id -> name) from the dataset's COCO file, read once.

    The group (video/patient) is the image's ``group`` key, else its ``file_name`` without the frame
    index; the name is ``file_name`` as the COCO file writes it (relative to the image folder), which
    compare_runs pairs frames by, the same wherever the dataset lies. Both {} without a ``json_file``
    (``image_data`` then falls back to the base name)."""
    groups, names = {}, {}
    for im in _coco_images(dataset_name):
        groups[im["id"]] = ((str(im["group"]), "coco") if im.get("group") not in (None, "") else
                            (default_group(str(im.get("file_name", im["id"]))), "file name"))
        if im.get("file_name"):
            names[im["id"]] = str(im["file_name"])
    return groups, names


def record_group(record: dict, groups: dict) -> tuple[str, str]:
    """(group, where it came from) of a dataset dict: its own ``group`` key, the COCO file's (``groups``,
    from ``dataset_index``), else its file name without the frame index."""
    if record.get("group") not in (None, ""):
        return str(record["group"]), "coco"
    return groups.get(record["image_id"]) or (default_group(record.get("file_name", "")), "file name")


class SegmentationMetricsEvaluator(DatasetEvaluator):
    """Per-class semantic and instance IoU/Dice with cluster-bootstrap CIs, plus the study's mAPs.

    Ground truth comes from the registered dataset's dicts (``DatasetCatalog.get``), so it is the
    annotation itself, not a resized copy. Predictions must be at the original resolution, which
    detectron2's meta-architectures return when inputs carry ``height`` / ``width``. Settings: an
    ``EvalSettings`` or its fields as keywords (``score_thresh=0.5, study_map_mode="matterport",
    study_map_min_score=0.7, bootstrap_samples=1000, seed=0, boundary_metrics=False``).
    """

    def __init__(self, dataset_name: str, settings: EvalSettings | None = None, distributed: bool = True,
                 keep_predictions: bool = True, **setting_overrides):
        self.dataset_name = dataset_name
        self.settings = settings or EvalSettings(**setting_overrides)
        self.distributed = distributed
        self.keep_predictions = keep_predictions
        meta = MetadataCatalog.get(dataset_name)
        self.class_names = list(getattr(meta, "thing_classes", CLASS_NAMES))
        self._gt: dict | None = None
        self._groups: dict | None = None
        self._names: dict = {}
        self.report: dict | None = None
        self._records: list[dict] = []

    @classmethod
    def from_config(cls, cfg, dataset_name: str, **kwargs) -> SegmentationMetricsEvaluator:
        """Settings from ``cfg.EVAL`` (SCORE_THRESH, STUDY_MAP_MODE, STUDY_MAP_MIN_SCORE, ...)."""
        return cls(dataset_name, EvalSettings.from_cfg(cfg), **kwargs)

    @property
    def score_thresh(self) -> float:
        return self.settings.score_thresh

    def _ground_truth(self) -> dict:
        if self._gt is None:
            self._gt = {d["image_id"]: d for d in DatasetCatalog.get(self.dataset_name)}
            self._groups, self._names = dataset_index(self.dataset_name)
        return self._gt

    def reset(self) -> None:
        self._records = []
        self.report = None

    def _predictions(self, out: dict, coco: list | None, h: int, w: int, image_id) -> tuple[list, np.ndarray, np.ndarray]:
        inst = out["instances"].to("cpu")
        if not (len(inst) and inst.has("pred_masks")):
            return [], np.zeros(0, int), np.zeros(0)
        pm = inst.pred_masks.numpy()
        if pm.shape[1:] != (h, w):
            raise ValueError(f"prediction size {pm.shape[1:]} != annotation size {(h, w)} for image "
                             f"{image_id}: pass height/width in the inputs")
        s = self.settings
        keep = np.flatnonzero(inst.scores.numpy() >= min(s.score_thresh, s.study_map_min_score))
        if coco is not None and len(coco) == len(inst):
            rles = [rle.to_bytes(coco[i]["segmentation"]) for i in keep]
        else:  # encode only what passes a threshold
            rles = rle.encode(pm[keep])
        return rles, inst.pred_classes.numpy()[keep], inst.scores.numpy()[keep]

    def process(self, inputs, outputs, coco_predictions: list[list[dict]] | None = None) -> None:
        """Reduce each image to count arrays. ``coco_predictions`` (per input, COCOEvaluator's
        instances_to_coco_json output in instance order) lets us reuse its mask RLEs instead of
        encoding every mask a second time."""
        gt_by_id = self._ground_truth()
        for k, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
            record = gt_by_id.get(inp["image_id"])
            if record is None:
                raise KeyError(f"image_id {inp['image_id']!r} not in dataset {self.dataset_name!r}")
            h, w = int(record["height"]), int(record["width"])
            coco = coco_predictions[k] if coco_predictions is not None else None
            pred_rles, classes, scores = self._predictions(out, coco, h, w, inp["image_id"])
            img = image_data(record, pred_rles, classes, scores, record_group(record, self._groups),
                             self._names.get(record["image_id"], ""))
            self._records.append(image_record(img, len(self.class_names), self.settings, self.keep_predictions))

    def evaluate(self):
        records = self._records
        if self.distributed and comm.get_world_size() > 1:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(records, dst=0)))
            if not comm.is_main_process():
                return {}
        if not records:
            logger.warning("SegmentationMetricsEvaluator received no images")
        self.report = summarize_records(records, self.class_names, self.settings)
        self.report["dataset"] = self.dataset_name
        json_file = MetadataCatalog.get(self.dataset_name).get("json_file", None)
        if json_file:
            self.report["ground_truth_json"] = str(Path(json_file).resolve())
        self.report["predictions"] = {str(r["image_id"]): r["pred"] for r in records if "pred" in r}
        flat = flat_results(self.report)
        self.report["summary"] = flat
        return {"fetalheart": flat}
