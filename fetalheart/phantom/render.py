"""Rendering one phantom frame: the scene as a material map, the echo model, the margin overlays."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fetalheart.phantom.anatomy import (
    BLOOD,
    BONE,
    FLUID,
    HALF_ANGLE,
    LIVER,
    PLACENTA,
    SKIN,
    TISSUE,
    Heart,
    Pose,
    Sector,
    ellipse,
    sector_for,
    to_fixed_point,
    to_image,
)
from fetalheart.phantom.echo import echo_image
from fetalheart.phantom.groundtruth import labelme_shapes
from fetalheart.phantom.schedule import CATEGORIES, normalise_proportions, schedule_runs
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np


@functools.lru_cache(maxsize=8)
def text_layout(seed: int, fps: float, size: tuple[int, int]) -> tuple[dict, list[list[int]]] | None:
    """The margin overlays (what the study cropped away) and their boxes [x, y, w, h].

    Boxes are measured on the drawn pixels (with the widest clock digits), so they are exact.
    """
    w, h = size
    sector = sector_for(size)
    x_left_end, x_right_start = sector.bbox[0], sector.bbox[0] + sector.bbox[2]
    margin = min(x_left_end, w - x_right_start)
    if margin < 24:
        return None  # no room beside the fan: no overlays
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = ["FETAL ECHO", f"4CH  S{seed}", f"FR {fps:g} Hz", "GAIN 52 DR 60", "TIS 0.4 MI 0.9", "00:00.00"]
    scale = 0.55 * h / 720.0
    widest = max(cv2.getTextSize(s, font, scale, 1)[0][0] for s in [*lines, "88:88.88"])
    if widest > 0.85 * margin:
        scale *= 0.85 * margin / widest
    thick = 1 if scale < 0.9 else 2
    th = cv2.getTextSize("Hg", font, scale, thick)[0][1]
    step = int(round(th * 1.9))
    y = int(round(sector.bbox[1] + th + 2))
    rng = np.random.default_rng([seed, 17])
    cal = [f"+ D1 {10 + 8 * rng.random():.1f}mm", f"x D2 {6 + 5 * rng.random():.1f}mm"]
    rx = x_right_start + int(round(0.12 * margin))
    ry0 = y + 2 * step
    ry1 = int(min(sector.apex[1] + sector.radius, h - th - 4))
    layout = dict(font=font, scale=scale, thick=thick, step=step, x=int(round(0.04 * margin)), y=y,
                  lines=lines, cal=cal, rx=rx, ry=(ry0, ry1), tick=max(3, (ry1 - ry0) // 60))  # fmt: skip
    boxes = []
    for part in ("text", "calipers", "ruler"):
        canvas = np.zeros((h, w), np.uint8)
        for clock in (0.0, 5328.88, 1271.11):  # "00:00.00", "88:48.88", "21:11.11": all digit widths
            _draw_text(canvas, layout, clock, parts=(part,))
        ys, xs = np.nonzero(canvas)
        x0, y0 = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
        x1, y1 = min(int(xs.max()) + 3, w), min(int(ys.max()) + 3, h)
        boxes.append([x0, y0, x1 - x0, y1 - y0])
    return layout, boxes


def _draw_text(img: np.ndarray, layout: dict, t: float, parts=("text", "calipers", "ruler")) -> None:
    font, scale, thick, step = layout["font"], layout["scale"], layout["thick"], layout["step"]
    # Grey overlays keep every frame grey, so PNGs and the video pipe carry one channel (3x faster).
    white = (235, 235, 235) if img.ndim == 3 else 235
    yellow = (200, 200, 200) if img.ndim == 3 else 200
    if "text" in parts:
        lines = list(layout["lines"])
        lines[-1] = f"{int(t // 60) % 100:02d}:{t % 60:05.2f}"
        for k, s in enumerate(lines):
            cv2.putText(img, s, (layout["x"], layout["y"] + k * step), font, scale, white, thick, cv2.LINE_AA)
    if "calipers" in parts:
        for k, s in enumerate(layout["cal"]):
            cv2.putText(img, s, (layout["rx"], layout["y"] + k * step), font, scale, yellow, thick, cv2.LINE_AA)
    if "ruler" in parts:  # depth ruler, ticks every tenth of the depth
        rx, (ry0, ry1), tick = layout["rx"], layout["ry"], layout["tick"]
        cv2.line(img, (rx, ry0), (rx, ry1), white, 1)
        for k in range(11):
            yy = int(round(ry0 + (ry1 - ry0) * k / 10))
            cv2.line(img, (rx, yy), (rx + (2 * tick if k % 5 == 0 else tick), yy), white, 1)
            if k % 5 == 0:
                cv2.putText(img, str(k), (rx + 3 * tick, yy + 4), font, scale * 0.8, white, thick, cv2.LINE_AA)


def _fill(canvas: np.ndarray, pts: np.ndarray, material: int) -> None:
    cv2.fillPoly(canvas, [to_fixed_point(pts)], int(material), cv2.LINE_8, shift=4)


def _maternal_wall(canvas: np.ndarray, sector: Sector, t: float) -> None:
    """Layers of the mother's abdominal wall under the probe: skin, fat, fascia, muscle (bright lines)."""
    ang = np.linspace(-HALF_ANGLE - 0.1, HALF_ANGLE + 0.1, 40)
    for k, (d0, d1) in enumerate(((0.065, 0.085), (0.13, 0.15), (0.19, 0.215), (0.26, 0.275))):
        wob = 0.006 * np.sin(3.0 * ang + k + 0.3 * t)
        outer = np.stack([np.sin(ang), np.cos(ang)], 1) * ((d1 + wob) * sector.radius)[:, None]
        inner = np.stack([np.sin(ang), np.cos(ang)], 1) * ((d0 + wob) * sector.radius)[:, None]
        _fill(canvas, np.concatenate([outer, inner[::-1]]) + sector.apex, SKIN)


