"""Reading and validating LabelMe JSON, and turning its shapes into polygons or masks.

We read the JSON ourselves instead of calling ``labelme.LabelFile``: labelme is an optional
dependency (it pulls PyQt5), its loader asserts on bad input instead of saying what is wrong, and it
rejects format variants we must accept: labelme 3.x files (no ``shape_type``, no ``group_id``, no image
size, ``lineColor``/``fillColor``), X-AnyLabeling files (rectangles as 4 corner points, ``rotation``
shapes, extra keys such as ``score``/``difficult``/``attributes`` and a top-level ``text``), ``flags``
written as a list. Keys that no LabelMe version writes are ignored and counted (``unknown_keys``), so
the report can list them once. Tests check our geometry against labelme's own ``shape_to_mask``.

Coordinates: LabelMe points are in pixels of the EXIF-oriented image (labelme applies the EXIF
orientation when it loads an image, and so does detectron2's ``read_image``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Refuse images (files or embedded ``imageData``) above this many pixels: a decompression bomb
#: or a mistake, never an ultrasound frame (a 8K frame is 33 Mpx).
MAX_IMAGE_PIXELS = 64_000_000

#: Shape types that become (parts of) instances.
AREA_SHAPE_TYPES = ("polygon", "rectangle", "circle", "mask", "rotation", "oriented_rectangle")
#: Shape types that have no area: ignored with a counted warning (labelme's example script writes a
#: ``line`` as 4 numbers, which pycocotools then reads as a box).
IGNORED_SHAPE_TYPES = ("point", "line", "linestrip", "points", "cuboid")

#: Top-level and per-shape keys written by some LabelMe version: 3.x (``lineColor``, ``fillColor``,
#: ``line_color``, ``fill_color``), 4.x (``group_id``), 5.x (``description``, ``mask``), 6.x. Anything
#: else (X-AnyLabeling's ``score``, ``difficult``, ``attributes``, ``kie_linking``, ``visible``, its
#: top-level ``text``, ...) is ignored and counted.
LABELME_TOP_KEYS = frozenset(
    {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth", "lineColor", "fillColor"}
)
LABELME_SHAPE_KEYS = frozenset(
    {"label", "points", "group_id", "shape_type", "flags", "description", "mask", "line_color", "fill_color"}
)

#: The LabelMe format version fetalheart writes (a 5.x-style string: labelme 5 and 6 both read it).
LABELME_VERSION = "5.5.0"


class LabelmeError(ValueError):
    """A LabelMe file that cannot be converted; the message is one line naming the reason."""


@dataclass
class Shape:
    """One LabelMe shape, validated: finite float points, a known type."""

    label: str
    shape_type: str
    points: np.ndarray  # (N, 2) float64, x/y in image pixels
    group_id: int | str | None = None
    mask_b64: str | None = None
    index: int = 0  # position in the file, for messages


@dataclass
class LabelmeFile:
    """The parts of a LabelMe file the converter needs."""

    path: Path
    image_path: str  # as written, backslashes turned into "/"
    image_data: str | None
    height: int | None
    width: int | None
    shapes: list[Shape] = field(default_factory=list)
    ignored_shapes: dict[str, int] = field(default_factory=dict)  # shape_type -> count
    unknown_keys: dict[str, int] = field(default_factory=dict)  # "text" / "shapes[].score" -> count
    four_point_rectangles: int = 0  # X-AnyLabeling rectangles (4 corners), read as polygons


def labelme_document(shapes: list[dict], image_path: str, height: int, width: int) -> dict:
    """A LabelMe JSON document (what fetalheart writes: phantom ground truth, predicted polygons)."""
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": int(height), "imageWidth": int(width)}


def mask_shape(label: str, mask: np.ndarray, description: str = "") -> dict:
    """A LabelMe ``mask`` shape of a full-image bool mask: its tight crop as a base64 PNG and the crop's
    inclusive box ``[[x1, y1], [x2, y2]]``, as labelme writes it (exact pixels, no polygon tracing)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        raise ValueError("an empty mask has no LabelMe shape")
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask[y1:y2 + 1, x1:x2 + 1], np.uint8) * 255).save(buf, format="PNG")
    return {"label": label, "points": [[x1, y1], [x2, y2]], "group_id": None, "description": description,
            "shape_type": "mask", "flags": {}, "mask": base64.b64encode(buf.getvalue()).decode("ascii")}


