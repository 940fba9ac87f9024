"""Export a labelme2coco dataset (split or K folds) as an nnU-Net v2 raw dataset with our splits.

Writes OUT/nnUNet_raw/Dataset<ID>_<Name>/{dataset.json,imagesTr/,labelsTr/,fetalheart_cases.json} and
OUT/nnUNet_preprocessed/Dataset<ID>_<Name>/splits_final.json (our grouped folds: no video on both
sides). Import nnU-Net's predictions back with tools/import_nnunet.py, then tools/evaluate.py.
"""

from __future__ import annotations

import argparse
import sys

from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli

EPILOG = """example (the round trip, docs/model_families.md):
  tools/labelme2coco.py data/labelme -o data/coco5 --folds 5
  tools/export_nnunet.py data/coco5 -o nnunet --dataset-id 501
  export nnUNet_raw=$PWD/nnunet/nnUNet_raw nnUNet_preprocessed=$PWD/nnunet/nnUNet_preprocessed nnUNet_results=$PWD/nnunet/results
  nnUNetv2_plan_and_preprocess -d 501 --verify_dataset_integrity   # keeps our splits_final.json
  nnUNetv2_train 501 2d 0                                          # ... and folds 1-4
  tools/import_nnunet.py nnunet/results/Dataset501_FetalHeart/nnUNetTrainer__nnUNetPlans__2d/fold_0/validation \\
      --export nnunet -o nnunet/fold0_results.json
  tools/evaluate.py --predictions nnunet/fold0_results.json --ground-truth data/coco5/annotations/fold0_val.json -o eval/nnunet_fold0

Enhanced frames: export tools/enhance_dataset.py's output folder instead of the original one.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export_nnunet.py", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="ROOT", help="labelme2coco output folder (annotations/*.json, images/)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for nnUNet_raw/ and nnUNet_preprocessed/")
    p.add_argument("--dataset-id", type=int, default=501, help="nnU-Net dataset id (custom: 500-999; default 501)")
    p.add_argument("--name", default="FetalHeart", help="nnU-Net dataset name (default FetalHeart)")
    add_overwrite(p, "an exported dataset of the same id and name")
    add_quiet(p, "no summary")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.annotations.nnunet import ExportOptions, export_nnunet

    s = export_nnunet(args.dataset, args.output, ExportOptions(args.dataset_id, args.name), overwrite=args.overwrite)
    if not args.quiet:
        print(f"{s['cases']} cases, {len(s['classes'])} classes{' + ignore' if s['ignore_label'] else ''}, "
              f"{s['folds']} fold(s) in splits_final.json; {s['overlap_pixels_reassigned']} overlapping pixels "
              f"went to the smaller structure\n  {s['dataset']}\n  {s['splits_final']}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
