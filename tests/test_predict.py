"""predict -> LabelMe -> labelme2coco round trip; video; and a real tiny model through the CLIs."""

import json

from fetalheart.classes import CLASS_NAMES
from fetalheart.inference.export import mask_polygons, prediction_labelme
from fetalheart.inference.predict import PredictOptions, run_prediction
from fetalheart.inference.predictor import Prediction, parse_classes
from fetalheart.utils.errors import FetalHeartError

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest


def ellipse(h, w, center, axes, angle=0):
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, center, axes, angle, 0, 360, 1, -1)
    return m.astype(bool)


class FakePredictor:
    """Returns fixed masks for every frame: the round trip must reproduce them."""

    def __init__(self, h=96, w=128):
        self.masks = np.stack([ellipse(h, w, (40, 40), (25, 18), 20), ellipse(h, w, (95, 55), (20, 30)),
                               ellipse(h, w, (60, 85), (12, 6))])
        self.classes = np.array([0, 3, 9])
        self.scores = np.array([0.95, 0.8, 0.6])
        self.calls = 0

    def __call__(self, frames):
        self.calls += 1
        return [Prediction(self.masks, self.classes, self.scores) for _ in frames]


def write_images(folder, n=2, h=96, w=128):
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full((h, w, 3), 30 + 40 * i, np.uint8)
        cv2.imwrite(str(folder / f"clip{i}_{i:06d}.png"), img)
    return folder


def test_mask_polygons_and_classes():
    m = ellipse(64, 64, (32, 32), (20, 12))
    (poly,) = mask_polygons(m)
    rle = mask_util.frPyObjects([poly.ravel().tolist()], 64, 64)
    back = mask_util.decode(mask_util.merge(rle)).astype(bool)
    assert (back & m).sum() / (back | m).sum() > 0.9
    two = m.copy()
    two[:5, :5] = True
    assert len(mask_polygons(two)) == 2
    assert parse_classes("la, Aorta,spine") == [0, 8, 9]
    assert parse_classes(None) is None
    with pytest.raises(FetalHeartError):
        parse_classes("LA,kidney")


def _reraster_iou(polys, mask):
    h, w = mask.shape
    back = mask_util.decode(mask_util.merge(mask_util.frPyObjects([p.ravel().tolist() for p in polys], h, w)))
    return (back.astype(bool) & mask).sum() / (back.astype(bool) | mask).sum()


def test_mask_polygons_reraster_at_least_as_exactly_as_scikit_image():
    # Why mask_polygons keeps its 4x OpenCV trace: scikit-image's marching squares at the mask's own
    # resolution (level 0.5, COCO coordinates, the same Douglas-Peucker tolerance) cuts every pixel
    # corner, so its polygons re-rasterise (pycocotools, as the evaluation does) less exactly.
    from skimage import measure

    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(60):
        m = ellipse(96, 128, (int(rng.integers(30, 98)), int(rng.integers(30, 66))),
                    (int(rng.integers(3, 28)), int(rng.integers(3, 28))), float(rng.uniform(0, 180)))
        contours = [measure.approximate_polygon(c, 0.5) for c in measure.find_contours(np.pad(m, 1).astype(float), 0.5)]
        sk = [c[:, ::-1] - 0.5 for c in contours if len(c) >= 4]  # (row, col) -> (x, y); undo pad, pixel centre
        ours.append(_reraster_iou(mask_polygons(m), m))
        theirs.append(_reraster_iou(sk, m))
    assert np.mean(ours) >= np.mean(theirs) and min(ours) >= min(theirs)
    assert np.mean(ours) > 0.99


def test_labelme_document_group_ids():
    m = ellipse(64, 64, (20, 20), (8, 8)) | ellipse(64, 64, (50, 50), (6, 6))
    doc = prediction_labelme(Prediction(m[None], np.array([2]), np.array([0.7])), "x.png", 64, 64)
    assert [s["label"] for s in doc["shapes"]] == ["LV", "LV"]
    assert doc["shapes"][0]["group_id"] == doc["shapes"][1]["group_id"] == 1


def test_round_trip_labelme2coco(tmp_path):
    from fetalheart.cli.labelme2coco import main as labelme2coco

    images = write_images(tmp_path / "imgs")
    fake = FakePredictor()
    out = tmp_path / "pred"
    summary = run_prediction(fake, [images], out, PredictOptions(batch=2), quiet=True)
    assert summary["frames"] == 2 and summary["instances"] == 6 and fake.calls == 1
    assert len(list((out / "overlays").glob("*.png"))) == 2
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert len(coco["images"]) == 2 and {a["category_id"] for a in coco["annotations"]} == {1, 4, 10}
    results = json.loads((out / "coco_results.json").read_text())
    assert len(results) == 6 and all("score" in r for r in results)

    # labelme's own loader accepts our files
    from labelme import LabelFile

    lf = LabelFile(str(out / "labelme" / "clip0_000000.json"))
    assert sorted(s["label"] for s in lf.shapes) == ["LA", "RV", "Spine"]

    # ... and labelme2coco turns them back into (nearly) the same masks
    assert labelme2coco([str(out / "labelme"), "-o", str(tmp_path / "ds"), "--val-fraction", "0.5", "-q"]) == 0
    anns, n_images = [], 0
    for split in ("train", "val"):
        doc = json.loads((tmp_path / "ds" / "annotations" / f"{split}.json").read_text())
        n_images += len(doc["images"])
        anns += doc["annotations"]
    assert n_images == 2 and len(anns) == 6
    for a in anns:
        k = CLASS_NAMES.index(next(c["name"] for c in coco["categories"] if c["id"] == a["category_id"]))
        seg = a["segmentation"]
        rle = mask_util.merge(mask_util.frPyObjects(seg, 96, 128)) if isinstance(seg, list) else seg
        m = mask_util.decode(rle).astype(bool)
        ref = fake.masks[list(fake.classes).index(k)]
        assert (m & ref).sum() / (m | ref).sum() > 0.9

    # refuses to overwrite
    with pytest.raises(FetalHeartError):
        run_prediction(fake, [images], out, quiet=True)


