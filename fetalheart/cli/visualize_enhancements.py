"""``visualize_enhancements IMAGE -o grid.png``: the study's 11 variants of a frame with histograms (Figure 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fetalheart.enhance.spec import SPECS_OF_STUDY
from fetalheart.utils.cli import add_overwrite, add_quiet, key_value, run_cli
from fetalheart.utils.errors import FetalHeartError
from fetalheart.utils.io import atomic_path

import cv2

EPILOG = """examples:
  tools/visualize_enhancements.py frames/phantom_000012.png -o grid.png
  tools/visualize_enhancements.py frame.png -o grid.png --specs original,clahe,ahe+clahe --mask auto

each cell: the enhanced frame (title = spec) and its luminance histogram (0..255 for uint8).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visualize_enhancements.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, metavar="IMAGE", help="an image file (gray or colour, 8 or 16 bit)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output figure (.png, .pdf, .svg)")
    p.add_argument("--specs", default=",".join(SPECS_OF_STUDY),
                   help="comma-separated specs (default: the study's 11)")
    p.add_argument("--mask", choices=["none", "auto"], default="none", help="equalise inside the sector only")
    p.add_argument("--param", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="override an enhancement parameter; repeatable")
    p.add_argument("--cols", type=int, default=4, help="cells per row (default 4)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--dpi", type=int, default=100, help="resolution of raster output (default 100)")
    add_overwrite(p, "the output figure")
    add_quiet(p, "no progress bar")
    return p


def _main(argv=None) -> int:
    from fetalheart.enhance.figure import enhancement_grid

    args = build_parser().parse_args(argv)
    if args.output.exists() and not args.overwrite:
        raise FetalHeartError(f"{args.output} exists; pass --overwrite to replace it")
    if not args.image.is_file():
        raise FetalHeartError(f"image not found: {args.image}")
    image = cv2.imread(str(args.image), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FetalHeartError(f"cannot read {args.image} as an image")
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    if not specs:
        raise FetalHeartError("--specs is empty")
    if args.cols < 1:
        raise FetalHeartError("--cols must be >= 1")
    fig = enhancement_grid(image, specs, mask=args.mask, params=dict(args.param), ncols=args.cols,
                           title=args.title, progress=not args.quiet)
    import matplotlib.pyplot as plt

    with atomic_path(args.output, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=args.dpi, bbox_inches="tight")
    plt.close(fig)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)
