"""Import nnU-Net's predicted label maps (or .npz probabilities) as COCO results for tools/evaluate.py.

PRED holds one <case>.png per frame (nnU-Net's fold_<k>/validation or nnUNetv2_predict output); the
case ids come from the export (fetalheart_cases.json). Instances are connected components per class
(docs/model_families.md, "From maps to instances"); label maps score 1.0.
"""

from __future__ import annotations

import argparse
import sys

from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli
from fetalheart.utils.errors import FetalHeartError

EPILOG = """example:
  tools/import_nnunet.py nnunet/results/Dataset501_FetalHeart/nnUNetTrainer__nnUNetPlans__2d/fold_0/validation \\
      --export nnunet -o nnunet/fold0_results.json
  tools/evaluate.py --predictions nnunet/fold0_results.json --ground-truth data/coco5/annotations/fold0_val.json \\
      --name "nnU-Net 2d" -o eval/nnunet_fold0
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="import_nnunet.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", metavar="PRED", help="folder of nnU-Net's predicted <case>.png (or .npz)")
    p.add_argument("--export", required=True, metavar="DIR", help="the tools/export_nnunet.py output (or its Dataset folder)")
    p.add_argument("-o", "--output", required=True, metavar="RESULTS.json", help="COCO results file to write")
    p.add_argument("--min-area", type=int, default=0, help="drop components under this many pixels (default 0)")
    p.add_argument("--prob-thresh", type=float, default=0.5, help=".npz probabilities: class at >= this (default 0.5)")
    p.add_argument("--score-rule", choices=("mean", "max"), default="mean", help=".npz: component score (default mean)")
    add_overwrite(p, "RESULTS.json")
    add_quiet(p, "no summary")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from fetalheart.annotations.nnunet import import_nnunet
    from fetalheart.annotations.semantic import SemanticOptions
    from fetalheart.utils.io import write_json_atomic

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FetalHeartError(f"{out} exists; pass --overwrite to replace it")
    results, s = import_nnunet(args.predictions, args.export, SemanticOptions(args.prob_thresh, args.min_area,
                                                                                args.score_rule))
    write_json_atomic(out, results, indent=None)
    if not args.quiet:
        print(f"{s['files']} {' and '.join(s['kinds'])} -> {s['instances']} instances in {out} "
              f"({s['frames_without_file']} exported cases without a file)")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