def _no_heart_scene(canvas, rng, sector: Sector, t: float) -> None:
    """Other anatomy: a fetal abdomen (stomach, umbilical vein, ribs) or limbs beside the placenta."""
    drift = 0.03 * math.sin(2.0 * math.pi * 0.15 * t + rng.random() * 6.0)
    if rng.random() < 0.5:
        cx, cy = sector.point(0.52 + drift, math.radians(rng.uniform(-8, 8)))
        r = sector.radius * rng.uniform(0.24, 0.30)
        _fill(canvas, ellipse(cx, cy, r * 1.3, r * 1.25), FLUID)
        _fill(canvas, ellipse(cx, cy, r, r * 0.95), SKIN)
        _fill(canvas, ellipse(cx, cy, r * 0.95, r * 0.9), LIVER)
        _fill(canvas, ellipse(cx + 0.35 * r, cy - 0.1 * r, 0.28 * r, 0.18 * r, rot=0.4), BLOOD)  # stomach
        vein = np.array([[cx - 0.5 * r, cy + 0.2 * r], [cx - 0.1 * r, cy - 0.05 * r], [cx + 0.1 * r, cy + 0.1 * r]])
        cv2.polylines(canvas, [to_fixed_point(vein)], False, BLOOD, max(2, int(0.07 * r)), cv2.LINE_8, shift=4)
        for k in range(3):  # ribs: bright arcs that shadow what lies behind them
            a = math.radians(200 + 40 * k + rng.uniform(-8, 8))
            rib = (cx + 0.93 * r * math.cos(a), cy - 0.93 * r * math.sin(a))
            _fill(canvas, ellipse(*rib, 0.07 * r, 0.035 * r, rot=a), BONE)
    else:
        top = sector.radius * rng.uniform(0.15, 0.25)
        band = np.array([[-1e4, top], [1e4, top - 0.1 * top], [1e4, top + 0.25 * sector.radius], [-1e4, top + 0.2 * sector.radius]])
        _fill(canvas, band + (0, sector.apex[1]), PLACENTA)
        cx, cy = sector.point(0.62 + drift, math.radians(rng.uniform(-10, 10)))
        _fill(canvas, ellipse(cx, cy, sector.radius * 0.35, sector.radius * 0.16), FLUID)
        for k in range(2):  # long bones of a limb, bright with shadows
            ang = rng.uniform(-0.5, 0.5)
            c = (cx + (k - 0.5) * 0.2 * sector.radius, cy + rng.uniform(-0.05, 0.05) * sector.radius)
            _fill(canvas, ellipse(*c, 0.13 * sector.radius, 0.018 * sector.radius, rot=ang), BONE)


@dataclass(frozen=True)
class _FrameSpec:
    """What one frame's rendering depends on."""

    index: int
    seed: int
    fps: float
    size: tuple[int, int]  # (w, h)
    category: str

    @property
    def t(self) -> float:
        return self.index / float(self.fps)