def load_json(path: Path) -> Any:
    """Parse a JSON file; one-line LabelmeError on bad bytes or syntax (NaN is accepted, then refused later)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LabelmeError(f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise LabelmeError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def is_labelme(obj: Any) -> bool:
    """True for anything that claims to be LabelMe (it may still be invalid)."""
    return isinstance(obj, dict) and ("shapes" in obj or "imagePath" in obj)


def _points(raw: Any, where: str) -> np.ndarray:
    if not isinstance(raw, list) or not raw:
        raise LabelmeError(f"{where}: 'points' must be a non-empty list of [x, y]")
    try:
        # Without a dtype, numpy keeps strings as strings and mixed lists as objects: only real
        # numbers give an int/float array (bools give kind "b" and are refused too).
        pts = np.asarray(raw)
    except ValueError:  # ragged
        pts = None
    if pts is None or pts.ndim != 2 or pts.shape[1] != 2 or pts.dtype.kind not in "iuf":
        bad = next((p for p in raw if not (isinstance(p, list) and len(p) == 2)), raw[0])
        raise LabelmeError(f"{where}: 'points' must be a list of [x, y] numbers, found {json.dumps(bad)[:40]}")
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise LabelmeError(f"{where}: 'points' contains NaN or infinity")
    return pts


def parse_labelme(obj: Any, path: Path) -> LabelmeFile:
    """Validate a parsed LabelMe dict; raise LabelmeError naming the first problem."""
    out = _parse_header(obj, path)
    for key in obj:
        if key not in LABELME_TOP_KEYS:
            out.unknown_keys[key] = out.unknown_keys.get(key, 0) + 1
    shapes_raw = obj.get("shapes", [])
    if shapes_raw is None:
        shapes_raw = []
    if not isinstance(shapes_raw, list):
        raise LabelmeError("'shapes' must be a list")
    for i, s in enumerate(shapes_raw):
        shape = _parse_shape(s, i, out)
        if shape is not None:
            out.shapes.append(shape)
    return out


def _parse_header(obj: Any, path: Path) -> LabelmeFile:
    if not is_labelme(obj):
        raise LabelmeError("not a LabelMe file (no 'shapes' or 'imagePath')")
    image_path = obj.get("imagePath")
    image_data = obj.get("imageData")
    if image_path is not None and not isinstance(image_path, str):
        raise LabelmeError("'imagePath' must be a string")
    if image_data is not None and not isinstance(image_data, str):
        raise LabelmeError("'imageData' must be a base64 string or null")
    if not image_path and not image_data:
        raise LabelmeError("no 'imagePath' and no embedded 'imageData'")
    size = []
    for key in ("imageHeight", "imageWidth"):
        v = obj.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise LabelmeError(f"'{key}' must be an integer, found {v!r}")
        # X-AnyLabeling's template writes -1 for "not known yet": the image's own size is used, as when absent.
        size.append(v if v is not None and v > 0 else None)
    return LabelmeFile(
        path=path,
        image_path=(image_path or "").replace("\\", "/"),
        image_data=image_data or None,
        height=size[0],
        width=size[1],
    )


def _parse_shape(s: Any, i: int, out: LabelmeFile) -> Shape | None:
    """One shape -> Shape, or None for a shape without area (counted in ``out.ignored_shapes``)."""
    where = f"shape {i}"
    if not isinstance(s, dict):
        raise LabelmeError(f"{where}: must be an object")
    for key in s:
        if key not in LABELME_SHAPE_KEYS:
            out.unknown_keys[f"shapes[].{key}"] = out.unknown_keys.get(f"shapes[].{key}", 0) + 1
    label = s.get("label")
    if not isinstance(label, str) or not label.strip():
        raise LabelmeError(f"{where}: 'label' must be a non-empty string")
    where = f"shape {i} ({label!r})"
    stype = s.get("shape_type") or "polygon"  # labelme 3.x: no shape_type, always polygons
    if not isinstance(stype, str):
        raise LabelmeError(f"{where}: 'shape_type' must be a string")
    if stype in IGNORED_SHAPE_TYPES:
        out.ignored_shapes[stype] = out.ignored_shapes.get(stype, 0) + 1
        return None
    if stype not in AREA_SHAPE_TYPES:
        raise LabelmeError(f"{where}: unsupported shape_type {stype!r}")
    gid = s.get("group_id")
    if gid is not None and (isinstance(gid, bool) or not isinstance(gid, (int, str))):
        raise LabelmeError(f"{where}: 'group_id' must be an integer or null")
    pts = _points(s.get("points"), where)
    mask_b64 = s.get("mask")
    if stype == "rectangle" and len(pts) == 4:
        # X-AnyLabeling writes the 4 corners (and a rotated or edited one need not be axis-aligned):
        # the corners in drawing order are exactly the polygon the annotator saw.
        stype = "polygon"
        out.four_point_rectangles += 1
    if stype == "mask":
        if not isinstance(mask_b64, str) or not mask_b64:
            raise LabelmeError(f"{where}: mask shape without a base64 PNG 'mask'")
        if len(pts) != 2:
            raise LabelmeError(f"{where}: mask shape needs 2 points (its box), found {len(pts)}")
    elif stype == "rectangle" and len(pts) != 2:
        raise LabelmeError(f"{where}: rectangle needs 2 points (or 4 corners), found {len(pts)}")
    elif stype == "circle" and len(pts) != 2:
        raise LabelmeError(f"{where}: circle needs 2 points, found {len(pts)}")
    elif stype in ("rotation", "oriented_rectangle") and len(pts) != 4:
        raise LabelmeError(f"{where}: {stype} needs 4 corner points, found {len(pts)}")
    return Shape(label.strip(), stype, pts, gid, mask_b64 if stype == "mask" else None, i)


# --------------------------------------------------------------------------------------------- images


@dataclass
class ImageInfo:
    """Size after EXIF orientation, format and mode, read from the header plus one full decode."""

    width: int
    height: int
    format: str
    mode: str
    exif_transposed: bool


def image_info(source: Path | bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Open an image (path or encoded bytes), check it decodes, return its oriented size.

    The pixel limit is checked on the header, before any decoding. Raises LabelmeError.
    """
    try:
        # PIL's own bomb check is global state; we check our documented limit from the header instead.
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise LabelmeError(f"image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels}")
            # The base getexif reads the EXIF found while opening; PNG's override decodes the whole
            # image first to look for a late eXIf chunk, which would double the cost of a file.
            orientation = Image.Image.getexif(im).get(0x0112, 1)
            fmt, mode = im.format or "?", im.mode
            # "Decodable" without paying a full decode: verify() checks the structure (every PNG
            # chunk CRC, so truncation and corruption are caught; JPEG/other headers). A full
            # decode costs ~15 ms per 1280x720 frame, most of the conversion time.
            im.verify()
    except LabelmeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise LabelmeError(f"not a decodable image ({str(exc).splitlines()[0][:80]})") from None
    transposed = orientation in (5, 6, 7, 8)
    if transposed:
        w, h = h, w
    return ImageInfo(w, h, fmt, mode, transposed or orientation not in (1, None))


