"""The whole study as one pipeline of cached stages: phantom/videos -> frames -> LabelMe -> COCO ->
training grid (x folds x seeds) -> evaluation -> comparison -> one report.

Each stage writes into its own folder and a ``stage.json`` holding the key of what it was made
from (fetalheart.pipeline.stages): a second run reuses a stage only when its key is unchanged, and a
changed plan reruns exactly the stages it affects, saying why. Trained models are never deleted
to rerun a stage: the grid keeps every model still valid for the plan (``force`` retrains them).
The demo runs the chain on phantom videos with a short CPU schedule; the full study runs the
22-model grid on the user's LabelMe data.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fetalheart.pipeline.stages import StageKey, Stages, files_fingerprint, folder_fingerprint
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import write_json_atomic, write_text_atomic
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
    videos: Path | None = None  # folder of videos to extract frames from
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


def _phantoms(plan: StudyPlan, folder: Path) -> dict:
    from fetalheart.phantom import PhantomSpec, make_phantom

    specs = [PhantomSpec(seconds=plan.phantom_seconds, size=plan.phantom_size, seed=s) for s in plan.phantom_seeds]
    made = [make_phantom(folder / spec.stem, spec, quiet=plan.quiet) for spec in specs]
    n = sum(sum(m["counts"].values()) for m in made)
    return {"what": f"{len(made)} phantom videos, {n} frames at {plan.phantom_size[0]}x{plan.phantom_size[1]}",
            "videos": [str(p) for p in sorted(folder.glob("*/*.mp4"))]}


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
    grouping = "--group-regex" if split.get("grouping_rule") == "regex" else "video (file name)"
    if plan.folds > 1:
        sizes = ", ".join(f"{f['train']}/{f['val']}" for f in report["folds"]["per_fold"])
        what = f"COCO dataset: {n['total']} images in {plan.folds} folds (train/val {sizes}), grouped by {grouping}"
    else:
        what = f"COCO dataset: {n['train']} train / {n['val']} val images, grouped by {grouping}"
    return {"what": what, "images": n, "warnings": split.get("warnings", [])}


def _grid_runs(plan: StudyPlan, dataset: Path, folder: Path):
    from fetalheart.pipeline.grid import GridSpec, load_grid

    opts = ["DATASETS.ROOT", str(dataset.resolve()), *plan.opts]
    if plan.folds <= 1:
        opts = ["DATASETS.TRAIN", "('fetalheart_train',)", "DATASETS.TEST", "('fetalheart_val',)", *opts]
    from fetalheart.config import protocol_overlays

    overlays = protocol_overlays(plan.protocol) + list(plan.overlays)
    spec = GridSpec(only=plan.only, seeds=plan.seeds, folds=plan.folds, opts=opts, base=plan.base, overlays=overlays)
    return load_grid(plan.grid, folder, spec)


def _train(plan: StudyPlan, dataset: Path, folder: Path, log) -> dict:
    from fetalheart.pipeline.grid import GridOptions, run_grid

    runs = _grid_runs(plan, dataset, folder)
    options = GridOptions(max_parallel=plan.max_parallel, gpus=plan.gpus, threads=plan.threads, force=plan.force,
                          progress_every=0 if plan.quiet else 30.0)
    results = run_grid(runs, out_dir=folder, options=options, log=log)
    failed = [r for r in results if r["returncode"] != 0]
    if failed:
        raise FetalHeartError(f"{len(failed)} training runs failed, e.g. {failed[0]['run']}: {failed[0]['last_line']}"
                              f" (log: {folder}/<run>/grid_stdout.txt); rerun to resume")
    return {"what": f"{len(runs)} models trained", "runs": [str(r.output_dir) for r in runs]}


def _evaluate_run(run: Path, dataset: Path, overwrite: bool, quiet: bool, log) -> Path:
    """Evaluate one run's TEST.REPORT_CHECKPOINT on its own validation split (reused while the run is unchanged).

    Mask R-CNN: model_final, not model_best: a model selected on the validation split would make the
    numbers reported on that split optimistic (README, "Model selection"). The U-Net recipe reports its
    best-validation-loss checkpoint, as the thesis it follows (docs/model_families.md says the cost).
    """
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.evaluation.evaluate import default_output_dir, evaluate_model
    from fetalheart.pipeline.grid import RUN_KEY_FILE

    checkpoint = load_cfg(run / "config.yaml", cpu_fallback=True).TEST.REPORT_CHECKPOINT  # model_best.pth: U-Net recipe
    cfg = load_cfg(run / "config.yaml", ["MODEL.WEIGHTS", str(run / checkpoint),
                                         "DATASETS.ROOT", str(dataset.resolve())], cpu_fallback=True)
    register_datasets_from_cfg(cfg, training=False)
    name = cfg.DATASETS.TEST[0]
    out = default_output_dir(cfg.MODEL.WEIGHTS, name)
    run_key = (run / RUN_KEY_FILE).read_text() if (run / RUN_KEY_FILE).is_file() else ""
    done = out / "evaluated_run_key.txt"
    if not overwrite and (out / "report.json").is_file() and done.is_file() and done.read_text() == run_key:
        log(f"[evaluate] {run.name}: reused {out}")
        return out
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables; they are in report.md
        res = evaluate_model(cfg, name, out, overwrite=True, quiet=quiet)
    write_text_atomic(done, run_key)
    fh = res["results"].get("fetalheart", {})
    log(f"[evaluate] {run.relative_to(run.parent.parent)}: Dice {fh.get('dice_macro', float('nan')):.3f}  "
        f"IoU {fh.get('iou_macro', float('nan')):.3f}  study mAP {fh.get('study_mAP', float('nan')):.3f}")
    return out


def _pool_folds(evals: list[Path], runs_dir: Path, folder: Path, log) -> list[str]:
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
        pooled.append(str(folder / key / "pooled"))
    return pooled


def _evaluate(plan: StudyPlan, run_dirs: list[str], dataset: Path, folder: Path, log) -> dict:
    evals = [_evaluate_run(Path(r), dataset, plan.overwrite, plan.quiet, log) for r in run_dirs]
    summary = {"what": f"{len(evals)} models evaluated on their validation split", "evals": [str(e) for e in evals]}
    if plan.folds > 1:
        summary["pooled"] = _pool_folds(evals, folder.parent / "runs", folder, log)
        summary["what"] += f"s ({plan.folds} folds; out-of-fold predictions pooled per model)"
    return summary


def _compare(eval_dirs: list[str], folder: Path) -> dict:
    from fetalheart.evaluation.compare import compare, load_runs, write_comparison

    table = compare(load_runs(eval_dirs))
    write_comparison(table, folder, overwrite=True)
    return {"what": f"{len(table['rows'])} models compared; best {table['best']}", "best": table["best"]}


# ----------------------------------------------------------------------------------------- the chain


def _plan_part(plan: StudyPlan, *names: str) -> dict:
    d = asdict(plan)
    return {n: d[n] for n in names}


def _grid_key(plan: StudyPlan) -> dict:
    """The files the grid reads: their content, not their names, decides whether a model is still valid."""
    from fetalheart.config import resolve_config_path

    files = [plan.grid, *([plan.base] if plan.base else []), *plan.overlays]
    return {"files": files_fingerprint(resolve_config_path(f) for f in files),
            **_plan_part(plan, "protocol", "only", "seeds", "opts", "folds")}


def _video_stages(plan: StudyPlan, stages: Stages, out: Path) -> Path | None:
    """phantom/videos -> frames (-> ground truth for the phantom); the LabelMe folder, or None to stop."""
    if plan.phantom_seeds:
        ph = stages.run("phantom", out / "phantom", StageKey(_plan_part(plan, "phantom_seeds", "phantom_seconds",
                                                                           "phantom_size")),
                        lambda: _phantoms(plan, out / "phantom"))
        stages.run("extract", out / "frames", StageKey(_plan_part(plan, "extract"), {"phantom": stages.keys["phantom"]}),
                   lambda: _extract(plan, ph["videos"], out / "frames"))
        stages.run("labels", out / "labelme", StageKey({}, {"extract": stages.keys["extract"]}),
                   lambda: _ground_truth_labelme(out / "frames", out / "phantom", out / "labelme"))
        return out / "labelme"
    from fetalheart.video.io import VIDEO_SUFFIXES

    videos = sorted(str(p) for p in Path(plan.videos).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FetalHeartError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {plan.videos}")
    stages.run("extract", out / "frames", StageKey({**_plan_part(plan, "extract"), "videos": files_fingerprint(videos)}),
               lambda: _extract(plan, videos, out / "frames"))
    return None


def run_study(plan: StudyPlan, log: Callable[[str], None] = print) -> Path | None:
    """Run (or resume) every stage; return the path of report.md, or None after a planned stop
    (frames extracted from videos: they must be labelled first)."""
    out = plan.output
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(plan.overwrite, log)
    labelme = plan.labelme
    if plan.phantom_seeds or plan.videos:
        labelme = _video_stages(plan, stages, out)
        if labelme is None:
            return None
    if labelme is None:
        raise FetalHeartError("nothing to do: give LabelMe data (labelme:) or videos (videos:)")
    data_key = stages.keys.get("labels") or folder_fingerprint(labelme)
    stages.run("convert", out / "coco", StageKey({**_plan_part(plan, "convert", "folds"), "labelme": data_key}),
               lambda: _convert(plan, labelme, out / "coco"))
    trained = stages.run("train", out / "runs", StageKey(_grid_key(plan), {"convert": stages.keys["convert"]}),
                         lambda: _train(plan, out / "coco", out / "runs", log), clear=False)
    evals = stages.run("evaluate", out / "evaluations", StageKey({}, {"train": stages.keys["train"]}),
                       lambda: _evaluate(plan, trained["runs"], out / "coco", out / "evaluations", log))
    stages.run("compare", out / "compare", StageKey({}, {"evaluate": stages.keys["evaluate"]}),
               lambda: _compare(evals["evals"], out / "compare"))
    from fetalheart.pipeline.study_report import write_study_report

    return write_study_report(out, stages.summaries)

