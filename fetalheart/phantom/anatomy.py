"""Phantom geometry: the sector (fan), the heart model in local units, its pose on screen."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

HALF_ANGLE = math.radians(40.0)  # sector half-opening

# Echogenicity (reflectivity before speckle, gain and log compression), 0 = anechoic.
TISSUE, FLUID, LUNG, SKIN = 0.26, 0.025, 0.20, 0.85
MYO, PERI, BLOOD, VALVE, VESSEL_WALL, BONE = 0.62, 0.95, 0.03, 0.95, 0.90, 1.25


class Sector:
    """The fan-shaped field of view and the per-pixel maps that depend only on the frame size."""

    def __init__(self, size: tuple[int, int]):
        w, h = size
        self.size = size
        top = 0.05 * h
        radius = min(h - top - 0.04 * h, 0.33 * w / math.sin(HALF_ANGLE))
        self.apex = (w / 2.0, top)
        self.radius = radius
        self.r0 = 0.06 * radius
        angles = np.linspace(-HALF_ANGLE, HALF_ANGLE, 96)
        outer = np.stack([self.apex[0] + radius * np.sin(angles), top + radius * np.cos(angles)], 1)
        inner = np.stack(
            [self.apex[0] + self.r0 * np.sin(angles[::-8]), top + self.r0 * np.cos(angles[::-8])], 1
        )
        self.polygon = np.concatenate([outer, inner])
        aa = np.zeros((h, w), np.uint8)
        cv2.fillPoly(aa, [to_fixed_point(self.polygon)], 255, cv2.LINE_AA, shift=4)
        self.mask = (aa >= 128).astype(np.uint8)  # what counts as inside for clipping
        self.soft = aa.astype(np.float32) / 255.0  # anti-aliased fan edge for display
        ys, xs = np.nonzero(aa)  # every visible fan pixel, anti-aliased edge included
        self.bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        # Depth (radius from the apex) drives attenuation, TGC and the depth-dependent blur.
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        depth = np.hypot(xx - self.apex[0], yy - self.apex[1]) / radius
        self.depth = depth
        att = np.exp(-1.6 * depth)  # round-trip attenuation
        tgc = np.exp(1.25 * depth) * (1.0 + 0.08 * np.sin(7.0 * depth))  # imperfect TGC: slight bands
        self.gain = (att * tgc * 1.15).astype(np.float32)
        self.blur_weight = np.clip((depth - 0.15) / 0.8, 0.0, 1.0).astype(np.float32)
        # Fan edge and the log-compression scale in one display multiplier.
        self.display = self.soft * np.float32(255.0 / math.log1p(24.0 * 1.1))
        # Low-resolution polar coordinates for shadows (smooth, so 1/4 resolution is plenty).
        qh, qw = (h + 3) // 4, (w + 3) // 4
        qy, qx = np.mgrid[0:qh, 0:qw].astype(np.float32) * 4 + 1.5
        self.q_shape = (qh, qw)
        self.q_angle = np.arctan2(qx - self.apex[0], qy - self.apex[1])
        self.q_radius = np.hypot(qx - self.apex[0], qy - self.apex[1])
        self.gain_q = cv2.resize(self.gain, (qw, qh), interpolation=cv2.INTER_AREA)

    def point(self, depth: float, angle: float) -> tuple[float, float]:
        """Image coordinates of a point at ``depth`` (fraction of radius) on the ray at ``angle``."""
        r = depth * self.radius
        return self.apex[0] + r * math.sin(angle), self.apex[1] + r * math.cos(angle)


@functools.lru_cache(maxsize=4)
def sector_for(size: tuple[int, int]) -> Sector:
    return Sector(size)


def to_fixed_point(pts: np.ndarray) -> np.ndarray:
    """Float points to OpenCV's fixed-point (shift=4) int32 polygon: sub-pixel accurate fills."""
    return np.round(np.asarray(pts, np.float64) * 16.0).astype(np.int32)


def ellipse(cu: float, cv: float, a: float, b: float, n: int = 48, rot: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    u, v = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cu + c * u - s * v, cv + s * u + c * v], 1)


def _half_ellipse(cu: float, base: float, a: float, height: float, n: int = 40) -> np.ndarray:
    """A ventricle: flat base at v=base, rounded apex at v=base+height (a bullet shape)."""
    t = np.linspace(0.0, math.pi, n)
    return np.stack([cu + a * np.cos(t), base + height * np.sin(t) ** 0.9], 1)


def _atrium(cu: float, cv: float, a: float, b: float, top: float) -> np.ndarray:
    pts = ellipse(cu, cv, a, b, 48)
    pts[:, 1] = np.minimum(pts[:, 1], top)  # flattened where it meets the valve plane
    return pts


def _strip(p0: np.ndarray, p1: np.ndarray, thick: float) -> np.ndarray:
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-12) * thick / 2.0
    return np.array([p0 + n, p1 + n, p1 - n, p0 - n])


