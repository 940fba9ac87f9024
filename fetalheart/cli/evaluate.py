"""Evaluate a trained model on a registered dataset: COCO AP, study mAP, per-class IoU/Dice with CIs.

Writes report.json, per_class.csv, per_image.csv, report.md, plots/*.png and env.json/config.yaml
into OUT (default: <dir of the weights>/eval/<dataset>, where compare_runs looks).
"""

from __future__ import annotations

import argparse
import sys

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli, split_overrides
from fetalheart.utils.errors import FetalHeartError

EPILOG = """example:
  tools/evaluate.py --config-file output/model14/config.yaml MODEL.WEIGHTS output/model14/model_final.pth \\
      DATASETS.ROOT data/coco MODEL.DEVICE cpu
  # -> output/model14/eval/fetalheart_val/{report.md,report.json,per_class.csv,per_image.csv,plots/}

Metric definitions are written at the top of report.md (and in README: Evaluation).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="CFG", help="the run's config.yaml (or a shipped config)")
    p.add_argument("--dataset", default=None, help="registered dataset name (default: the first of DATASETS.TEST)")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="output folder (default: <weights dir>/eval/<dataset>)")
    p.add_argument("--score-thresh", type=float, default=None,
                   help="score threshold for IoU/Dice and instance counts (default: EVAL.SCORE_THRESH, 0.5)")
    p.add_argument("--study-map-mode", choices=("matterport", "corrected"), default=None,
                   help="which mAP is the 'study mAP' (default: EVAL.STUDY_MAP_MODE, matterport); both are reported")
    p.add_argument("--study-map-min-score", type=float, default=None, metavar="S",
                   help="score cut for both mAPs (default: EVAL.STUDY_MAP_MIN_SCORE, 0.7 = Matterport's "
                        "DETECTION_MIN_CONFIDENCE)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N", help="bootstrap resamples (default: EVAL.BOOTSTRAP_SAMPLES)")
    p.add_argument("--boundary", action="store_true", help="also HD95 and ASSD per class (slower)")
    add_overwrite(p, "the report files in OUT")
    add_quiet(p, "no progress bar")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, anywhere on the line, e.g. MODEL.WEIGHTS run/model_final.pth")
    return p


def _main(argv=None) -> int:
    own, opts = split_overrides(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    args.opts = [*args.opts, *opts]
    if len(args.opts) % 2:
        raise FetalHeartError(f"config overrides come in KEY VALUE pairs, got {' '.join(args.opts)}")
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.evaluation.evaluate import default_output_dir, evaluate_model

    extra = []
    if args.score_thresh is not None:
        if not 0 <= args.score_thresh <= 1:
            raise FetalHeartError("--score-thresh must be in [0, 1]")
        extra += ["EVAL.SCORE_THRESH", str(args.score_thresh)]
    if args.study_map_mode is not None:
        extra += ["EVAL.STUDY_MAP_MODE", args.study_map_mode]
    if args.study_map_min_score is not None:
        if not 0 <= args.study_map_min_score <= 1:
            raise FetalHeartError("--study-map-min-score must be in [0, 1]")
        extra += ["EVAL.STUDY_MAP_MIN_SCORE", str(args.study_map_min_score)]
    if args.bootstrap is not None:
        extra += ["EVAL.BOOTSTRAP_SAMPLES", str(args.bootstrap)]
    if args.boundary:
        extra += ["EVAL.BOUNDARY_METRICS", "True"]
    # A run trained on a GPU box says MODEL.DEVICE cuda: evaluate it on the CPU here instead of failing.
    cfg = load_cfg(args.config_file, [*args.opts, *extra], cpu_fallback=True)
    if not cfg.MODEL.WEIGHTS:
        raise FetalHeartError("give the model: MODEL.WEIGHTS <run>/model_final.pth")
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise FetalHeartError("no dataset: pass --dataset NAME or set DATASETS.TEST")
    if args.dataset and dataset not in cfg.DATASETS.TEST:
        cfg.defrost()
        cfg.DATASETS.TEST = (dataset,)
        cfg.freeze()
    from detectron2.data import DatasetCatalog

    if dataset not in DatasetCatalog.list():
        register_datasets_from_cfg(cfg, training=False)
    out = args.output or default_output_dir(cfg.MODEL.WEIGHTS, dataset)
    res = evaluate_model(cfg, dataset, out, overwrite=args.overwrite, quiet=args.quiet)
    fh = res["results"].get("fetalheart", {})
    segm = res["results"].get("segm", {})
    print(f"{dataset}: COCO segm AP {segm.get('AP', float('nan')) / 100:.3f}  study mAP {fh.get('study_mAP', float('nan')):.3f}  "
          f"IoU {fh.get('iou_macro', float('nan')):.3f}  Dice {fh.get('dice_macro', float('nan')):.3f}  -> {out}/report.md")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
