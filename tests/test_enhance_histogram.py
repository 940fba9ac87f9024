"""HE / AHE / CLAHE against OpenCV, colour and dtype handling, masks, and properties."""

from fetalheart.enhance import enhance, parse_spec
from fetalheart.enhance.histogram import _he_lut, he_plane
from fetalheart.video.sector import auto_sector_mask

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests._enhance_helpers import fake_echo

RNG = np.random.default_rng(1)
GRAY = cv2.GaussianBlur((RNG.random((96, 128)) * 120 + 40).astype(np.uint8), (5, 5), 0)


def test_he_equals_opencv():
    assert np.array_equal(enhance(GRAY, "he"), cv2.equalizeHist(GRAY))


def test_our_he_lut_equals_opencv_so_masked_he_is_the_same_method():
    # The masked and uint16 paths use our LUT: with no mask it must reproduce equalizeHist.
    lut = _he_lut(GRAY, 256).astype(np.uint8)
    assert np.array_equal(lut[GRAY], cv2.equalizeHist(GRAY))
    full = np.ones(GRAY.shape, bool)
    assert np.array_equal(he_plane(GRAY, full), cv2.equalizeHist(GRAY))


@pytest.mark.parametrize("clip,grid", [(2.0, 8), (4.0, 4), (1.0, 2)])
def test_clahe_equals_opencv(clip, grid):
    expected = cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid, grid)).apply(GRAY)
    out = enhance(GRAY, "clahe", params={"clahe_clip_limit": clip, "clahe_tile_grid": grid})
    assert np.array_equal(out, expected)


def test_ahe_has_the_clip_off():
    ahe = enhance(GRAY, "ahe")
    # Clip 256 x mean bin height can never be reached: no clipping, bit-identical to AHE.
    unclipped = cv2.createCLAHE(clipLimit=256.0, tileGridSize=(8, 8)).apply(GRAY)
    clipped = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(GRAY)
    assert np.array_equal(ahe, unclipped)
    assert not np.array_equal(ahe, clipped)
    # Without a clip, a peaky (low-contrast) image is stretched much harder than with one.
    assert ahe.std() > clipped.std() + 5


def test_colour_equalises_luminance_only():
    bgr = np.dstack([GRAY, (GRAY * 0.5).astype(np.uint8), np.full_like(GRAY, 90)])
    out = enhance(bgr, "clahe")
    lab_in = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(int)
    lab_out = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(int)
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).mean() > 5  # luminance changed
    assert np.abs(lab_out[..., 1:] - lab_in[..., 1:]).mean() < 3  # chroma kept (up to rounding)


def test_gray_stored_as_bgr_stays_gray_and_matches_gray_path():
    bgr = cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR)
    out = enhance(bgr, "ahe+clahe")
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert np.array_equal(out[..., 0], enhance(GRAY, "ahe+clahe"))


def test_uint16_he_and_clahe():
    img16 = GRAY.astype(np.uint16) * 257
    he = enhance(img16, "he")
    assert he.dtype == np.uint16 and he.max() == 65535 and he.min() == 0
    # Same ranks as the 8-bit equalisation (the 16-bit image is a rescaled copy).
    assert np.abs(he.astype(int) // 257 - cv2.equalizeHist(GRAY).astype(int)).max() <= 1
    cl = enhance(img16, "clahe")
    assert np.array_equal(cl, cv2.createCLAHE(2.0, (8, 8)).apply(img16))


def test_auto_mask_finds_the_sector_and_leaves_outside_alone():
    frame = fake_echo()
    mask = auto_sector_mask(frame)
    assert 0.2 < mask.mean() < 0.8
    assert mask[frame.shape[0] // 2, frame.shape[1] // 2 - 15]  # dark chamber inside the fan
    assert not mask[-3, 3]  # the "HR" text corner is outside
    for spec in ("he", "clahe", "ahe+clahe"):
        out = enhance(frame, spec, mask="auto")
        assert np.array_equal(out[~mask], frame[~mask])
    # Inside-only statistics: the black background no longer takes the bottom of the range.
    assert enhance(frame, "he", mask="auto")[mask].mean() < enhance(frame, "he")[mask].mean()


def test_explicit_mask_shape_is_checked():
    from fetalheart.utils.errors import FetalHeartError

    with pytest.raises(FetalHeartError, match="mask shape"):
        enhance(GRAY, "he", mask=np.ones((3, 3), bool))


def test_bad_dtype_is_a_clear_error():
    from fetalheart.utils.errors import FetalHeartError

    with pytest.raises(FetalHeartError, match="uint8 or uint16"):
        enhance(GRAY.astype(np.float32), "he")


_HIST_SPECS = ["he", "ahe", "clahe", "he+clahe", "ahe+clahe", "clahe+he"]


@settings(max_examples=15, deadline=None)
@given(
    img=arrays(np.uint8, st.tuples(st.integers(8, 40), st.integers(8, 40), st.sampled_from([1, 3]))),
    spec=st.sampled_from(_HIST_SPECS),
    mask=st.sampled_from(["none", "auto"]),
)
def test_properties_shape_dtype_range(img, spec, mask):
    out = enhance(img, spec, mask=mask)
    assert out.shape == img.shape and out.dtype == img.dtype


@settings(max_examples=10, deadline=None)
@given(
    value=st.integers(0, 255),
    spec=st.sampled_from(_HIST_SPECS + ["bd", "he+bd", "ahe+clahe+bd"]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
)
def test_constant_images_stay_constant(value, spec, dtype):
    img = np.full((24, 32), value, dtype)
    out = enhance(img, spec)
    assert out.dtype == dtype and out.shape == img.shape
    assert out.min() == out.max()  # a flat field has no contrast to create
    if parse_spec(spec) == ("bd",):
        assert np.array_equal(out, img)