def _frame_category(index: int, seed: int, fps: float, n_frames: int | None, category: str | None,
                    proportions: Mapping[str, float] | Sequence[float] | None) -> tuple[str, int]:
    """(category, run id): forced, from the seeded schedule of an ``n_frames`` video, or ``"heart"``."""
    if category is not None:
        if category not in CATEGORIES:
            raise FetalHeartError(f"unknown frame category {category!r}; expected one of {', '.join(CATEGORIES)}")
        return category, 0
    if n_frames is None:
        return "heart", 0
    if not 0 <= index < n_frames:
        raise FetalHeartError(f"frame index {index} outside 0..{n_frames - 1}")
    cats, runs = schedule_runs(int(n_frames), int(seed), normalise_proportions(proportions), float(fps))
    return CATEGORIES[cats[index]], runs[index]


VALVE_THICKNESS = 0.011  # thinnest part of a leaflet, share of the sector width (real: ~1-2%)


def _draw_hearts(canvas: np.ndarray, frame: _FrameSpec, sector: Sector) -> list[dict]:
    """One heart (or two, side by side) drawn into ``canvas``; their LabelMe shapes."""
    seed, t = frame.seed, frame.t
    if frame.category == "multiple_hearts":
        # Two fetuses side by side (e.g. twins or a split view): each heart annotated, group_id 0/1.
        specs = [(-math.radians(17.0), 0.55, 0.115, 12.0), (math.radians(17.0), 0.55, 0.115, 12.0)]
    else:
        specs = [(math.radians(2.0), 0.47, 0.19, 20.0)]
    hearts = []
    for k, (angle, depth, scale, tilt) in enumerate(specs):
        valve = VALVE_THICKNESS * sector.width / (scale * sector.radius)  # in the heart's local units
        heart = Heart(np.random.default_rng([seed, k, 3]), valve_thickness=valve)
        base = np.random.default_rng([seed, k, 5])
        pose = Pose(base, angle + math.radians(4.0) * (2 * base.random() - 1), depth, scale, tilt).at(t, sector)
        hearts.append((heart, pose))
    for _, pose in hearts:
        for pts, material in Heart.thorax():
            _fill(canvas, to_image(pts, pose), material)
    shapes: list[dict] = []
    for k, (heart, pose) in enumerate(hearts):
        layers, structures, carve = heart.shapes(t + 0.21 * k)
        for pts, material in layers:
            _fill(canvas, to_image(pts, pose), material)
        img_structs = {n: [to_image(p, pose) for p in ps] for n, ps in structures.items()}
        gid = k  # 0 for a single heart: its multi-part structures (open valves) stay one instance
        shapes.extend(labelme_shapes(img_structs, carve, sector, frame.size, gid))
    return shapes


def render_frame(
    index: int,
    *,
    seed: int = 0,
    fps: float = 30,
    size: tuple[int, int] = (1280, 720),
    n_frames: int | None = None,
    category: str | None = None,
    proportions: Mapping[str, float] | Sequence[float] | None = None,
) -> tuple[np.ndarray, list[dict], str]:
    """Render frame ``index`` of the phantom video: (BGR uint8 image, LabelMe shapes, category).

    ``category`` forces a category; otherwise it comes from the seeded schedule of an
    ``n_frames``-long video (with ``proportions``), or is ``"heart"`` when ``n_frames`` is None.
    ``make_phantom`` writes exactly these images and shapes.
    """
    w, h = int(size[0]), int(size[1])
    if w < 64 or h < 64:
        raise FetalHeartError(f"phantom frames must be at least 64x64 pixels, got {w}x{h}")
    if fps <= 0:
        raise FetalHeartError(f"fps must be positive, got {fps}")
    category, run_id = _frame_category(index, seed, fps, n_frames, category, proportions)
    frame = _FrameSpec(index, seed, fps, (w, h), category)
    sector = sector_for((w, h))
    canvas = np.full((h, w), TISSUE, np.uint8)  # material map
    _maternal_wall(canvas, sector, frame.t)
    shapes: list[dict] = []
    if category == "no_heart":
        _no_heart_scene(canvas, np.random.default_rng([seed, run_id, 23]), sector, frame.t)
    else:
        shapes = _draw_hearts(canvas, frame, sector)
    # An out-of-focus frame is a defocused beam (a wider PSF), not a blurred picture.
    defocus = 1.0 if category == "out_of_focus" else 0.0
    grey = echo_image(canvas, sector, seed=seed, index=index, t=frame.t, defocus=defocus)
    text = text_layout(seed, float(fps), (w, h))
    if text is not None:
        _draw_text(grey, text[0], frame.t)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), shapes, category
