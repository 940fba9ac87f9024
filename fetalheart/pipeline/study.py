"""The whole study as one pipeline of cached stages: phantom/videos -> frames -> LabelMe -> COCO ->
training grid (x folds x seeds) -> evaluation -> comparison -> one report.

Each stage writes into its own folder and a ``stage.json`` holding the key of what it was made
from and the files it wrote (fetalheart.pipeline.stages): a second run reuses a stage only when its
key is unchanged, a changed plan reruns exactly the stages it affects, saying why, and a rerun never
deletes a file the stage did not write (labels saved beside the frames stop it with an error naming
them). Keys hold content, not paths (fetalheart.pipeline.keys): a moved output folder reuses
everything. Trained models are never deleted to rerun a stage: the grid keeps every model still
valid for the plan (``force`` sets them aside and retrains them).
The demo runs the chain on phantom videos with a short CPU schedule; the full study runs the
22-model grid on the user's LabelMe data.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from fetalheart.pipeline.keys import evaluation_key, labelme_key, run_only_opts
from fetalheart.pipeline.stages import StageKey, Stages
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import file_sha256, write_json_atomic, write_text_atomic
from fetalheart.utils.keys import files_digest
from fetalheart.video.naming import frame_stem

DEMO_SEEDS = (0, 1, 2)  # three phantom "fetuses": the split is by video


@dataclass
class StudyPlan:
    """Everything the pipeline needs; the demo and configs/study.yaml both fill it.

    The fields above ``max_parallel`` decide the results (they key the stages); the rest only
    decide how the work is run.
    """

    output: Path
    labelme: Path | None = None  # folder of LabelMe JSONs (skips video stages)
    videos: Path | None = None  # folder of videos to extract frames from (then stop: label them); not with labelme
    phantom_seeds: tuple[int, ...] = ()
    phantom_seconds: float = 6.0
    phantom_size: tuple[int, int] = (640, 360)
    extract: dict = field(default_factory=lambda: {"every": 3, "auto_crop": True, "min_sharpness": "auto"})
    convert: dict = field(default_factory=lambda: {"val_fraction": 0.34, "seed": 0})
    folds: int = 0  # K > 1: grouped K-fold cross-validation instead of one train/val split
    grid: str = "configs/study_grid.yaml"
    protocol: str = "study-faithful"  # or "recommended" (adds configs/overlays/recommended.yaml)
    only: list[int] | None = None
    seeds: list[int] | None = None
    base: str | None = None
    overlays: list[str] = field(default_factory=list)
    opts: list[str] = field(default_factory=list)
    max_parallel: int | str = 1
    threads: int | None = None  # CPU threads per training run (None: decided with max_parallel)
    gpus: list[str] | None = None
    overwrite: bool = False
    force: bool = False
    quiet: bool = False


# -------------------------------------------------------------------------------------------- stages
#: Where the pipeline tells you to save the labels of extracted frames (its own folder, not the frames').
LABELS_DIR = "labelme"


def _rel(out: Path, path: str | Path) -> str:
    """A path inside the output folder as recorded in a stage summary: relative, so a moved output
    folder (or a reused stage) still points at its files."""
    return Path(path).resolve().relative_to(out.resolve()).as_posix()


def _phantoms(plan: StudyPlan, folder: Path) -> dict:
    from fetalheart.phantom import PhantomSpec, make_phantom

    specs = [PhantomSpec(seconds=plan.phantom_seconds, size=plan.phantom_size, seed=s) for s in plan.phantom_seeds]
    jobs = min(len(specs), os.cpu_count() or 1)
    if jobs < 2:
        made = [make_phantom(folder / spec.stem, spec, quiet=plan.quiet) for spec in specs]
    else:  # one process per video: rendering is mostly single-threaded Python around small OpenCV filters
        with ProcessPoolExecutor(jobs) as pool:
            made = list(pool.map(partial(make_phantom, quiet=True), [folder / spec.stem for spec in specs], specs))
    n = sum(sum(m["counts"].values()) for m in made)
    return {"what": f"{len(made)} phantom videos, {n} frames at {plan.phantom_size[0]}x{plan.phantom_size[1]}",
            "videos": [_rel(plan.output, p) for p in sorted(folder.glob("*/*.mp4"))]}


def _extract(plan: StudyPlan, videos: list[str], folder: Path) -> dict:
    from fetalheart.video.extract import ExtractOptions, extract_frames

    result = extract_frames(videos, folder, ExtractOptions(**plan.extract), quiet=plan.quiet)
    c = result.counts
    return {"what": f"{len(result.kept)} frames kept of {len(result.records)} sampled "
                    f"({', '.join(f'{k} {v}' for k, v in c.items())})", "counts": c}


def _ground_truth_labelme(frames_dir: Path, phantom_dir: Path, folder: Path) -> dict:
    """LabelMe JSONs for the kept frames: the phantom's ground truth mapped through the crop/resize."""
    from fetalheart.video.geometry import FrameGeometry

    folder.mkdir(parents=True, exist_ok=True)
    with open(frames_dir / "frames.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "kept"]
    for row in rows:
        stem = Path(row["source"]).stem
        geometry = FrameGeometry.load(frames_dir, stem)
        src = json.loads((phantom_dir / stem / "labelme" / f"{frame_stem(stem, int(row['frame_index']))}.json").read_text())
        for shape in src["shapes"]:
            shape["points"] = geometry.map_points(shape["points"]).round(2).tolist()
        w, h = geometry.output_size
        src.update(imagePath=f"../frames/{Path(row['file']).name}", imageHeight=h, imageWidth=w, imageData=None)
        write_json_atomic(folder / f"{Path(row['file']).stem}.json", src)
    return {"what": f"{len(rows)} ground-truth LabelMe files (phantom geometry mapped through the crop)"}


def _convert(plan: StudyPlan, labelme: Path, folder: Path) -> dict:
    from fetalheart.annotations.convert import ConvertOptions, convert

    report = convert([labelme], folder, ConvertOptions(folds=plan.folds, **plan.convert), overwrite=True,
                     quiet=plan.quiet)
    n, split = report["images"], report["split"]
    grouping = {"regex": "--group-regex", "patient_folder": "patient (top folder)"}.get(
        split.get("grouping_rule"), "video")
    if plan.folds > 1:
        sizes = ", ".join(f"{f['train']}/{f['val']}" for f in report["folds"]["per_fold"])
        what = f"COCO dataset: {n['total']} images in {plan.folds} folds (train/val {sizes}), grouped by {grouping}"
    else:
        what = f"COCO dataset: {n['train']} train / {n['val']} val images, grouped by {grouping}"
    return {"what": what, "images": n, "warnings": split.get("warnings", [])}


def _convert_options_key(convert: dict) -> dict:
    """The conversion options with the files they name (``labels``, ``val_list``) replaced by their content."""
    out = dict(convert)
    for k in ("labels", "val_list"):
        if isinstance(out.get(k), (str, Path)) and Path(out[k]).is_file():
            out[k] = {"file_sha256": file_sha256(out[k])}
    return out


def _grid_runs(plan: StudyPlan, dataset: Path, folder: Path):
    """The grid's runs for this plan, each with its content key (``fetalheart.pipeline.keys``)."""
    from fetalheart.config import protocol_overlays
    from fetalheart.pipeline.grid import GridSpec, fingerprint_runs, load_grid

    opts = ["DATASETS.ROOT", str(dataset.resolve()), *plan.opts]
    if plan.folds <= 1:
        opts = ["DATASETS.TRAIN", "('fetalheart_train',)", "DATASETS.TEST", "('fetalheart_val',)", *opts]
    overlays = protocol_overlays(plan.protocol) + list(plan.overlays)
    spec = GridSpec(only=plan.only, seeds=plan.seeds, folds=plan.folds, opts=opts, base=plan.base, overlays=overlays)
    runs = load_grid(plan.grid, folder, spec)
    fingerprint_runs(runs)
    return runs


def _train(plan: StudyPlan, runs: list, folder: Path, log) -> dict:
    from fetalheart.pipeline.grid import GridOptions, run_grid

    options = GridOptions(max_parallel=plan.max_parallel, gpus=plan.gpus, threads=plan.threads, force=plan.force,
                          progress_every=0 if plan.quiet else 30.0)
    results = run_grid(runs, out_dir=folder, options=options, log=log)
    failed = [r for r in results if r["returncode"] != 0]
    if failed:
        raise FetalHeartError(f"{len(failed)} training runs failed, e.g. {failed[0]['run']}: {failed[0]['last_line']}"
                              f" (log: {folder}/<run>/grid_stdout.txt); rerun to resume")
    return {"what": f"{len(runs)} models trained", "runs": [_rel(plan.output, r.output_dir) for r in runs]}


#: The file beside an evaluation's report.json holding the evaluation key it was made with.
EVALUATION_KEY_FILE = "evaluation_key.txt"


def report_checkpoint(run) -> Path:
    """The checkpoint a run's numbers are reported for (``TEST.REPORT_CHECKPOINT``)."""
    return run.output_dir / run.config_node().TEST.REPORT_CHECKPOINT


def _evaluate_run(run, key: str, dataset: Path, plan: StudyPlan, log) -> Path:
    """Evaluate one run's TEST.REPORT_CHECKPOINT on its own validation split (reused while its
    evaluation key is unchanged: the checkpoint's content, the run's key and the plan's current EVAL
    settings).

    The run's config.yaml decides the model; the plan's run-only keys (EVAL, workers, cache folder,
    output folder) are today's. Mask R-CNN: model_final, not model_best: a model selected on the
    validation split would make the numbers reported on that split optimistic (docs/training.md, "Model
    selection"). The U-Net recipe reports its best-validation-loss checkpoint, as the thesis it follows
    (docs/model_families.md says the cost).
    """
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.evaluation.evaluate import default_output_dir, evaluate_model

    weights = report_checkpoint(run)
    cfg = load_cfg(run.output_dir / "config.yaml", [*run_only_opts(run.config_node()), "MODEL.WEIGHTS", str(weights),
                                                    "DATASETS.ROOT", str(dataset.resolve())], cpu_fallback=True)
    register_datasets_from_cfg(cfg, training=False)
    name = cfg.DATASETS.TEST[0]
    out = default_output_dir(cfg.MODEL.WEIGHTS, name)
    done = out / EVALUATION_KEY_FILE
    if not plan.overwrite and (out / "report.json").is_file() and done.is_file() and done.read_text() == key:
        log(f"[evaluate] {run.label}: reused {out}")
        return out
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables; they are in report.md
        res = evaluate_model(cfg, name, out, overwrite=True, quiet=plan.quiet)
    write_text_atomic(done, key)
    fh = res["results"].get("fetalheart", {})
    log(f"[evaluate] {run.label}: Dice {fh.get('dice_macro', float('nan')):.3f}  "
        f"IoU {fh.get('iou_macro', float('nan')):.3f}  study mAP {fh.get('study_mAP', float('nan')):.3f}")
    return out


def _pool_folds(evals: list[Path], runs_dir: Path, folder: Path, log) -> list[Path]:
    """One pooled out-of-fold report per model (and seed): every frame was in exactly one val fold."""
    from fetalheart.evaluation.pooling import pool_folds

    groups: dict[str, list[Path]] = {}
    for ev in evals:
        rel = ev.resolve().relative_to(runs_dir.resolve()).parts  # <model>/fold<k>[/seed<s>]/eval/<dataset>
        key = "/".join([rel[0], *[p for p in rel[2:-2] if p.startswith("seed")]])
        groups.setdefault(key, []).append(ev)
    pooled = []
    for key, dirs in sorted(groups.items()):
        report = pool_folds(dirs, folder / key / "pooled", overwrite=True)
        fh = report.get("summary", {})
        log(f"[evaluate] {key} pooled over {len(dirs)} folds: Dice {fh.get('dice_macro', float('nan')):.3f}  "
            f"IoU {fh.get('iou_macro', float('nan')):.3f}")
        pooled.append(folder / key / "pooled")
    return pooled


def _evaluate(plan: StudyPlan, runs: list, keys: dict[str, str], dataset: Path, folder: Path, log) -> dict:
    evals = [_evaluate_run(r, keys[r.label], dataset, plan, log) for r in runs]
    summary = {"what": f"{len(evals)} models evaluated on their validation split",
               "evals": [_rel(plan.output, e) for e in evals]}
    if plan.folds > 1:
        pooled = _pool_folds(evals, plan.output / "runs", folder, log)
        summary["pooled"] = [_rel(plan.output, p) for p in pooled]
        summary["what"] += f"s ({plan.folds} folds; out-of-fold predictions pooled per model)"
    return summary


def _compare(eval_dirs: list[Path], folder: Path) -> dict:
    from fetalheart.evaluation.compare import compare, load_runs, write_comparison

    table = compare(load_runs([str(d) for d in eval_dirs]))
    write_comparison(table, folder, overwrite=True)
    note = table["best_vs_runner_up"]["note"]
    return {"what": f"{len(table['rows'])} models compared; {note}", "best": table["best"]}


# ----------------------------------------------------------------------------------------- the chain


def _plan_part(plan: StudyPlan, *names: str) -> dict:
    d = asdict(plan)
    return {n: d[n] for n in names}


def _video_stages(plan: StudyPlan, stages: Stages, out: Path) -> Path | None:
    """phantom/videos -> frames (-> ground truth for the phantom); the LabelMe folder, or None to stop."""
    labels = out / LABELS_DIR
    hint = (f" (labels belong in {labels}/: labelme {out / 'frames'} --output {labels}; then replace the "
            "'videos:' line of the study config with 'labelme: ...')")
    if plan.phantom_seeds:
        ph = stages.run("phantom", out / "phantom", StageKey(_plan_part(plan, "phantom_seeds", "phantom_seconds",
                                                                           "phantom_size")),
                        lambda: _phantoms(plan, out / "phantom"))
        videos = [str(out / v) for v in ph["videos"]]
        stages.run("extract", out / "frames", StageKey(_plan_part(plan, "extract"), {"phantom": stages.keys["phantom"]}),
                   lambda: _extract(plan, videos, out / "frames"), hint=hint)
        stages.run("labels", labels, StageKey({}, {"extract": stages.keys["extract"]}),
                   lambda: _ground_truth_labelme(out / "frames", out / "phantom", labels))
        return labels
    from fetalheart.video.io import VIDEO_SUFFIXES

    videos = sorted(str(p) for p in Path(plan.videos).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FetalHeartError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {plan.videos}")
    key = StageKey({**_plan_part(plan, "extract"), "videos": files_digest(videos, plan.videos)[:16]})
    stages.run("extract", out / "frames", key, lambda: _extract(plan, videos, out / "frames"), hint=hint)
    labels.mkdir(parents=True, exist_ok=True)  # where LabelMe's --output saves the labels
    return None


def _model_stages(plan: StudyPlan, stages: Stages, out: Path, log) -> None:
    """COCO dataset -> train (every run checked by its key) -> evaluate -> compare."""
    runs = _grid_runs(plan, out / "coco", out / "runs")
    train_key = StageKey({"runs": {r.label: r.key for r in runs}})
    stages.run("train", out / "runs", train_key, lambda: _train(plan, runs, out / "runs", log), clear=False,
               valid=lambda: all(r.status() == "done" for r in runs))
    keys = {r.label: evaluation_key(r.key, report_checkpoint(r), r.config_node()) for r in runs}
    evals = stages.run("evaluate", out / "evaluations", StageKey({"evaluations": keys, "folds": plan.folds}),
                       lambda: _evaluate(plan, runs, keys, out / "coco", out / "evaluations", log))
    stages.run("compare", out / "compare", StageKey({}, {"evaluate": stages.keys["evaluate"]}),
               lambda: _compare([out / e for e in evals["evals"]], out / "compare"))


def run_study(plan: StudyPlan, log: Callable[[str], None] = print) -> Path | None:
    """Run (or resume) every stage; return the path of report.md, or None after a planned stop
    (frames extracted from videos: they must be labelled first)."""
    if plan.labelme and plan.videos:
        raise FetalHeartError("both labelme: and videos: are set: remove the 'videos:' line (frames are extracted "
                              "once; re-extracting would move frames under their labels)")
    if not (plan.labelme or plan.videos or plan.phantom_seeds):
        raise FetalHeartError("nothing to do: give LabelMe data (labelme:) or videos (videos:)")
    out = plan.output
    from fetalheart.pipeline.grid import check_grid_weights

    try:  # missing pretrained weights: before any stage
        check_grid_weights(_grid_runs(plan, out / "coco", out / "runs"))
    except FetalHeartError as exc:
        if not plan.videos:
            raise
        # videos: the run stops for labelling before any training; say it now, stop at the next run
        log(f"[study] note, before you train: {exc}")
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(plan.overwrite, log)
    labelme = plan.labelme
    if plan.phantom_seeds or plan.videos:
        labelme = _video_stages(plan, stages, out)
        if labelme is None:
            return None
    if labelme is None:
        raise FetalHeartError("nothing to do: give LabelMe data (labelme:) or videos (videos:)")
    key = StageKey({**_plan_part(plan, "folds"), "convert": _convert_options_key(plan.convert),
                    "labelme": labelme_key(labelme)})
    stages.run("convert", out / "coco", key, lambda: _convert(plan, labelme, out / "coco"))
    _model_stages(plan, stages, out, log)
    from fetalheart.pipeline.study_report import write_study_report

    return write_study_report(out, stages.summaries)
