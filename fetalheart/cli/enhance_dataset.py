"""``enhance_dataset --coco train.json --images DIR --spec ahe+clahe -o OUT``: enhanced copies of a COCO split.

Writes OUT/images/<file_name> (lossless PNG) and OUT/annotations/<name of --coco> with the same
annotations; register it with image_root OUT/images. Inputs are never modified. Results are
cached by image content + spec + parameters, so rerunning (another split into the same OUT,
--overwrite) only redoes what changed. OUT/enhance_report.json says, per split, how many frames
each step of the spec changed and the mean absolute change (grey levels); a step that changes
fewer than 95% of the frames is reported as a WARNING on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.enhance.spec import DEFAULT_PARAMS, SPECS_OF_STUDY
from fetalheart.utils.cli import add_jobs, add_overwrite, add_quiet, key_value, run_cli

EPILOG = f"""examples:
  tools/enhance_dataset.py --coco datasets/fetal4ch/annotations/train.json \\
      --images datasets/fetal4ch/images --spec ahe+clahe -o datasets/fetal4ch_ahe+clahe
  # equalise inside the ultrasound fan only, stronger CLAHE clip, 2 processes
  tools/enhance_dataset.py --coco val.json --images images --spec he+clahe+bd -o out \\
      --mask auto --param clahe_clip_limit=3 -j 2
  # the 5 bd specs sharing one kernel cache (each frame's blur kernel estimated once)
  for s in bd he+bd ahe+bd he+clahe+bd ahe+clahe+bd; do tools/enhance_dataset.py --coco train.json \
      --images images --spec $s -o out_$s --cache-dir cache/enhance; done
  # bd that leaves frames whose estimated blur is below the floor unchanged (the pre-floor behaviour)
  tools/enhance_dataset.py --coco train.json --images images --spec bd -o out_bd --param bd_skip_sharp=true

specs: names joined by '+', applied left to right: original, he, ahe, clahe, bd
  (the study's 11: {", ".join(SPECS_OF_STUDY)})
parameters (--param KEY=VALUE): {", ".join(f"{k}={v}" for k, v in DEFAULT_PARAMS.items())}
  clahe_clip_limit is in OpenCV units (multiple of a tile's mean bin height; ~ skimage clip x 256).
  bd_min_sigma is a floor (pixels) on the deconvolution kernel's spread: every frame is deblurred
  with at least that blur, unless bd_skip_sharp=true (then frames estimated sharper are kept as is).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="enhance_dataset.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", required=True, type=Path, help="COCO instances JSON (e.g. annotations/train.json)")
    p.add_argument("--images", required=True, type=Path, help="folder the COCO file_name entries are relative to")
    p.add_argument("--spec", required=True, help="enhancement spec, e.g. ahe+clahe (see below)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output dataset folder")
    p.add_argument("--mask", choices=["none", "auto"], default="none",
                   help="auto: equalise inside the detected ultrasound sector only (default none)")
    p.add_argument("--param", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="override a parameter; repeatable")
    add_jobs(p, 1)
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="bd kernel cache folder, shared between specs (default OUT/enhance_cache)")
    add_overwrite(p, "the output COCO JSON and enhance_report.json")
    add_quiet(p, "no progress bar or summary (warnings are still printed)")
    return p


def _main(argv=None) -> int:
    from fetalheart.enhance.dataset import EnhanceOptions, enhance_coco
    from fetalheart.enhance.stats import changes_table

    args = build_parser().parse_args(argv)
    options = EnhanceOptions(params=dict(args.param), mask=args.mask, cache_dir=args.cache_dir, workers=args.jobs)
    summary = enhance_coco(args.coco, args.images, args.spec, args.output, options, overwrite=args.overwrite,
                           quiet=args.quiet)
    if not args.quiet:
        print(f"{summary['spec']}: {summary['images']} images ({summary['enhanced']} enhanced, "
              f"{summary['cached']} cached); json: {summary['json']}; image_root: {summary['image_root']}",
              file=sys.stderr)
        print(changes_table(summary["changes"]), file=sys.stderr)
        print(f"change statistics: {summary['report']}", file=sys.stderr)
    if summary["warning"]:  # printed even with --quiet: the spec may not do what its name says
        print(f"WARNING: {summary['warning']}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)