def test_video_overlay_and_frames(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for i in range(6):
        writer.write(np.full((96, 128, 3), 20 * i, np.uint8))
    writer.release()
    out = tmp_path / "pred"
    s = run_prediction(FakePredictor(), [path], out, PredictOptions(batch=2, every=2, video_labelme=True), quiet=True)
    assert s["frames"] == 3
    cap = cv2.VideoCapture(str(out / "overlays" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace").lower()
    assert fourcc in ("avc1", "h264"), fourcc  # the one video writer: H.264
    cap.release()
    assert sorted(p.name for p in (out / "labelme").glob("*.json")) == [
        "clip_000000.json", "clip_000002.json", "clip_000004.json"]
    doc = json.loads((out / "labelme" / "clip_000002.json").read_text())
    assert (out / "labelme" / doc["imagePath"]).resolve() == (out / "frames" / "clip_000002.png").resolve()
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert [im["frame_index"] for im in coco["images"]] == [0, 2, 4]


@pytest.mark.slow
def test_real_tiny_model_evaluate_and_predict(tmp_path, capsys):
    """An untrained R50-FPN at 128 px: the evaluate and predict CLIs run end to end."""
    from fetalheart.cli.evaluate import main as evaluate_main
    from fetalheart.cli.predict import main as predict_main
    from fetalheart.config import load_cfg

    from tests._train_helpers import save_untrained_run

    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for i in range(2):
        img = np.full((96, 128, 3), 25, np.uint8)
        cv2.rectangle(img, (10, 10), (50, 60), (200, 200, 200), -1)
        cv2.imwrite(str(root / "images" / f"f{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"f{i}.png", "height": 96, "width": 128})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 3, "bbox": [10, 10, 41, 51], "area": 2091,
                     "iscrowd": 0, "segmentation": [[10, 10, 51, 10, 51, 61, 10, 61]]})
    from fetalheart.classes import coco_categories

    doc = {"images": images, "annotations": anns, "categories": coco_categories()}
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").write_text(json.dumps(doc))
    # small and few: 128 px, 50 proposals (the 4conv box head on 1000 proposals costs ~10 s/img on CPU)
    model_opts = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.DEVICE", "cpu",
                  "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                  "TEST.DETECTIONS_PER_IMAGE", "5", "INPUT.ENHANCE", "clahe"]
    opts = [*model_opts, "DATASETS.ROOT", str(root), "DATASETS.TRAIN", "('fhtest_train',)",
            "DATASETS.TEST", "('fhtest_val',)", "EVAL.SCORE_THRESH", "0.0"]
    cfg_file = "configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"
    cfg = load_cfg(cfg_file, opts)
    run = save_untrained_run(tmp_path / "run", cfg)
    (run / "metrics.json").write_text("\n".join(json.dumps(
        {"iteration": it, "total_loss": 3.0 - it / 10, "loss_mask": 0.7, "val_total_loss": 3.2 - it / 12,
         "val_loss_mask": 0.75}) for it in (9, 19, 29)) + "\n")
    weights = ["MODEL.WEIGHTS", str(run / "model_final.pth")]
    assert evaluate_main(["--config-file", cfg_file, "--quiet", "--bootstrap", "50", *opts, *weights]) == 0
    ev = run / "eval" / "fhtest_val"
    for f in ("report.json", "report.md", "per_class.csv", "per_image.csv", "env.json", "config.yaml",
              "plots/per_class.png", "plots/confusion_matrix.png", "plots/loss_curves.png"):
        assert (ev / f).is_file(), f
    rep = json.loads((ev / "report.json").read_text())
    assert rep["n_images"] == 2 and rep["run"]["enhance"] == "clahe"
    assert rep["per_class"]["LV"]["dice"]["n"] == 2  # LV (COCO id 3) present in both images
    # a second run refuses to overwrite
    assert evaluate_main(["--config-file", cfg_file, "--quiet", *opts, *weights]) == 2
    assert "--overwrite" in capsys.readouterr().err

    out = tmp_path / "pred"
    assert predict_main(["--config-file", cfg_file, *weights, str(root / "images"), "-o", str(out), "--quiet",
                         *model_opts, "--score-thresh", "0.0", "--batch", "2"]) == 0
    assert len(list((out / "labelme").glob("*.json"))) == 2
    assert (out / "predictions_coco.json").is_file()
