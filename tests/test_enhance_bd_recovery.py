"""bd finds the blur it removes: Gaussian sigma 2 and 3 blurs are recovered within 25% and told apart.

A fixed sharpening filter (what bd is on a frame where the 1 px floor sets the kernel) passes
"every frame changed" by construction; it cannot pass this test, and the last test proves that the
check rejects it. Cases: two natural images and two ultrasound-like frames (dark chambers in
tissue, multiplicative speckle with ~1 px grains, cv 0.1), blurred, plus noise sigma 0.005.
Run with ``-s`` to see the estimates.
"""

import fetalheart._compat  # noqa: F401
from fetalheart.enhance import Enhancer, blind_deblur, kernel_sigma
from fetalheart.enhance.deblur import DeblurParams, kernel_source
from fetalheart.enhance.stats import image_changes, summarise_changes

import cv2
import numpy as np
import pytest

from tests._enhance_helpers import natural_gray

SIGMAS = (2.0, 3.0)
TOLERANCE = 0.25  # |estimate - true| <= 25% of true
MIN_GAP = 0.3  # px: the sigma-3 estimate exceeds the sigma-2 one by at least this


def gaussian_blur(img: np.ndarray, sigma: float, seed: int = 0, noise: float = 0.005) -> np.ndarray:
    k = int(2 * np.ceil(3.5 * sigma) + 1)
    out = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(out + np.random.default_rng(seed).normal(0.0, noise, img.shape), 0.0, 1.0)


def echo_like(seed: int, size: int = 160, grain: float = 1.0, cv: float = 0.1) -> np.ndarray:
    """Tissue disc, a brighter myocardium, four dark chambers; Rayleigh speckle with ~1 px grains."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.zeros((size, size))
    img[np.hypot(yy - 0.5, xx - 0.5) < 0.47] = 0.30
    img[np.hypot(yy - 0.5, xx - 0.5) < 0.30] = 0.45
    for cx, cy, a, b in [(0.38, 0.40, 0.10, 0.12), (0.62, 0.40, 0.10, 0.12), (0.38, 0.64, 0.11, 0.10),
                         (0.62, 0.64, 0.11, 0.10)]:
        img[((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 < 1] = 0.06
    field = cv2.GaussianBlur(rng.normal(size=(size, size)), (0, 0), grain) \
        + 1j * cv2.GaussianBlur(rng.normal(size=(size, size)), (0, 0), grain)
    amplitude = np.abs(field)
    speckle = 1 + cv * (amplitude - amplitude.mean()) / amplitude.std()
    return np.clip(img * speckle, 0.0, 1.0)


CASES = {"camera": lambda: natural_gray("camera", 128), "astronaut": lambda: natural_gray("astronaut", 128),
         "echo0": lambda: echo_like(0), "echo1": lambda: echo_like(1)}


def bd_estimate(blurred: np.ndarray) -> float:
    """bd's own estimate of the blur: the spread of the kernel blind_deblur found (before any floor)."""
    return blind_deblur(blurred).estimated_sigma


def recovery_failures(estimate, cases=CASES) -> list[str]:
    """What is wrong with an estimator: estimates off by more than 25%, or sigma 2 and 3 not told apart."""
    bad = []
    for name, make in cases.items():
        sharp = make()
        est = {s: estimate(gaussian_blur(sharp, s)) for s in SIGMAS}
        print(f"{name:<10} true 2.0 -> {est[2.0]:.2f}, true 3.0 -> {est[3.0]:.2f}")
        bad += [f"{name}: sigma {s} estimated {e:.2f}" for s, e in est.items() if abs(e - s) > TOLERANCE * s]
        if est[3.0] - est[2.0] < MIN_GAP:
            bad.append(f"{name}: sigma 2 and 3 estimated {est[2.0]:.2f} and {est[3.0]:.2f}")
    return bad


def test_bd_recovers_gaussian_sigma_2_and_3_within_25_percent_and_tells_them_apart():
    assert recovery_failures(bd_estimate) == []


@pytest.mark.parametrize("name", ["camera", "echo0"])
def test_blurred_frames_are_deconvolved_with_the_estimate_and_sharp_ones_with_the_floor(name):
    sharp = CASES[name]()
    p = DeblurParams()
    for s in SIGMAS:
        result = blind_deblur(gaussian_blur(sharp, s))
        assert result.source == "estimate" and kernel_sigma(result.kernel) == pytest.approx(result.estimated_sigma)
    noisy_sharp = np.clip(sharp + np.random.default_rng(3).normal(0, 0.005, sharp.shape), 0, 1)
    result = blind_deblur(noisy_sharp)
    assert result.estimated_sigma < p.min_sigma and result.source == "floor"
    assert kernel_sigma(result.kernel) == pytest.approx(p.min_sigma, abs=1e-3)
    assert kernel_source(result.estimated_sigma, p.min_sigma, skip_sharp=True) == "none"


def test_reports_record_per_frame_what_set_the_kernel_and_the_floor_share():
    enhancer = Enhancer("bd")
    planes = [echo_like(0)] + [gaussian_blur(echo_like(0), s) for s in SIGMAS]
    frames = [np.repeat((p[..., None] * 255).round().astype(np.uint8), 3, axis=2) for p in planes]  # BGR
    records = [image_changes(enhancer, f)[1] for f in frames]
    assert [r["bd_kernel"] for r in records] == ["floor", "estimate", "estimate"]
    bd = summarise_changes(enhancer, records)["steps"][0]["bd"]
    assert bd["kernel_source"] == {"estimate": 2, "floor": 1, "none": 0}
    assert bd["floor_share"] == pytest.approx(1 / 3, abs=1e-4)


def test_the_check_rejects_a_fixed_sharpening_filter():
    # A fixed filter deconvolves every frame with the same kernel whatever its blur: its "estimate" is
    # that kernel's spread for every input (bd on a floor frame: the 1 px floor).
    fixed = recovery_failures(lambda blurred: 1.0, {"echo0": CASES["echo0"]})
    assert any("sigma 2.0" in f for f in fixed) and any("sigma 2 and 3" in f for f in fixed)
    wide = recovery_failures(lambda blurred: 2.5, {"echo0": CASES["echo0"]})  # right on average, never apart
    assert any("sigma 2 and 3" in f for f in wide)
