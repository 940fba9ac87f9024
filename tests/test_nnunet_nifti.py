"""NIfTI volumes -> LabelMe/COCO with patient groups; our folds -> an nnU-Net v2 raw dataset and back."""

import json
from pathlib import Path

from fetalheart.annotations.nifti import NiftiOptions, frames, import_nifti, parse_label_map
from fetalheart.annotations.nnunet import CASES_FILE, ExportOptions, export_nnunet, import_nnunet, label_map
from fetalheart.annotations.rle import encode_mask
from fetalheart.cli.evaluate import main as evaluate_main
from fetalheart.cli.export_nnunet import main as export_main
from fetalheart.cli.import_nifti import main as nifti_main
from fetalheart.cli.import_nnunet import main as import_main
from fetalheart.utils.errors import FetalHeartError

import cv2
import nibabel as nib
import numpy as np
import pytest

CAMUS = "1=LV,2=Myocardium,3=LA"


def _camus(root: Path, patients: int = 6) -> Path:
    """CAMUS-like volumes: per patient ED and ES (x, y) frames and a 2-D+t half sequence, labels 1/2/3."""
    rng = np.random.default_rng(0)
    for pid in range(1, patients + 1):
        d = root / f"patient{pid:04d}"
        d.mkdir(parents=True)
        for name, t in (("4CH_ED", 1), ("4CH_ES", 1), ("4CH_half_sequence", 3)):
            img = rng.integers(0, 255, (48, 40, t), dtype=np.uint8)  # (x, y, t): 48 wide, 40 high
            lab = np.zeros((48, 40, t), np.uint8)
            lab[5:20, 4:20] = 1  # LV
            lab[5:20, 20:24] = 2  # myocardium beside it
            lab[25:45, 10:30] = 3  # LA
            lab[2, 2] = 9  # a value the label map does not name
            squeeze = (lambda a: a[..., 0]) if t == 1 else (lambda a: a)
            nib.save(nib.Nifti1Image(squeeze(img), np.eye(4)), d / f"patient{pid:04d}_{name}.nii.gz")
            nib.save(nib.Nifti1Image(squeeze(lab), np.eye(4)), d / f"patient{pid:04d}_{name}_gt.nii.gz")
    (root / "patient0001" / "patient0001_2CH_ED.nii.gz").write_bytes(
        (root / "patient0001" / "patient0001_4CH_ED.nii.gz").read_bytes())  # an image without labels
    return root


def test_nifti_import_frames_label_map_and_patient_groups(tmp_path):
    src = _camus(tmp_path / "camus")
    s = import_nifti([src], tmp_path / "out", NiftiOptions(labels=CAMUS))
    assert s["volumes"] == 18 and s["patients"] == 6 and s["frames"] == 6 * 5
    assert s["shapes"] == 30 * 3 and s["unnamed_label_pixels"] == {9: 30} and len(s["unpaired_images"]) == 1
    doc = json.loads((tmp_path / "out" / "labelme" / "patient0002" / "patient0002_4CH_half_sequence_000002.json").read_text())
    assert doc["imageHeight"] == 40 and doc["imageWidth"] == 48  # (x, y) shown with y down the rows
    assert {sh["label"] for sh in doc["shapes"]} == {"LV", "Myocardium", "LA"}
    lv = next(sh for sh in doc["shapes"] if sh["label"] == "LV")
    assert lv["shape_type"] == "mask" and lv["points"] == [[5, 4], [19, 19]]
    # through labelme2coco (the CLI): frames of one patient never on both sides; masks exact
    coco = tmp_path / "coco"
    assert nifti_main([str(src), "-o", str(tmp_path / "out2"), "--labels", CAMUS, "--coco", str(coco), "--folds", "3",
                       "-q"]) == 0
    for k in range(3):
        tr, va = (json.loads((coco / "annotations" / f"fold{k}_{side}.json").read_text()) for side in ("train", "val"))
        assert {i["group"] for i in tr["images"]}.isdisjoint({i["group"] for i in va["images"]})
        assert len({i["group"] for i in va["images"]}) == 2
    ann = next(a for a in tr["annotations"] if a["category_id"] == 3)  # LA: 20 x 20 pixels
    assert ann["area"] == 400 and [c["name"] for c in tr["categories"]] == ["LV", "Myocardium", "LA"]


def test_nifti_options_and_bad_input(tmp_path):
    assert parse_label_map("100=LV, 200=Myocardium") == {100: "LV", 200: "Myocardium"}
    for bad in ("LV", "0=bg", "1=LV,2=LV"):
        with pytest.raises(FetalHeartError):
            parse_label_map(bad)
    vol = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    out = list(frames(vol, np.zeros_like(vol), NiftiOptions(axis=0)))
    assert len(out) == 2 and out[0][1].shape == (4, 3) and out[1][1].max() == 255 and out[0][1].min() == 0
    assert len(list(frames(vol, np.zeros_like(vol), NiftiOptions(every=2)))) == 2  # slices 0 and 2 of 4
    with pytest.raises(FetalHeartError, match="no image/label pairs"):
        import_nifti([tmp_path], tmp_path / "o")
    src = _camus(tmp_path / "c", patients=1)
    import_nifti([src], tmp_path / "o2")
    with pytest.raises(FetalHeartError, match="--overwrite"):
        import_nifti([src], tmp_path / "o2")