def _leaflets(h0: tuple[float, float], h1: tuple[float, float], opening: float, toward: float, thick: float):
    """Two valve leaflets hinged at h0 and h1: closed they meet mid-way, open they swing by ``opening``.

    ``toward`` (+1 / -1) is the side (+v / -v) the leaflets open into.
    """
    h0, h1 = np.asarray(h0, float), np.asarray(h1, float)
    span = h1 - h0
    length = np.hypot(*span) / 2.0 * 1.06  # a little overlap: closed leaflets form one band
    e = span / np.hypot(*span)
    n = np.array([-e[1], e[0]]) * toward
    if n[1] * toward < 0:
        n = -n
    alpha = opening * math.radians(65.0)
    d0 = e * math.cos(alpha) + n * math.sin(alpha)
    d1 = -e * math.cos(alpha) + n * math.sin(alpha)
    return [_strip(h0, h0 + length * d0, thick), _strip(h1, h1 + length * d1, thick)]


def _bump(x: float, start: float, end: float) -> float:
    """Smooth 0 -> 1 -> 0 over [start, end], 0 outside."""
    if x <= start or x >= end:
        return 0.0
    return math.sin(math.pi * (x - start) / (end - start)) ** 2


class Heart:
    """Geometry of one heart (plus its thorax, descending aorta and spine) in local units.

    Local frame: u to the heart's right on screen (RV/RA side negative), v toward the cardiac
    apex (toward the transducer). The crux (where septum meets the AV valves) is the origin.
    """

    def __init__(self, rng: np.random.Generator):
        j = lambda: 1.0 + 0.06 * (2.0 * rng.random() - 1.0)  # noqa: E731 - anatomical variability
        self.rv = dict(cu=-0.48 * j(), a=0.37 * j(), L=0.92 * j())
        self.lv = dict(cu=0.48 * j(), a=0.37 * j(), L=1.08 * j())
        self.ra = dict(cu=-0.54 * j(), cv=-0.46, a=0.35 * j(), b=0.39 * j())
        self.la = dict(cu=0.54 * j(), cv=-0.44, a=0.34 * j(), b=0.37 * j())
        self.v_tv, self.v_mv = 0.05, -0.01  # tricuspid inserts slightly more apically
        self.ao = dict(cu=0.30 * j(), cv=-1.22, r=0.17 * j())
        self.spine = dict(cu=-0.04, cv=-1.62, a=0.30 * j(), b=0.21 * j())
        self.hr = 130.0 + 25.0 * rng.random()  # fetal heart rate, beats per minute
        self.phase0 = rng.random()

    def shapes(self, t: float) -> tuple[list[tuple[np.ndarray, float]], dict[str, list[np.ndarray]], list[tuple[str, str]]]:
        """(render layers, structures, carve list) at time ``t`` seconds, in local units.

        Render layers are (polygon, echogenicity) drawn in order; structures map each class to
        its polygons; carve says which structure's mask is removed from which (leaflets that
        swing into a chamber belong to the valve, not to the chamber).
        """
        p = (t * self.hr / 60.0 + self.phase0) % 1.0
        systole = _bump(p, 0.0, 0.40)
        atrial_kick = _bump(p, 0.78, 1.0)
        av_open = _bump(p, 0.44, 0.98) ** 0.5  # AV valves open in diastole
        sl_open = _bump(p, 0.03, 0.37) ** 0.5  # semilunar valves open in systole
        kv = 1.0 - 0.13 * systole
        ka = 1.0 + 0.07 * systole - 0.09 * atrial_kick
        g = 0.05  # half-gap between atrium and ventricle at the valve plane
        tv, mv = self.v_tv, self.v_mv
        rv = _half_ellipse(self.rv["cu"], tv + g, self.rv["a"] * kv, self.rv["L"] * kv)
        lv = _half_ellipse(self.lv["cu"], mv + g, self.lv["a"] * kv, self.lv["L"] * kv)
        ra = _atrium(self.ra["cu"], self.ra["cv"], self.ra["a"] * ka, self.ra["b"] * ka, tv - g)
        la = _atrium(self.la["cu"], self.la["cv"], self.la["a"] * ka, self.la["b"] * ka, mv - g)
        thick = 0.045
        tv_orifice, tv_leaf, mv_orifice, mv_leaf = self._av_valves(g, av_open, thick)
        # Aortic root between the atria (as in a slightly tilted 4-chamber view), pulmonary root
        # beside the right ventricle; both with cusps that open in systole.
        av_c, av_r = (0.02, -0.25), 0.105
        pv_c, pv_r = (-1.06, 0.40), 0.10
        wall = 0.04
        av_leaf = _leaflets((av_c[0] - av_r, av_c[1]), (av_c[0] + av_r, av_c[1]), sl_open, -1, thick * 0.9)
        pv_leaf = _leaflets((pv_c[0], pv_c[1] - pv_r), (pv_c[0], pv_c[1] + pv_r), sl_open, -1, thick * 0.9)
        ao_r = self.ao["r"] * (1.0 + 0.05 * systole)
        ao_c = (self.ao["cu"], self.ao["cv"])
        spine = ellipse(self.spine["cu"], self.spine["cv"], self.spine["a"], self.spine["b"], 40)
        outline = ellipse(0.0, 0.16, 1.0, 1.22, 64)
        layers = [
            (ellipse(0.0, 0.16, 1.07, 1.29, 64), PERI),
            (outline, MYO),
            (rv, BLOOD), (lv, BLOOD), (ra, BLOOD), (la, BLOOD),
            (tv_orifice, BLOOD), (mv_orifice, BLOOD),
            *[(q, VALVE) for q in tv_leaf + mv_leaf],
            (ellipse(*av_c, av_r + wall, av_r + wall, 32), VESSEL_WALL),
            (ellipse(*av_c, av_r, av_r, 32), BLOOD),
            (ellipse(*pv_c, pv_r + wall, pv_r + wall, 32), VESSEL_WALL),
            (ellipse(*pv_c, pv_r, pv_r, 32), BLOOD),
            *[(q, VALVE) for q in av_leaf + pv_leaf],
            (ellipse(*ao_c, ao_r, ao_r, 40), VESSEL_WALL),
            (ellipse(*ao_c, ao_r - 0.045, ao_r - 0.045, 40), BLOOD),
            (spine, BONE),
        ]
        structures = {
            "LA": [la], "RA": [ra], "LV": [lv], "RV": [rv],
            "TV": tv_leaf, "PV": pv_leaf, "MV": mv_leaf, "AV": av_leaf,
            "Ao": [ellipse(*ao_c, ao_r, ao_r, 40)], "Spine": [spine],
        }  # fmt: skip
        carve = [("RV", "TV"), ("RA", "TV"), ("LV", "MV"), ("LA", "MV")]
        return layers, structures, carve

    def _av_valves(self, g: float, opening: float, thick: float) -> tuple[np.ndarray, list, np.ndarray, list]:
        """Tricuspid and mitral orifices (blood from annulus to annulus) and their leaflets."""
        tv, mv = self.v_tv, self.v_mv
        tv_l, tv_r = self.rv["cu"] - self.rv["a"] * 0.92, self.rv["cu"] + self.rv["a"] * 0.85
        mv_l, mv_r = self.lv["cu"] - self.lv["a"] * 0.85, self.lv["cu"] + self.lv["a"] * 0.92
        tv_orifice = np.array([[tv_l, tv - g - 0.02], [tv_r, tv - g - 0.02], [tv_r, tv + g + 0.02], [tv_l, tv + g + 0.02]])
        mv_orifice = np.array([[mv_l, mv - g - 0.02], [mv_r, mv - g - 0.02], [mv_r, mv + g + 0.02], [mv_l, mv + g + 0.02]])
        tv_leaf = _leaflets((tv_l, tv), (tv_r, tv), opening, +1, thick)
        mv_leaf = _leaflets((mv_l, mv), (mv_r, mv), opening, +1, thick)
        return tv_orifice, tv_leaf, mv_orifice, mv_leaf

    @staticmethod
    def thorax() -> list[tuple[np.ndarray, float]]:
        """Amniotic fluid around the fetus, skin/ribs, lungs: drawn before any heart."""
        return [
            (ellipse(0.0, -0.25, 2.2, 2.05, 64), FLUID),
            (ellipse(0.0, -0.25, 1.8, 1.8, 64), SKIN),
            (ellipse(0.0, -0.25, 1.72, 1.72, 64), LUNG),
        ]


