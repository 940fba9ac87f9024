"""What the model is fed: Matterport's square padding, tight boxes after rotation, augmentation order."""

from __future__ import annotations

from fetalheart.config import load_cfg

import numpy as np
import pytest
import torch

SCRATCH = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"


def _small_cfg(*opts):
    return load_cfg(SCRATCH, ["MODEL.DEVICE", "cpu", "INPUT.MAX_SIZE_TEST", "128", "INPUT.MIN_SIZE_TEST", "128",
                              "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.SQUARE_SIZE", "128",
                              "MODEL.RPN.POST_NMS_TOPK_TEST", "50", *opts])


def test_square_padding_is_black_and_keeps_true_sizes():
    from fetalheart.engine import Trainer

    cfg = _small_cfg()
    model = Trainer.build_model(cfg).eval()
    image = torch.full((3, 72, 128), 200.0)  # a 16:9 frame after the long-side resize
    batch = model.preprocess_image([{"image": image}])
    assert tuple(batch.tensor.shape) == (1, 3, 128, 128) and batch.image_sizes == [(72, 128)]
    black = (-model.pixel_mean / model.pixel_std).view(3)
    assert torch.allclose(batch.tensor[0, :, 100, 5], black)  # padded rows: a black pixel, as Matterport pads
    assert torch.allclose(batch.tensor[0, :, 10, 5], (200 - model.pixel_mean.view(3)) / model.pixel_std.view(3))
    with torch.no_grad():
        out = model([{"image": image, "height": 360, "width": 640}])[0]["instances"]
    assert out.image_size == (360, 640)  # detectron2's post-processing maps back to the original frame


def test_square_size_needs_the_meta_architecture():
    from fetalheart.utils.errors import FetalHeartError

    with pytest.raises(FetalHeartError, match="FetalHeartRCNN"):
        _small_cfg("MODEL.META_ARCHITECTURE", "GeneralizedRCNN")


def _rotated_sample(recompute: bool | None):
    from fetalheart.data.mapper import build_train_mapper

    from detectron2.data import DatasetMapper
    from detectron2.structures import BoxMode

    cfg = _small_cfg("INPUT.AUG.ROTATION", "30.0")
    img_h, img_w = 90, 160
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)  # an ellipse: the box of its rotation is not a rotated box
    poly = np.stack([80 + 40 * np.cos(t), 45 + 15 * np.sin(t)], 1).ravel().tolist()
    record = {"file_name": "", "height": img_h, "width": img_w, "image_id": 1, "annotations": [
        {"bbox": [40.0, 30.0, 80.0, 30.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "segmentation": [poly],
         "iscrowd": 0}]}
    mapper = build_train_mapper(cfg)
    if recompute is not None:  # detectron2's own default, for contrast
        mapper = DatasetMapper(cfg, is_train=True, augmentations=list(mapper.augmentations.augs),
                               recompute_boxes=recompute)
    import detectron2.data.detection_utils as utils

    image = np.full((img_h, img_w, 3), 100, np.uint8)
    orig = utils.read_image
    utils.read_image = lambda *a, **k: image
    try:
        np.random.seed(3)  # a rotation far from 0
        return mapper(dict(record))["instances"]
    finally:
        utils.read_image = orig


def test_rotated_training_box_is_tight_on_its_mask():
    inst = _rotated_sample(None)
    tight = inst.gt_masks.get_bounding_boxes().tensor
    assert torch.allclose(inst.gt_boxes.tensor, tight)
    loose = _rotated_sample(False)  # without recompute_boxes: the box of the rotated box
    area = lambda b: float((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))  # noqa: E731
    assert area(loose.gt_boxes.tensor) > 1.05 * area(tight)


def test_photometric_augmentation_runs_before_the_enhancement():
    from fetalheart.data.mapper import train_augmentations
    from fetalheart.enhance import Enhancer
    from fetalheart.enhance.augmentation import PhotometricThenEnhance

    cfg = _small_cfg("INPUT.ENHANCE", "he", "INPUT.AUG.BRIGHTNESS", "0.5", "INPUT.AUG.CONTRAST", "0.2",
                     "INPUT.AUG.ROTATION", "5.0")
    augs = train_augmentations(cfg)
    assert [type(a).__name__ for a in augs] == ["PhotometricThenEnhance", "ResizeLongestEdge", "RandomRotation"]
    assert [type(a).__name__ for a in augs[0].photometric] == ["RandomBrightness", "RandomContrast"]
    # the enhanced output is HE of the jittered frame: never a jittered copy of the enhanced frame
    rng = np.random.default_rng(0)
    frame = rng.integers(20, 120, size=(40, 60, 3), dtype=np.uint8)
    np.random.seed(1)
    t = augs[0].get_transform(frame)
    jittered = frame
    for p in t.photometric:
        jittered = p.apply_image(jittered)
    assert not np.array_equal(jittered, frame)
    assert np.array_equal(t.apply_image(frame), Enhancer("he")(jittered))
    assert isinstance(augs[0], PhotometricThenEnhance)


def test_bd_kernel_comes_from_the_original_frame_under_photometric_jitter():
    from fetalheart.enhance import Enhancer, KernelCache
    from fetalheart.enhance.augmentation import PhotometricThenEnhance

    from detectron2.data import transforms as T

    kernels = KernelCache()
    enhancer = Enhancer("bd", kernels=kernels)
    frame = np.random.default_rng(0).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    aug = PhotometricThenEnhance([T.RandomBrightness(0.5, 1.5)], enhancer)
    for seed in range(3):
        np.random.seed(seed)
        aug.get_transform(frame).apply_image(frame)
    assert kernels.misses == 1  # one estimate for the frame, not one per jittered copy


def test_a_frame_without_structures_is_a_training_sample():
    """Recommended protocol: true negatives are trained on (detectron2 v0.6 fails on them with recompute_boxes)."""
    from fetalheart.data.mapper import build_train_mapper

    import detectron2.data.detection_utils as utils

    cfg = _small_cfg("INPUT.AUG.ROTATION", "10.0")
    image = np.full((90, 160, 3), 100, np.uint8)
    orig = utils.read_image
    utils.read_image = lambda *a, **k: image
    try:
        out = build_train_mapper(cfg)({"file_name": "", "height": 90, "width": 160, "image_id": 2, "annotations": []})
    finally:
        utils.read_image = orig
    assert len(out["instances"]) == 0 and out["image"].shape[1:] == (72, 128)
