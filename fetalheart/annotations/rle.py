"""Run-length encoded masks (COCO RLE, pycocotools): the one set of encode/decode/convert helpers.

Two forms of the same RLE circulate: pycocotools' own (``counts`` as bytes, what its functions
take) and the JSON form (``counts`` as an ASCII string, what COCO files and report.json hold).
``to_bytes`` and ``to_json`` convert either way; everything else here takes either form.
The converter (``coco``), the evaluation (per-image records) and prediction all use these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pycocotools.mask as mask_utils


def to_bytes(rle: dict) -> dict:
    """The pycocotools form of an RLE (``counts`` bytes); uncompressed RLE is left as is."""
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def to_json(rle: dict) -> dict:
    """The JSON form of a compressed RLE: ``{"size": [h, w], "counts": "<ascii>"}``."""
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def encode(masks: np.ndarray) -> list[dict]:
    """(N, H, W) boolean masks -> N compressed RLEs in pycocotools form (one call for the stack)."""
    masks = np.asarray(masks)
    if len(masks) == 0:
        return []
    return list(mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))))


def encode_masks(masks: np.ndarray) -> list[dict]:
    """(N, H, W) boolean masks -> N compressed RLEs in JSON form."""
    return [to_json(r) for r in encode(masks)]


def encode_mask(mask: np.ndarray) -> dict:
    """One (H, W) boolean mask -> compressed RLE in JSON form."""
    return encode_masks(np.asarray(mask)[None])[0]


def decode_masks(rles: Sequence[dict], h: int, w: int) -> np.ndarray:
    """RLEs (either form) -> (N, H, W) boolean masks; (0, H, W) for none."""
    if not rles:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([mask_utils.decode(to_bytes(r)).astype(bool) for r in rles])


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """Union of flat polygons ``[x0, y0, x1, y1, ...]`` as one RLE (pycocotools' rasteriser)."""
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return mask_utils.merge(rles)


def segmentation_rle(segmentation: list | dict, height: int, width: int) -> dict | None:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as one RLE in pycocotools form.

    Polygons of fewer than 3 points are dropped (pycocotools would read 4 numbers as a box);
    None when nothing is left.
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        return polygons_to_rle(polygons, height, width) if polygons else None
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return to_bytes(segmentation)


def segmentation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Decode a written segmentation (polygons or RLE) to a bool mask, as the evaluator does."""
    rle = segmentation_rle(segmentation, height, width)
    return np.zeros((height, width), dtype=bool) if rle is None else mask_utils.decode(rle).astype(bool)


def area_bbox(rle: dict) -> tuple[int, list[float]]:
    """Pixel area and tight ``[x, y, w, h]`` box of an RLE (pycocotools' definitions)."""
    r = to_bytes(rle)
    return int(mask_utils.area(r)), [float(v) for v in mask_utils.toBbox(r)]


def areas(rles: Sequence[dict]) -> np.ndarray:
    """Pixel areas of RLEs in pycocotools form (float64; empty for none)."""
    return np.asarray(mask_utils.area(list(rles)) if len(rles) else [], dtype=np.float64)


def iou(a: Sequence[dict], b: Sequence[dict], crowd: bool = False) -> np.ndarray:
    """(len(a), len(b)) IoU; with ``crowd`` COCO's |a n b| / |a| (``b`` are ignore regions)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(list(a), list(b), [int(crowd)] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def intersection_area(*rles: dict | None) -> int:
    """Area of the intersection of the given RLEs (0 when any is missing)."""
    if any(r is None for r in rles):
        return 0
    return int(mask_utils.area(rles[0] if len(rles) == 1 else mask_utils.merge(list(rles), intersect=True)))


def union(rles: Sequence[dict], idx: Sequence[int]) -> dict | None:
    """The union of ``rles[i]`` for ``i`` in ``idx``; None when ``idx`` is empty."""
    return mask_utils.merge([rles[i] for i in idx], intersect=False) if len(idx) else None


def decode(rle: dict) -> np.ndarray:
    """One RLE (either form) -> (H, W) boolean mask."""
    return mask_utils.decode(to_bytes(rle)).astype(bool)