def test_label_map_of_overlapping_structures():
    image = {"id": 1, "height": 20, "width": 20}
    big = np.zeros((20, 20), bool)
    big[2:18, 2:18] = True
    small = np.zeros((20, 20), bool)
    small[15:19, 15:19] = True  # 9 of its 16 pixels lie inside the big structure
    crowd = np.zeros((20, 20), bool)
    crowd[0, 0:5] = True
    anns = [{"category_id": 5, "segmentation": encode_mask(small), "iscrowd": 0},
            {"category_id": 1, "segmentation": encode_mask(big), "iscrowd": 0},
            {"category_id": 1, "segmentation": encode_mask(crowd), "iscrowd": 1}]
    labels, lost = label_map(image, anns, 10, {1: 0, 5: 4})
    assert lost == 9 and (labels[small] == 5).all() and (labels[big & ~small] == 1).all()
    assert (labels[crowd] == 11).all() and labels[19, 0] == 0  # ignore = the highest label; background 0


def _check_nnunet_format(raw: Path, pre: Path, n_folds: int) -> dict:
    """nnU-Net v2's raw format (documentation/dataset_format.md), checked fact by fact."""
    ds = json.loads((raw / "dataset.json").read_text())
    assert set(ds) >= {"channel_names", "labels", "numTraining", "file_ending"}
    assert ds["channel_names"] == {"0": "ultrasound"} and ds["file_ending"] == ".png"
    values = sorted(ds["labels"].values())
    assert ds["labels"]["background"] == 0 and values == list(range(len(values)))  # consecutive from 0
    cases = sorted(p.name[: -len(".png")] for p in (raw / "labelsTr").glob("*.png"))
    assert ds["numTraining"] == len(cases) == len(list((raw / "imagesTr").glob("*.png")))
    for case in cases:
        img = cv2.imread(str(raw / "imagesTr" / f"{case}_0000.png"), cv2.IMREAD_UNCHANGED)
        lab = cv2.imread(str(raw / "labelsTr" / f"{case}.png"), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2 and img.dtype == np.uint8 and lab.shape == img.shape and lab.dtype == np.uint8
        assert set(np.unique(lab).tolist()) <= set(values)
    splits = json.loads((pre / "splits_final.json").read_text())
    assert len(splits) == n_folds and all(set(s) == {"train", "val"} for s in splits)
    assert sorted(c for s in splits for c in s["val"]) == cases  # every case in exactly one val fold
    for s in splits:
        assert set(s["train"]).isdisjoint(s["val"]) and sorted(s["train"] + s["val"]) == cases
    return ds


def test_nnunet_export_of_3_folds_and_import_of_label_maps_evaluates(tmp_path, capsys):
    src = _camus(tmp_path / "camus")
    coco = tmp_path / "coco"
    assert nifti_main([str(src), "-o", str(tmp_path / "lm"), "--coco", str(coco), "--folds", "3", "-q"]) == 0
    assert export_main([str(coco), "-o", str(tmp_path / "nnunet"), "--dataset-id", "502"]) == 0
    printed = capsys.readouterr().out
    raw = tmp_path / "nnunet" / "nnUNet_raw" / "Dataset502_FetalHeart"
    pre = tmp_path / "nnunet" / "nnUNet_preprocessed" / "Dataset502_FetalHeart"
    assert "30 cases, 3 classes, 3 fold(s)" in printed
    ds = _check_nnunet_format(raw, pre, 3)
    assert list(ds["labels"]) == ["background", "LV", "Myocardium", "LA"]
    cases = json.loads((raw / CASES_FILE).read_text())["cases"]
    splits = json.loads((pre / "splits_final.json").read_text())
    groups = [{cases[c]["group"] for c in s["val"]} for s in splits]
    assert all(g.isdisjoint({cases[c]["group"] for c in s["train"]}) for g, s in zip(groups, splits, strict=True))
    # nnU-Net's validation output of fold 0: here its own training labels (a perfect prediction)
    pred = tmp_path / "fold_0_validation"
    pred.mkdir()
    for case in splits[0]["val"]:
        (pred / f"{case}.png").write_bytes((raw / "labelsTr" / f"{case}.png").read_bytes())
    assert import_main([str(pred), "--export", str(tmp_path / "nnunet"), "-o", str(tmp_path / "r.json"), "-q"]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert len(results) == 3 * len(splits[0]["val"]) and {r["score"] for r in results} == {1.0}
    out = tmp_path / "eval"
    assert evaluate_main(["--predictions", str(tmp_path / "r.json"), "--ground-truth",
                          str(coco / "annotations" / "fold0_val.json"), "--bootstrap", "20", "-o", str(out), "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["overall"]["dice_macro"]["mean"] == pytest.approx(1.0) and rep["coco"]["segm"]["AP"] == pytest.approx(100)
    # the same maps evaluated straight from the folder, named by case id: not frame stems -> a clear error
    assert evaluate_main(["--predictions", str(pred), "--ground-truth", str(coco / "annotations" / "fold0_val.json"),
                          "-o", str(tmp_path / "e2"), "-q"]) == 2
    assert "name no ground-truth frame" in capsys.readouterr().err
    with pytest.raises(FetalHeartError, match="--overwrite"):
        export_nnunet(coco, tmp_path / "nnunet", ExportOptions(502))
    with pytest.raises(FetalHeartError, match="no fetalheart_cases.json"):
        import_nnunet(pred, tmp_path)
