"""Ground truth from the geometry: masks clipped to the sector, traced back to simple polygons."""

from __future__ import annotations

import math
from typing import Any

from fetalheart.classes import CLASS_NAMES
from fetalheart.phantom.anatomy import Sector, to_fixed_point

import cv2
import numpy as np


def is_simple_polygon(points: Any) -> bool:
    """True if the closed polygon has >= 3 distinct vertices, non-zero area and no edges crossing.

    Vectorised O(n^2) segment test; adjacent edges share a vertex and are not compared.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n < 3 or not np.all(np.isfinite(p)):
        return False
    if abs(cv2.contourArea(p.astype(np.float32))) <= 0.0:
        return False
    a = p
    b = np.concatenate([p[1:], p[:1]])
    e = b - a
    if np.any((e[:, 0] == 0) & (e[:, 1] == 0)):
        return False  # repeated consecutive vertex
    # Fast path: turning always one way and by 360 degrees in total means convex, hence simple.
    e_next = np.concatenate([e[1:], e[:1]])
    cross = e[:, 0] * e_next[:, 1] - e[:, 1] * e_next[:, 0]
    if (cross > 0).all() or (cross < 0).all():
        turn = np.arctan2(cross, (e * e_next).sum(1)).sum()
        if abs(abs(turn) - 2.0 * math.pi) < 1e-6:
            return True
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # first and last edge are adjacent
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return True
    p1, p2, p3, p4 = a[i], b[i], a[j], b[j]
    # Bounding boxes first: most edge pairs are far apart, only the rest need the exact test.
    near = (
        (np.minimum(p1[:, 0], p2[:, 0]) <= np.maximum(p3[:, 0], p4[:, 0]))
        & (np.minimum(p3[:, 0], p4[:, 0]) <= np.maximum(p1[:, 0], p2[:, 0]))
        & (np.minimum(p1[:, 1], p2[:, 1]) <= np.maximum(p3[:, 1], p4[:, 1]))
        & (np.minimum(p3[:, 1], p4[:, 1]) <= np.maximum(p1[:, 1], p2[:, 1]))
    )
    if not near.any():
        return True
    p1, p2, p3, p4 = p1[near], p2[near], p3[near], p4[near]

    def orient(o, x, y):
        return np.sign((x[:, 0] - o[:, 0]) * (y[:, 1] - o[:, 1]) - (x[:, 1] - o[:, 1]) * (y[:, 0] - o[:, 0]))

    d1, d2, d3, d4 = orient(p3, p4, p1), orient(p3, p4, p2), orient(p1, p2, p3), orient(p1, p2, p4)
    # Crossing or touching (collinear overlap included: the boxes already overlap).
    return not bool(np.any((d1 * d2 <= 0) & (d3 * d4 <= 0)))


def _mask_polygons(mask: np.ndarray, offset: tuple[int, int], min_area: float) -> list[np.ndarray]:
    """Outer contours of a binary mask as simple polygons (one per connected part)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=offset)
    out = []
    for c in contours:
        if cv2.contourArea(c) < min_area:
            continue
        for eps in (0.7, 0.4):
            poly = cv2.approxPolyDP(c, eps, True).reshape(-1, 2)
            if is_simple_polygon(poly):
                break
        else:
            poly = cv2.convexHull(c).reshape(-1, 2)  # always simple; only for odd pixel necks
            if not is_simple_polygon(poly):
                continue
        out.append(poly)
    # Stable order (largest part first) so the JSON is reproducible and readable.
    out.sort(key=lambda q: (-cv2.contourArea(q.astype(np.float32)), int(q[:, 0].min()), int(q[:, 1].min())))
    return out


def _structure_masks(
    structures: dict[str, list[np.ndarray]], carve: list[tuple[str, str]], sector: Sector, size: tuple[int, int]
) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """Rasterise each structure in its bounding box, clipped to the sector (and to the image)."""
    w, h = size
    boxes = {}
    for name, polys in structures.items():
        allp = np.concatenate(polys)
        x0, y0 = max(int(math.floor(allp[:, 0].min())) - 2, 0), max(int(math.floor(allp[:, 1].min())) - 2, 0)
        x1, y1 = min(int(math.ceil(allp[:, 0].max())) + 3, w), min(int(math.ceil(allp[:, 1].max())) + 3, h)
        boxes[name] = (x0, y0, x1, y1)
    masks = {}
    for name, polys in structures.items():
        x0, y0, x1, y1 = boxes[name]
        if x1 <= x0 or y1 <= y0:
            masks[name] = (np.zeros((1, 1), np.uint8), (0, 0))
            continue
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [to_fixed_point(p - (x0, y0)) for p in polys], 1, cv2.LINE_8, shift=4)
        m &= sector.mask[y0:y1, x0:x1]
        masks[name] = (m, (x0, y0))
    for target, tool in carve:
        m, (x0, y0) = masks[target]
        t, (tx, ty) = masks[tool]
        ax0, ay0 = max(x0, tx), max(y0, ty)
        ax1, ay1 = min(x0 + m.shape[1], tx + t.shape[1]), min(y0 + m.shape[0], ty + t.shape[0])
        if ax1 > ax0 and ay1 > ay0:
            m[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] &= 1 - t[ay0 - ty : ay1 - ty, ax0 - tx : ax1 - tx]
    return masks


def labelme_shapes(structures, carve, sector, size, group_id: int | None) -> list[dict]:
    masks = _structure_masks(structures, carve, sector, size)
    shapes = []
    for name in CLASS_NAMES:
        m, off = masks[name]
        for poly in _mask_polygons(m, off, min_area=4.0):
            shapes.append(
                {
                    "label": name,
                    "points": [[float(x), float(y)] for x, y in poly],
                    "group_id": group_id,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                    "mask": None,
                }
            )
    return shapes
