"""Spec parsing, parameters, Enhancer caching, config plumbing and the detectron2 augmentation."""

import copy

from fetalheart.enhance import (
    DEFAULT_PARAMS,
    SPECS_OF_STUDY,
    Enhancer,
    add_enhance_config,
    enhance,
    params_from_cfg,
    parse_spec,
)
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest

from tests._enhance_helpers import fake_echo


def test_study_specs_in_order():
    assert SPECS_OF_STUDY == (
        "original", "he", "ahe", "clahe", "bd", "he+clahe", "ahe+clahe",
        "he+bd", "ahe+bd", "he+clahe+bd", "ahe+clahe+bd",
    )  # fmt: skip
    for spec in SPECS_OF_STUDY:
        parse_spec(spec)


def test_parse_normalises_and_keeps_any_order():
    assert parse_spec("original") == ()
    assert parse_spec(" AHE + CLAHE ") == ("ahe", "clahe")
    assert parse_spec("bd+clahe+he") == ("bd", "clahe", "he")


@pytest.mark.parametrize("bad", ["sharpen", "ahe+", "he+gamma", "he clahe"])
def test_unknown_names_list_valid_ones(bad):
    with pytest.raises(FetalHeartError, match="valid names: original, he, ahe, clahe, bd"):
        parse_spec(bad)


def test_composition_is_left_to_right():
    img = fake_echo()
    p = {"clahe_clip_limit": 3.0}
    assert np.array_equal(enhance(img, "he+clahe", params=p), enhance(enhance(img, "he"), "clahe", params=p))
    assert not np.array_equal(enhance(img, "he+clahe"), enhance(img, "clahe+he"))


def test_params_are_validated():
    with pytest.raises(FetalHeartError, match="unknown enhancement parameter"):
        Enhancer("clahe", params={"clip": 2})
    with pytest.raises(FetalHeartError, match="bd_kernel_size must be odd"):
        Enhancer("bd", params={"bd_kernel_size": 8})
    with pytest.raises(FetalHeartError, match="not a int"):
        Enhancer("clahe", params={"clahe_tile_grid": "many"})


def test_enhancer_identity_and_bd_cache(tmp_path, monkeypatch):
    img = fake_echo(64, 80)
    assert Enhancer("original").identity and Enhancer("original")(img) is img
    assert not Enhancer("he").identity

    calls = []
    import fetalheart.enhance.enhancer as mod

    real = mod.apply_ops
    monkeypatch.setattr(mod, "apply_ops", lambda *a, **k: calls.append(1) or real(*a, **k))
    e1 = Enhancer("ahe+bd", cache_dir=tmp_path / "cache")
    out1 = e1(img)
    out1b = e1(img)  # memory hit
    e2 = Enhancer("ahe+bd", cache_dir=tmp_path / "cache")  # a new process would see the disk
    out2 = e2(img)
    assert len(calls) == 1 and e2.cache.hits == 1
    assert np.array_equal(out1, out1b) and np.array_equal(out1, out2)
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 1
    # A different parameter or a different image is a different entry.
    Enhancer("ahe+bd", params={"bd_iters": 2}, cache_dir=tmp_path / "cache")(img)
    e1(img[::-1].copy())
    assert len(calls) == 3


def test_config_roundtrip_carries_the_preprocessing(tmp_path):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_enhance_config(cfg)
    assert cfg.INPUT.ENHANCE == "original" and params_from_cfg(cfg) == DEFAULT_PARAMS
    cfg.INPUT.ENHANCE = "ahe+clahe"
    cfg.INPUT.ENHANCE_PARAMS.CLAHE_CLIP_LIMIT = 3.0
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    loaded = get_cfg()
    add_enhance_config(loaded)
    loaded.merge_from_file(str(path))
    assert loaded.INPUT.ENHANCE == "ahe+clahe"
    assert params_from_cfg(loaded)["clahe_clip_limit"] == 3.0
    # Configs written before the keys existed still work (defaults).
    assert params_from_cfg(get_cfg()) == DEFAULT_PARAMS


