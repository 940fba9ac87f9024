"""Evaluation from files: a COCO ground truth + predictions of any tool -> the full report folder.

The seam every evaluation goes through: ``tools/evaluate.py`` on a model first predicts the dataset to
COCO results (``evaluate.predict_dataset``) and then evaluates those results here; ``--predictions``
starts here with results from anything (YOLO-seg, nnU-Net via its label maps, a second reader's
annotations). So a model's report and the report of its own results file are the same numbers.

Predictions, by what the path is:

* a ``.json`` list: COCO results (``image_id``, ``category_id`` of the ground truth, ``segmentation``
  as RLE or polygons, ``score``; a missing score counts 1.0, a missing box is the mask's);
* a ``.json`` COCO dataset (``images`` + ``annotations``, e.g. a second reader's labelme2coco output
  or ``predict``'s predictions_coco.json): images matched to the ground truth by file name, categories
  by name, score 1.0 unless an annotation has one;
* a folder of label or probability maps (``fetalheart.annotations.semantic``): instances by connected
  components (``fetalheart.annotations.components``).

Per-image records, aggregation, report files and plots are the model evaluation's own
(``per_image``, ``aggregate``, ``report``); COCO AP is ``coco_ap`` (detectron2's COCOEvaluator's numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.annotations.rle import area_bbox, segmentation_rle, to_json
from fetalheart.evaluation.aggregate import flat_results, summarize_records
from fetalheart.evaluation.coco_ap import coco_results_ap, load_coco
from fetalheart.evaluation.evaluator import dataset_index, record_group
from fetalheart.evaluation.per_image import image_data, image_record
from fetalheart.evaluation.report import REPORT_FILES, write_report
from fetalheart.evaluation.settings import EvalSettings
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import file_sha256, read_json, write_json_atomic

from detectron2.data import DatasetCatalog, MetadataCatalog

#: The predictions an evaluation folder holds (COCO results, dataset category ids); pooling reads it.
RESULTS_FILE = "coco_instances_results.json"


@dataclass
class GroundTruth:
    """A registered COCO dataset: its detectron2 dicts (in loader order), classes and category ids."""

    name: str
    json_file: Path
    records: list[dict]
    class_names: list[str]
    category_ids: list[int]  # dataset category id of each contiguous class

    @classmethod
    def of(cls, dataset_name: str) -> GroundTruth:
        if dataset_name not in DatasetCatalog.list():
            raise FetalHeartError(f"dataset {dataset_name!r} is not registered; set DATASETS.ROOT or --ground-truth")
        records = DatasetCatalog.get(dataset_name)  # after this, load_coco_json has set the id map
        meta = MetadataCatalog.get(dataset_name)
        json_file = meta.get("json_file", None)
        if not json_file or not Path(json_file).is_file():
            raise FetalHeartError(f"dataset {dataset_name!r} has no COCO json_file to evaluate against")
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None) or {}
        classes = list(meta.get("thing_classes", []))
        ids = sorted(id_map, key=id_map.get) if id_map else list(range(1, len(classes) + 1))
        return cls(dataset_name, Path(json_file), records, classes, [int(i) for i in ids])


def register_ground_truth(json_file: str | os.PathLike, images: str | os.PathLike | None = None) -> str:
    """Register a COCO ground-truth file (any name) and return the dataset name: ``<root>_<split>`` for a
    labelme2coco folder's ``ROOT/annotations/<split>.json``, else the file's stem. Images default to
    ``ROOT/images`` (labelme2coco's layout), else the file's folder; they are read for the overlays only."""
    from fetalheart.data.datasets import register_coco_dataset

    path = Path(json_file).resolve()
    if not path.is_file():
        raise FetalHeartError(f"ground truth not found: {json_file}")
    in_layout = path.parent.name == "annotations"
    root = Path(images) if images else (path.parent.parent / "images" if in_layout else path.parent)
    name = f"{path.parent.parent.name}_{path.stem}" if in_layout else path.stem
    if name in DatasetCatalog.list() and MetadataCatalog.get(name).get("json_file", None) != str(path):
        name = f"{name}_{file_sha256(path)[:8]}"
    register_coco_dataset(name, path, root)
    return name


# --- Reading predictions -----------------------------------------------------------------------


@dataclass
class LoadedPredictions:
    """Predictions as COCO results (RLE JSON masks, dataset category ids), with what was done to them."""

    results: list[dict]
    source: str
    notes: list[str] = field(default_factory=list)


def _by_file_name(gt: GroundTruth) -> dict[str, int]:
    """Ground-truth image ids by COCO file name and by basename (either may be what the other file has)."""
    images = read_json(gt.json_file).get("images", [])
    out: dict[str, int] = {}
    for im in images:
        out.setdefault(Path(str(im["file_name"])).name, int(im["id"]))
    for im in images:
        out[str(im["file_name"])] = int(im["id"])
    return out


def _dataset_as_results(doc: dict, gt: GroundTruth) -> tuple[list[dict], list[str]]:
    """A COCO dataset (a second reading, predict's predictions_coco.json) as results for ``gt``."""
    ids = _by_file_name(gt)
    names = dict(zip(gt.class_names, gt.category_ids, strict=True))
    image_of, unmatched = {}, []
    for im in doc.get("images", []):
        key = str(im.get("file_name", ""))
        match = ids.get(key, ids.get(Path(key).name))
        image_of[im["id"]] = match
        if match is None:
            unmatched.append(key)
    if unmatched:
        raise FetalHeartError(f"{len(unmatched)} image(s) of the predictions match no ground-truth file name, "
                              f"e.g. {unmatched[0]!r}")
    cat_of = {}
    for c in doc.get("categories", []):
        if c["name"] not in names:
            raise FetalHeartError(f"prediction category {c['name']!r} is not a ground-truth class ({', '.join(gt.class_names)})")
        cat_of[c["id"]] = names[c["name"]]
    out = [{**{k: v for k, v in a.items() if k not in ("id", "area", "iscrowd")},
            "image_id": image_of[a["image_id"]], "category_id": cat_of.get(a["category_id"], -1)}
           for a in doc.get("annotations", []) if not a.get("iscrowd", 0)]
    return out, [f"predictions: a COCO dataset of {len(doc.get('images', []))} images matched by file name"]


def normalize_results(results: list, gt: GroundTruth) -> tuple[list[dict], list[str]]:
    """Check COCO results against the ground truth; RLE JSON masks, boxes and float scores for all.

    One-line errors: an image id or category the ground truth lacks, a result without a mask, a mask
    of another size than its image."""
    if not isinstance(results, list):
        raise FetalHeartError("COCO results must be a JSON list of {image_id, category_id, segmentation, score}")
    sizes = {r["image_id"]: (int(r["height"]), int(r["width"])) for r in gt.records}
    cats = set(gt.category_ids)
    out, no_score = [], 0
    for k, r in enumerate(results):
        if not isinstance(r, dict) or r.get("image_id") not in sizes:
            raise FetalHeartError(f"result {k}: image_id {r.get('image_id') if isinstance(r, dict) else r!r} is not in "
                                  f"the ground truth {gt.json_file.name}")
        if r.get("category_id") not in cats:
            raise FetalHeartError(f"result {k}: category_id {r.get('category_id')!r} is not a ground-truth category "
                                  f"({', '.join(map(str, sorted(cats)))})")
        h, w = sizes[r["image_id"]]
        seg = r.get("segmentation")
        rle = segmentation_rle(seg, h, w) if isinstance(seg, (list, dict)) and seg else None
        if rle is None:
            raise FetalHeartError(f"result {k}: no mask ('segmentation'); box-only results cannot be evaluated here")
        if tuple(rle["size"]) != (h, w):
            raise FetalHeartError(f"result {k}: mask size {tuple(rle['size'])} != image size {(h, w)} "
                                  f"(image {r['image_id']})")
        no_score += "score" not in r
        rle = to_json(rle)
        out.append({"image_id": r["image_id"], "category_id": int(r["category_id"]), "segmentation": rle,
                    "bbox": [float(v) for v in r["bbox"]] if "bbox" in r else area_bbox(rle)[1],
                    "score": float(r.get("score", 1.0))})
    return out, [f"{no_score} of {len(out)} predictions had no score and count 1.0"] if no_score else []


@dataclass(frozen=True)
class MapOptions:
    """How a folder of label / probability maps is read (``fetalheart.annotations.semantic``)."""

    label_values: str | None = None  # "1=LV,2=RV"; default: value k = the k-th ground-truth class
    prob_thresh: float = 0.5
    min_area: int = 0
    score_rule: str = "mean"


def _maps_as_results(folder: Path, gt: GroundTruth, options: MapOptions) -> tuple[list[dict], list[str]]:
    from fetalheart.annotations.semantic import (
        SemanticOptions,
        frames_by_stem,
        parse_label_values,
        semantic_results,
    )

    contiguous = {n: k for k, n in enumerate(gt.class_names)}
    named = parse_label_values(options.label_values, gt.class_names)
    unknown = [n for n in named.values() if n not in contiguous]
    if unknown:
        raise FetalHeartError(f"--label-map: {unknown[0]!r} is not a ground-truth class ({', '.join(gt.class_names)})")
    values = {v: contiguous[n] for v, n in named.items()}
    sem = SemanticOptions(options.prob_thresh, options.min_area, options.score_rule)
    results, summary = semantic_results(folder, frames_by_stem(read_json(gt.json_file)), gt.category_ids, values, sem)
    rule = (f"instances = 8-connected components per class (probability >= {sem.prob_thresh}, score = "
            f"{sem.score_rule} probability; label maps score 1.0), components under {sem.min_area} px dropped")
    return results, [f"predictions: {summary['files']} {' and '.join(summary['kinds'])} from {folder}; {rule}; "
                     f"{summary['frames_without_file']} ground-truth frames had no file (no prediction)"]


def load_predictions(path: str | os.PathLike, gt: GroundTruth, maps: MapOptions | None = None) -> LoadedPredictions:
    """COCO results for ``gt`` from a results file, a COCO dataset file or a folder of maps (module doc)."""
    p = Path(path)
    if p.is_dir():
        results, notes = _maps_as_results(p, gt, maps or MapOptions())
    elif p.is_file():
        doc = read_json(p)
        results, notes = (_dataset_as_results(doc, gt) if isinstance(doc, dict) and "annotations" in doc
                          else (doc, []))
    else:
        raise FetalHeartError(f"predictions not found: {path}")
    results, more = normalize_results(results, gt)
    return LoadedPredictions(results, str(p.resolve()), notes + more)


# --- The report --------------------------------------------------------------------------------


def image_records(gt: GroundTruth, results: list[dict], settings: EvalSettings,
                  keep_predictions: bool = True) -> list[dict]:
    """One ``image_record`` per ground-truth image (loader order), from normalized COCO results."""
    from fetalheart.annotations.rle import to_bytes

    contiguous = {cid: k for k, cid in enumerate(gt.category_ids)}
    cut = min(settings.score_thresh, settings.study_map_min_score)
    by_image: dict = {}
    for r in results:  # the file's order within an image (a model's: highest score first)
        if r["score"] >= cut:
            by_image.setdefault(r["image_id"], []).append(r)
    groups, names = dataset_index(gt.name)
    out = []
    for rec in gt.records:
        preds = by_image.get(rec["image_id"], [])
        img = image_data(rec, [to_bytes(r["segmentation"]) for r in preds],
                         [contiguous[r["category_id"]] for r in preds], [r["score"] for r in preds],
                         record_group(rec, groups), names.get(rec["image_id"], ""))
        out.append(image_record(img, len(gt.class_names), settings, keep_predictions))
    return out


def predictions_report(gt: GroundTruth, results: list[dict], settings: EvalSettings) -> dict:
    """The report dict of normalized COCO results: the same keys as a model's evaluation."""
    records = image_records(gt, results, settings)
    report = summarize_records(records, gt.class_names, settings)
    report["dataset"] = gt.name
    report["ground_truth_json"] = str(gt.json_file.resolve())
    report["predictions"] = {str(r["image_id"]): r["pred"] for r in records if "pred" in r}
    report["summary"] = flat_results(report)
    report["coco"] = coco_results_ap(load_coco(gt.json_file), results, gt.class_names)
    return report


@dataclass
class ReportContext:
    """What a report says besides the numbers, and how it is written."""

    run: dict = field(default_factory=dict)  # evaluate.run_summary of the model, or where predictions came from
    notes: list[str] = field(default_factory=list)
    metrics_json: Path | None = None  # the run's metrics.json, for the loss curves
    enhancement_changes: dict | None = None
    cfg: object = None  # the model's config (config.yaml beside the report), when there is one
    env: dict = field(default_factory=dict)  # more for env.json
    overwrite: bool = False


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding a report unless ``overwrite`` (before any slow work)."""
    existing = [f for f in (*REPORT_FILES, RESULTS_FILE) if (out / f).exists()]
    if existing and not overwrite:
        raise FetalHeartError(f"{out / existing[0]} exists; pass --overwrite to replace it")


def evaluate_predictions(gt: GroundTruth, results: list[dict], output_dir: str | os.PathLike, settings: EvalSettings,
                         context: ReportContext | None = None) -> dict:
    """Evaluate normalized COCO results on ``gt``; write coco_instances_results.json, report.{json,md},
    per_class.csv, per_image.csv, plots/ and env.json (+ config.yaml) into ``output_dir``; return the report."""
    from fetalheart.collect_env import write_run_info
    from fetalheart.evaluation.plots import write_plots

    ctx = context or ReportContext()
    out = Path(output_dir)
    check_output(out, ctx.overwrite)
    report = predictions_report(gt, results, settings)
    if ctx.run:
        report["run"] = ctx.run
    if ctx.enhancement_changes:
        report["enhancement_changes"] = ctx.enhancement_changes
    report["notes"] = [*report.get("notes", []), *ctx.notes]
    write_json_atomic(out / RESULTS_FILE, results, indent=None)
    report["_gt_records"] = {d["image_id"]: d for d in gt.records}
    plots = write_plots(report, out, ctx.metrics_json)
    del report["_gt_records"]
    write_report(report, out, overwrite=True, plots=plots)
    write_run_info(out, ctx.cfg, extra={"dataset": gt.name, "run": report.get("run", {}), **ctx.env})
    return report
