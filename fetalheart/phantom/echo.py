"""The echo image model: a material map becomes a B-mode frame the way a scanner makes one.

In beam coordinates (rows = depth, columns = angle; ``Sector.beam_shape``):

1. each material has a backscatter amplitude, an attenuation and an acoustic impedance;
   tissue gets a slow texture, blood faint moving "smoke";
2. a complex Gaussian scatterer field (fully developed speckle) times the amplitude, plus a
   coherent specular echo where the impedance changes *along* the beam: boundaries facing the
   beam are bright and crisp, boundaries parallel to it fade (echo dropout);
3. round-trip attenuation integrated along each beam (so bone casts a real acoustic shadow and
   fluid a posterior enhancement), compensated by time-gain compensation for average tissue;
4. convolution with the point-spread function: separable Gaussian, axial width constant, lateral
   width constant in *angle*, so it widens with depth on screen (a diverging beam); a defocused
   probe widens it further (the ``out_of_focus`` frames);
5. envelope detection (|I + jQ|), log compression to a dynamic range, scan conversion to the image.

The statistics of the result (grey-level percentiles, speckle contrast and size, gradients) are
held against real echo by ``fetalheart.phantom.realism``.
"""

from __future__ import annotations

import functools
import math

from fetalheart.phantom.anatomy import (
    BLOOD,
    BONE,
    FLUID,
    HALF_ANGLE,
    LIVER,
    LUNG,
    MYO,
    PERI,
    PLACENTA,
    SKIN,
    TISSUE,
    VALVE,
    VESSEL_WALL,
    Sector,
)

import cv2
import numpy as np

# material: (backscatter amplitude, attenuation relative to soft tissue, impedance for specular echoes)
MATERIALS: dict[int, tuple[float, float, float]] = {
    TISSUE: (1.00, 1.0, 1.00),
    FLUID: (0.030, 0.08, 0.90),
    LUNG: (1.70, 1.0, 1.05),
    SKIN: (8.00, 1.6, 1.25),
    MYO: (0.80, 1.1, 1.05),
    PERI: (6.00, 1.4, 1.30),
    BLOOD: (0.060, 0.15, 0.92),
    VALVE: (5.00, 1.0, 1.25),
    VESSEL_WALL: (3.00, 1.2, 1.22),
    BONE: (15.0, 60.0, 2.00),
    LIVER: (0.85, 1.0, 1.00),
    PLACENTA: (1.30, 1.0, 1.03),
}
_LUT = np.zeros((3, 256), np.float32)
for _m, _v in MATERIALS.items():
    _LUT[:, _m] = _v
_REFL, _ATT, _IMP = _LUT

# Image model constants (sizes in units of the sector radius, so statistics do not depend on the
# frame size); tuned against shared/reference/echo_statistics.json.
PSF_AXIAL = 0.0045  # Gaussian sigma along the beam
PSF_LATERAL = 0.0205  # Gaussian sigma across the beam at the focus, share of the radius
FOCUS, FOCAL_ZONE = 0.5, 0.35  # focal depth and the depth over which the beam stays narrow
PSF_BANDS = 12  # depth bands of the lateral PSF
DEFOCUS = (2.8, 3.2)  # axial, lateral PSF widening of an out-of-focus probe
ATTENUATION = 2.2  # round-trip attenuation of soft tissue over the full depth, nepers
SPECULAR = 4.0  # peak coherent echo (re unit speckle) per unit of impedance step
DYNAMIC_RANGE_DB = 76.0
GAIN_DB = 64.5  # the envelope level (dB re unit speckle) shown as white
TEXTURE = 0.60  # std of the tissue texture, nepers
TEXTURE_SIZE = 0.037  # its grain (coarse grid cell), share of the radius
GREY_KNEE, GREY_BOOST = 85.0, 1.0  # grey map: slope 1 below the knee, 1 + boost above
LOOKS = 6  # compounded looks (independent scatterer fields averaged in intensity, as scanners do)
NOISE = 0.15  # receiver noise + clutter floor (amplitude re unit tissue), amplified by the TGC
SPECKLE_KEY_EVERY = 4  # frames between independent scatterer realisations (decorrelation time)
_POOL_PAD = 64  # key fields are windows of one larger field, shifted by up to this many pixels