def test_augmentation_changes_pixels_only():
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    from detectron2.data import detection_utils as utils
    from detectron2.data import transforms as T

    img = np.repeat(fake_echo(64, 80)[..., None], 3, axis=2)
    boxes = np.array([[10.0, 12.0, 40.0, 50.0]])
    polygons = [np.array([10.0, 12.0, 40.0, 12.0, 40.0, 50.0])]
    aug_input = T.AugInput(img.copy(), boxes=boxes.copy(), sem_seg=np.ones((64, 80), np.uint8))
    tfms = T.AugmentationList([EnhanceAugmentation("ahe+clahe"), T.ResizeShortestEdge(64, 1000)])(aug_input)
    assert np.array_equal(aug_input.image, enhance(img, "ahe+clahe"))
    assert np.array_equal(aug_input.boxes, boxes) and aug_input.sem_seg.sum() == 64 * 80
    segm = copy.deepcopy([p.tolist() for p in polygons])
    anno = {"bbox": [10, 12, 30, 38], "bbox_mode": 1, "segmentation": segm, "category_id": 0}
    out = utils.transform_instance_annotations(anno, tfms, img.shape[:2])
    assert np.allclose(out["segmentation"][0], polygons[0]) and np.allclose(out["bbox"], boxes[0])
    assert isinstance(EnhanceAugmentation("original").get_transform(img), T.NoOpTransform)


def test_dataset_mapper_applies_cfg_enhancement(tmp_path):
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    import cv2
    from detectron2.config import get_cfg
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    img = np.repeat(fake_echo(64, 80)[..., None], 3, axis=2)
    cv2.imwrite(str(tmp_path / "f.png"), img)
    cfg = get_cfg()
    add_enhance_config(cfg)
    cfg.INPUT.ENHANCE = "he"
    aug = EnhanceAugmentation.from_config(cfg)
    mapper = DatasetMapper(is_train=False, augmentations=[aug, T.ResizeShortestEdge(64, 1000)], image_format="BGR")
    out = mapper({"file_name": str(tmp_path / "f.png"), "height": 64, "width": 80, "image_id": 0})
    chw = out["image"].numpy()
    assert np.array_equal(chw.transpose(1, 2, 0), enhance(img, "he"))
    cfg.INPUT.ENHANCE = "original"
    assert EnhanceAugmentation.from_config(cfg) is None


def test_bool_and_floor_params_are_validated():
    from fetalheart.enhance import resolve_params

    assert DEFAULT_PARAMS["bd_skip_sharp"] is False and DEFAULT_PARAMS["bd_min_sigma"] == 1.0
    for text, value in (("true", True), ("No", False), ("1", True), (False, False), (1, True)):
        assert resolve_params({"bd_skip_sharp": text})["bd_skip_sharp"] is value
    with pytest.raises(FetalHeartError, match="is not a bool"):
        resolve_params({"bd_skip_sharp": "maybe"})
    with pytest.raises(FetalHeartError, match=r"bd_min_sigma must be in \[0, 3.5\]"):
        resolve_params({"bd_min_sigma": 4.0})
    assert resolve_params({"bd_min_sigma": 3.5, "bd_kernel_size": 15})["bd_min_sigma"] == 3.5


def _bd_specs():
    return [s for s in SPECS_OF_STUDY if "bd" in s]


