"""Prediction on new images or videos, with the model's own enhancement, for review and relabelling.

Outputs: overlay images (or an overlay video), COCO results JSON, and LabelMe JSON per image with
the predicted polygons, so a user can open them in labelme, correct them and convert them again
with labelme2coco (model-assisted labelling of new frames).

Preprocessing is exactly the evaluation mapper's (``build_test_mapper``): the same augmentation
list (enhancement ``cfg.INPUT.ENHANCE`` on the full-resolution frame, then the test resize),
applied to in-memory frames so videos need no temporary files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import CLASS_NAMES, coco_categories, normalize_label
from fetalheart.utils.errors import FetalHeartError
from fetalheart.video.io import VIDEO_SUFFIXES, read_frames, video_info

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LABELME_VERSION = "5.4.1"  # the LabelMe JSON format version written (read by labelme 5.x and 6.x)


@dataclass
class Prediction:
    """Predictions for one frame at its original resolution (score and class filters applied)."""

    masks: np.ndarray  # (N, H, W) bool
    classes: np.ndarray  # (N,) contiguous ids 0..C-1 of the model's class list
    scores: np.ndarray  # (N,)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # XYXY


def parse_classes(text: str | None, class_names: Sequence[str] = CLASS_NAMES) -> list[int] | None:
    """``"LA,RV,aorta"`` -> contiguous ids in the model's ``class_names``; None keeps all classes."""
    if not text:
        return None
    by_key = {n.lower(): i for i, n in enumerate(class_names)}
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        i = by_key.get(part.lower(), by_key.get((normalize_label(part) or "").lower()))
        if i is None:
            raise FetalHeartError(f"--classes: unknown class {part!r}; the model's classes: {', '.join(class_names)}")
        ids.append(i)
    return ids


class Predictor:
    """Model + the test-time preprocessing of its config; call with a list of BGR uint8 frames."""

    def __init__(self, cfg, score_thresh: float = 0.5, classes: Sequence[int] | None = None):
        from fetalheart.config import class_names
        from fetalheart.data.mapper import test_augmentations
        from fetalheart.engine.trainer import load_model_for_inference

        import torch
        from detectron2.data import transforms as T

        self.torch = torch
        cfg = cfg.clone()
        cfg.defrost()
        # The model drops low scores before its mask head and before pasting masks at full
        # resolution: nothing is computed for a detection that would be thrown away here.
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = max(float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST), float(score_thresh))
        cfg.freeze()
        self.class_names = class_names(cfg)
        self.model = load_model_for_inference(cfg)
        self.augs = T.AugmentationList(test_augmentations(cfg))
        self.AugInput = T.AugInput
        self.input_format = cfg.INPUT.FORMAT
        self.score_thresh = float(score_thresh)
        self.classes = None if classes is None else set(int(c) for c in classes)

    def _input(self, bgr: np.ndarray) -> dict:
        img = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        aug = self.AugInput(np.ascontiguousarray(img))
        self.augs(aug)
        tensor = self.torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": bgr.shape[0], "width": bgr.shape[1]}

    def __call__(self, frames: Sequence[np.ndarray]) -> list[Prediction]:
        with self.torch.inference_mode():
            outputs = self.model([self._input(f) for f in frames])
        preds = []
        for f, out in zip(frames, outputs, strict=True):
            inst = out["instances"].to("cpu")
            scores = inst.scores.numpy() if len(inst) else np.zeros(0)
            classes = inst.pred_classes.numpy() if len(inst) else np.zeros(0, int)
            keep = scores >= self.score_thresh
            if self.classes is not None:
                keep &= np.isin(classes, list(self.classes))
            if len(inst) and inst.has("pred_masks"):
                masks = inst.pred_masks.numpy().astype(bool)[keep]
            else:
                masks = np.zeros((0, *f.shape[:2]), bool)
            boxes = inst.pred_boxes.tensor.numpy()[keep] if len(inst) else np.zeros((0, 4))
            preds.append(Prediction(masks, classes[keep], scores[keep], boxes))
        return preds


