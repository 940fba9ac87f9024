"""Evaluate a trained model, or predictions from any tool: COCO AP, study mAP, per-class IoU/Dice with CIs.

Writes report.json, per_class.csv, per_image.csv, report.md, plots/*.png, coco_instances_results.json
and env.json (+ config.yaml) into OUT (model default: <dir of the weights>/eval/<dataset>, where
compare_runs looks). A model is predicted, then its results are evaluated as a file would be, so
--predictions on a run's own coco_instances_results.json gives the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli, split_overrides
from fetalheart.utils.errors import FetalHeartError

EPILOG = """examples:
  # a trained model (Mask R-CNN or the U-Net family: the config says which)
  tools/evaluate.py --config-file output/model14/config.yaml MODEL.WEIGHTS output/model14/model_final.pth \\
      DATASETS.ROOT data/coco MODEL.DEVICE cpu
  # -> output/model14/eval/fetalheart_val/{report.md,report.json,per_class.csv,per_image.csv,plots/}
  # predictions of any tool: COCO results (RLE masks, score, category of the ground truth)
  tools/evaluate.py --predictions yolo_results.json --ground-truth data/coco/annotations/val.json -o eval/yolo
  # a second reader's annotations (a labelme2coco output) against the first's: inter-observer numbers
  tools/evaluate.py --predictions reader2/annotations/val.json --ground-truth data/coco/annotations/val.json \\
      --name "reader 2" -o eval/reader2
  # label maps or probability maps, one file per frame named by its image stem (e.g. nnU-Net's output)
  tools/evaluate.py --predictions nnunet_pred/ --ground-truth data/coco/annotations/val.json --label-map 1=LA,2=RA -o eval/nnunet

Metric definitions are written at the top of report.md; how maps become instances: docs/model_families.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=None, metavar="CFG",
                   help="the run's config.yaml (or a shipped config); optional with --predictions and --ground-truth")
    p.add_argument("--predictions", default=None, metavar="FILE|DIR",
                   help="evaluate these instead of a model: COCO results .json, a COCO dataset .json (matched by "
                        "file name), or a folder of label maps (.png) / probability maps (.npz, .npy)")
    p.add_argument("--ground-truth", default=None, metavar="COCO.json",
                   help="with --predictions: the ground-truth COCO file (default: the config's dataset)")
    p.add_argument("--images", default=None, metavar="DIR", help="image folder of --ground-truth (for the overlays; "
                   "default ROOT/images of a labelme2coco folder)")
    p.add_argument("--name", default=None, help="with --predictions: the label compare_runs shows (default: the "
                   "config's model, else the predictions' file name)")
    p.add_argument("--dataset", default=None, help="registered dataset name (default: the first of DATASETS.TEST)")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="output folder (default: <weights dir>/eval/<dataset>)")
    _add_settings(p)
    _add_map_options(p)
    add_overwrite(p, "the report files in OUT")
    add_quiet(p, "no progress bar")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, anywhere on the line, e.g. MODEL.WEIGHTS run/model_final.pth")
    return p


def _add_settings(p: argparse.ArgumentParser) -> None:
    from fetalheart.config import protocol_default as d  # the defaults as the configs set them

    p.add_argument("--score-thresh", type=float, default=None,
                   help="score threshold for IoU/Dice and instance counts (default: the model config's "
                        f"EVAL.SCORE_THRESH: {d('EVAL.SCORE_THRESH')})")
    p.add_argument("--study-map-mode", choices=("matterport", "corrected"), default=None,
                   help=f"which mAP is the 'study mAP' (default: EVAL.STUDY_MAP_MODE: {d('EVAL.STUDY_MAP_MODE')}); "
                        "both are reported")
    p.add_argument("--study-map-min-score", type=float, default=None, metavar="S",
                   help=f"score cut for both mAPs (default: EVAL.STUDY_MAP_MIN_SCORE: {d('EVAL.STUDY_MAP_MIN_SCORE')}, "
                        "Matterport's DETECTION_MIN_CONFIDENCE)")
    p.add_argument("--bootstrap", type=int, default=None, metavar="N",
                   help=f"bootstrap resamples (default: EVAL.BOOTSTRAP_SAMPLES: {d('EVAL.BOOTSTRAP_SAMPLES')})")
    p.add_argument("--boundary", action="store_true", help="also HD95 and ASSD per class (slower)")


def _add_map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-map", default=None, metavar="V=CLASS,...",
                   help="label maps: pixel value -> class, e.g. 1=LV,2=Myocardium (default: value k = the k-th class)")
    p.add_argument("--prob-thresh", type=float, default=None,
                   help="probability maps: a pixel is in a class at >= this (default MODEL.SMP.PROB_THRESH, 0.5)")
    p.add_argument("--min-area", type=int, default=None, help="maps: drop components under this many pixels (default 0)")
    p.add_argument("--score-rule", choices=("mean", "max"), default=None,
                   help="probability maps: a component's score (default mean probability)")


def _setting_overrides(args) -> list[str]:
    extra = []
    for flag, key in (("score_thresh", "SCORE_THRESH"), ("study_map_min_score", "STUDY_MAP_MIN_SCORE")):
        v = getattr(args, flag)
        if v is not None:
            if not 0 <= v <= 1:
                raise FetalHeartError(f"--{flag.replace('_', '-')} must be in [0, 1]")
            extra += [f"EVAL.{key}", str(v)]
    if args.study_map_mode is not None:
        extra += ["EVAL.STUDY_MAP_MODE", args.study_map_mode]
    if args.bootstrap is not None:
        extra += ["EVAL.BOOTSTRAP_SAMPLES", str(args.bootstrap)]
    if args.boundary:
        extra += ["EVAL.BOUNDARY_METRICS", "True"]
    return extra


