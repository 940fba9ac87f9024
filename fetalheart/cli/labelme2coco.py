"""``labelme2coco INPUT [INPUT ...] -o OUT``: LabelMe JSON to a split COCO dataset with a report.

Writes OUT/annotations/{train,val}.json (or, with --folds K, fold{i}_train.json and fold{i}_val.json
for i = 0..K-1), OUT/images/ (copies, or symlinks with --link; never re-encoded) and
OUT/conversion_report.{json,md}. Every problem in the whole input is listed and nothing is written,
unless --skip-invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.annotations.split import DEFAULT_GUARD_GAP
from fetalheart.utils.cli import add_jobs, add_overwrite, add_quiet, number, run_cli

EPILOG = """examples:
  # a folder of LabelMe files (searched recursively), grouped 80/20 split by video
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch
  # your own label list, symlinked images, frames of the videos named in val.txt go to val
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch --labels labels.txt --val-list val.txt --link
  # one folder per patient, one per video inside (patient07/clip2/0001.png): group by patient
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch --group-by patient
  # videos named like patient07_clip2_000123.png: group by patient
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch --group-regex '^(patient\\d+)'
  # 5-fold grouped cross-validation: annotations/fold0_train.json ... fold4_val.json
  tools/labelme2coco.py data/labelme -o datasets/fetal4ch_cv --folds 5

grouping: by default an image's group is its video. Frames named by a number alone or a frame word and
a number (0001.png, frame_0001.png, IM_0001.png, img001.png: what `ffmpeg -i v.mp4 video1/%04d.png` and
many scanner exports write) belong to their folder (video1/0001.png -> video1; patient07/clip2/0001.png
-> patient07/clip2); other images to their path without the frame index that ends it after a '_', '-'
or '.' (phantom_s3_000045.png -> phantom_s3; case001.png -> case001). --group-by patient groups by the
top folder instead (patient07/clip2/0001.png -> patient07). The report says how the groups were formed
and warns when most groups hold one frame. With several groups, whole groups go to val: the set
closest to --val-fraction (the report warns when it misses by more than 0.1). With one video,
contiguous time blocks, and the train frames within --guard-gap source frames (or --guard-seconds) of
a val frame left out (weaker than a split by video: the report says so). Source frame index and time come from a frames.csv of
extract_frames beside the images (or one folder up), else the index in the file name is taken as
the source frame index.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labelme2coco.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=Path,
                   help="LabelMe JSON files, or folders searched recursively for *.json")
    p.add_argument("-o", "--output", required=True, type=Path, help="output dataset folder")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    grouping = p.add_mutually_exclusive_group()
    grouping.add_argument("--group-by", choices=["video", "patient"], default="video",
                          help="without --group-regex: group by video (default) or by patient, the top folder "
                               "of each image path (patient07/clip2/0001.png -> patient07)")
    grouping.add_argument("--group-regex",
                          help="regex on the image name; its first group (or the match) is the group")
    p.add_argument("--val-list", type=Path,
                   help="file listing val image names, stems or groups, one a line (overrides --val-fraction)")
    guard = p.add_mutually_exclusive_group()
    guard.add_argument("--guard-gap", type=number(int, minimum=0, strict=False), default=None, metavar="N",
                       help="single video: train frames within N source-video frames of a val frame are left out "
                            f"(default {DEFAULT_GUARD_GAP})")
    guard.add_argument("--guard-seconds", type=number(float, minimum=0, strict=False), default=None, metavar="S",
                       help="single video: the guard gap in seconds instead (needs frames.csv from extract_frames)")
    p.add_argument("--folds", type=number(int, minimum=0, strict=False), default=0, metavar="K",
                   help="write K grouped cross-validation folds (annotations/fold{i}_{train,val}.json) "
                        "instead of train.json/val.json")
    p.add_argument("--labels", type=Path,
                   help="labels.txt, one class a line (default: the 10 structures LA RA LV RV TV PV MV AV Ao Spine)")
    p.add_argument("--unknown", choices=["error", "skip"], default="error",
                   help="a label that is not a class: error (default) or skip the shape")
    p.add_argument("--ignore-label", action="append", default=None,
                   help="label made an iscrowd=1 (ignored) region, besides __ignore__; repeatable")
    p.add_argument("--drop-empty", action="store_true", help="leave out images without shapes (kept by default)")
    p.add_argument("--skip-invalid", action="store_true", help="convert the valid files, list the rest in the report")
    p.add_argument("--link", action="store_true", help="symlink images into OUT/images instead of copying")
    add_overwrite(p, "the dataset in OUT; annotation files of an earlier run that this run does not write, "
                     "e.g. fold files, are deleted")
    add_jobs(p, None)
    add_quiet(p)
    return p


def _main(argv=None) -> int:
    from fetalheart.annotations.convert import ConvertOptions, convert

    args = build_parser().parse_args(argv)
    options = ConvertOptions(
        val_fraction=args.val_fraction, seed=args.seed, group_regex=args.group_regex, group_by=args.group_by,
        val_list=args.val_list,
        folds=args.folds, guard_gap=args.guard_gap, guard_seconds=args.guard_seconds, labels=args.labels,
        unknown=args.unknown, ignore_label=args.ignore_label, drop_empty=args.drop_empty,
        skip_invalid=args.skip_invalid, link=args.link,
    )  # fmt: skip
    report = convert(args.inputs, args.output, options, overwrite=args.overwrite, quiet=args.quiet, jobs=args.jobs)
    if not args.quiet:
        print(_summary(report, args.output), file=sys.stderr)
    return 0


def _summary(report: dict, out: Path) -> str:
    split = report["split"]
    return f"{split['n_groups']} groups, {split['grouping']}\n" + _counts(report, out)


def _counts(report: dict, out: Path) -> str:
    im, inst = report["images"], report["instances"]
    if "folds" in report:
        sizes = ", ".join(f"{f['train']}/{f['val']}" for f in report["folds"]["per_fold"])
        return (f"{im['total']} images, {sum(inst['total'].values())} instances in {report['folds']['k']} folds "
                f"(train/val images: {sizes}); split {report['split']['method']}; "
                f"report: {out / 'conversion_report.md'}")
    return (f"train: {im['train']} images, {sum(inst['train'].values())} instances; "
            f"val: {im['val']} images, {sum(inst['val'].values())} instances; "
            f"split {report['split']['method']}; report: {out / 'conversion_report.md'}")


def main(argv=None) -> int:
    return run_cli(_main, argv)
