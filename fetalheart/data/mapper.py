"""DatasetMappers that apply the model's own enhancement (``cfg.INPUT.ENHANCE``).

Order of the augmentation list, training: photometric augmentation (scanner gain, contrast) ->
enhancement under study -> resize with scale jitter -> flip/rotation. The enhancement runs on the
full-resolution frame before any resize, exactly as the offline ``enhance_dataset`` tool would,
and is never perturbed after it is applied (the study compares enhancements). Evaluation and
prediction: enhancement -> resize.
"""

from __future__ import annotations

import os

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.data.augment import geometric_augmentations, photometric_augmentations

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

#: The instance field that flags an ignore region (the name fetalheart.modeling.crowd reads).
CROWD_FIELD = "gt_is_crowd"


def enhancement_augmentation(cfg) -> list[T.Augmentation]:
    """The enhancement step for this config, as a (possibly empty) augmentation list."""
    from fetalheart.enhance import enhancer_from_cfg
    from fetalheart.enhance.augmentation import EnhanceAugmentation

    enhancer = enhancer_from_cfg(cfg, os.path.join(cfg.OUTPUT_DIR, "enhance_cache") if cfg.OUTPUT_DIR else None)
    return [] if enhancer.identity else [EnhanceAugmentation(enhancer)]


def train_augmentations(cfg) -> list[T.Augmentation]:
    """The full training augmentation list, in the order it is applied."""
    from fetalheart.enhance.augmentation import PhotometricThenEnhance

    photometric, enhance = photometric_augmentations(cfg), enhancement_augmentation(cfg)
    if photometric and enhance:  # one step, so bd's kernel comes from the original frame
        enhance = [PhotometricThenEnhance(photometric, enhance[0].enhancer)]
        photometric = []
    return photometric + enhance + geometric_augmentations(cfg, True)


def test_augmentations(cfg) -> list[T.Augmentation]:
    """Evaluation/prediction: the enhancement and the fixed test resize."""
    return enhancement_augmentation(cfg) + geometric_augmentations(cfg, False)


class FetalHeartDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper; a frame without any structure is a valid training sample.

    detectron2 v0.6 recomputes boxes from ``gt_masks``, a field it only creates when a frame has an
    instance, so a true-negative frame fails with recompute_boxes on: boxes are recomputed only
    when there is something to recompute. ``keep_crowd`` (``MODEL.CROWD_IGNORE_IOU`` > 0): ignore
    regions stay in the instances, flagged ``gt_is_crowd``, for crowd-aware target assignment
    (fetalheart.modeling.crowd); detectron2 drops them.
    """

    keep_crowd = False

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        annos = dataset_dict.get("annotations", [])
        if self.keep_crowd and any(a.get("iscrowd", 0) for a in annos):
            return self._transform_with_crowd(dataset_dict, transforms, image_shape)
        recompute = self.recompute_boxes
        self.recompute_boxes = recompute and any(
            obj.get("iscrowd", 0) == 0 for obj in dataset_dict.get("annotations", []))
        try:
            super()._transform_annotations(dataset_dict, transforms, image_shape)
        finally:
            self.recompute_boxes = recompute

    def _transform_with_crowd(self, dataset_dict, transforms, image_shape):
        """detectron2's steps (transform, instances, tight boxes, drop empty) on every annotation, crowd included."""
        annos = dataset_dict.pop("annotations")
        crowd = torch.tensor([bool(a.get("iscrowd", 0)) for a in annos])
        annos = [utils.transform_instance_annotations(dict(a, iscrowd=0), transforms, image_shape,
                                                      keypoint_hflip_indices=self.keypoint_hflip_indices)
                 for a in annos]
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.instance_mask_format)
        if self.recompute_boxes and instances.has("gt_masks"):
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        instances.set(CROWD_FIELD, crowd)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)


def _recompute_boxes(cfg) -> bool:
    # Rotation (and any other geometric transform) moves a box's corners off the object; detectron2
    # v0.6 recomputes boxes from masks only when cropping. Tight boxes come from the masks.
    return bool(cfg.MODEL.MASK_ON)


def _annotation_mapper(cfg, augmentations) -> FetalHeartDatasetMapper:
    mapper = FetalHeartDatasetMapper(cfg, is_train=True, augmentations=augmentations,
                                     recompute_boxes=_recompute_boxes(cfg))
    mapper.keep_crowd = cfg.MODEL.get("CROWD_IGNORE_IOU", 0.0) > 0
    return mapper


def build_train_mapper(cfg) -> DatasetMapper:
    """Training: photometric augmentation, enhancement, resize with scale jitter, flip/rotation."""
    return _annotation_mapper(cfg, train_augmentations(cfg))


def needs_full_resolution(cfg) -> bool:
    """Whether inference also needs the enhanced frame at its original resolution (``image_full``): two-step
    refinement cropping the original frame (MODEL.REFINE.SOURCE original, fetalheart.modeling.refine)."""
    refine = cfg.MODEL.get("REFINE")
    return bool(refine is not None and refine.ENABLED and refine.SOURCE == "original")


class FullResolutionMapper(DatasetMapper):
    """The test mapper, plus ``image_full``: the frame with only the enhancement applied (no resize)."""

    def __init__(self, cfg):
        super().__init__(cfg, is_train=False, augmentations=test_augmentations(cfg))
        self.enhance = T.AugmentationList(enhancement_augmentation(cfg))

    def __call__(self, dataset_dict):
        out = super().__call__(dataset_dict)
        aug = T.AugInput(utils.read_image(dataset_dict["file_name"], format=self.image_format))
        self.enhance(aug)
        out["image_full"] = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return out


def build_test_mapper(cfg) -> DatasetMapper:
    """Evaluation/prediction: enhancement and the fixed test resize, no annotations needed."""
    if needs_full_resolution(cfg):
        return FullResolutionMapper(cfg)
    return DatasetMapper(cfg, is_train=False, augmentations=test_augmentations(cfg))


def build_full_resolution_mapper(cfg) -> DatasetMapper:
    """Annotated frames at their original resolution with the enhancement only (step 2's training crops)."""
    return _annotation_mapper(cfg, enhancement_augmentation(cfg))


def build_val_loss_mapper(cfg) -> DatasetMapper:
    """Validation loss: annotations kept (losses need them) but no random augmentation."""
    return _annotation_mapper(cfg, test_augmentations(cfg))