def mask_polygons(mask: np.ndarray, epsilon: float = 0.5, min_area: float = 4.0, upsample: int = 4) -> list[np.ndarray]:
    """Outer contours of a mask as (K,2) float polygons in COCO pixel coordinates (pixel i spans [i, i+1]).

    OpenCV traces the centres of the boundary pixels, which re-rasterise half a pixel too small
    all round (IoU ~0.87 for a 20-pixel-wide structure). Tracing a 4x nearest-upsampled crop
    puts the vertices within 1/8 pixel of the true edges. ``epsilon`` (pixels) is the
    Douglas-Peucker tolerance: few vertices to correct by hand in labelme, same mask back.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return []
    y0, x0 = ys.min(), xs.min()
    crop = mask[y0:ys.max() + 1, x0:xs.max() + 1].astype(np.uint8)
    big = np.pad(np.kron(crop, np.ones((upsample, upsample), np.uint8)), 1)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polys = []
    for c in contours:
        if cv2.contourArea(c) < min_area * upsample * upsample:
            continue
        c = cv2.approxPolyDP(c, epsilon * upsample, True).reshape(-1, 2).astype(np.float64)
        if len(c) >= 3:
            polys.append((c - 1 + 0.5) / upsample + (x0, y0))  # undo the pad, pixel centre, scale back
    return polys


def labelme_document(pred: Prediction, image_path: str, height: int, width: int,
                     class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """A LabelMe JSON dict with one polygon shape per predicted instance part.

    An instance whose mask has several parts gets one shape per part sharing a ``group_id``
    (LabelMe's way to join shapes into one instance). The score is kept in ``description``.
    """
    shapes = []
    group = 0
    for m, c, s in zip(pred.masks, pred.classes, pred.scores, strict=True):
        polys = mask_polygons(m)
        gid = None
        if len(polys) > 1:
            group += 1
            gid = group
        for p in polys:
            shapes.append({"label": class_names[int(c)], "points": np.round(p, 2).tolist(), "group_id": gid,
                           "description": f"predicted, score {float(s):.3f}", "shape_type": "polygon",
                           "flags": {}, "mask": None})
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def coco_annotations(pred: Prediction, image_id: int, start_id: int) -> list[dict]:
    """COCO annotations (RLE masks, XYWH boxes, score) of one frame's predictions (category id = class + 1)."""
    import pycocotools.mask as mask_util

    anns = []
    for k, (m, c, s) in enumerate(zip(pred.masks, pred.classes, pred.scores, strict=True)):
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": start_id + k, "image_id": image_id, "category_id": int(c) + 1,
                     "segmentation": rle, "bbox": [x, y, w, h], "area": float(mask_util.area(rle)),
                     "score": float(s), "iscrowd": 0})
    return anns


@dataclass
class Source:
    """One input: an image file or a video file."""

    path: Path
    kind: str  # "image" | "video"


def collect_sources(inputs: Iterable[str | os.PathLike]) -> list[Source]:
    """Expand files and folders (sorted, non-recursive) into image and video sources."""
    out = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FetalHeartError(f"input not found: {p}")
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
        found = 0
        for q in files:
            ext = q.suffix.lower()
            if ext in IMAGE_EXTS:
                out.append(Source(q, "image"))
                found += 1
            elif ext in VIDEO_SUFFIXES:
                out.append(Source(q, "video"))
                found += 1
            elif not p.is_dir():
                raise FetalHeartError(f"{q}: not an image ({', '.join(sorted(IMAGE_EXTS))}) or video file")
        if p.is_dir() and not found:
            raise FetalHeartError(f"{p}: no images or videos in this folder")
    if not out:
        raise FetalHeartError("no inputs")
    return out