def decode_image_data(image_data: str) -> bytes:
    """Embedded ``imageData`` -> the encoded image bytes exactly as labelme stored them."""
    try:
        return base64.b64decode(image_data, validate=False)
    except (binascii.Error, ValueError):
        raise LabelmeError("'imageData' is not valid base64") from None


def safe_image_name(image_path: str) -> str:
    """The image's file name only: never a path that could escape the output folder."""
    name = PurePosixPath(image_path.replace("\\", "/")).name
    if name in ("", ".", "..") or name.startswith("."):
        raise LabelmeError(f"imagePath {image_path!r} has no usable file name")
    return name


#: File-name suffixes of the image formats the converter accepts (what Pillow, hence detectron2's
#: ``read_image``, decodes): an ``imagePath`` with another suffix (e.g. the JSON itself) names no image.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif"})


def has_image_suffix(name: str) -> bool:
    """Whether ``name`` ends in a known image suffix (case-insensitive)."""
    return PurePosixPath(name.replace("\\", "/")).suffix.lower() in IMAGE_SUFFIXES


# ------------------------------------------------------------------------------------------- geometry


def circle_polygon(center: np.ndarray, through: np.ndarray, max_error: float = 0.25) -> np.ndarray:
    """A regular polygon inscribed in the circle, with vertices close enough that the sagitta
    (largest gap between polygon and circle) stays below ``max_error`` pixels."""
    r = float(np.hypot(*(through - center)))
    if r <= 0:
        return np.repeat(center[None], 3, axis=0)
    n = math.ceil(math.pi / math.acos(max(-1.0, 1.0 - max_error / r))) if r > max_error else 8
    n = int(min(max(n, 12), 720))
    t = np.arange(n) * (2 * math.pi / n)
    return np.stack([center[0] + r * np.cos(t), center[1] + r * np.sin(t)], axis=1)


