"""COCO instance annotations: segmentation, area and bbox from exactly what is written.

``area`` and ``bbox`` are measured with pycocotools on the rasterised segmentation as written
(rounded coordinates included), so they agree with what COCOeval and detectron2 see. Other
converters compute area from float polygons but write truncated ints, or write rectangles with an
empty segmentation: both silently disagree with the evaluator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fetalheart.annotations.rle import area_bbox, decode, encode_mask, polygons_to_rle
from fetalheart.utils.io import write_text_atomic

import numpy as np

#: Polygon coordinates are written with this many decimals (sub-pixel, and a stable file).
COORD_DECIMALS = 2


def flat_polygon(poly: np.ndarray) -> list[float]:
    """(N, 2) -> ``[x0, y0, ...]`` rounded to COORD_DECIMALS."""
    return (np.round(np.asarray(poly, dtype=np.float64).ravel(), COORD_DECIMALS) + 0.0).tolist()  # + 0.0: no "-0.0"


def segmentation_from_parts(
    polygons: Sequence[np.ndarray], masks: Sequence[np.ndarray], height: int, width: int, force_rle: bool = False
) -> tuple[list | dict, int, list[float]]:
    """One instance from its parts -> (segmentation, area, bbox).

    Polygon-only instances keep polygons (what Mask R-CNN's default ``MASK_FORMAT: polygon``
    reads); any mask part, or ``force_rle`` (crowd regions), gives one RLE of the union.
    """
    flats = [flat_polygon(p) for p in polygons]
    flats = [f for f in flats if len(f) >= 6]  # never a polygon of < 3 points (pycocotools reads 4 as a box)
    if not masks and not force_rle:
        if not flats:
            return [], 0, [0.0, 0.0, 0.0, 0.0]
        area, bbox = area_bbox(polygons_to_rle(flats, height, width))
        return flats, area, bbox
    union = np.zeros((height, width), dtype=bool)
    for m in masks:
        union |= m
    if flats:
        union |= decode(polygons_to_rle(flats, height, width))
    rle = encode_mask(union)
    area, bbox = area_bbox(rle)
    return rle, area, bbox


def coco_document(
    images: list[dict], annotations: list[dict], categories: list[dict], info: dict[str, Any]
) -> dict:
    """A COCO instances document with the five standard top-level keys."""
    return {
        "info": info,
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def dumps_coco(doc: dict) -> str:
    """Stable serialisation: same document, same bytes (key order is insertion order, no timestamps)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def write_coco(path: Path, doc: dict, overwrite: bool = False) -> Path:
    """Write a COCO document atomically."""
    return write_text_atomic(path, dumps_coco(doc), overwrite=overwrite)
