"""``SegmentationMetricsEvaluator``: per-class IoU/Dice (semantic + instance) and the study's mAP.

A detectron2 ``DatasetEvaluator`` used beside ``COCOEvaluator``. ``process`` reduces each image to
a few small count arrays on run-length encodings (no masks are kept, except the RLE of predictions
for the best/worst overlays), so memory stays flat over large validation sets; ``evaluate``
aggregates them (``report.summarize_records``: cluster-bootstrap CIs over videos) and returns
detectron2-style flat floats under ``"fetalheart"``. The full report is kept in ``self.report``.

Ignore regions (``iscrowd: 1`` annotations, one per class for each LabelMe ``__ignore__`` shape) are
never ground truth: see ``image_record``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation import metrics as M
from fetalheart.evaluation.report import (  # noqa: F401  (re-exported: older imports read them here)
    EvalSettings,
    flat_results,
    json_ready,
    summarize_records,
)
from fetalheart.evaluation.study_map import (
    corrected_detections,
    float32_overlaps_from_iou,
    matterport_ap_range,
)

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)


def _segmentation_rle(seg, h: int, w: int) -> dict | None:
    if isinstance(seg, list):  # polygons
        seg = [p for p in seg if len(p) >= 6]
        return mask_util.merge(mask_util.frPyObjects(seg, h, w)) if seg else None
    if isinstance(seg.get("counts"), list):  # uncompressed RLE
        return mask_util.frPyObjects(seg, h, w)
    rle = dict(seg)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return rle


def annotation_rles(record: dict, crowd: bool = False) -> tuple[list[dict], np.ndarray]:
    """RLEs (pycocotools form) and contiguous class ids of one detectron2 dataset dict's annotations:
    the ground truth (``iscrowd`` 0) by default, the ignore regions (``iscrowd`` 1) with ``crowd=True``."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = [], []
    for ann in record.get("annotations", []):
        if bool(ann.get("iscrowd", 0)) != crowd or ann.get("segmentation") is None:
            continue
        rle = _segmentation_rle(ann["segmentation"], h, w)
        if rle is not None:
            rles.append(rle)
            classes.append(int(ann["category_id"]))
    return rles, np.asarray(classes, dtype=int)


def annotation_masks(record: dict, crowd: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N,H,W bool) and contiguous class ids of the ground truth (or, ``crowd=True``, ignore regions)."""
    h, w = int(record["height"]), int(record["width"])
    rles, classes = annotation_rles(record, crowd)
    return decode_masks(rles, h, w), classes


def encode_masks(masks: np.ndarray) -> list[dict]:
    """Compressed RLE (JSON-ready) of a stack of boolean masks."""
    out = []
    for m in masks:
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


def decode_masks(rles: Sequence[dict], h: int, w: int) -> np.ndarray:
    """Inverse of ``encode_masks``."""
    if not rles:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([mask_util.decode(_bytes_rle(r)).astype(bool) for r in rles])


def _rle_iou(a: list[dict], b: list[dict], crowd: bool = False) -> np.ndarray:
    """(len(a), len(b)) IoU; with ``crowd`` COCO's |a n b| / |a| (b are ignore regions)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_util.iou(a, b, [int(crowd)] * len(b)), dtype=np.float64).reshape(len(a), len(b))


@dataclass
class ImageData:
    """One image's ground truth, ignore regions and predictions, as RLEs (pycocotools form)."""

    image_id: int | str
    file_name: str
    height: int
    width: int
    gt_rles: list
    gt_classes: np.ndarray
    pred_rles: list
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    crowd_rles: list = field(default_factory=list)
    crowd_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    group: str = ""
    group_from: str = ""


def _area(*rles) -> int:
    """Area of the intersection of the given RLEs (0 when any is missing)."""
    if any(r is None for r in rles):
        return 0
    return int(mask_util.area(rles[0] if len(rles) == 1 else mask_util.merge(list(rles), intersect=True)))


def _union(rles: list, idx: np.ndarray) -> dict | None:
    return mask_util.merge([rles[i] for i in idx], intersect=False) if len(idx) else None


def _semantic(img: ImageData, seg: np.ndarray, num_classes: int) -> tuple[np.ndarray, dict]:
    """Per class (intersection, gt area, pred area) outside that class's ignore regions, and the unions."""
    gc, pc = np.asarray(img.gt_classes, dtype=int), np.asarray(img.pred_classes, dtype=int)[seg]
    kc = np.asarray(img.crowd_classes, dtype=int)
    pr = [img.pred_rles[i] for i in seg]
    counts = np.zeros((num_classes, 3), dtype=np.int64)
    unions = {}
    for c in set(gc.tolist()) | set(pc.tolist()):
        ug, up = _union(img.gt_rles, np.flatnonzero(gc == c)), _union(pr, np.flatnonzero(pc == c))
        uk = _union(img.crowd_rles, np.flatnonzero(kc == c))
        counts[c] = (_area(ug, up) - _area(ug, up, uk), _area(ug) - _area(ug, uk), _area(up) - _area(up, uk))
        unions[c] = (ug, up, uk)
    return counts, unions


