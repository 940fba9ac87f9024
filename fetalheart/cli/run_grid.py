"""``run_grid --config-file GRID.yaml -o OUT``: train every model of a grid (the study's 22), skipping finished runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.utils.cli import (
    add_int_list,
    add_quiet,
    join_int_lists,
    parallel_count,
    run_cli,
    split_overrides,
)
from fetalheart.utils.errors import FetalHeartError

from tabulate import tabulate

EPILOG = """examples:
  tools/run_grid.py --config-file configs/study_grid.yaml -o output/study --dry-run
  tools/run_grid.py --config-file configs/study_grid.yaml -o output/study --only 2,14 --seeds 0,1,2 DATASETS.ROOT data/coco
  # the study's models under fetalheart's recommended protocol, 5-fold cross-validation
  tools/run_grid.py --config-file configs/study_grid.yaml -o output/cv --protocol recommended --folds 5 DATASETS.ROOT data/coco5
  # as many runs side by side as free GPU memory (or CPU cores) allow
  tools/run_grid.py --config-file configs/study_grid.yaml -o output/study --max-parallel auto DATASETS.ROOT data/coco
  # on a Slurm cluster (submitit)
  tools/run_grid.py --config-file configs/study_grid.yaml -o output/study --launcher slurm --slurm-partition gpu DATASETS.ROOT data/coco

A run whose config, overlays, overrides or dataset changed since it was trained is trained again
(the old folder is moved to OUT/.stale/); --force retrains finished runs too.
"""

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_grid.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", dest="grid_file", metavar="GRID.yaml",
                   help="grid YAML (e.g. configs/study_grid.yaml); required")
    p.add_argument("grid", nargs="?", help=argparse.SUPPRESS)  # the old spelling: the grid as the first argument
    p.add_argument("-o", "--output", required=True, help="folder for the runs (one sub-folder each)")
    add_int_list(p, "--only", "run numbers in the grid, e.g. 13,14")
    add_int_list(p, "--seeds", "train each model once per seed, e.g. 0,1,2 (sub-folders seedN)")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="train each model on each of the K folds of a labelme2coco --folds K dataset")
    p.add_argument("--protocol", default="study-faithful", metavar="{recommended,study-faithful}",
                   help="study-faithful (the configs as shipped) or recommended (adds overlays/recommended.yaml)")
    p.add_argument("--base", help="replace every config's _BASE_ (e.g. configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml)")
    p.add_argument("--overlay", action="append", default=[], metavar="YAML",
                   help="merge this overlay into every run's config (repeatable), e.g. configs/overlays/cpu.yaml")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their settings, train nothing")
    p.add_argument("--max-parallel", type=parallel_count, default=1, metavar="N|auto",
                   help="runs at the same time (default 1); auto: from free GPU memory, else one per CPU core")
    p.add_argument("--gpus", help="GPU ids to spread runs over, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES per run)")
    p.add_argument("--force", action="store_true", help="train finished runs again (old folders kept in OUT/.stale/)")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="submitit executor: local processes (default) or Slurm")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-timeout-min", type=int, default=180)
    p.add_argument("--slurm-gpus-per-node", type=int, default=1)
    p.add_argument("--progress-every", type=float, default=30.0, metavar="S",
                   help="seconds between progress lines while training (default 30)")
    add_quiet(p, "no progress lines (start/finish of each run and errors are still printed)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides for every run, after the options (e.g. DATASETS.ROOT data/coco)")
    return p


def _parse(argv) -> argparse.Namespace:
    tokens = join_int_lists(sys.argv[1:] if argv is None else argv, ("--only", "--seeds"))
    # Split trailing KEY VALUE overrides off, so `--seeds 0 1 2 DATASETS.ROOT x` parses as meant.
    first = next((i for i, t in enumerate(tokens) if split_overrides([t, "v"])[1]), len(tokens))
    own, opts = tokens[:first], tokens[first:]
    late = [t for t in opts[::2] if t.startswith("-")]
    if late:
        raise FetalHeartError(f"option {late[0]} after the KEY VALUE overrides: put options first")
    args = build_parser().parse_args(own)
    if args.grid and args.grid_file and args.grid != args.grid_file:
        raise FetalHeartError(f"two grids: --config-file {args.grid_file} and {args.grid}; give one")
    args.grid = args.grid_file or args.grid
    if not args.grid:
        raise FetalHeartError("--config-file GRID.yaml is required (e.g. configs/study_grid.yaml)")
    args.opts = [*args.opts, *opts]
    if len(args.opts) % 2:
        raise FetalHeartError(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    return args


def _main(argv=None) -> int:
    from fetalheart.pipeline.grid import GridOptions, GridSpec, describe, load_grid, run_grid

    args = _parse(argv)
    from fetalheart.config import protocol_overlays

    overlays = protocol_overlays(args.protocol) + args.overlay
    spec = GridSpec(only=args.only, seeds=args.seeds, folds=args.folds, opts=args.opts, base=args.base,
                    overlays=overlays)
    runs = load_grid(args.grid, args.output, spec)
    if args.dry_run:
        from fetalheart.pipeline.grid import fingerprint_runs

        fingerprint_runs(runs)
        rows = [describe(r) for r in runs]
        print(tabulate(rows, headers="keys"))
        print(f"{len(rows)} runs")
        return 0
    slurm = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_timeout_min,
             "gpus_per_node": args.slurm_gpus_per_node}
    options = GridOptions(max_parallel=args.max_parallel, launcher=args.launcher, force=args.force,
                          gpus=[g for g in args.gpus.split(",") if g] if args.gpus else None,
                          slurm={k: v for k, v in slurm.items() if v is not None},
                          progress_every=0 if args.quiet else args.progress_every)
    results = run_grid(runs, out_dir=Path(args.output), options=options)
    print(tabulate([{k: r[k] for k in ("run", "returncode", "seconds")} for r in results], headers="keys"))
    failed = [r for r in results if r["returncode"] != 0]
    for r in failed:
        print(f"FAILED {r['run']}: {r['last_line']}", file=sys.stderr)
    if failed:
        raise FetalHeartError(f"{len(failed)} of {len(results)} runs failed (logs: <run>/grid_stdout.txt)")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
