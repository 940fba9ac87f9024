"""Shared fixtures for the evaluation tests: tiny registered datasets, a phantom model, synthetic records."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from fetalheart.annotations.rle import encode_masks
from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation.aggregate import summarize_records
from fetalheart.evaluation.per_image import annotation_masks
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.utils.io import json_ready

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, BoxMode, Instances


def rect_poly(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def _boxes(i: int) -> list:
    boxes = [(0, (4, 4, 24, 24)), (2, (30, 8, 56, 30)), (9, (10 + i, 36, 40 + i, 58))]
    return boxes[:2] if i % 2 == 1 else boxes


def make_dataset(root: Path, n_images: int = 4, size: int = 64, name: str | None = None,
                 frames_per_video: int = 2) -> str:
    """Register ``n_images`` synthetic images with 2-3 rectangles each (classes 0, 2, 9); return the name.

    Files are ``vid<k>_<frame>.png`` with ``frames_per_video`` frames per video (the group)."""
    name = name or f"fh_eval_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    dicts = []
    for i in range(n_images):
        img = np.full((size, size, 3), 20, np.uint8)
        anns = []
        for c, (x0, y0, x1, y1) in _boxes(i):
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (200, 200, 200), -1)
            anns.append({"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": BoxMode.XYWH_ABS,
                         "category_id": c, "segmentation": [rect_poly(x0, y0, x1, y1)], "iscrowd": 0})
        path = root / f"vid{i // frames_per_video}_{i:06d}.png"
        cv2.imwrite(str(path), img)
        dicts.append({"file_name": str(path), "image_id": i, "height": size, "width": size,
                      "annotations": anns})
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES), evaluator_type="coco")
    return name


def make_coco_dataset(root: Path, ignore: dict[int, tuple] | None = None, empty: tuple = (), size: int = 64,
                      n_images: int = 4, groups: list[str] | None = None, first: int = 0) -> str:
    """A COCO file as labelme2coco writes it, registered with detectron2's own loader.

    ``ignore`` maps image index -> (x0, y0, x1, y1) of an ``__ignore__`` region: one ``iscrowd: 1``
    RLE annotation per category, as the converter writes it. Images in ``empty`` have no structure.
    Image entries carry a ``group`` key (``groups[i]``, default ``patient<i // 2>``). Images are numbered
    from ``first`` (id = index + 1), so subsets of one collection can be made as disjoint folds.
    """
    root.mkdir(parents=True, exist_ok=True)
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(CLASS_NAMES)]
    images, anns = [], []
    for i in range(first, first + n_images):
        fname = f"frame_{i:04d}.png"
        cv2.imwrite(str(root / fname), np.full((size, size, 3), 30, np.uint8))
        images.append({"id": i + 1, "file_name": fname, "height": size, "width": size,
                       "group": groups[i] if groups else f"patient{i // 2}"})
        for c, (x0, y0, x1, y1) in ([] if i in empty else _boxes(i)):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1, "iscrowd": 0,
                         "segmentation": [rect_poly(x0, y0, x1, y1)], "area": (x1 - x0) * (y1 - y0),
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})
        if ignore and i in ignore:
            x0, y0, x1, y1 = ignore[i]
            m = np.zeros((1, size, size), bool)
            m[0, y0:y1, x0:x1] = True
            (rle,) = encode_masks(m)
            for cat in cats:
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat["id"], "iscrowd": 1,
                             "segmentation": rle, "area": int(m.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0]})
    name = f"fh_coco_{uuid.uuid4().hex[:8]}"
    json_file = root / f"{name}.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    register_coco_instances(name, {}, str(json_file), str(root))
    return name


def gt_instances(record: dict, drop_classes=(), shift: dict | None = None, extra_fp: bool = False,
                 extra_masks: list | None = None) -> Instances:
    """Instances equal to the ground truth, optionally with classes dropped / masks shifted in x,
    a false-positive PV (class 5) in the corner, or ``extra_masks`` [(class, score, (x0, y0, x1, y1))]."""
    masks, classes = annotation_masks(record)
    h, w = int(record["height"]), int(record["width"])
    keep = [k for k, c in enumerate(classes) if c not in drop_classes]
    masks, classes = masks[keep].reshape(-1, h, w), classes[keep]
    for k, c in enumerate(classes):
        if shift and c in shift:
            masks[k] = np.roll(masks[k], shift[c], axis=1)
    scores = np.linspace(0.99, 0.9, len(classes)) if len(classes) else np.zeros(0)
    extras = list(extra_masks or []) + ([(5, 0.95, (0, 0, 3, 3))] if extra_fp else [])
    for c, s, (x0, y0, x1, y1) in extras:
        m = np.zeros((1, h, w), bool)
        m[0, y0:y1, x0:x1] = True
        masks, classes, scores = np.concatenate([masks, m]), np.append(classes, c), np.append(scores, s)
    inst = Instances((h, w))
    inst.pred_masks = torch.from_numpy(masks)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


class PhantomModel(torch.nn.Module):
    """Returns ground-truth-derived predictions: fast and exact, for evaluator tests.

    ``per_image`` maps an image id to extra ``gt_instances`` keywords for that image only."""

    def __init__(self, dataset_name: str, per_image: dict | None = None, **perturb):
        super().__init__()
        self.gt = {d["image_id"]: d for d in DatasetCatalog.get(dataset_name)}
        self.perturb, self.per_image = perturb, per_image or {}
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        return [{"instances": gt_instances(self.gt[x["image_id"]], **{**self.perturb,
                                                                        **self.per_image.get(x["image_id"], {})})}
                for x in inputs]


def loader(dataset_name: str) -> list[list[dict]]:
    """A batch-1 'data loader' (a list works with inference_on_dataset)."""
    return [[{"image_id": d["image_id"], "file_name": d["file_name"], "height": d["height"],
              "width": d["width"]}] for d in DatasetCatalog.get(dataset_name)]


# --- Synthetic per-frame records (no model, no masks) -----------------------------------------


def synthetic_record(image_id, group: str, classes: dict[int, tuple[int, int, int]], num_classes: int = 10,
                     study_ap: float | None = None) -> dict:
    """A record as ``image_record`` returns it, from (intersection, gt area, pred area) per class.

    One instance per present class; it is a true positive when its IoU >= 0.5."""
    counts = np.zeros((num_classes, 3), dtype=np.int64)
    for c, v in classes.items():
        counts[c] = v
    n_gt, n_pred = (counts[:, 1] > 0).astype(np.int64), (counts[:, 2] > 0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(n_gt & n_pred, counts[:, 0] / (counts[:, 1] + counts[:, 2] - counts[:, 0]), 0.0)
    tp = (iou >= 0.5).astype(float)
    cm = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    cm[np.arange(num_classes), np.arange(num_classes)] = tp.astype(int)
    ap = np.full(10, np.nan) if not n_gt.any() else np.full(10, study_ap if study_ap is not None else tp.mean())
    gt = hashlib.sha256(counts[:, 1].tobytes()).hexdigest()[:32]  # stands in for the masks' hash
    return {"image_id": image_id, "file_name": f"/data/{group}_{image_id}.png", "name": f"{group}_{image_id}.png",
            "gt": gt, "group": group, "group_from": "coco", "height": 64, "width": 64, "n_crowd": 0, "counts": counts, "n_gt": n_gt, "n_pred": n_pred,
            "inst": {"tp": tp, "fp": n_pred - tp, "fn": n_gt - tp, "iou_sum": iou * tp,
                     "dice_sum": 2 * iou / (1 + iou) * tp, "ignored": np.zeros(num_classes)},
            "confusion": cm, "study_ap": ap, "dets": np.zeros((0, 12))}


def write_eval(folder: Path, records: list[dict], run: dict, segm_ap: float = 0.3, settings=None) -> Path:
    """An evaluation folder as tools/evaluate.py leaves it (report.json only), from synthetic records."""
    report = summarize_records(records, CLASS_NAMES, settings or EvalSettings(bootstrap_samples=200))
    report.update(dataset="val", run=run, coco={"segm": {"AP": segm_ap * 100}, "bbox": {"AP": 0.0}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(json_ready(report)))
    return folder
