"""``run_grid GRID.yaml -o OUT``: train every model of a grid (the study's 22), skipping finished runs."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from fetalheart.utils.cli import run_cli
from fetalheart.utils.errors import FetalHeartError

from tabulate import tabulate

EPILOG = """examples:
  tools/run_grid.py configs/study_grid.yaml -o output/study --dry-run
  tools/run_grid.py configs/study_grid.yaml -o output/study --only 2,14 --seeds 0 1 2 DATASETS.ROOT data/coco
  # two small runs side by side on each of two GPUs
  tools/run_grid.py configs/study_grid.yaml -o output/study --gpus 0,1 --max-parallel 4 DATASETS.ROOT data/coco
  # on a Slurm cluster (submitit)
  tools/run_grid.py configs/study_grid.yaml -o output/study --launcher slurm --slurm-partition gpu DATASETS.ROOT data/coco
"""


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 13,14, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_grid.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", help="grid YAML (e.g. configs/study_grid.yaml)")
    p.add_argument("-o", "--output", required=True, help="folder for the runs (one sub-folder each)")
    p.add_argument("--only", type=_int_list, help="run numbers in the grid, e.g. 13,14")
    p.add_argument("--seeds", type=int, nargs="+", help="train each model once per seed (sub-folders seedN)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their settings, train nothing")
    p.add_argument("--max-parallel", type=int, default=1, help="runs at the same time (default 1)")
    p.add_argument("--gpus", help="GPU ids to spread runs over, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES per run)")
    p.add_argument("--base", help="replace every config's _BASE_ (e.g. configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml)")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="submitit executor: local processes (default) or Slurm")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-timeout-min", type=int, default=180)
    p.add_argument("--slurm-gpus-per-node", type=int, default=1)
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides for every run, after the options (e.g. DATASETS.ROOT data/coco)")
    return p


_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def _split_opts(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split trailing KEY VALUE overrides off, so `--seeds 0 1 2 DATASETS.ROOT x` parses as meant."""
    for i, token in enumerate(argv):
        if _CONFIG_KEY.match(token) and (i == 0 or argv[i - 1] not in ("--base", "-o", "--output")):
            return argv[:i], argv[i:]
    return argv, []


def _main(argv=None) -> int:
    from fetalheart.grid import describe, load_grid, run_grid

    own, opts = _split_opts(list(sys.argv[1:] if argv is None else argv))
    late = [t for t in opts[::2] if t.startswith("-")]
    if late:
        raise FetalHeartError(f"option {late[0]} after the KEY VALUE overrides: put options first")
    args = build_parser().parse_args(own)
    args.opts = [*args.opts, *opts]
    if len(args.opts) % 2:
        raise FetalHeartError(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    runs = load_grid(args.grid, args.output, only=args.only, seeds=args.seeds, opts=args.opts, base=args.base)
    if args.dry_run:
        rows = [describe(r) for r in runs]
        print(tabulate(rows, headers="keys"))
        print(f"{len(rows)} runs")
        return 0
    slurm = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_timeout_min,
             "gpus_per_node": args.slurm_gpus_per_node}
    slurm = {k: v for k, v in slurm.items() if v is not None}
    gpus = [g for g in args.gpus.split(",") if g] if args.gpus else None
    results = run_grid(runs, out_dir=Path(args.output), max_parallel=args.max_parallel, gpus=gpus,
                       launcher=args.launcher, slurm=slurm)
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