def _batched(it: Iterable, n: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _unique_stem(stem: str, used: set[str]) -> str:
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


def run_prediction(
    predictor,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch: int = 1,
    overwrite: bool = False,
    quiet: bool = False,
    every: int = 1,
    video_labelme: bool = False,
    overlays: bool = True,
) -> dict:
    """Predict on every input and write overlays, COCO JSON and LabelMe JSON under ``output_dir``.

    ``predictor`` is a ``Predictor`` (or any callable list[BGR] -> list[Prediction]). Returns a
    summary dict (counts, frames per second of the model calls and of the whole loop).
    """
    from fetalheart.evaluation.plots import draw_instances, write_image
    from fetalheart.utils.io import atomic_path, ensure_writable_dir, write_json_atomic

    from tqdm import tqdm

    if batch < 1 or every < 1:
        raise FetalHeartError("--batch and --every must be >= 1")
    sources = collect_sources(inputs)
    names = tuple(getattr(predictor, "class_names", CLASS_NAMES))
    out = ensure_writable_dir(output_dir)
    if not overwrite:
        for name in ("predictions_coco.json", "coco_results.json", "labelme", "overlays"):
            if (out / name).exists():
                raise FetalHeartError(f"{out / name} exists; pass --overwrite to replace it")
    images, annotations, results = [], [], []
    used: set[str] = set()
    model_s, n_frames, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(total=None, desc="predict", unit="frame", disable=quiet)

    def handle(items, preds):
        # items: (image_id, stem, frame_bgr, image entry, labelme path or None, image path for labelme)
        for (image_id, _stem, frame, entry, lm_path, lm_image), pred in zip(items, preds, strict=True):
            images.append(entry)
            anns = coco_annotations(pred, image_id, len(annotations) + 1)
            annotations.extend(anns)
            results.extend({k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score")}
                           for a in anns)
            if lm_path is not None:
                doc = labelme_document(pred, os.path.relpath(lm_image, lm_path.parent), *frame.shape[:2], names)
                write_json_atomic(lm_path, doc, overwrite=True)

    def predict(frames):
        nonlocal model_s, n_frames
        t = time.perf_counter()
        preds = predictor(frames)
        model_s += time.perf_counter() - t
        n_frames += len(frames)
        bar.update(len(frames))
        return preds

    image_sources = [s for s in sources if s.kind == "image"]
    for group in _batched(image_sources, batch):
        frames, items = [], []
        for src in group:
            frame = cv2.imread(str(src.path), cv2.IMREAD_COLOR)
            if frame is None:
                raise FetalHeartError(f"cannot read image {src.path}")
            stem = _unique_stem(src.path.stem, used)
            image_id = len(images) + len(items) + 1
            entry = {"id": image_id, "file_name": str(src.path), "height": frame.shape[0], "width": frame.shape[1]}
            items.append((image_id, stem, frame, entry, out / "labelme" / f"{stem}.json", src.path.resolve()))
            frames.append(frame)
        preds = predict(frames)
        handle(items, preds)
        if overlays:
            for (_, stem, frame, *_), pred in zip(items, preds, strict=True):
                write_image(out / "overlays" / f"{stem}.png", draw_instances(frame, pred.masks, pred.classes,
                                                                              pred.scores, names), max_side=4096)
    for src in (s for s in sources if s.kind == "video"):
        vstem = _unique_stem(src.path.stem, used)
        fps = video_info(src.path).fps or 25.0
        writer, video_ctx = None, None
        try:
            for group in _batched(read_frames(src.path, every), batch):
                frames = [f for _, _, f in group]
                items = []
                for idx, t, frame in group:
                    image_id = len(images) + len(items) + 1
                    stem = f"{vstem}_{idx:06d}"
                    entry = {"id": image_id, "file_name": f"{src.path}#frame={idx}", "video": str(src.path),
                             "frame_index": idx, "time_s": round(t, 4), "height": frame.shape[0],
                             "width": frame.shape[1]}
                    lm = lm_img = None
                    if video_labelme:
                        lm_img = out / "frames" / f"{stem}.png"
                        write_image(lm_img, frame, max_side=10**6)
                        lm = out / "labelme" / f"{stem}.json"
                        entry["file_name"] = str(lm_img)
                    items.append((image_id, stem, frame, entry, lm, lm_img))
                preds = predict(frames)
                handle(items, preds)
                if overlays:
                    if writer is None:
                        h, w = frames[0].shape[:2]
                        video_ctx = atomic_path(out / "overlays" / f"{vstem}.mp4", overwrite=True)
                        tmp = video_ctx.__enter__()
                        # OpenCV's writer here opens mp4v (MPEG-4 part 2), not H.264; any player reads it.
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps / every, (w, h))
                        if not writer.isOpened():
                            raise FetalHeartError(f"cannot write overlay video for {src.path}")
                    for frame, pred in zip(frames, preds, strict=True):
                        writer.write(draw_instances(frame, pred.masks, pred.classes, pred.scores, names))
        except BaseException as exc:
            if writer is not None:
                writer.release()
                video_ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if writer is not None:
            writer.release()
            video_ctx.__exit__(None, None, None)
    bar.close()
    total_s = time.perf_counter() - t0
    doc = {"info": {"description": "fetalheart predictions (annotations carry a score)"},
           "images": images, "annotations": annotations, "categories": coco_categories(names)}
    write_json_atomic(out / "predictions_coco.json", doc, overwrite=True, indent=None)
    write_json_atomic(out / "coco_results.json", results, overwrite=True, indent=None)
    summary = {"frames": n_frames, "instances": len(annotations), "model_seconds": round(model_s, 3),
               "total_seconds": round(total_s, 3),
               "model_fps": n_frames / model_s if model_s > 0 else float("nan"),
               "total_fps": n_frames / total_s if total_s > 0 else float("nan")}
    (out / "predict_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
