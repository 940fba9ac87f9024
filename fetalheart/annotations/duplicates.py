"""One dataset image per picture, however many LabelMe files annotate it.

The same picture annotated in two folders (frames copied into two labelling batches, two JSONs
pointing at one frame, LabelMe's embedded ``imageData`` beside the file it was made from) would
otherwise become two dataset images that the split can put on both sides. Two results are the same
image when they have the same source file, the same encoded bytes, or the same pixels. Equal shapes:
the first (in file order) is kept and the others are listed as merged; different shapes: a one-line
problem naming both JSON files (only a person can tell which is right).

Comparing pixels means decoding, ~7x the cost of the structural check the reading pass does (measured
here on a 1280x720 PNG, load 12: 30-38 ms to decode, 4.5 ms to verify), so it is done only where
bytes cannot decide: in a size class holding both embedded images (LabelMe re-encodes them) and
image files. Elsewhere equal pixels come from copies, which have equal bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from fetalheart.annotations.labelme import decode_image_data, load_json
from fetalheart.annotations.reading import FileResult

import numpy as np
from PIL import Image, ImageOps


def pixel_digest(source: str | Path | bytes) -> str:
    """SHA-256 of an image's oriented pixels (EXIF applied; 8-bit modes as RGB, so a palette PNG and
    its RGB re-encode compare equal), its shape and dtype."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _pixels_of(r: FileResult) -> str:
    if r.embedded:
        return pixel_digest(decode_image_data(load_json(r.job.json_path)["imageData"]))
    return pixel_digest(r.source)


def add_pixel_digests(results: list[FileResult]) -> int:
    """Set ``pixels`` where bytes cannot decide (see the module docstring); return how many were decoded."""
    classes: dict[tuple[int, int], list[FileResult]] = {}
    for r in results:
        classes.setdefault((r.width, r.height), []).append(r)
    decoded = 0
    for members in classes.values():
        if len({r.embedded for r in members}) == 2:
            for r in members:
                r.pixels = _pixels_of(r)
                decoded += 1
    return decoded


def _shapes_key(r: FileResult) -> str:
    return json.dumps(sorted(json.dumps(a, sort_keys=True, default=str) for a in r.annotations))


def merge_duplicates(results: list[FileResult]) -> tuple[list[FileResult], list[str], list[str]]:
    """(one result per image, problems, merged): ``results`` are the readable files in file order."""
    first_by: dict[tuple[str, str], FileResult] = {}
    kept: list[FileResult] = []
    problems: list[str] = []
    merged: list[str] = []
    for r in results:
        keys = [("the same image file", r.source), ("the same image bytes", r.content), ("the same pixels", r.pixels)]
        hit = next(((why, first_by[(why, k)]) for why, k in keys if k and (why, k) in first_by), None)
        if hit is None:
            for why, k in keys:
                if k:
                    first_by[(why, k)] = r
            kept.append(r)
            continue
        why, first = hit
        if _shapes_key(r) == _shapes_key(first):
            merged.append(f"{r.job.json_path}: {why} as {first.job.json_path}, same shapes: one image ({first.name})")
        else:
            problems.append(f"{r.job.json_path} and {first.job.json_path} annotate {why} ({first.name}) with "
                            "different shapes: keep one of them")
            r.status = "invalid"
    return kept, problems, merged
