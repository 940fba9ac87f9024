"""Import NIfTI image + label volumes (CAMUS-style 2-D sequences or sliced 3-D volumes) as LabelMe frames.

Writes OUT/labelme/<patient>/<volume>_<index>.png with its LabelMe JSON (one mask shape per connected
component of each labelled structure) and OUT/nifti_import.json; with --coco DIR also converts them
(labelme2coco) with one group per patient (or per volume), so no patient is on both sides of a split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.utils.cli import add_jobs, add_overwrite, add_quiet, run_cli

EPILOG = r"""examples:
  # CAMUS: patient0001/patient0001_4CH_ED.nii.gz + ..._4CH_ED_gt.nii.gz, labels 1 LV, 2 myocardium, 3 LA
  tools/import_nifti.py camus/training -o data/camus_labelme --labels 1=LV,2=Myocardium,3=LA --coco data/camus_coco
  # 3-D echo volumes sliced along z, other label values, one group per volume, every 4th slice
  tools/import_nifti.py volumes/ -o data/vol_labelme --labels 100=LV,200=Myocardium --axis 2 --every 4 \
      --group-by volume --skip-empty --coco data/vol_coco --folds 5
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="import_nifti.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="folder for the frames and LabelMe JSON")
    p.add_argument("--labels", default="1=LV,2=Myocardium,3=LA", metavar="V=NAME,...",
                   help="label value -> structure (default CAMUS's 1=LV,2=Myocardium,3=LA); other values are not structures")
    p.add_argument("--label-suffix", default="_gt", help="label file = image name + this (default _gt)")
    p.add_argument("--axis", type=int, default=-1, help="3-D volumes: slice along this axis (default the last)")
    p.add_argument("--every", type=int, default=1, help="every N-th frame/slice (default 1)")
    p.add_argument("--no-transpose", action="store_true", help="keep nibabel's (x, y) axes as (rows, columns)")
    p.add_argument("--patient-regex", default=r"(patient\d+)", help="patient id in the file path (default patient\\d+)")
    p.add_argument("--group-by", choices=("patient", "volume"), default="patient",
                   help="one group per patient (default) or per volume, for the grouped split")
    p.add_argument("--skip-empty", action="store_true", help="leave out frames without any labelled structure")
    p.add_argument("--coco", type=Path, default=None, metavar="DIR", help="also convert to a COCO split in DIR")
    p.add_argument("--val-fraction", type=float, default=0.2, help="with --coco: share of frames in val (default 0.2)")
    p.add_argument("--folds", type=int, default=0, metavar="K", help="with --coco: K grouped folds instead")
    p.add_argument("--seed", type=int, default=0, help="with --coco: seed of the split (default 0)")
    add_jobs(p, None, "reader processes for --coco")
    add_overwrite(p, "OUT (and --coco DIR)")
    add_quiet(p, "no summary")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.annotations.nifti import NiftiOptions, import_nifti

    o = NiftiOptions(args.labels, args.label_suffix, args.axis, args.every, not args.no_transpose,
                     args.patient_regex, args.group_by, args.skip_empty)
    s = import_nifti(args.inputs, args.output, o, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{s['volumes']} volumes of {s['patients']} patients -> {s['frames']} frames, {s['shapes']} shapes in "
              f"{args.output}" + (f"; {len(s['unpaired_images'])} images without labels skipped" if s["unpaired_images"] else ""))
        if s["unnamed_label_pixels"]:
            print(f"label values not in --labels (not structures): {s['unnamed_label_pixels']}")
    if args.coco:
        from fetalheart.annotations.convert import ConvertOptions, convert

        report = convert([Path(s["labelme"])], args.coco, ConvertOptions(args.val_fraction, args.seed, s["group_regex"],
                                                                  folds=args.folds, labels=s["classes"]),
                         overwrite=args.overwrite, quiet=args.quiet, jobs=args.jobs)
        if not args.quiet:
            n = report["images"]
            print(f"COCO: {n.get('train', 0)} train / {n.get('val', 0)} val frames in {args.coco} (one group per "
                  f"{args.group_by})" if not args.folds else f"COCO: {args.folds} folds in {args.coco}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
