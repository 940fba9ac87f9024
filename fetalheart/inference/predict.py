"""Prediction on new images or videos, with the model's own enhancement, for review and relabelling.

``run_prediction(predictor, inputs, output_dir, PredictOptions(...))`` writes overlay images (an H.264
overlay video per input video), ``predictions_coco.json`` (a COCO dataset whose annotations carry a
score), ``coco_results.json`` (the COCO results list) and LabelMe JSON per frame with the predicted
polygons (``export``), so a user can correct them in labelme and convert them again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetalheart.classes import CLASS_NAMES, coco_categories
from fetalheart.evaluation.plots import draw_instances, write_image
from fetalheart.inference.export import coco_annotations, prediction_labelme
from fetalheart.inference.predictor import Prediction
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from fetalheart.video.io import VIDEO_SUFFIXES, read_frames, video_info, write_video
from fetalheart.video.naming import frame_stem

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
#: What a prediction folder holds; refused without ``overwrite`` when any is there.
OUTPUTS = ("predictions_coco.json", "coco_results.json", "labelme", "overlays")


@dataclass(frozen=True)
class PredictOptions:
    """What to predict on and what to write besides the COCO files."""

    batch: int = 1  # frames per model call
    every: int = 1  # videos: every N-th frame
    video_labelme: bool = False  # videos: also save the frames as PNG with LabelMe JSON
    overlays: bool = True  # overlay PNGs / overlay videos


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


@dataclass
class _Frame:
    """One frame to predict on and where its outputs go."""

    image_id: int
    stem: str
    image: np.ndarray  # BGR
    entry: dict  # its COCO image entry
    labelme: Path | None = None  # its LabelMe JSON, None when not written
    labelme_image: Path | None = None  # the image that JSON points to


@dataclass
class _Collector:
    """Calls the model on batches and gathers everything written at the end (COCO images, annotations)."""

    predictor: Any
    out: Path
    class_names: tuple[str, ...]
    bar: Any
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    used_stems: set[str] = field(default_factory=set)
    model_seconds: float = 0.0
    n_frames: int = 0

    def next_id(self, pending: int = 0) -> int:
        return len(self.images) + pending + 1

    def predict(self, frames: list[_Frame]) -> list[Prediction]:
        """Predict one batch (timed), record its COCO entries and write its LabelMe files."""
        t = time.perf_counter()
        preds = self.predictor([f.image for f in frames])
        self.model_seconds += time.perf_counter() - t
        self.n_frames += len(frames)
        self.bar.update(len(frames))
        for frame, pred in zip(frames, preds, strict=True):
            self._record(frame, pred)
        return preds

    def _record(self, frame: _Frame, pred: Prediction) -> None:
        self.images.append(frame.entry)
        anns = coco_annotations(pred, frame.image_id, len(self.annotations) + 1)
        self.annotations.extend(anns)
        self.results.extend({k: a[k] for k in ("image_id", "category_id", "segmentation", "bbox", "score")}
                            for a in anns)
        if frame.labelme is not None:
            doc = prediction_labelme(pred, os.path.relpath(frame.labelme_image, frame.labelme.parent),
                                     *frame.image.shape[:2], self.class_names)
            write_json_atomic(frame.labelme, doc, overwrite=True)

    def overlay(self, frame: _Frame, pred: Prediction) -> np.ndarray:
        return draw_instances(frame.image, pred.masks, pred.classes, pred.scores, self.class_names)


def _predict_images(run: _Collector, sources: list[Source], options: PredictOptions) -> None:
    """Images in batches; one overlay PNG each."""
    for group in _batched(sources, options.batch):
        frames = []
        for src in group:
            image = cv2.imread(str(src.path), cv2.IMREAD_COLOR)
            if image is None:
                raise FetalHeartError(f"cannot read image {src.path}")
            stem = _unique_stem(src.path.stem, run.used_stems)
            image_id = run.next_id(len(frames))
            entry = {"id": image_id, "file_name": str(src.path), "height": image.shape[0], "width": image.shape[1]}
            frames.append(_Frame(image_id, stem, image, entry, run.out / "labelme" / f"{stem}.json", src.path.resolve()))
        preds = run.predict(frames)
        if options.overlays:
            for frame, pred in zip(frames, preds, strict=True):
                write_image(run.out / "overlays" / f"{frame.stem}.png", run.overlay(frame, pred), max_side=4096)


def _video_frame(run: _Collector, src: Source, vstem: str, decoded: tuple[int, float, np.ndarray], pending: int,
                 video_labelme: bool) -> _Frame:
    """A decoded video frame as a _Frame; with ``video_labelme`` its PNG is written for the LabelMe file."""
    idx, t, image = decoded
    image_id, stem = run.next_id(pending), frame_stem(vstem, idx)
    entry = {"id": image_id, "file_name": f"{src.path}#frame={idx}", "video": str(src.path), "frame_index": idx,
             "time_s": round(t, 4), "height": image.shape[0], "width": image.shape[1]}
    if not video_labelme:
        return _Frame(image_id, stem, image, entry)
    png = run.out / "frames" / f"{stem}.png"
    write_image(png, image, max_side=10**6)
    entry["file_name"] = str(png)
    return _Frame(image_id, stem, image, entry, run.out / "labelme" / f"{stem}.json", png)


def _predict_video(run: _Collector, src: Source, options: PredictOptions) -> None:
    """Every ``every``-th frame of one video, in batches; the overlay video is H.264 at fps / every."""
    vstem = _unique_stem(src.path.stem, run.used_stems)
    fps = video_info(src.path).fps or 25.0
    with ExitStack() as stack:
        video = None
        for group in _batched(read_frames(src.path, options.every), options.batch):
            frames = [_video_frame(run, src, vstem, d, k, options.video_labelme) for k, d in enumerate(group)]
            preds = run.predict(frames)
            if not options.overlays:
                continue
            if video is None:  # opened at the first frame: its size is the decoded one
                h, w = frames[0].image.shape[:2]
                video = stack.enter_context(write_video(run.out / "overlays" / f"{vstem}.mp4", (w, h),
                                                        fps / options.every, color=True))
            for frame, pred in zip(frames, preds, strict=True):
                video.write(run.overlay(frame, pred))


def _write_outputs(run: _Collector, total_s: float) -> dict:
    """predictions_coco.json, coco_results.json and predict_summary.json; returns the summary."""
    doc = {"info": {"description": "fetalheart predictions (annotations carry a score)"},
           "images": run.images, "annotations": run.annotations, "categories": coco_categories(run.class_names)}
    write_json_atomic(run.out / "predictions_coco.json", doc, overwrite=True, indent=None)
    write_json_atomic(run.out / "coco_results.json", run.results, overwrite=True, indent=None)
    n, model_s = run.n_frames, run.model_seconds
    summary = {"frames": n, "instances": len(run.annotations), "model_seconds": round(model_s, 3),
               "total_seconds": round(total_s, 3),
               "model_fps": n / model_s if model_s > 0 else float("nan"),
               "total_fps": n / total_s if total_s > 0 else float("nan")}
    write_text_atomic(run.out / "predict_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_prediction(predictor, inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                   options: PredictOptions | None = None, *, overwrite: bool = False, quiet: bool = False) -> dict:
    """Predict on every input and write overlays, COCO JSON and LabelMe JSON under ``output_dir``.

    ``predictor`` is a ``Predictor`` (or any callable list[BGR] -> list[Prediction]). Returns a
    summary dict (counts, frames per second of the model calls and of the whole loop).
    """
    from tqdm import tqdm

    options = options or PredictOptions()
    if options.batch < 1 or options.every < 1:
        raise FetalHeartError("--batch and --every must be >= 1")
    sources = collect_sources(inputs)
    out = ensure_writable_dir(output_dir)
    if not overwrite:
        for name in OUTPUTS:
            if (out / name).exists():
                raise FetalHeartError(f"{out / name} exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    with tqdm(total=None, desc="predict", unit="frame", disable=quiet) as bar:
        run = _Collector(predictor, out, tuple(getattr(predictor, "class_names", CLASS_NAMES)), bar)
        _predict_images(run, [s for s in sources if s.kind == "image"], options)
        for src in (s for s in sources if s.kind == "video"):
            _predict_video(run, src, options)
    return _write_outputs(run, time.perf_counter() - t0)
