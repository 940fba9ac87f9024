#!/usr/bin/env python
"""The study's models 2 (Original) and 14 (AHE+CLAHE), momentum 0.9, on a larger phantom at 512 px.

For a GPU machine: several phantom videos (one per seed) -> extract_frames -> labelme2coco (split by
video, ~140/36 frames) -> both models trained side by side from scratch -> evaluation -> compare_runs.
The stages are run_study's, so an interrupted run resumes. Prints the comparison table.

    python benchmarks/gpu_study.py -o outputs/gpu_study --iters 10000     # the study's schedule
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fetalheart.pipeline.study import StudyPlan, run_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="outputs/gpu_study")
    ap.add_argument("--iters", type=int, default=10_000, help="iterations per model (study: 20 x 500)")
    ap.add_argument("--videos", type=int, default=5, help="phantom videos (seeds); one goes to val")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--eval-period", type=int, default=1000)
    ap.add_argument("--max-parallel", type=int, default=2, help="models trained side by side on the GPU")
    args = ap.parse_args()
    it = args.iters
    opts = ["SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", str(it), "SOLVER.STEPS", f"({int(it * 0.75)}, {int(it * 0.9)})",
            "SOLVER.WARMUP_ITERS", str(min(500, it // 10)), "TEST.EVAL_PERIOD", str(args.eval_period),
            "SOLVER.CHECKPOINT_PERIOD", str(args.eval_period), "DATALOADER.NUM_WORKERS", "4", "MODEL.DEVICE", "cuda"]
    plan = StudyPlan(output=Path(args.output), phantom_seeds=tuple(range(args.videos)),
                     phantom_seconds=args.seconds, phantom_size=(1280, 720),
                     extract={"every": 3, "auto_crop": True, "min_sharpness": "auto"},
                     convert={"val_fraction": 1.0 / args.videos, "seed": 0},
                     grid="configs/demo_grid.yaml", opts=opts, max_parallel=args.max_parallel, quiet=True)
    report = run_study(plan)
    print((Path(args.output) / "compare" / "comparison.md").read_text())
    print(f"report: {report}")


if __name__ == "__main__":
    main()