def shape_polygon(shape: Shape) -> np.ndarray:
    """Polygon (N, 2) for every area shape type except ``mask``."""
    p = shape.points
    if shape.shape_type == "rectangle":
        (x0, y0), (x1, y1) = p.min(0), p.max(0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    if shape.shape_type == "circle":
        return circle_polygon(p[0], p[1])
    return p  # polygon, rotation, oriented_rectangle: the corners in drawing order


def clip_polygon(poly: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clip to the image rectangle [0, width] x [0, height].

    Clamping vertices one by one would change the shape; clipping keeps exactly the visible part.
    """
    out = [tuple(v) for v in poly]
    for axis, bound, keep_le in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if not out:
            break
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            cin = cur[axis] <= bound if keep_le else cur[axis] >= bound
            pin = prev[axis] <= bound if keep_le else prev[axis] >= bound
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                x = prev[0] + t * (cur[0] - prev[0])
                y = prev[1] + t * (cur[1] - prev[1])
                out.append((bound, y) if axis == 0 else (x, bound))
            if cin:
                out.append(cur)
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def dedupe_vertices(poly: np.ndarray) -> np.ndarray:
    """Drop consecutive repeated vertices (including last == first)."""
    if len(poly) < 2:
        return poly
    keep = np.any(np.abs(np.diff(poly, axis=0, append=poly[:1])) > 1e-9, axis=1)
    return poly[keep] if keep.any() else poly[:1]


def is_self_intersecting(poly: np.ndarray) -> bool:
    """Whether two non-adjacent edges of the closed polygon properly cross.

    O(n^2) but in a handful of whole-matrix numpy operations: with edge i from a_i to b_i,
    ``side[i, j]`` = cross(e_i, a_j - a_i); edges i and j cross when a_j, b_j lie strictly on
    opposite sides of edge i and a_i, b_i strictly on opposite sides of edge j.
    """
    n = len(poly)
    if n < 4:
        return False
    if n > 4000:  # bound memory (n^2 matrices); such outlines come from masks, not from clicks
        return False
    a = np.asarray(poly, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    c = (ex * a[:, 1] - ey * a[:, 0])[:, None]
    side_a = np.outer(ex, a[:, 1]) - np.outer(ey, a[:, 0]) - c  # cross(e_i, a_j - a_i)
    side_b = np.outer(ex, b[:, 1]) - np.outer(ey, b[:, 0]) - c  # cross(e_i, b_j - a_i)
    straddle = (side_a * side_b) < 0
    cross = straddle & straddle.T
    idx = np.arange(n)
    gap = np.abs(idx[:, None] - idx[None])
    cross &= (gap > 1) & (gap < n - 1)
    return bool(cross.any())


def decode_mask_shape(shape: Shape) -> tuple[np.ndarray, int, int]:
    """A ``mask`` shape -> (bool crop, x0, y0): where the crop's top-left pixel goes in the image.

    labelme writes the crop's box as 2 points; labelme >= 5.4 may write them fractional. labelme's
    own ``shapes_to_label`` places the crop at the integer part of the first point: so do we, and we
    take the crop's size from the PNG itself (the second point is not trusted).
    """
    try:
        data = base64.b64decode(shape.mask_b64 or "", validate=False)
        with Image.open(io.BytesIO(data)) as im:
            if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                raise LabelmeError(f"shape {shape.index} ({shape.label!r}): mask PNG is too large")
            crop = np.asarray(im) != 0
    except LabelmeError:
        raise
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError, SyntaxError):
        raise LabelmeError(f"shape {shape.index} ({shape.label!r}): 'mask' is not a base64 PNG") from None
    if crop.ndim == 3:
        crop = crop.any(axis=2)
    x0, y0 = (int(v) for v in shape.points[0])
    return crop, x0, y0


def paste_mask(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Place a crop in a full-image bool mask, clipped; also say whether anything fell outside."""
    full = np.zeros((height, width), dtype=bool)
    h, w = crop.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    placed = 0
    if xb > xa and yb > ya:
        part = crop[ya - y0 : yb - y0, xa - x0 : xb - x0]
        full[ya:yb, xa:xb] = part
        placed = int(part.sum())
    return full, placed != int(crop.sum())
