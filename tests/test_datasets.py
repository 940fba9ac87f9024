"""detectron2 registration of converter output: metadata, idempotence, loading crowd + RLE."""

from __future__ import annotations

from fetalheart.annotations.convert import ConvertOptions, convert
from fetalheart.classes import CLASS_NAMES, COLORS
from fetalheart.data.datasets import DATASETS_ENV, register_all, register_coco_dataset, register_split_dir
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest
from _labelme_helpers import heart_shapes, mask_shape, poly, write_labelme

DatasetCatalog = pytest.importorskip("detectron2.data").DatasetCatalog
MetadataCatalog = pytest.importorskip("detectron2.data").MetadataCatalog


@pytest.fixture
def dataset(tmp_path):
    crop = np.zeros((30, 40), bool)
    crop[5:25, 5:35] = True
    shapes = heart_shapes() + [mask_shape("PV", crop, 100.5, 60.2), poly("__ignore__", [[0, 90], [20, 90], [10, 119]])]
    for v in ("a", "b"):
        for i in range(3):
            write_labelme(tmp_path / "in" / f"{v}_{i:03d}.json", shapes)
    out = tmp_path / "datasets" / "fh"
    report = convert([tmp_path / "in"], out, ConvertOptions(val_fraction=0.5), quiet=True)
    assert report["mask_format"] == "bitmask"
    return out


def test_register_split_dir_and_load(dataset, monkeypatch):
    monkeypatch.setenv(DATASETS_ENV, str(dataset.parent))
    names = register_split_dir("fhtest1", "fh")  # relative: looked up under $FETALHEART_DATASETS
    try:
        assert names == ["fhtest1_train", "fhtest1_val"]
        meta = MetadataCatalog.get("fhtest1_train")
        assert list(meta.thing_classes) == list(CLASS_NAMES)
        assert [tuple(c) for c in meta.thing_colors] == list(COLORS)
        assert meta.evaluator_type == "coco" and meta.json_file.endswith("train.json")
        dicts = DatasetCatalog.get("fhtest1_train")
        assert len(dicts) == 3
        anns = dicts[0]["annotations"]
        assert sum(a["iscrowd"] for a in anns) == 10
        assert any(isinstance(a["segmentation"], dict) for a in anns if not a["iscrowd"])
        # the mapper path used in training: crowd filtered, RLE decoded as bitmask
        from detectron2.data import detection_utils as utils

        inst = utils.annotations_to_instances([a for a in anns if not a["iscrowd"]], (120, 160), mask_format="bitmask")
        assert inst.gt_masks.tensor.shape == (4, 120, 160) and inst.gt_masks.tensor.sum() > 0
        # idempotent with the same files; refused with other files
        register_split_dir("fhtest1", dataset)
        with pytest.raises(FetalHeartError, match="already registered"):
            register_coco_dataset("fhtest1_train", dataset / "annotations" / "val.json", dataset / "images")
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_register_all_and_missing_folder(dataset, tmp_path):
    names = register_all(dataset.parent)
    try:
        assert names == ["fh_train", "fh_val"]
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
    with pytest.raises(FetalHeartError, match="not found"):
        register_split_dir("nope", tmp_path / "empty")
