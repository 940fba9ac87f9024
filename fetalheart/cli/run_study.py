"""``run_study``: the whole study in one command (``--demo``: on phantom videos, CPU, minutes)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fetalheart.utils.cli import run_cli
from fetalheart.utils.errors import FetalHeartError

import yaml

EPILOG = """examples:
  tools/run_study.py --demo                      # phantom videos -> ... -> outputs/demo/report.md
  tools/run_study.py --demo --iters 40 -o /tmp/quick
  tools/run_study.py --config configs/study.yaml # your LabelMe data, the study's 22 models
"""

#: Demo training schedule on 2 CPU cores (see README for how it was chosen).
DEMO_ITERS = 180  # ~21 min on 2 cores; 110 fits 15 min but scores nothing yet (README, "Measured figures")
DEMO_SIZE = 192


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="phantom data, two models, short CPU schedule")
    mode.add_argument("--config", help="study YAML (see configs/study.yaml)")
    p.add_argument("-o", "--output", help="output folder (demo default outputs/demo)")
    p.add_argument("--iters", type=int, default=DEMO_ITERS, help=f"demo: iterations per model (default {DEMO_ITERS})")
    p.add_argument("--size", type=int, default=DEMO_SIZE, help=f"demo: training image size (default {DEMO_SIZE})")
    p.add_argument("--seconds", type=float, default=6.0, help="demo: seconds of each phantom video (default 6)")
    p.add_argument("--parallel", type=int, default=2,
                   help="demo: models trained side by side, one CPU thread each (default 2)")
    p.add_argument("--overwrite", action="store_true", help="redo every stage instead of reusing finished ones")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def demo_plan(args):
    from fetalheart.study import DEMO_SEEDS, StudyPlan

    it, size = args.iters, args.size
    schedule = ["SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", str(it), "SOLVER.WARMUP_ITERS", str(max(1, it // 10)),
                "SOLVER.STEPS", f"({int(it * 0.8)},)", "SOLVER.CHECKPOINT_PERIOD", str(10 ** 6),
                # No evaluation inside training (the evaluate stage does it once, with plots);
                # validation losses four times on a subset of 20 images.
                "TEST.EVAL_DURING_TRAINING", "False", "TEST.VAL_LOSS_PERIOD", str(max(1, it // 4)),
                "TEST.VAL_LOSS_MAX_IMAGES", "20", "SOLVER.BEST_CHECKPOINT_METRIC", "",
                "MODEL.RPN.POST_NMS_TOPK_TEST", "300",
                "INPUT.MAX_SIZE_TRAIN", str(size), "INPUT.MAX_SIZE_TEST", str(size),
                "INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MIN_SIZE_TEST", str(size),
                "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
                "MODEL.RPN.POST_NMS_TOPK_TRAIN", "500", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "128",
                "TEST.DETECTIONS_PER_IMAGE", "30", "EVAL.BOOTSTRAP_SAMPLES", "500"]
    if args.parallel > 1:
        # Mask R-CNN at batch 1 and small images uses two CPU threads poorly: two models side by side
        # with one thread each finish sooner than one after the other with two threads each.
        os.environ["OMP_NUM_THREADS"] = "1"
    return StudyPlan(output=Path(args.output or "outputs/demo"), phantom_seeds=DEMO_SEEDS,
                     phantom_seconds=args.seconds, grid="configs/demo_grid.yaml", opts=schedule,
                     max_parallel=args.parallel, overwrite=args.overwrite, quiet=args.quiet)


def config_plan(args):
    from fetalheart.config import resolve_config_path
    from fetalheart.study import StudyPlan

    path = resolve_config_path(args.config)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FetalHeartError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    known = set(StudyPlan.__dataclass_fields__) - {"phantom_seeds", "phantom_seconds", "phantom_size"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FetalHeartError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    for key in ("labelme", "videos"):
        if data.get(key) and not Path(data[key]).is_dir():
            raise FetalHeartError(f"{path}: {key}: {data[key]} is not a folder")
    data["output"] = Path(args.output or data.get("output") or "outputs/study")
    for key in ("labelme", "videos"):
        data[key] = Path(data[key]) if data.get(key) else None
    data["opts"] = [str(x) for x in data.get("opts") or []]
    return StudyPlan(**{k: v for k, v in data.items() if v is not None}, overwrite=args.overwrite, quiet=args.quiet)


def _main(argv=None) -> int:
    from fetalheart.study import run_study

    args = build_parser().parse_args(argv)
    plan = demo_plan(args) if args.demo else config_plan(args)
    report = run_study(plan)
    print(f"\nDone. Report: {report}  (open it in a Markdown viewer; figures beside it)")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