class Pose:
    """Where a heart sits on screen at time t: slow probe drift and rotation around a base pose."""

    def __init__(self, rng: np.random.Generator, angle: float, depth: float, scale: float, tilt_range: float):
        self.angle, self.depth, self.scale = angle, depth, scale
        self.tilt = math.radians(tilt_range) * (2.0 * rng.random() - 1.0)
        self.freq = 0.06 + 0.14 * rng.random(4)  # Hz: slow drift
        self.phase = 2.0 * math.pi * rng.random(4)

    def at(self, t: float, sector: Sector) -> tuple[float, float, float, float]:
        w = [math.sin(2.0 * math.pi * f * t + ph) for f, ph in zip(self.freq, self.phase, strict=True)]
        angle = self.angle + math.radians(3.0) * w[0]
        depth = self.depth + 0.025 * w[1]
        theta = -angle + self.tilt + math.radians(5.0) * w[2]
        unit = self.scale * sector.radius * (1.0 + 0.03 * w[3])
        cx, cy = sector.point(depth, angle)
        return cx, cy, theta, unit


def to_image(pts: np.ndarray, pose: tuple[float, float, float, float]) -> np.ndarray:
    cx, cy, theta, unit = pose
    c, s = math.cos(theta), math.sin(theta)
    u, v = pts[:, 0], pts[:, 1]
    # e_u = (cos, sin), e_v = (sin, -cos) in image axes (y down): v points up when theta = 0.
    return np.stack([cx + unit * (u * c + v * s), cy + unit * (u * s - v * c)], 1)
