"""``extract_frames VIDEO [VIDEO ...] -o OUT``: video to curated frames.

Samples frames (every N-th, or F per second of presentation time), measures each one's
sharpness (variance of the Laplacian) and mean intensity, drops out-of-focus frames and
near-duplicates unless --keep-all, optionally crops to the ultrasound sector and resizes, and
writes OUT/<video-stem>_<frame-index:06d>.png, OUT/frames.csv (one row per sampled frame, with
the container's timestamp and why a frame was dropped) and OUT/extraction.json (options, crop
and resize per video, to map annotations). Prints a summary table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fetalheart.utils.cli import add_overwrite, add_quiet, number, run_cli

EPILOG = """examples:
  # the study's sampling: about every 15th frame of a 30 fps video, sector only, 512 px
  tools/extract_frames.py echo.mp4 -o frames --every 15 --auto-crop --resize 512
  # 2 frames per second between 0:30 and 1:45, drop near-identical frames, keep everything
  tools/extract_frames.py echo.mp4 -o frames --fps 2 --start 0:30 --end 1:45 --dedupe 2 --keep-all

sharpness: variance of the Laplacian of the grey frame, measured on the ultrasound sector (the
crop, or the auto-detected sector: burned-in text is always sharp). The default threshold 'auto'
is 0.5 x the 75th percentile of 15 frames probed across the selected time range of each video,
because the absolute value depends on machine, gain and resolution; 'auto:0.4' changes the
fraction, a number sets an absolute threshold, 'off' only measures.
exit status: 0 ok; 2 bad input, refused overwrite, or a video that stopped decoding early
(its decodable frames are written; --allow-partial makes that exit 0).
"""


_positive_int = number(int)
_positive_float = number(float)
_non_negative_float = number(float, strict=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="extract_frames.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", metavar="VIDEO", type=Path, help="video files (mp4, avi, mov, mkv, ...)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if needed)")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=_positive_int, metavar="N",
                          help="keep every N-th frame, counted from the first frame at/after --start (default 1)")
    sampling.add_argument("--fps", type=_positive_float, metavar="F",
                          help="sample F frames per second of presentation time (right for variable frame rate)")
    p.add_argument("--start", metavar="T", help="first time, seconds or hh:mm:ss (inclusive)")
    p.add_argument("--end", metavar="T", help="last time, seconds or hh:mm:ss (exclusive)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop after writing N frames per video")
    p.add_argument("--resize", metavar="N|WxH",
                   help="N: longest side N px, aspect kept; WxH: fit inside and pad with black (letterbox)")
    geo = p.add_mutually_exclusive_group()
    geo.add_argument("--crop", metavar="x,y,w,h", help="crop box in source pixels, applied before --resize")
    geo.add_argument("--auto-crop", action="store_true",
                     help="find the ultrasound sector and crop away margins with text and calipers")
    p.add_argument("--format", dest="fmt", choices=["png", "jpg"], default="png", help="image format (default png)")
    p.add_argument("--min-sharpness", default="auto", metavar="T|auto[:F]|off",
                   help="frames below are out_of_focus (default auto = 0.5 x the video's 75th percentile)")
    p.add_argument("--dedupe", type=_non_negative_float, metavar="D",
                   help="skip frames whose 64x64 thumbnail differs from the last kept one by < D grey levels")
    p.add_argument("--keep-all", action="store_true", help="also write dropped frames (frames.csv still says why)")
    add_overwrite(p, "frames, frames.csv and extraction.json in OUT")
    p.add_argument("--allow-partial", action="store_true",
                   help="exit 0 when a truncated video stops decoding early (frames before are written anyway)")
    add_quiet(p, "no progress bar, no summary table")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fetalheart.video.extract import ExtractOptions, PartialVideoError, extract_frames, format_summary

    try:
        options = ExtractOptions(
            every=args.every, fps=args.fps, start=args.start, end=args.end, max_frames=args.max_frames,
            resize=args.resize, crop=args.crop, auto_crop=args.auto_crop, fmt=args.fmt,
            min_sharpness=args.min_sharpness, keep_all=args.keep_all, dedupe=args.dedupe,
        )  # fmt: skip
        result = extract_frames(args.videos, args.output, options, overwrite=args.overwrite,
                                allow_partial=args.allow_partial, quiet=args.quiet)
    except PartialVideoError as exc:
        if not args.quiet:
            print(format_summary(exc.result))
        raise
    if not args.quiet:
        print(format_summary(result))
        print(f"wrote {len(result.written)} frames, {result.csv_path} and {result.json_path}")
        for v in result.videos:
            if v.partial:
                print(f"warning: {v.source}: {v.partial}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)
