"""``labelme2coco INPUT [INPUT ...] -o OUT``: LabelMe JSON to a split COCO dataset with a report.

Writes OUT/annotations/{train,val}.json, OUT/images/ (copies, or symlinks with --link; never
re-encoded) and OUT/conversion_report.{json,md}. Every problem in the whole input is listed and
nothing is written, unless --skip-invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.split import DEFAULT_GUARD_GAP
from fetalheart.utils.cli import run_cli

EPILOG = """examples:
  # a folder of LabelMe files (searched recursively), grouped 80/20 split by video
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch
  # your own label list, symlinked images, frames of the videos named in val.txt go to val
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch --labels labels.txt --val-list val.txt --link
  # videos named like patient07_clip2_000123.png: group by patient
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch --group-regex '^(patient\\d+)'

grouping: by default an image's group (video) is its name without the trailing frame index
(phantom_s3_000045.png -> phantom_s3), including its sub-folder. With several groups, whole groups
go to val; with one video, contiguous time blocks with --guard-gap frames left out between
train and val (weaker than a split by video: the report says so).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labelme2coco.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=Path,
                   help="LabelMe JSON files, or folders searched recursively for *.json")
    p.add_argument("-o", "--output", required=True, type=Path, help="output dataset folder")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--group-regex", help="regex on the image name; its first group (or the match) is the video")
    p.add_argument("--val-list", type=Path,
                   help="file listing val image names, stems or groups, one a line (overrides --val-fraction)")
    p.add_argument("--guard-gap", type=int, default=DEFAULT_GUARD_GAP,
                   help=f"single video: frames left out next to each train/val boundary (default {DEFAULT_GUARD_GAP})")
    p.add_argument("--labels", type=Path,
                   help="labels.txt, one class a line (default: the 10 structures LA RA LV RV TV PV MV AV Ao Spine)")
    p.add_argument("--unknown", choices=["error", "skip"], default="error",
                   help="a label that is not a class: error (default) or skip the shape")
    p.add_argument("--ignore-label", action="append", default=None,
                   help="label made an iscrowd=1 (ignored) region, besides __ignore__; repeatable")
    p.add_argument("--drop-empty", action="store_true", help="leave out images without shapes (kept by default)")
    p.add_argument("--skip-invalid", action="store_true", help="convert the valid files, list the rest in the report")
    p.add_argument("--link", action="store_true", help="symlink images into OUT/images instead of copying")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in OUT")
    p.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    return p


def _main(argv=None) -> int:
    from fetalheart.convert import convert

    args = build_parser().parse_args(argv)
    report = convert(
        args.inputs, args.output, val_fraction=args.val_fraction, seed=args.seed, group_regex=args.group_regex,
        val_list=args.val_list, link=args.link, labels=args.labels, unknown=args.unknown,
        ignore_label=args.ignore_label, drop_empty=args.drop_empty, skip_invalid=args.skip_invalid,
        overwrite=args.overwrite, guard_gap=args.guard_gap, quiet=args.quiet, jobs=args.jobs,
    )
    if not args.quiet:
        im, inst = report["images"], report["instances"]
        print(f"train: {im['train']} images, {sum(inst['train'].values())} instances; "
              f"val: {im['val']} images, {sum(inst['val'].values())} instances; "
              f"split {report['split']['method']}; report: {args.output / 'conversion_report.md'}",
              file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)
