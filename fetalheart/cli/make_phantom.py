"""``make_phantom -o OUT``: a synthetic fetal four-chamber echo video with exact LabelMe ground truth.

Writes OUT/<name>.mp4 (H.264, 30 fps), OUT/frames/<name>_<index>.png, OUT/labelme/<name>_<index>.json,
OUT/frames.csv (each frame's category) and OUT/phantom.json (seed, size, sector box, margin text boxes).
The same seed gives byte-identical frames and annotations.
"""

from __future__ import annotations

import argparse
import sys

from fetalheart.utils.cli import add_overwrite, add_quiet, number, run_cli
from fetalheart.utils.errors import FetalHeartError

EPILOG = """examples:
  tools/make_phantom.py -o data/phantom                      # 2 s, 1280x720, 30 fps, seed 0
  tools/make_phantom.py -o data/phantom_s3 --seconds 12 --seed 3 --size 960x540
  tools/make_phantom.py -o data/frames_only --frames-only --proportions heart=1,no_heart=1

categories (frames.csv): heart, multiple_hearts, out_of_focus, no_heart; by default in the
study's proportions 114:50:105:88 (Table 2), in contiguous runs like a real sweep.
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().replace(" ", "").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}") from None
    if w < 64 or h < 64:
        raise argparse.ArgumentTypeError(f"frames must be at least 64x64, got {text!r}")
    return w, h


def _proportions(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected CATEGORY=WEIGHT pairs like heart=114,no_heart=88, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight for {key!r} is not a number: {value!r}") from None
    return out




def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make_phantom.py",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument("--seconds", type=number(float), default=2.0, help="video length in seconds (default 2)")
    p.add_argument("--fps", type=number(float), default=30.0, help="frames per second (default 30)")
    p.add_argument("--size", type=_size, default=(1280, 720), help="frame size WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--seed", type=int, default=0, help="random seed: anatomy, motion, speckle, categories (default 0)")
    p.add_argument("--name", help="file stem (default phantom_s<seed>)")
    p.add_argument(
        "--proportions",
        type=_proportions,
        help="category weights, e.g. heart=114,multiple_hearts=50,out_of_focus=105,no_heart=88 (the default); "
        "missing categories get 0",
    )
    p.add_argument("--frames-only", action="store_true", help="write frames and annotations, no video")
    add_overwrite(p, "the video, frames, LabelMe files, frames.csv and phantom.json in OUT")
    add_quiet(p, "no progress bar")
    return p


def _main(argv=None) -> int:
    from fetalheart.phantom import PhantomSpec, make_phantom

    args = build_parser().parse_args(argv)
    if args.proportions is not None and not args.proportions:
        raise FetalHeartError("--proportions is empty")
    spec = PhantomSpec(seconds=args.seconds, fps=args.fps, size=args.size, seed=args.seed, name=args.name,
                       proportions=args.proportions)
    summary = make_phantom(args.output, spec, video=not args.frames_only, quiet=args.quiet, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    print(
        f"{summary['n_frames']} frames ({counts}) in {summary['seconds']:.1f} s "
        f"({summary['frames_per_second']:.1f} frames/s) -> {summary['out_dir']}",
        file=sys.stderr if args.quiet else sys.stdout,
    )
    if summary["video"]:
        print(summary["video"])
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
