"""Compare evaluated runs: table of models by mAP, IoU, Dice (CIs, ranks, seeds) and paired tests.

Each RUN_DIR is a training run folder with eval/<dataset>/report.json (tools/evaluate.py output)
or an evaluation folder itself. Writes comparison.{md,csv,json,png} into OUT.
"""

from __future__ import annotations

import argparse
import sys

import fetalheart  # noqa: F401
from fetalheart.utils.cli import run_cli

EPILOG = """example:
  tools/compare_runs.py output/model* -o output/comparison
  tools/compare_runs.py output/model1 output/model14 --baseline "model 1" --dataset fetalheart_val -o cmp

The paired test: two-sided Wilcoxon signed-rank on per-image mean Dice against the baseline
(default: the Original-enhancement model at the same momentum), Holm-corrected over all rows.
"""


def build_parser() -> argparse.ArgumentParser:
    from fetalheart.evaluation.compare import METRICS

    p = argparse.ArgumentParser(prog="compare_runs.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or evaluation folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--dataset", default=None, help="which eval/<dataset> to use when a run has several")
    p.add_argument("--baseline", default=None,
                   help="baseline model name or study id (default: Original at the same momentum)")
    p.add_argument("--rank-by", default="segm_AP", choices=METRICS, help="metric for ranks and best model")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p.add_argument("--overwrite", action="store_true", help="replace existing comparison files")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.evaluation.compare import compare, comparison_markdown, load_runs, write_comparison

    runs = load_runs(args.runs, args.dataset)
    table = compare(runs, baseline=args.baseline, rank_by=args.rank_by, alpha=args.alpha)
    write_comparison(table, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(comparison_markdown(table))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