def _boundary(unions: dict, num_classes: int, h: int, w: int) -> np.ndarray:
    b = np.full((num_classes, 2), np.nan)
    empty = np.zeros((h, w), bool)
    for c, (ug, up, uk) in unions.items():
        keep = ~mask_util.decode(uk).astype(bool) if uk is not None else ~empty
        g = mask_util.decode(ug).astype(bool) & keep if ug is not None else empty
        p = mask_util.decode(up).astype(bool) & keep if up is not None else empty
        b[c] = M.boundary_metrics(p, g)
    return b


def image_record(img: ImageData, num_classes: int, settings: EvalSettings | None = None,
                 keep_predictions: bool = True) -> dict:
    """Everything the report needs from one image, as small arrays.

    Works on run-length encodings (pycocotools): IoU, unions and areas on RLEs cost a fraction of
    the same operations on full-resolution masks, which keeps this evaluator's time small beside
    COCOEvaluator's. One (gt x pred) IoU matrix serves the instance matching, the confusion matrix
    and both mAPs. Predictions with score >= ``score_thresh`` count for IoU/Dice and instances,
    those with score >= ``study_map_min_score`` for the mAPs.
    """
    s = settings or EvalSettings()
    scores = np.asarray(img.pred_scores, dtype=np.float64)
    pc, gc = np.asarray(img.pred_classes, dtype=int), np.asarray(img.gt_classes, dtype=int)
    iou = _rle_iou(img.gt_rles, img.pred_rles)  # (gt, pred)
    crowd = M.crowd_ignorable(_rle_iou(img.pred_rles, img.crowd_rles, crowd=True), pc, img.crowd_classes)
    seg = np.flatnonzero(scores >= s.score_thresh)
    counts, unions = _semantic(img, seg, num_classes)
    ignore = crowd[seg] >= 0.5
    st = np.flatnonzero(scores >= s.study_map_min_score)
    area_p = np.asarray(mask_util.area([img.pred_rles[i] for i in st]) if len(st) else [], dtype=np.float64)
    area_g = np.asarray(mask_util.area(img.gt_rles) if img.gt_rles else [], dtype=np.float64)
    rec = {
        "image_id": img.image_id, "file_name": img.file_name, "group": img.group, "group_from": img.group_from,
        "height": int(img.height), "width": int(img.width), "n_crowd": len(img.crowd_rles),
        "counts": counts,
        "n_gt": np.bincount(gc, minlength=num_classes)[:num_classes],
        "n_pred": np.bincount(pc[seg], minlength=num_classes)[:num_classes],
        "inst": M.instance_stats_from_iou(iou[:, seg], gc, pc[seg], num_classes, 0.5, ignore),
        "confusion": M.confusion_from_iou(iou[:, seg], gc, pc[seg], num_classes, 0.5, ignore),
        "study_ap": matterport_ap_range(float32_overlaps_from_iou(iou[:, st].T, area_p, area_g), gc, pc[st],
                                        scores[st], crowd_overlap=crowd[st]),
        "dets": corrected_detections(iou[:, st].T, gc, pc[st], scores[st], crowd_overlap=crowd[st]),
    }
    if s.boundary_metrics:
        rec["boundary"] = _boundary(unions, num_classes, int(img.height), int(img.width))
    if keep_predictions:
        rec["pred"] = {"rles": [_json_rle(img.pred_rles[i]) for i in seg], "classes": pc[seg].tolist(),
                       "scores": scores[seg].tolist()}
    return rec


def _bytes_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _json_rle(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _default_group(name: str) -> str:
    from fetalheart.annotations.split import default_group  # lazily: it may move

    return default_group(name)


def dataset_groups(dataset_name: str) -> dict:
    """image id -> group (video/patient) from the dataset's COCO file: its ``group`` key, else the COCO
    ``file_name`` without the frame index. detectron2's ``load_coco_json`` drops unknown image keys,
    so the file is read here; {} when the dataset has no ``json_file``."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file", None)
    if not json_file or not Path(json_file).is_file():
        return {}
    with open(json_file, encoding="utf-8") as f:
        images = json.load(f).get("images", [])
    return {im["id"]: (str(im["group"]), "coco") if im.get("group") not in (None, "") else
            (_default_group(str(im.get("file_name", im["id"]))), "file name") for im in images}


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
            self._groups = dataset_groups(self.dataset_name)
        return self._gt

    def _group(self, record: dict) -> tuple[str, str]:
        if record.get("group") not in (None, ""):
            return str(record["group"]), "coco"
        return self._groups.get(record["image_id"]) or (_default_group(record.get("file_name", "")), "file name")

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
            rles = [_bytes_rle(coco[i]["segmentation"]) for i in keep]
        else:  # encode only what passes a threshold
            rles = list(mask_util.encode(np.asfortranarray(pm[keep].transpose(1, 2, 0).astype(np.uint8))))
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
            gt_rles, gt_classes = annotation_rles(record)
            crowd_rles, crowd_classes = annotation_rles(record, crowd=True)
            group, group_from = self._group(record)
            img = ImageData(inp["image_id"], record.get("file_name", inp.get("file_name", "")), h, w, gt_rles,
                            gt_classes, pred_rles, classes, scores, crowd_rles, crowd_classes, group, group_from)
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