def test_bd_kernel_is_estimated_once_per_image_for_every_bd_spec(tmp_path, monkeypatch):
    import fetalheart.enhance.kernels as kmod

    img = np.repeat(fake_echo(96, 128)[..., None], 3, axis=2)
    expected = {spec: enhance(img, spec) for spec in _bd_specs()}  # uncached reference
    calls = []
    real = kmod.estimate_bd_kernel
    monkeypatch.setattr(kmod, "estimate_bd_kernel", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "cache"
    for spec in _bd_specs():
        assert np.array_equal(Enhancer(spec, cache_dir=cache)(img), expected[spec])
    assert len(calls) == 1  # one estimate for 5 specs (the first Enhancer wrote it to disk)
    assert len(list((cache / "bd_kernels").rglob("*.npy"))) == 1
    assert len(list((cache / "bd_images").rglob("*.png"))) == 5
    # Deconvolution-only parameters reuse the kernel; estimation parameters do not.
    Enhancer("bd", cache_dir=cache, params={"bd_nsr": 0.02, "bd_min_sigma": 1.3})(img)
    assert len(calls) == 1
    Enhancer("bd", cache_dir=cache, params={"bd_lambda": 0.01})(img)
    assert len(calls) == 2
    # A damaged entry is re-estimated, not trusted.
    for f in (cache / "bd_kernels").rglob("*.npy"):
        f.write_bytes(b"garbage")
    Enhancer("he+bd", cache_dir=tmp_path / "cache", params={"bd_nsr": 0.03})(img)
    assert len(calls) == 3


def test_warm_bd_cache_then_the_online_path_estimates_nothing(tmp_path, monkeypatch):
    import fetalheart.enhance.kernels as kmod
    from fetalheart.enhance import warm_bd_cache
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    import cv2
    from detectron2.config import get_cfg
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"f{i}.png")
        cv2.imwrite(str(paths[i]), np.repeat(fake_echo(64, 80, seed=i)[..., None], 3, axis=2))
    cache = tmp_path / "grid" / "enhance_cache"
    first = warm_bd_cache(paths, None, cache, jobs=2, quiet=True)
    assert (first["images"], first["estimated"], first["cached"]) == (3, 3, 0)
    assert 0 <= first["below_floor"] <= 3 and first["kernel_sigma"]["min"] > 0
    again = warm_bd_cache(paths, {"bd_skip_sharp": True}, cache, jobs=1, quiet=True)
    assert (again["estimated"], again["cached"]) == (0, 3)
    with pytest.raises(FetalHeartError, match="image not found"):
        warm_bd_cache([tmp_path / "nope.png"], None, cache, quiet=True)

    spec = "ahe+clahe+bd"
    expected = [enhance(cv2.imread(str(p)), spec) for p in paths]
    monkeypatch.setattr(kmod, "estimate_bd_kernel", lambda *a, **k: pytest.fail("kernel re-estimated"))
    cfg = get_cfg()
    add_enhance_config(cfg)
    cfg.INPUT.ENHANCE, cfg.INPUT.ENHANCE_CACHE_DIR = spec, str(cache)
    mapper = DatasetMapper(is_train=False, augmentations=[EnhanceAugmentation.from_config(cfg),
                                                           T.ResizeShortestEdge(64, 1000)], image_format="BGR")
    for p, exp in zip(paths, expected, strict=True):
        out = mapper({"file_name": str(p), "height": 64, "width": 80, "image_id": 0})
        assert np.array_equal(out["image"].numpy().transpose(1, 2, 0), exp)


def test_read_image_matches_detectron2_reader(tmp_path):
    # Cache keys are computed on what warm_bd_cache reads; the online path reads with detectron2.
    import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
    from fetalheart.enhance import read_image

    import cv2
    from detectron2.data.detection_utils import read_image as d2_read
    from PIL import Image

    gray = fake_echo(48, 64)
    colour = np.dstack([gray, np.roll(gray, 3, axis=1), 255 - gray])
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "gray3.png"), np.repeat(gray[..., None], 3, axis=2))
    cv2.imwrite(str(tmp_path / "colour.jpg"), colour)
    cv2.imwrite(str(tmp_path / "deep.png"), gray.astype(np.uint16) * 200)
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # rotated: the reader must turn it upright
    Image.fromarray(colour[..., ::-1]).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(gray).convert("P").save(tmp_path / "palette.png")
    for f in sorted(tmp_path.iterdir()):
        for fmt in ("BGR", "RGB", "L"):
            ours, ref = read_image(f, fmt), d2_read(str(f), format=fmt)
            assert ours.dtype == ref.dtype and np.array_equal(ours, ref), (f.name, fmt)
    assert read_image(tmp_path / "rotated.jpg").shape[:2] == (64, 48)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(FetalHeartError, match="cannot read image"):
        read_image(tmp_path / "broken.png")
