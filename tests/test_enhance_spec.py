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
