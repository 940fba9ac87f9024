"""``run_study``: the whole study in one command (``--demo``: on phantom videos, CPU, minutes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fetalheart.utils.cli import (
    add_int_list,
    add_overwrite,
    add_quiet,
    join_int_lists,
    parallel_count,
    run_cli,
)
from fetalheart.utils.errors import FetalHeartError

import yaml

EPILOG = """examples:
  tools/run_study.py --demo                      # phantom videos -> ... -> outputs/demo/report.md (docs/demo.md)
  tools/run_study.py --demo --folds 3            # 3-fold cross-validation by video
  tools/run_study.py --demo --iters 40 -o /tmp/quick
  tools/run_study.py --demo --grid configs/refine_demo_grid.yaml   # + Gaussian paste, + two-step refinement
  tools/run_study.py --config-file configs/study.yaml   # your LabelMe data, the study's 22 models

A second run reuses every stage whose inputs (their content, not paths or times) are unchanged and
reruns the ones a changed plan affects (the log says why). --overwrite reruns every stage but keeps
trained models that are still valid for the plan; --force retrains them too (old runs are kept in
runs/.stale/). A rerun never deletes a file the pipeline did not write (labels saved beside the
frames stop it with an error naming them): label extracted frames into OUTPUT/labelme.
"""

#: Demo schedule on a 2-core laptop (docs/demo.md: the measured trade-off and why this point).
DEMO_ITERS = 600
DEMO_SIZE = 160
#: Overlays of the demo: fetalheart's recommended protocol, sized for a CPU, then the demo's own choices.
DEMO_OVERLAYS = ["overlays/recommended.yaml", "overlays/cpu.yaml", "overlays/demo.yaml"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="phantom data, two models, short CPU schedule")
    mode.add_argument("--config-file", dest="config", metavar="YAML", help="study YAML (see configs/study.yaml)")
    mode.add_argument("--config", dest="config", help=argparse.SUPPRESS)  # old spelling
    p.add_argument("-o", "--output", help="output folder (demo default outputs/demo)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="grouped K-fold cross-validation: every model trained and evaluated on each fold")
    p.add_argument("--iters", type=int, default=DEMO_ITERS, help=f"demo: iterations per model (default {DEMO_ITERS})")
    p.add_argument("--size", type=int, default=DEMO_SIZE, help=f"demo: image long side (default {DEMO_SIZE})")
    p.add_argument("--seconds", type=float, default=6.0, help="demo: seconds of each phantom video (default 6)")
    p.add_argument("--grid", default="configs/demo_grid.yaml", metavar="YAML",
                   help="demo: the grid of models (default configs/demo_grid.yaml; configs/refine_demo_grid.yaml adds "
                        "model 2 with Gaussian pasting and with two-step refinement, docs/small_structures.md)")
    add_int_list(p, "--only", "demo/study: run numbers of the grid to train, e.g. 2,14")
    p.add_argument("--max-parallel", type=parallel_count, default=None, metavar="N|auto",
                   help="models trained side by side (default: the study config's, demo: auto)")
    p.add_argument("--parallel", dest="max_parallel", type=parallel_count, help=argparse.SUPPRESS)  # old spelling
    add_overwrite(p, "every stage is rerun; trained models still valid for the plan are kept, see --force")
    p.add_argument("--force", action="store_true", help="with --overwrite: retrain valid models too")
    add_quiet(p, "no progress bars or progress lines")
    return p


def demo_plan(args):
    from fetalheart.pipeline.study import DEMO_SEEDS, StudyPlan

    it, size = args.iters, args.size
    epochs = max(1, min(5, it))  # validation loss once per epoch; LR steps at 75% and 90% of training
    schedule = ["SOLVER.EPOCHS", str(epochs), "SOLVER.STEPS_PER_EPOCH", str(max(1, it // epochs)),
                # No COCO evaluation inside training (the evaluate stage does it once, with plots);
                # validation losses once per epoch on 10 images.
                "TEST.EVAL_DURING_TRAINING", "False", "TEST.VAL_LOSS_MAX_IMAGES", "10",
                "INPUT.MAX_SIZE_TRAIN", str(size), "INPUT.MAX_SIZE_TEST", str(size),
                "INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MIN_SIZE_TEST", str(size), "INPUT.SQUARE_SIZE", "0",
                "EVAL.BOOTSTRAP_SAMPLES", "500"]
    return StudyPlan(output=Path(args.output or "outputs/demo"), phantom_seeds=DEMO_SEEDS,
                     phantom_seconds=args.seconds, grid=args.grid, folds=args.folds or 0,
                     overlays=list(DEMO_OVERLAYS), opts=schedule, only=args.only,
                     max_parallel=args.max_parallel or "auto", overwrite=args.overwrite, force=args.force,
                     quiet=args.quiet)


def config_plan(args):
    from fetalheart.config import protocol_overlays, resolve_config_path
    from fetalheart.pipeline.study import StudyPlan

    path = resolve_config_path(args.config)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FetalHeartError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    known = set(StudyPlan.__dataclass_fields__) - {"phantom_seeds", "phantom_seconds", "phantom_size", "overwrite",
                                                   "force", "quiet"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FetalHeartError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("labelme", "videos"):
        if data.get(key) and not Path(data[key]).is_dir():
            raise FetalHeartError(f"{path}: {key}: {data[key]} is not a folder")
    if data.get("labelme") and data.get("videos"):
        raise FetalHeartError(f"{path}: both labelme: and videos: are set; remove the line 'videos: {data['videos']}' "
                              "(the frames are extracted once; labelme: now names their labels)")
    try:
        protocol_overlays(data.get("protocol", "study-faithful"))
    except FetalHeartError as exc:
        raise FetalHeartError(f"{path}: {exc}") from None
    data["output"] = Path(args.output or data.get("output") or "outputs/study")
    for key in ("labelme", "videos"):
        data[key] = Path(data[key]) if data.get(key) else None
    data["opts"] = [str(x) for x in data.get("opts") or []]
    if args.folds is not None:
        data["folds"] = args.folds
    if args.only:
        data["only"] = args.only
    data["max_parallel"] = args.max_parallel or data.get("max_parallel", 1)
    return StudyPlan(**{k: v for k, v in data.items() if v is not None}, overwrite=args.overwrite, force=args.force,
                     quiet=args.quiet)


def _is_labelme(path: Path) -> bool:
    from fetalheart.annotations.labelme import is_labelme

    try:
        return is_labelme(json.loads(path.read_text(encoding="utf-8-sig")))
    except (OSError, ValueError):
        return False


def labelling_hint(output: Path, config: str) -> str:
    """What to do after frames were extracted: label them into their own folder (never beside the
    frames: a rerun of the extraction would stop on them), then point the study config at it."""
    from fetalheart.pipeline.study import LABELS_DIR

    frames, labels = output / "frames", output / LABELS_DIR
    lines = [f"\nFrames extracted to {frames}. Next: label them in LabelMe (or X-AnyLabeling), saving the labels in "
             f"{labels}/, e.g.",
             f"  labelme {frames} --output {labels}",
             f"then replace the line 'videos: ...' in {config} with 'labelme: {labels}' and run again:",
             f"  tools/run_study.py --config-file {config}"]
    beside = sorted(p.name for p in frames.glob("*.json") if _is_labelme(p))
    if beside:
        lines.append(f"({len(beside)} LabelMe file(s) are saved beside the frames, e.g. {beside[0]}: they are kept, "
                     f"but move them to {labels}/, or name {frames} in 'labelme:')")
    return "\n".join(lines)


def _main(argv=None) -> int:
    from fetalheart.pipeline.study import run_study

    args = build_parser().parse_args(join_int_lists(sys.argv[1:] if argv is None else argv, ("--only",)))
    if args.force and not args.overwrite:
        raise FetalHeartError("--force only makes sense with --overwrite (it retrains models still valid for the plan)")
    plan = demo_plan(args) if args.demo else config_plan(args)
    report = run_study(plan)
    if report is None:  # a planned stop: frames must be labelled before anything can be trained
        print(labelling_hint(plan.output, args.config))
        return 0
    print(f"\nDone. Report: {report}  (open it in a Markdown viewer; figures beside it)")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
