"""Phantom geometry: the sector (fan) and its beam grid, materials, the heart model, its pose on screen.

Scenes are drawn as *material* maps (uint8 ids), not grey levels: the echo model
(``fetalheart.phantom.echo``) turns each material into backscatter, attenuation and specular
reflection, so the grey levels come out of the physics instead of being painted on.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

HALF_ANGLE = math.radians(40.0)  # sector half-opening

# Material ids (index into echo.MATERIALS). Drawn in painter's order into a uint8 canvas.
TISSUE, FLUID, LUNG, SKIN, MYO, PERI, BLOOD, VALVE, VESSEL_WALL, BONE, LIVER, PLACENTA = range(12)


class Sector:
    """The fan-shaped field of view, its beam (polar) grid and the maps between the two.

    The beam grid has one row per pixel of depth and one column (scan line) per two pixels of arc
    at the deepest row: the echo physics (point-spread function, attenuation along each beam, shadows) is
    separable there, and one ``cv2.remap`` each way (scan conversion) links it to the image.
    """

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
        self.width = 2.0 * radius * math.sin(HALF_ANGLE)  # sector width: the unit of echo_stats' sizes
        # Beam grid: rows = depth 0..radius (one per pixel), columns = scan lines from -HALF to +HALF,
        # one per two pixels of arc at full depth (the lateral PSF is several lines wide anyway).
        n_r, n_t = int(math.ceil(radius)), int(math.ceil(HALF_ANGLE * radius))
        self.beam_shape = (n_r, n_t)
        r = (np.arange(n_r, dtype=np.float32) + 0.5) * np.float32(radius / n_r)
        th = -HALF_ANGLE + (np.arange(n_t, dtype=np.float32) + 0.5) * np.float32(2.0 * HALF_ANGLE / n_t)
        self.beam_depth = (r / radius).astype(np.float32)  # per row, 0..1
        bx = (self.apex[0] + r[:, None] * np.sin(th)[None, :]).astype(np.float32)
        by = (self.apex[1] + r[:, None] * np.cos(th)[None, :]).astype(np.float32)
        self.to_beam = cv2.convertMaps(bx, by, cv2.CV_16SC2)  # fixed-point maps: remap is ~2x faster
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rr = np.hypot(xx - self.apex[0], yy - self.apex[1])
        tt = np.arctan2(xx - self.apex[0], yy - self.apex[1])
        ix = (tt + HALF_ANGLE) * np.float32(n_t / (2.0 * HALF_ANGLE)) - 0.5
        iy = rr * np.float32(n_r / radius) - 0.5
        self.to_image = cv2.convertMaps(ix.astype(np.float32), iy.astype(np.float32), cv2.CV_16SC2)

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


@functools.lru_cache(maxsize=8)
def _catmull_rom_basis(k: int, per_segment: int) -> np.ndarray:
    """(k * per_segment, k) weights: a closed Catmull-Rom curve through k control points is ``B @ P``.

    The curve is linear in its control points, so moving chambers cost one small matrix product.
    """
    t = np.arange(per_segment) / per_segment
    w = 0.5 * np.stack([-t + 2 * t**2 - t**3, 2 - 5 * t**2 + 3 * t**3, t + 4 * t**2 - 3 * t**3, -(t**2) + t**3], 1)
    basis = np.zeros((k * per_segment, k))
    for i in range(k):
        rows = slice(i * per_segment, (i + 1) * per_segment)
        for j, off in enumerate((-1, 0, 1, 2)):
            basis[rows, (i + off) % k] += w[:, j]
    return basis


def smooth_closed(ctrl: np.ndarray, per_segment: int = 5) -> np.ndarray:
    """A smooth closed curve through the control points (counter-clockwise or not, as given)."""
    return _catmull_rom_basis(len(ctrl), per_segment) @ ctrl


def offset_curve(pts: np.ndarray, d: float) -> np.ndarray:
    """A closed curve moved outward by ``d`` along its normals (a wall around a chamber)."""
    tang = np.roll(pts, -1, 0) - np.roll(pts, 1, 0)
    n = np.stack([tang[:, 1], -tang[:, 0]], 1) / (np.hypot(tang[:, 0], tang[:, 1])[:, None] + 1e-12)
    area = 0.5 * float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    return pts + (d if area < 0 else -d) * n


def leaflet(hinge, tip, bend: np.ndarray, t_base: float, t_tip: float, n: int = 9) -> np.ndarray:
    """A thin curved leaflet from ``hinge`` to ``tip``: a centreline bent by ``bend`` (the Bezier
    control point's offset from the chord's middle), thickness tapering from base to tip."""
    hinge, tip = np.asarray(hinge, float), np.asarray(tip, float)
    ctrl = 0.5 * (hinge + tip) + bend
    s = np.linspace(0.0, 1.0, n)[:, None]
    c = (1 - s) ** 2 * hinge + 2 * (1 - s) * s * ctrl + s**2 * tip  # quadratic Bezier
    tang = np.gradient(c, axis=0)
    nrm = np.stack([-tang[:, 1], tang[:, 0]], 1) / (np.hypot(tang[:, 0], tang[:, 1])[:, None] + 1e-12)
    half = (0.5 * (t_base * (1 - s) + t_tip * s)) * nrm
    return np.concatenate([c + half, (c - half)[::-1]])


def _strip(p0: np.ndarray, p1: np.ndarray, thick: float) -> np.ndarray:
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-12) * thick / 2.0
    return np.array([p0 + n, p1 + n, p1 - n, p0 - n])


def _bump(x: float, start: float, end: float) -> float:
    """Smooth 0 -> 1 -> 0 over [start, end], 0 outside."""
    if x <= start or x >= end:
        return 0.0
    return math.sin(math.pi * (x - start) / (end - start)) ** 2


# Four-chamber template (local units, crux at the origin, v toward the cardiac apex), traced from
# the usual apical four-chamber drawing: a long bullet-shaped LV, a shorter, wider and more
# triangular RV, atria below the valve plane that leave room for the aortic root between them.
_LV = np.array([[0.10, 0.06], [0.09, 0.38], [0.14, 0.72], [0.24, 0.98], [0.38, 1.10], [0.53, 1.04], [0.68, 0.82],
                [0.80, 0.52], [0.86, 0.24], [0.84, 0.06], [0.47, 0.05]])  # fmt: skip
_RV = np.array([[-0.10, 0.08], [-0.47, 0.09], [-0.88, 0.08], [-0.93, 0.24], [-0.84, 0.48], [-0.66, 0.70],
                [-0.46, 0.84], [-0.30, 0.84], [-0.17, 0.64], [-0.10, 0.38]])  # fmt: skip
_LA = np.array([[0.10, -0.06], [0.20, -0.16], [0.21, -0.40], [0.26, -0.62], [0.42, -0.76], [0.62, -0.74],
                [0.80, -0.58], [0.88, -0.32], [0.84, -0.06], [0.47, -0.05]])  # fmt: skip
_RA = np.array([[-0.10, -0.08], [-0.52, -0.07], [-0.92, -0.08], [-1.00, -0.34], [-0.92, -0.64], [-0.68, -0.82],
                [-0.42, -0.80], [-0.24, -0.62], [-0.20, -0.40], [-0.19, -0.16]])  # fmt: skip


class Heart:
    """Geometry of one heart (plus its thorax, descending aorta and spine) in local units.

    Local frame: u to the heart's right on screen (RV/RA side negative), v toward the cardiac
    apex (toward the transducer). The crux (where septum meets the AV valves) is the origin.
    ``valve_thickness`` is the leaflets' thinnest part in local units (the caller knows the scale).
    """

    def __init__(self, rng: np.random.Generator, valve_thickness: float = 0.07):
        def jitter(shape: np.ndarray, amount: float = 0.04) -> np.ndarray:
            s = 1.0 + 0.06 * (2.0 * rng.random(2) - 1.0)  # anatomical variability: size ...
            return shape * s + amount * (2.0 * rng.random(shape.shape) - 1.0) * 0.5  # ... and outline

        self.lv, self.rv, self.la, self.ra = jitter(_LV), jitter(_RV), jitter(_LA), jitter(_RA)
        j = lambda: 1.0 + 0.06 * (2.0 * rng.random() - 1.0)  # noqa: E731
        self.ao = dict(cu=0.30 * j(), cv=-1.22, r=0.17 * j())
        self.spine = dict(cu=-0.04, cv=-1.62, a=0.30 * j(), b=0.21 * j())
        self.hr = 120.0 + 40.0 * rng.random()  # fetal heart rate, beats per minute
        self.phase0 = rng.random()
        # The descending aorta runs obliquely to the scan plane: as the probe drifts, the plane cuts
        # it through its axis (a long oval), off-axis (a narrower oval) or nearly tangentially.
        self.ao_freq, self.ao_phase = 0.15 + 0.2 * rng.random(), 2 * math.pi * rng.random()
        self.ao_tilt = math.radians(35.0 + 30.0 * rng.random())
        self.valve_thickness = valve_thickness
        self.wall = 0.10 * j()

    def _ventricle(self, ctrl: np.ndarray, systole: float) -> np.ndarray:
        """Contract about the base centre: ~20% shorter across, ~9% shorter base-to-apex at end systole."""
        cu = 0.5 * (ctrl[:, 0].min() + ctrl[:, 0].max())
        out = ctrl.copy()
        out[:, 0] = cu + (ctrl[:, 0] - cu) * (1.0 - 0.20 * systole)
        out[:, 1] = ctrl[:, 1] * (1.0 - 0.09 * systole)
        return smooth_closed(out)

    @staticmethod
    def _atrium(ctrl: np.ndarray, fill: float) -> np.ndarray:
        cu, cv = ctrl[:, 0].mean(), ctrl[:, 1].mean()
        k = 1.0 + 0.10 * fill
        out = ctrl.copy()
        out[:, 0] = cu + (ctrl[:, 0] - cu) * k
        out[:, 1] = np.minimum(cv + (ctrl[:, 1] - cv) * k, ctrl[:, 1].max())  # the valve plane stays put
        return smooth_closed(out)

    def _leaflets(self, h0, h1, opening: float, toward: float, length: float = 0.53) -> list[np.ndarray]:
        """Two leaflets hinged at h0 and h1: closed they meet mid-way (bulging back), open they swing
        by ~75 degrees into the side ``toward`` (+1: +v, -1: -v) and lie along the walls."""
        h0, h1 = np.asarray(h0, float), np.asarray(h1, float)
        span = h1 - h0
        e = span / np.hypot(*span)
        n = np.array([-e[1], e[0]])
        if n[1] * toward < 0:
            n = -n
        ell = length * np.hypot(*span)
        out = []
        for hinge, sign in ((h0, 1.0), (h1, -1.0)):
            alpha = math.radians(-12.0 + 87.0 * opening)  # closed: slightly back (billowing), open: wide
            tip = hinge + ell * (sign * e * math.cos(alpha) + n * math.sin(alpha))
            # Closed: the leaflet bellies back toward where the blood pushes it; open: it curves
            # toward the wall it lies along.
            bend = ell * (-0.16 * (1.0 - opening) * n + 0.10 * opening * (-sign) * e)
            t = self.valve_thickness
            out.append(leaflet(hinge, tip, bend, 1.5 * t, t))
        return out

    def aorta(self, t: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(outer wall, lumen, wall material weight) of the descending aorta as the plane cuts it now."""
        z = 0.75 * math.sin(2 * math.pi * self.ao_freq * t + self.ao_phase)  # axis offset / radius
        r = self.ao["r"]
        across = r * math.sqrt(max(1.0 - z * z, 0.12))
        along = min(across / max(math.cos(self.ao_tilt + 0.3 * z), 0.3), 2.6 * across)
        rot = 0.35
        wall = 0.035 + 0.05 * abs(z)  # a tangential cut through the wall looks thicker
        outer = ellipse(self.ao["cu"], self.ao["cv"], along, across, 40, rot)
        lumen = ellipse(self.ao["cu"], self.ao["cv"], max(along - wall, 0.02), max(across - wall, 0.02), 40, rot)
        return outer, lumen, abs(z)

    def shapes(self, t: float) -> tuple[list[tuple[np.ndarray, int]], dict[str, list[np.ndarray]], list[tuple[str, str]]]:
        """(render layers, structures, carve list) at time ``t`` seconds, in local units.

        Render layers are (polygon, material) drawn in order; structures map each class to
        its polygons; carve says which structure's mask is removed from which (leaflets that
        swing into a chamber belong to the valve, not to the chamber).
        """
        p = (t * self.hr / 60.0 + self.phase0) % 1.0
        systole = _bump(p, 0.0, 0.40)
        atrial_kick = _bump(p, 0.78, 1.0)
        av_open = _bump(p, 0.44, 0.98) ** 0.5  # AV valves open in diastole
        sl_open = _bump(p, 0.03, 0.37) ** 0.5  # semilunar valves open in systole
        lv, rv = self._ventricle(self.lv, systole), self._ventricle(self.rv, systole)
        la, ra = self._atrium(self.la, systole - atrial_kick), self._atrium(self.ra, systole - atrial_kick)
        wall = self.wall * (1.0 + 0.35 * systole)  # walls thicken as they contract
        # AV valves: hinges at the annulus, orifice = blood across the gap between atrium and ventricle.
        tv_l, tv_r = float(self.rv[:, 0].min()) + 0.05, -0.12
        mv_l, mv_r = 0.12, float(self.lv[:, 0].max()) - 0.05
        tv_v, mv_v = 0.02, -0.005  # the tricuspid inserts slightly more apically
        tv_leaf = self._leaflets((tv_l, tv_v), (tv_r, tv_v), av_open, +1)
        mv_leaf = self._leaflets((mv_l, mv_v), (mv_r, mv_v), av_open, +1)
        tv_orifice = np.array([[tv_l, -0.12], [tv_r, -0.12], [tv_r, 0.14], [tv_l, 0.14]])
        mv_orifice = np.array([[mv_l, -0.12], [mv_r, -0.12], [mv_r, 0.14], [mv_l, 0.14]])
        # Aortic root between the atria (a slightly tilted four-chamber view), pulmonary root beside
        # the RV; cusps open in systole. The root comes in and out of the plane with the probe drift.
        ao_z = 0.5 + 0.5 * math.sin(2 * math.pi * self.ao_freq * 0.7 * t + self.ao_phase + 1.0)
        av_c, av_r = (0.0, -0.27), 0.075 + 0.03 * ao_z
        pv_c, pv_r = (-1.08, 0.42), 0.10
        vwall = 0.04
        av_leaf = self._leaflets((av_c[0] - av_r, av_c[1]), (av_c[0] + av_r, av_c[1]), sl_open, -1, 0.55)
        pv_leaf = self._leaflets((pv_c[0] + 0.02, pv_c[1] - pv_r), (pv_c[0] - 0.02, pv_c[1] + pv_r), sl_open, -1, 0.55)
        ao_outer, ao_lumen, _ = self.aorta(t)
        spine = ellipse(self.spine["cu"], self.spine["cv"], self.spine["a"], self.spine["b"], 40)
        chambers = (rv, lv, ra, la)
        # Moderator band: a muscle bundle across the RV near its apex (inside the RV's outline).
        mb_v = 0.55 * float(rv[:, 1].max())
        mb = _strip(np.array([float(rv[:, 0].min()) + 0.15, mb_v + 0.05]), np.array([-0.13, mb_v - 0.03]), 0.05)
        layers = [
            *[(offset_curve(c, wall + 0.05), PERI) for c in chambers],
            *[(offset_curve(c, wall), MYO) for c in chambers],
            *[(c, BLOOD) for c in chambers],
            (mb, MYO),
            (tv_orifice, BLOOD), (mv_orifice, BLOOD),
            *[(q, VALVE) for q in tv_leaf + mv_leaf],
            (ellipse(*av_c, av_r + vwall, av_r + vwall, 32), VESSEL_WALL),
            (ellipse(*av_c, av_r, av_r, 32), BLOOD),
            (ellipse(*pv_c, pv_r + vwall, pv_r + vwall, 32), VESSEL_WALL),
            (ellipse(*pv_c, pv_r, pv_r, 32), BLOOD),
            *[(q, VALVE) for q in av_leaf + pv_leaf],
            (ao_outer, VESSEL_WALL),
            (ao_lumen, BLOOD),
            (spine, BONE),
        ]
        structures = {
            "LA": [la], "RA": [ra], "LV": [lv], "RV": [rv],
            "TV": tv_leaf, "PV": pv_leaf, "MV": mv_leaf, "AV": av_leaf,
            "Ao": [ao_outer], "Spine": [spine],
        }  # fmt: skip
        carve = [("RV", "TV"), ("RA", "TV"), ("LV", "MV"), ("LA", "MV")]
        return layers, structures, carve

    @staticmethod
    def thorax() -> list[tuple[np.ndarray, int]]:
        """Amniotic fluid around the fetus, skin, lungs and two ribs: drawn before any heart."""
        ribs = [ellipse(1.72 * math.cos(a), -0.25 + 1.72 * math.sin(a), 0.16, 0.07, 16, a + math.pi / 2)
                for a in (math.radians(25.0), math.radians(160.0))]  # fmt: skip
        return [
            (ellipse(0.0, -0.25, 2.2, 2.05, 64), FLUID),
            (ellipse(0.0, -0.25, 1.8, 1.8, 64), SKIN),
            (ellipse(0.0, -0.25, 1.72, 1.72, 64), LUNG),
            *[(r, BONE) for r in ribs],
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
