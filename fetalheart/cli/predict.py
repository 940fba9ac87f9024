"""Predict on images, folders or videos with a trained model and its own enhancement.

Writes OUT/overlays/ (PNG per image, MP4 per video), OUT/predictions_coco.json (COCO dataset with
scored annotations), OUT/coco_results.json (COCO results list) and OUT/labelme/*.json (predicted
polygons: open in labelme, correct, then convert with labelme2coco).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli, split_overrides
from fetalheart.utils.errors import FetalHeartError

EPILOG = """examples:
  tools/predict.py --config-file output/model14/config.yaml MODEL.WEIGHTS output/model14/model_final.pth \\
      new_frames/ -o predictions/ MODEL.DEVICE cpu
  tools/predict.py --config-file run/config.yaml MODEL.WEIGHTS run/model_final.pth clip.mp4 -o pred \\
      --every 5 --video-labelme --classes LV,RV,LA,RA --score-thresh 0.6
  labelme predictions/labelme        # review and correct, then:
  tools/labelme2coco.py predictions/labelme -o datasets/new

Config overrides (KEY VALUE, e.g. MODEL.WEIGHTS W) and inputs may be given in any order.
"""

def build_parser() -> argparse.ArgumentParser:
    from fetalheart.config import protocol_default  # the default as the configs set it

    p = argparse.ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="CFG", help="the run's config.yaml")
    p.add_argument("items", nargs="+", metavar="INPUT|KEY VALUE",
                   help="images, folders, videos; and config overrides such as MODEL.WEIGHTS W")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--score-thresh", type=float, default=None,
                   help="keep predictions with score >= this (default: the model config's EVAL.SCORE_THRESH: "
                        f"{protocol_default('EVAL.SCORE_THRESH')})")
    p.add_argument("--classes", default=None, help="comma-separated classes to keep, e.g. LV,RV (default: all)")
    p.add_argument("--batch", type=int, default=1, help="frames per model call (default 1)")
    p.add_argument("--every", type=int, default=1, help="videos: predict every N-th frame (default 1)")
    p.add_argument("--video-labelme", action="store_true",
                   help="videos: also save the frames as PNG with LabelMe JSON (for relabelling)")
    p.add_argument("--no-overlays", action="store_true", help="skip overlay images/videos")
    add_overwrite(p, "earlier predictions in OUT")
    add_quiet(p, "no progress bar or summary")
    return p


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """Separate KEY VALUE config overrides from input paths (a KEY is dotted upper case, not a file)."""
    return split_overrides(items, is_path=lambda tok: Path(tok).exists())


def _main(argv=None) -> int:
    # intermixed: inputs and KEY VALUE overrides may come before and after the options
    args = build_parser().parse_intermixed_args(argv)
    inputs, opts = split_items(args.items)
    if not inputs:
        raise FetalHeartError("no input images, folders or videos given")
    from fetalheart.config import load_cfg
    from fetalheart.inference.predict import PredictOptions, collect_sources, run_prediction
    from fetalheart.inference.predictor import Predictor, parse_classes

    # A run trained on a GPU box says MODEL.DEVICE cuda: predict on the CPU here instead of failing.
    cfg = load_cfg(args.config_file, opts, cpu_fallback=True)
    if not cfg.MODEL.WEIGHTS:
        raise FetalHeartError("give the model: MODEL.WEIGHTS <run>/model_final.pth")
    thresh = cfg.EVAL.SCORE_THRESH if args.score_thresh is None else args.score_thresh
    if not 0 <= thresh <= 1:
        raise FetalHeartError("--score-thresh must be in [0, 1]")
    from fetalheart.config import class_names

    classes = parse_classes(args.classes, class_names(cfg))
    collect_sources(inputs)  # fail on a bad input before loading the model
    predictor = Predictor(cfg, thresh, classes)
    options = PredictOptions(batch=args.batch, every=args.every, video_labelme=args.video_labelme,
                             overlays=not args.no_overlays)
    s = run_prediction(predictor, inputs, args.output, options, overwrite=args.overwrite, quiet=args.quiet)
    if not args.quiet:
        print(f"{s['frames']} frames, {s['instances']} instances; {s['model_fps']:.2f} frames/s (model), "
              f"{s['total_fps']:.2f} frames/s (all) on {cfg.MODEL.DEVICE}; -> {args.output}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
