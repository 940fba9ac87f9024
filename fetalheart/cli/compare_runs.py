"""Compare evaluated runs: table of models by mAP, IoU, Dice (folds, seeds, cluster CIs) and paired tests.

Each RUN_DIR is a training run folder with eval/<dataset>/report.json (tools/evaluate.py output)
or an evaluation folder itself. Writes comparison.{md,csv,json,png} into OUT.
"""

from __future__ import annotations

import argparse
import sys

import fetalheart  # noqa: F401
from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli
from fetalheart.utils.errors import FetalHeartError

EPILOG = r"""example:
  tools/compare_runs.py output/model* -o output/comparison
  tools/compare_runs.py output/model1 output/model14 --baseline "model 1" --dataset fetalheart_val -o cmp
  tools/compare_runs.py output/fold*/model* -o cmp --group-regex '(patient\d+)_'
  tools/compare_runs.py output/model* -o cmp --rank-by study_mAP --primary "model 14,model 1"

Runs are refused (one line naming both) when they were scored on different frames or ground
truth (a hash per frame in report.json; frames are paired by fold and file name) or with different
EVAL settings, unless --allow-different, which comparison.md then states.
Runs of one model on several folds (DATASETS.FOLD) and seeds are grouped: mean +/- std over folds.
The paired test against the baseline (default: the Original-enhancement model at the same momentum)
scores every frame of both on one class set (empty frames kept, so false alarms count), averages the
frames per group (video, or what --group-regex captures) and treats groups as the samples: mean
difference with a t-interval (bootstrap from 10 groups; seed variance added with several seeds) and
a two-sided exact Wilcoxon signed-rank test, alone and Holm-corrected over all rows. A test that
cannot reach alpha with its groups and family size says so instead of printing a p-value
(docs/statistics.md). Definitions are written at the top of comparison.md.
"""


def build_parser() -> argparse.ArgumentParser:
    from fetalheart.evaluation.compare import METRICS, PAIRED_METRICS

    p = argparse.ArgumentParser(prog="compare_runs.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or evaluation folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--dataset", default=None, help="which eval/<dataset> to use when a run has several")
    p.add_argument("--baseline", default=None,
                   help="baseline model name or study id (default: Original at the same momentum)")
    p.add_argument("--rank-by", default="segm_AP", choices=METRICS,
                   help="metric for ranks; the top model is called best only when the interval of its "
                        "difference to the runner-up excludes 0 (a per-frame metric gives a per-video "
                        "interval; COCO AP needs folds or seeds)")
    p.add_argument("--test-metric", default="dice", choices=PAIRED_METRICS,
                   help="per-frame metric of the table's p-value and verdict columns (default dice; "
                        "every per-frame metric is tested in the second table)")
    p.add_argument("--primary", default=None, metavar="A,B",
                   help="a primary comparison: model A against model B (names or study ids) as its own "
                        "family of 1, reported beside the table's family")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p.add_argument("--group-regex", default=None, metavar="REGEX",
                   help="regroup frames by file name: the first capture group of REGEX (searched in the file "
                        "path) names the video/patient (default: the group stored by evaluate)")
    p.add_argument("--allow-different", action="store_true",
                   help="compare runs even when they were scored on different ground truth or frames, or with "
                        "different EVAL settings (refused by default); comparison.md then lists the differences")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    add_overwrite(p, "comparison.{md,csv,json,png} in OUT")
    add_quiet(p, "do not print the table")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.evaluation.compare import compare, comparison_markdown, load_runs, write_comparison

    if not 0 < args.alpha < 1:
        raise FetalHeartError("--alpha must be in (0, 1)")
    if args.bootstrap < 0:
        raise FetalHeartError("--bootstrap must be >= 0")
    primary = None
    if args.primary is not None:
        primary = tuple(x.strip() for x in args.primary.split(","))
        if len(primary) != 2 or not all(primary):
            raise FetalHeartError(f"--primary takes two models, 'A,B'; got {args.primary!r}")
    runs = load_runs(args.runs, args.dataset, group_regex=args.group_regex)
    table = compare(runs, baseline=args.baseline, rank_by=args.rank_by, alpha=args.alpha, n_boot=args.bootstrap,
                    seed=args.seed, test_metric=args.test_metric, primary=primary, allow_different=args.allow_different)
    write_comparison(table, args.output, overwrite=args.overwrite)
    if not args.quiet:
        print(comparison_markdown(table))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
