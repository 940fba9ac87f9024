"""Fixtures shared by the enhancement tests: small natural images, a known blur, a fake echo frame."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data


def natural_gray(name: str = "camera", size: int = 128) -> np.ndarray:
    """A small natural grayscale image in [0, 1] (scikit-image's bundled samples)."""
    img = data.camera() if name == "camera" else cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0


def gaussian_kernel(size: int = 9, sigma: float = 2.0) -> np.ndarray:
    g = cv2.getGaussianKernel(size, sigma)
    k = g @ g.T
    return k / k.sum()


def blur(img: np.ndarray, kernel: np.ndarray, noise: float = 0.005, seed: int = 0) -> np.ndarray:
    out = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
    out = out + np.random.default_rng(seed).normal(0.0, noise, img.shape)
    return np.clip(out, 0.0, 1.0)


def fake_echo(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A gray uint8 frame: bright speckled sector on black, dark chambers inside, text outside."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    fan = np.zeros((h, w), np.uint8)
    cv2.ellipse(fan, (w // 2, 0), (int(h * 0.95), int(h * 0.95)), 90, -35, 35, 1, -1)
    tissue = np.clip(rng.normal(110, 35, (h, w)), 0, 255).astype(np.uint8)
    img[fan > 0] = tissue[fan > 0]
    cv2.circle(img, (w // 2 - 15, h // 2), 14, 12, -1)
    cv2.circle(img, (w // 2 + 15, h // 2), 14, 12, -1)
    cv2.putText(img, "HR", (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, 200, 1)
    return img
