"""Shared fixtures for the evaluation tests: a tiny registered dataset and a phantom model."""

from __future__ import annotations

import uuid
from pathlib import Path

from fetalheart.classes import CLASS_NAMES
from fetalheart.evaluation.evaluator import annotation_masks

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances


def rect_poly(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def make_dataset(root: Path, n_images: int = 4, size: int = 64, name: str | None = None) -> str:
    """Register ``n_images`` synthetic images with 2-3 rectangles each (classes 0, 2, 9); return the name."""
    name = name or f"fh_eval_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    dicts = []
    for i in range(n_images):
        img = np.full((size, size, 3), 20, np.uint8)
        anns = []
        boxes = [(0, (4, 4, 24, 24)), (2, (30, 8, 56, 30)), (9, (10 + i, 36, 40 + i, 58))]
        if i % 2 == 1:
            boxes = boxes[:2]
        for c, (x0, y0, x1, y1) in boxes:
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (200, 200, 200), -1)
            anns.append({"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": BoxMode.XYWH_ABS,
                         "category_id": c, "segmentation": [rect_poly(x0, y0, x1, y1)], "iscrowd": 0})
        path = root / f"img_{i:02d}.png"
        cv2.imwrite(str(path), img)
        dicts.append({"file_name": str(path), "image_id": i, "height": size, "width": size,
                      "annotations": anns})
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES), evaluator_type="coco")
    return name


def gt_instances(record: dict, drop_classes=(), shift: dict | None = None, extra_fp: bool = False) -> Instances:
    """Instances equal to the ground truth, optionally with classes dropped / masks shifted in x."""
    masks, classes = annotation_masks(record)
    keep = [k for k, c in enumerate(classes) if c not in drop_classes]
    masks, classes = masks[keep], classes[keep]
    for k, c in enumerate(classes):
        if shift and c in shift:
            masks[k] = np.roll(masks[k], shift[c], axis=1)
    scores = np.linspace(0.99, 0.9, len(classes)) if len(classes) else np.zeros(0)
    if extra_fp:
        fp = np.zeros((1, *masks.shape[1:]), bool)
        fp[0, 0:3, 0:3] = True
        masks, classes, scores = np.concatenate([masks, fp]), np.append(classes, 5), np.append(scores, 0.95)
    h, w = masks.shape[1:]
    inst = Instances((h, w))
    t = torch.from_numpy(masks)
    inst.pred_masks = t
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


class PhantomModel(torch.nn.Module):
    """Returns ground-truth-derived predictions: fast and exact, for evaluator tests."""

    def __init__(self, dataset_name: str, **perturb):
        super().__init__()
        self.gt = {d["image_id"]: d for d in DatasetCatalog.get(dataset_name)}
        self.perturb = perturb
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        return [{"instances": gt_instances(self.gt[x["image_id"]], **self.perturb)} for x in inputs]


def loader(dataset_name: str) -> list[list[dict]]:
    """A batch-1 'data loader' (a list works with inference_on_dataset)."""
    return [[{"image_id": d["image_id"], "file_name": d["file_name"], "height": d["height"],
              "width": d["width"]}] for d in DatasetCatalog.get(dataset_name)]
