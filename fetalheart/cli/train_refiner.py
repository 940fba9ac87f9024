"""Train step 2 of the two-step refinement (and fit the Gaussian mask paste) for a trained Mask R-CNN.

Writes refiner.pth and mask_paste.json beside the model (or into -o OUT), where evaluate, predict and
run_study find them when the config has MODEL.REFINE.ENABLED True / MODEL.ROI_MASK_HEAD.PASTE.MODE
gaussian (docs/small_structures.md). train_net does the same at the end of a run with those options on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fetalheart.utils.cli import run_cli
from fetalheart.utils.errors import FetalHeartError

EPILOG = """examples:
  # step 2 at S = 64 (ResNet-34 U-Net) for a trained run, then its evaluation with refinement + Gaussian paste
  tools/train_refiner.py --config-file output/model02/config.yaml --overlay overlays/refine.yaml \\
      MODEL.WEIGHTS output/model02/model_final.pth DATASETS.ROOT data/coco
  tools/evaluate.py --config-file output/model02/config.yaml MODEL.REFINE.ENABLED True \\
      MODEL.ROI_MASK_HEAD.PASTE.MODE gaussian \\
      MODEL.WEIGHTS output/model02/model_final.pth DATASETS.ROOT data/coco -o output/model02/eval-refine
  # only the paste fit (Mask R-CNN's 28 x 28 masks), no second network
  tools/train_refiner.py --config-file output/model02/config.yaml --paste-only MODEL.WEIGHTS output/model02/model_final.pth
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_refiner.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="CFG", help="the run's config.yaml")
    p.add_argument("--overlay", action="append", default=[], metavar="YAML",
                   help="overlays merged after the config (e.g. overlays/refine.yaml); repeatable")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="folder for refiner.pth and mask_paste.json "
                   "(default: the folder of MODEL.WEIGHTS)")
    p.add_argument("--paste-only", action="store_true", help="only fit the Gaussian paste (mask_paste.json)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. MODEL.REFINE.SIZE 96")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.config import class_names, load_cfg
    from fetalheart.data.registration import register_datasets_from_cfg
    from fetalheart.engine.refiner import prepare_small_structures

    cfg = load_cfg(args.config_file, args.opts, overlays=args.overlay, cpu_fallback=True)
    if not args.paste_only and not cfg.MODEL.REFINE.ENABLED:
        raise FetalHeartError("MODEL.REFINE.ENABLED is False: add --overlay overlays/refine.yaml (or --paste-only)")
    weights = cfg.MODEL.WEIGHTS
    out = Path(args.output) if args.output else (Path(weights).parent if weights and "://" not in weights else None)
    if out is None:
        raise FetalHeartError("give -o OUT or MODEL.WEIGHTS (the trained model whose folder gets the files)")
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    register_datasets_from_cfg(cfg, training=False)
    for path in prepare_small_structures(cfg, out, class_names(cfg), paste_only=args.paste_only, log=print):
        print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)