@functools.lru_cache(maxsize=2 * LOOKS)
def _scatter_pool(seed: int, shape: tuple[int, int], look: int) -> np.ndarray:
    """White complex Gaussian scatterers (2, rows + pad, cols + pad), drawn once per video.

    Each key frame is a window of it at a random offset: the PSF's grain is several pixels, so
    windows a few pixels apart are uncorrelated, and ~0.3M normals are paid once, not per key.
    """
    rng = np.random.default_rng([seed, look, 11])
    return rng.standard_normal((2, shape[0] + _POOL_PAD, shape[1] + _POOL_PAD), dtype=np.float32)


def _scatter_key(seed: int, key: int, shape: tuple[int, int], look: int) -> tuple[np.ndarray, np.ndarray]:
    pool = _scatter_pool(seed, shape, look)
    rng = np.random.default_rng([seed, key, look, 12])
    oy, ox = (int(v) for v in rng.integers(0, _POOL_PAD, size=2))
    i, q = pool[0, oy : oy + shape[0], ox : ox + shape[1]], pool[1, oy : oy + shape[0], ox : ox + shape[1]]
    return (q, i) if key % 2 else (i, q)  # swapping decorrelates keys whose windows land close


def scatterers(seed: int, index: int, shape: tuple[int, int], look: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(I, Q) white scatterer field of frame ``index``, unit variance, decorrelating over a few frames.

    Interpolating between independent keys on a quarter circle keeps the variance, so the speckle
    statistics are stationary while consecutive frames stay partly correlated.
    """
    k, f = divmod(index, SPECKLE_KEY_EVERY)
    i0, q0 = _scatter_key(seed, k, shape, look)
    if f == 0:
        return np.ascontiguousarray(i0), np.ascontiguousarray(q0)
    i1, q1 = _scatter_key(seed, k + 1, shape, look)
    w = 0.5 * math.pi * f / SPECKLE_KEY_EVERY
    c, s = math.cos(w), math.sin(w)
    return cv2.addWeighted(i0, c, i1, s, 0.0), cv2.addWeighted(q0, c, q1, s, 0.0)


@functools.lru_cache(maxsize=4)
def _noise_field(seed: int, salt: int, shape: tuple[int, int], cell: tuple[int, int]) -> np.ndarray:
    """Smooth noise (about unit std) on a coarse grid with room to drift: tissue texture, smoke."""
    rng = np.random.default_rng([seed, salt])
    small = rng.standard_normal((shape[0] // cell[0] + 8, shape[1] // cell[1] + 8)).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    return small / float(small.std())


def _drifting(field: np.ndarray, shape: tuple[int, int], cell: tuple[int, int], dx: float, dy: float) -> np.ndarray:
    """The coarse ``field`` shifted by (dx, dy) coarse cells, upsampled to ``shape`` (one warp)."""
    m = np.array([[1.0 / cell[1], 0, 4.0 + dx], [0, 1.0 / cell[0], 4.0 + dy]], np.float32)
    return cv2.warpAffine(field, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)  # fmt: skip


@functools.lru_cache(maxsize=4)
def _tgc(sector: Sector) -> np.ndarray:
    """Time-gain compensation per depth row: undoes average tissue attenuation, slightly imperfect."""
    d = sector.beam_depth
    return (np.exp(ATTENUATION * d) * (1.0 + 0.07 * np.sin(7.0 * d + 0.5))).astype(np.float32)[:, None]


@functools.lru_cache(maxsize=4)
def _noise_floor(sector: Sector) -> np.ndarray:
    """Relative noise + clutter level per beam sample: rising slowly with depth (TGC), high in the near field."""
    d = sector.beam_depth
    col = (1.0 + 0.6 * d + 3.0 * np.exp(-d / 0.08)).astype(np.float32)[:, None]
    return np.ascontiguousarray(np.broadcast_to(col, sector.beam_shape))


def beam_amplitude(materials: np.ndarray, sector: Sector, *, seed: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(diffuse backscatter amplitude, coherent specular amplitude) on the beam grid, after
    attenuation and TGC, for an image-space material map."""
    shape = sector.beam_shape
    mat = cv2.remap(materials, *sector.to_beam, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    refl = _REFL[mat]
    # Tissue texture drifts with the probe; smoke (slow-flowing red cells) swirls faster.
    # Cells are square on screen at mid-depth, where a scan line is about half a row apart.
    cell = (max(2, round(TEXTURE_SIZE * sector.radius)), max(1, round(0.5 * TEXTURE_SIZE * sector.radius)))
    tex = _drifting(_noise_field(seed, 13, shape, cell), shape, cell, 0.4 * math.sin(0.9 * t + seed), 0.0)
    smoke_cell = (max(2, round(0.012 * sector.radius)), max(1, round(0.006 * sector.radius)))
    smoke = _drifting(_noise_field(seed, 14, shape, smoke_cell), shape, smoke_cell, 2.0 * t, 1.3 * math.sin(1.7 * t))
    blood = mat == BLOOD
    tex *= np.float32(TEXTURE)  # log-normal heterogeneity over a few grains
    cv2.exp(tex, dst=tex)
    refl *= tex
    refl[blood] *= np.clip(0.5 + 0.9 * smoke[blood], 0.15, 3.0)
    # Round-trip attenuation integrated along each beam (rows): shadows behind bone for free.
    att = _ATT[mat]
    att *= np.float32(ATTENUATION / shape[0])
    trans = np.cumsum(att, axis=0, dtype=np.float32)
    cv2.exp(-trans, dst=trans)
    # The beam has a width: a shadow's edges are as soft as the lateral PSF.
    k = max(3, int(round(2.0 * lateral_width(1.0) * shape[1] / (2.0 * HALF_ANGLE))) | 1)
    trans = cv2.blur(trans, (k, 1))
    trans *= _tgc(sector)
    refl *= trans
    # Receiver noise (amplified by the TGC) and near-field clutter, independent of the scatterers:
    # Gaussian fields add in power, so they fold into the amplitude.
    refl = cv2.magnitude(refl, _noise_floor(sector) * np.float32(NOISE))
    imp = _IMP[mat]
    spec = np.zeros_like(imp)
    spec[1:-1] = np.abs(imp[2:] - imp[:-2])
    spec *= trans
    # The step spans two rows; scale so the PSF-blurred peak is SPECULAR x step at any frame size.
    spec *= np.float32(SPECULAR * math.sqrt(2.0 * math.pi) * PSF_AXIAL * sector.radius / 2.0)
    return refl, spec


def _gaussian(sigma: float) -> np.ndarray:
    return cv2.getGaussianKernel(2 * int(math.ceil(3.0 * sigma)) + 1, sigma, cv2.CV_32F)


def lateral_width(depth: np.ndarray | float) -> np.ndarray | float:
    """Lateral PSF sigma on screen (share of the radius) at ``depth``: a focused beam, narrowest at
    the focus, diverging beyond it (wider with depth) and aperture-limited above it."""
    return PSF_LATERAL * np.sqrt(1.0 + ((np.asarray(depth) - FOCUS) / FOCAL_ZONE) ** 2)


@functools.lru_cache(maxsize=8)
def _psf(sector: Sector, defocus: float) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]], np.ndarray]:
    """(axial kernel, [(row0, row1, lateral kernel)] per depth band, per-row unit-variance factor).

    A lateral-only filter acts on each row alone, so a depth-dependent lateral PSF is exact as one
    constant kernel per band of rows: the cost of a single blur.
    """
    n_r, n_t = sector.beam_shape
    sy = PSF_AXIAL * sector.radius * (1.0 + (DEFOCUS[0] - 1.0) * defocus)
    edges = np.linspace(0, n_r, PSF_BANDS + 1).round().astype(int)
    bands, norm = [], np.empty((n_r, 1), np.float32)
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        d = max(float(sector.beam_depth[(r0 + r1) // 2]), 0.05)
        spacing = d * sector.radius * 2.0 * HALF_ANGLE / n_t  # pixels between scan lines at this depth
        sx = min(lateral_width(d) * sector.radius / spacing, 0.25 * n_t) * (1.0 + (DEFOCUS[1] - 1.0) * defocus)
        bands.append((int(r0), int(r1), _gaussian(sx)))
        norm[r0:r1] = math.sqrt(4.0 * math.pi * sx * sy)  # a 2-D Gaussian's squared sum is 1/(4 pi sx sy)
    return _gaussian(sy), bands, norm


def beam_envelope(refl: np.ndarray, spec: np.ndarray, sector: Sector, *, seed: int, index: int,
                  defocus: float = 0.0) -> np.ndarray:
    """Envelope |PSF * (scatterers x amplitude + specular)| on the beam grid, ``LOOKS`` looks
    compounded in intensity; ``defocus`` 0..1 widens the PSF."""
    ky, bands, norm = _psf(sector, float(defocus))
    one = np.ones((1, 1), np.float32)
    coherent = spec / norm  # specular peaks come out as designed after the unit-variance factor
    power = None
    for look in range(LOOKS):
        i, q = scatterers(seed, index, sector.beam_shape, look)
        i = cv2.multiply(i, refl)
        q = cv2.multiply(q, refl)
        i += coherent
        for f in (i, q):
            cv2.sepFilter2D(f, -1, one, ky, dst=f, borderType=cv2.BORDER_REFLECT)  # axial
            for r0, r1, kx in bands:  # lateral, one kernel per depth band
                f[r0:r1] = cv2.sepFilter2D(f[r0:r1], -1, kx, one, borderType=cv2.BORDER_REFLECT)
        p = cv2.magnitude(i, q)
        p *= p
        power = p if power is None else cv2.add(power, p)
    env = cv2.sqrt(power)
    env *= norm * np.float32(1.0 / math.sqrt(LOOKS))
    return env


def log_compress(env: np.ndarray) -> np.ndarray:
    """Envelope -> display grey (float32, 0..255): 20 log10, ``GAIN_DB`` white, ``DYNAMIC_RANGE_DB`` wide."""
    out = cv2.max(env, 1e-6)
    cv2.log(out, dst=out)
    scale = 255.0 / DYNAMIC_RANGE_DB * 20.0 / math.log(10.0)
    out *= np.float32(scale)
    out += np.float32(255.0 * (1.0 - GAIN_DB / DYNAMIC_RANGE_DB))
    # Post-processing grey map (as on a scanner): linear up to the knee, steeper above it, so
    # strong reflectors stand out from the speckle of soft tissue.
    above = out - np.float32(GREY_KNEE)
    cv2.max(above, 0.0, dst=above)
    out += np.float32(GREY_BOOST) * above
    cv2.max(out, 0.0, dst=out)
    cv2.min(out, 255.0, dst=out)
    return out


def echo_image(materials: np.ndarray, sector: Sector, *, seed: int, index: int, t: float,
               defocus: float = 0.0) -> np.ndarray:
    """Material map (uint8, image space) -> grey uint8 B-mode frame inside the fan."""
    refl, spec = beam_amplitude(materials, sector, seed=seed, t=t)
    grey = log_compress(beam_envelope(refl, spec, sector, seed=seed, index=index, defocus=defocus))
    # Replicate at the grid's border so the fan's anti-aliased edge keeps its grey; soft zeroes the rest.
    img = cv2.remap(grey, *sector.to_image, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    img *= sector.soft
    return cv2.convertScaleAbs(img)