def _parse(argv) -> argparse.Namespace:
    own, opts = split_overrides(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    args.opts = [*args.opts, *opts]
    if len(args.opts) % 2:
        raise FetalHeartError(f"config overrides come in KEY VALUE pairs, got {' '.join(args.opts)}")
    if not args.config_file and not (args.predictions and args.ground_truth):
        raise FetalHeartError("give --config-file (a model), or --predictions with --ground-truth")
    if args.ground_truth and not args.predictions:
        raise FetalHeartError("--ground-truth goes with --predictions (a model is evaluated on its config's dataset)")
    return args


def _config(args):
    """The config with the evaluation flags as overrides, its dataset registered; None without one."""
    from fetalheart.config import load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg

    if not args.config_file:
        return None
    # A run trained on a GPU box says MODEL.DEVICE cuda: evaluate it on the CPU here instead of failing.
    cfg = load_cfg(args.config_file, [*args.opts, *_setting_overrides(args)], cpu_fallback=True)
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset and not args.ground_truth:
        raise FetalHeartError("no dataset: pass --dataset NAME or set DATASETS.TEST")
    if dataset and dataset not in cfg.DATASETS.TEST:
        cfg.defrost()
        cfg.DATASETS.TEST = (dataset,)
        cfg.freeze()
    from detectron2.data import DatasetCatalog

    if not args.ground_truth and dataset not in DatasetCatalog.list():
        register_datasets_from_cfg(cfg, training=False)
    return cfg


def _evaluate_model(args, cfg) -> tuple[dict, Path]:
    from fetalheart.evaluation.evaluate import default_output_dir, evaluate_model

    if not cfg.MODEL.WEIGHTS:
        raise FetalHeartError("give the model: MODEL.WEIGHTS <run>/model_final.pth (or --predictions FILE)")
    dataset = cfg.DATASETS.TEST[0]
    out = Path(args.output or default_output_dir(cfg.MODEL.WEIGHTS, dataset))
    return evaluate_model(cfg, dataset, out, overwrite=args.overwrite, quiet=args.quiet)["report"], out


def _evaluate_predictions(args, cfg) -> tuple[dict, Path]:
    from fetalheart.evaluation.evaluate import default_output_dir, run_summary
    from fetalheart.evaluation.from_files import (
        GroundTruth,
        MapOptions,
        ReportContext,
        check_output,
        evaluate_predictions,
        load_predictions,
        register_ground_truth,
    )
    from fetalheart.evaluation.settings import EvalSettings
    from fetalheart.utils.io import file_sha256

    name = register_ground_truth(args.ground_truth, args.images) if args.ground_truth else cfg.DATASETS.TEST[0]
    if args.output:
        out = Path(args.output)
    elif cfg is not None and cfg.MODEL.WEIGHTS:
        out = default_output_dir(cfg.MODEL.WEIGHTS, name)
    else:
        raise FetalHeartError("give the output folder: -o OUT")
    check_output(out, args.overwrite)
    gt = GroundTruth.of(name)
    smp = cfg.MODEL.SMP if cfg is not None else None
    maps = MapOptions(args.label_map, _pick(args.prob_thresh, smp, "PROB_THRESH", 0.5),
                      _pick(args.min_area, smp, "MIN_AREA", 0), _pick(args.score_rule, smp, "SCORE_RULE", "mean"))
    loaded = load_predictions(args.predictions, gt, maps)
    p = Path(args.predictions)
    run = {**(run_summary(cfg) if cfg is not None and cfg.MODEL.WEIGHTS else {}), "predictions": loaded.source,
           "predictions_sha256": file_sha256(p) if p.is_file() else "(folder)"}
    if args.name or "study_name" not in run or not run["study_name"]:
        run["study_name"] = args.name or p.stem
    settings = EvalSettings.from_cfg(cfg) if cfg is not None else _settings_from_flags(args)
    context = ReportContext(run=run, notes=loaded.notes, cfg=cfg, overwrite=True)
    return evaluate_predictions(gt, loaded.results, out, settings, context), out


def _pick(flag, node, key: str, default):
    return flag if flag is not None else (node.get(key, default) if node is not None else default)


def _settings_from_flags(args):
    from fetalheart.config import get_cfg
    from fetalheart.evaluation.settings import EvalSettings

    cfg = get_cfg()
    cfg.merge_from_list(_setting_overrides(args))
    return EvalSettings.from_cfg(cfg)


def _main(argv=None) -> int:
    args = _parse(argv)
    cfg = _config(args)
    report, out = (_evaluate_predictions if args.predictions else _evaluate_model)(args, cfg)
    fh, segm = report["summary"], report["coco"]["segm"]
    print(f"{report['dataset']}: COCO segm AP {segm.get('AP', float('nan')) / 100:.3f}  study mAP "
          f"{fh.get('study_mAP', float('nan')):.3f}  IoU {fh.get('iou_macro', float('nan')):.3f}  Dice "
          f"{fh.get('dice_macro', float('nan')):.3f}  -> {out}/report.md")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
