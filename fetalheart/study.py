"""The whole study as one pipeline of cached stages: phantom/videos -> frames -> LabelMe -> COCO ->
training grid -> evaluation -> comparison -> one report.

Each stage writes into its own folder and a ``stage.json`` marker when it finished; a second run
reuses finished stages (seconds) unless ``overwrite``. The demo runs the chain on phantom videos
with a short CPU schedule; the full study runs the 22-model grid on the user's LabelMe data.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import write_json_atomic, write_text_atomic

DEMO_SEEDS = (0, 1, 2)  # three phantom "fetuses": the split is by video


@dataclass
class StudyPlan:
    """Everything the pipeline needs; the demo and configs/study.yaml both fill it."""

    output: Path
    labelme: Path | None = None  # folder of LabelMe JSONs (skips video stages)
    videos: Path | None = None  # folder of videos to extract frames from
    phantom_seeds: tuple[int, ...] = ()
    phantom_seconds: float = 6.0
    phantom_size: tuple[int, int] = (640, 360)
    extract: dict = field(default_factory=lambda: {"every": 3, "auto_crop": True, "min_sharpness": "auto"})
    convert: dict = field(default_factory=lambda: {"val_fraction": 0.34, "seed": 0})
    grid: str = "configs/study_grid.yaml"
    only: list[int] | None = None
    seeds: list[int] | None = None
    base: str | None = None
    opts: list[str] = field(default_factory=list)
    max_parallel: int = 1
    gpus: list[str] | None = None
    overwrite: bool = False
    quiet: bool = False


class Stage:
    """A cached step: skipped when its marker exists (unless overwrite), timed and logged."""

    def __init__(self, plan: StudyPlan, log: Callable[[str], None]):
        self.plan, self.log = plan, log
        self.summaries: list[dict] = []

    def run(self, name: str, folder: Path, fn: Callable[[], dict]) -> dict:
        marker = folder / "stage.json"
        if marker.is_file() and not self.plan.overwrite:
            summary = json.loads(marker.read_text())
            summary["reused"] = True
            self.log(f"[{name}] reused {folder} ({summary.get('what', '')})")
        else:
            if folder.exists() and self.plan.overwrite:
                shutil.rmtree(folder)
            start = time.perf_counter()
            self.log(f"[{name}] running ...")
            summary = fn()
            summary["seconds"] = round(time.perf_counter() - start, 1)
            write_json_atomic(marker, summary)
            summary["reused"] = False
            self.log(f"[{name}] {summary.get('what', '')} in {summary['seconds']:.0f} s")
        summary["stage"] = name
        self.summaries.append(summary)
        return summary


def _phantoms(plan: StudyPlan, folder: Path) -> dict:
    from fetalheart.phantom import make_phantom

    made = [make_phantom(folder / f"phantom_s{s}", seconds=plan.phantom_seconds, size=plan.phantom_size, seed=s,
                         quiet=plan.quiet) for s in plan.phantom_seeds]
    n = sum(sum(m["counts"].values()) for m in made)
    return {"what": f"{len(made)} phantom videos, {n} frames at {plan.phantom_size[0]}x{plan.phantom_size[1]}",
            "videos": [str(p) for p in sorted(folder.glob("*/*.mp4"))]}


def _extract(plan: StudyPlan, videos: list[str], folder: Path) -> dict:
    from fetalheart.video import extract_frames

    result = extract_frames(videos, folder, quiet=plan.quiet, **plan.extract)
    c = result.counts
    return {"what": f"{len(result.kept)} frames kept of {len(result.records)} sampled "
                    f"({', '.join(f'{k} {v}' for k, v in c.items())})", "counts": c}


def _ground_truth_labelme(frames_dir: Path, phantom_dir: Path, folder: Path) -> dict:
    """LabelMe JSONs for the kept frames: the phantom's ground truth mapped through the crop/resize."""
    import csv

    from fetalheart.video_geometry import FrameGeometry

    folder.mkdir(parents=True, exist_ok=True)
    with open(frames_dir / "frames.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "kept"]
    written = 0
    for row in rows:
        stem = Path(row["source"]).stem
        geometry = FrameGeometry.load(frames_dir, stem)
        src = json.loads((phantom_dir / stem / "labelme" / f"{stem}_{int(row['frame_index']):06d}.json").read_text())
        for shape in src["shapes"]:
            shape["points"] = geometry.map_points(shape["points"]).round(2).tolist()
        w, h = geometry.output_size
        src.update(imagePath=f"../frames/{Path(row['file']).name}", imageHeight=h, imageWidth=w, imageData=None)
        write_json_atomic(folder / f"{Path(row['file']).stem}.json", src)
        written += 1
    return {"what": f"{written} ground-truth LabelMe files (phantom geometry mapped through the crop)"}


def _convert(plan: StudyPlan, labelme: Path, folder: Path) -> dict:
    from fetalheart.convert import convert

    report = convert([labelme], folder, overwrite=True, quiet=plan.quiet, **plan.convert)
    n = report["images"]
    return {"what": f"COCO dataset: {n['train']} train / {n['val']} val images, grouped by "
                    f"{report['split'].get('grouping', report['split'].get('method'))}", "images": n}


def _train(plan: StudyPlan, dataset: Path, folder: Path) -> dict:
    from fetalheart.grid import load_grid, run_grid

    opts = ["DATASETS.ROOT", str(dataset.resolve()), "DATASETS.TRAIN", "('fetalheart_train',)",
            "DATASETS.TEST", "('fetalheart_val',)", *plan.opts]
    runs = load_grid(plan.grid, folder, only=plan.only, seeds=plan.seeds, opts=opts, base=plan.base)
    results = run_grid(runs, out_dir=folder, max_parallel=plan.max_parallel, gpus=plan.gpus)
    failed = [r for r in results if r["returncode"] != 0]
    if failed:
        raise FetalHeartError(f"{len(failed)} training runs failed, e.g. {failed[0]['run']}: {failed[0]['last_line']}"
                              f" (log: {folder}/<run>/log.txt); rerun to resume")
    return {"what": f"{len(runs)} models trained", "runs": [str(r.output_dir) for r in runs]}


def _evaluate(run_dirs: list[str], dataset: Path, log) -> dict:
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.evaluation.pipeline import default_output_dir, evaluate_model

    done = []
    for run in map(Path, run_dirs):
        cfg = load_cfg(run / "config.yaml", ["MODEL.WEIGHTS", str(run / "model_final.pth"),
                                             "DATASETS.ROOT", str(dataset.resolve())], cpu_fallback=True)
        register_datasets_from_cfg(cfg)
        out = default_output_dir(cfg.MODEL.WEIGHTS, "fetalheart_val")
        if (out / "report.json").is_file():
            done.append(str(out))
            continue
        res = evaluate_model(cfg, "fetalheart_val", out, overwrite=True, quiet=True)
        flat = res["report"].get("summary", {})
        log(f"[evaluate] {run.name}: {json.dumps({k: flat[k] for k in list(flat)[:6]}) if flat else 'done'}")
        done.append(str(out))
    return {"what": f"{len(done)} models evaluated on the validation split", "evals": done}


def _compare(eval_dirs: list[str], folder: Path) -> dict:
    from fetalheart.evaluation.compare import compare, load_runs, write_comparison

    table = compare(load_runs(eval_dirs))
    write_comparison(table, folder, overwrite=True)
    return {"what": f"{len(table['rows'])} models compared; best {table['best']}", "best": table["best"]}


def run_study(plan: StudyPlan, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) every stage; return the path of the final report.md."""
    out = plan.output
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage(plan, log)
    labelme = plan.labelme
    if plan.phantom_seeds:
        ph = stage.run("phantom", out / "phantom", lambda: _phantoms(plan, out / "phantom"))
        stage.run("extract", out / "frames", lambda: _extract(plan, ph["videos"], out / "frames"))
        stage.run("labels", out / "labelme", lambda: _ground_truth_labelme(out / "frames", out / "phantom",
                                                                          out / "labelme"))
        labelme = out / "labelme"
    elif plan.videos:
        videos = sorted(str(p) for p in Path(plan.videos).iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mov"))
        if not videos:
            raise FetalHeartError(f"no videos (.mp4/.avi/.mov) in {plan.videos}")
        stage.run("extract", out / "frames", lambda: _extract(plan, videos, out / "frames"))
        raise FetalHeartError(f"frames extracted to {out / 'frames'}: label them in LabelMe, then set "
                              "'labelme:' in the study config to that folder and run again")
    if labelme is None:
        raise FetalHeartError("nothing to do: give LabelMe data (labelme:) or videos (videos:)")
    stage.run("convert", out / "coco", lambda: _convert(plan, labelme, out / "coco"))
    trained = stage.run("train", out / "runs", lambda: _train(plan, out / "coco", out / "runs"))
    evals = stage.run("evaluate", out / "evaluations", lambda: _evaluate(trained["runs"], out / "coco", log))
    stage.run("compare", out / "compare", lambda: _compare(evals["evals"], out / "compare"))
    return write_study_report(out, stage.summaries)


def write_study_report(out: Path, summaries: list[dict]) -> Path:
    """report.md: what each stage did, the comparison table and figure, links to per-model reports."""
    lines = ["# fetalheart study report", "",
             "| stage | what | seconds | reused |", "|---|---|---:|---|"]
    lines += [f"| {s['stage']} | {s.get('what', '')} | {s.get('seconds', 0):.0f} | {'yes' if s['reused'] else 'no'} |"
              for s in summaries]
    compare_md = out / "compare" / "comparison.md"
    if compare_md.is_file():
        body = compare_md.read_text().split("\n", 1)[-1]  # drop its own title
        lines += ["", "## Model comparison", body, "", "![comparison](compare/comparison.png)"]
    evals = next((s.get("evals") for s in summaries if s["stage"] == "evaluate"), []) or []
    for ev in evals:
        rel = Path(ev).resolve().relative_to(out.resolve())
        name = rel.parts[1] if len(rel.parts) > 1 else str(rel)
        lines += ["", f"## {name}", f"Full report: [{rel / 'report.md'}]({rel / 'report.md'})", "",
                  f"![per class]({rel / 'plots' / 'per_class.png'})"]
        curves = Path(ev) / "plots" / "loss_curves.png"
        if curves.is_file():
            lines.append(f"![loss curves]({rel / 'plots' / 'loss_curves.png'})")
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
