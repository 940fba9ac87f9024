"""The U-Net family (segmentation_models_pytorch) behind detectron2's meta-architecture interface."""

import json
import math
import subprocess
import sys
from pathlib import Path

from fetalheart.config import get_cfg, load_cfg, set_epoch_length
from fetalheart.utils.errors import FetalHeartError

import numpy as np
import pytest
import torch
from _evaluation_helpers import synthetic_record, write_eval
from detectron2.structures import BitMasks, Instances, PolygonMasks

from tests._train_helpers import make_toy_coco

REPO = Path(__file__).resolve().parent.parent
SMP_CONFIG = "configs/FetalHeart-SMP.yaml"
ARCHS = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "PAN", "DeepLabV3", "DeepLabV3Plus")
ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet-b0", "efficientnet-b1", "efficientnet-b3",
            "efficientnet-b4", "efficientnet-b5", "efficientnet-b7", "mobilenet_v2")


def _model(**keys):
    import fetalheart.modeling.smp  # noqa: F401  (registers SMPSegmentor)

    from detectron2.modeling import build_model

    cfg = load_cfg(SMP_CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.SMP.ENCODER", "resnet18",
                                *[str(x) for kv in keys.items() for x in kv]], freeze=False)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def _sample(h=70, w=100):
    inst = Instances((h, w))
    inst.gt_classes = torch.tensor([0, 2, 0])
    inst.gt_masks = PolygonMasks([[np.array([10, 10, 40, 10, 40, 40, 10, 40.])], [np.array([50, 20, 90, 20, 90, 60.])],
                                  [np.array([60, 5, 70, 5, 70, 15, 60, 15.])]])
    image = torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
    return {"image": image, "instances": inst, "height": h, "width": w}


def test_targets_losses_and_instances():
    model, cfg = _model()
    x = _sample()
    images = model.preprocess_image([x])
    assert images.tensor.shape == (1, 1, 96, 128)  # grey, padded to the encoder's stride 32
    t = model.targets([x], images)
    bits = BitMasks.from_polygon_masks(x["instances"].gt_masks, 70, 100).tensor
    assert torch.equal(t[0, 0, :70, :100].bool(), bits[0] | bits[2])  # the class's union of instances
    assert torch.equal(t[0, 2, :70, :100].bool(), bits[1]) and t[0, 1, :70, :100].sum() == 0
    assert (t[0, :, 70:, :] == -1).all() and (t[0, :, :, 100:] == -1).all()  # padding: ignored by the losses
    model.train()
    losses = model([x])
    assert set(losses) == {"loss_bce", "loss_dice"} and all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.net.encoder.conv1.weight.grad is not None and model.net.encoder.conv1.weight.shape[1] == 1
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": x["image"], "height": 140, "width": 200}])
    assert out["sem_seg"].shape == (cfg.MODEL.ROI_HEADS.NUM_CLASSES, 140, 200)  # at the original resolution
    inst = out["instances"]
    assert inst.image_size == (140, 200) and len(inst) > 0 and inst.pred_masks.shape[1:] == (140, 200)
    assert torch.all(inst.scores[:-1] >= inst.scores[1:]) and inst.scores.min() >= 0.5  # mean prob of p >= 0.5


def test_encoder_weights_come_from_a_local_file_only(tmp_path):
    import segmentation_models_pytorch as smp

    enc = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    torch.save(enc.state_dict(), tmp_path / "resnet18.pth")
    model, _ = _model(**{"MODEL.SMP.ENCODER_WEIGHTS": str(tmp_path / "resnet18.pth")})
    # smp's own rule for a 1-channel input: the pretrained first convolution summed over its 3 channels
    assert torch.allclose(model.net.encoder.conv1.weight, enc.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.net.encoder.layer1[0].conv1.weight, enc.layer1[0].conv1.weight)
    with pytest.raises(FetalHeartError, match="nothing is downloaded.*torch.save"):
        _model(**{"MODEL.SMP.ENCODER_WEIGHTS": "imagenet"})
    with pytest.raises(FetalHeartError, match="file not found: /nowhere/r18.pth"):
        _model(**{"MODEL.SMP.ENCODER_WEIGHTS": "/nowhere/r18.pth"})
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(FetalHeartError, match="does not fit encoder resnet18"):
        _model(**{"MODEL.SMP.ENCODER_WEIGHTS": str(tmp_path / "bad.pth")})


def test_config_checks_and_epoch_length():
    with pytest.raises(FetalHeartError, match="ADAM is the U-Net family"):
        load_cfg("configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml", ["SOLVER.OPTIMIZER", "ADAM"])
    with pytest.raises(FetalHeartError, match="SCORE_RULE"):
        load_cfg(SMP_CONFIG, ["MODEL.SMP.SCORE_RULE", "median"])
    with pytest.raises(FetalHeartError, match="ARCH 'Unet3D'"):
        _model(**{"MODEL.SMP.ARCH": "Unet3D"})
    cfg = load_cfg(SMP_CONFIG, freeze=False)
    assert cfg.SOLVER.STEPS_PER_EPOCH == 0 and cfg.TEST.EVAL_PERIOD == 0
    assert set_epoch_length(cfg, 85) and cfg.SOLVER.STEPS_PER_EPOCH == 22  # ceil(85 / batch 4)
    assert cfg.SOLVER.MAX_ITER == 20 * 22 and cfg.TEST.EVAL_PERIOD == 22 and cfg.SOLVER.CHECKPOINT_PERIOD == 110
    assert not set_epoch_length(cfg, 10)  # set once
    assert not set_epoch_length(get_cfg(), 10)  # a config with a fixed epoch length is left alone


def test_grid_lists_the_99_combinations(tmp_path):
    from fetalheart.pipeline.grid import describe, load_grid

    runs = load_grid("configs/smp_grid.yaml", tmp_path, None)
    rows = [describe(r) for r in runs]
    assert len(rows) == 99 == len({r["run"] for r in rows})
    assert {r["model"] for r in rows} == {f"{a} {e}" for a in ARCHS for e in ENCODERS}
    assert all(r["optimizer"] == "ADAM" and r["max_iter"] == "20 epochs" for r in rows)
    proc = subprocess.run([sys.executable, "tools/run_grid.py", "configs/smp_grid.yaml", "-o", str(tmp_path), "--dry-run"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "99 runs" in proc.stdout and "DeepLabV3Plus efficientnet-b4" in proc.stdout


def test_families_share_one_grid_and_one_comparison(tmp_path):
    from fetalheart.evaluation.compare import compare, comparison_markdown, load_runs
    from fetalheart.pipeline.grid import describe, load_grid

    rows = [describe(r) for r in load_grid("configs/families_demo_grid.yaml", tmp_path, None)]
    assert [r["model"] for r in rows] == ["Mask R-CNN R50-FPN", "Unet resnet34"]
    assert [r["protocol"] for r in rows] == ["recommended", "study-faithful"]  # the U-Net keeps its recipe
    recs = [synthetic_record(i, f"v{i}", {0: (80, 100, 90)}) for i in range(6)]
    worse = [synthetic_record(i, f"v{i}", {0: (40, 100, 90)}) for i in range(6)]
    mask = {"enhance": "original", "momentum": 0.9, "study_model_id": 2, "study_name": "model02 Original m0.9",
            "family": "Mask R-CNN R50-FPN", "fold": -1}
    unet = {"enhance": "original", "momentum": None, "study_model_id": 0, "study_name": "", "family": "Unet resnet34",
            "fold": -1}
    paths = [write_eval(tmp_path / "a", recs, {**mask, "seed": 0}), write_eval(tmp_path / "b", worse, {**unet, "seed": 0}),
             write_eval(tmp_path / "c", worse, {**unet, "seed": 1})]
    table = compare(load_runs(paths), baseline="2")  # study model 2
    by_model = {r["model"]: r for r in table["rows"]}
    assert set(by_model) == {"model02 Original m0.9", "Unet resnet34 original"}
    u = by_model["Unet resnet34 original"]
    assert u["n_seeds"] == 2 and math.isnan(u["momentum"]) and u["family"] == "Unet resnet34"  # NaN momenta group
    assert u["baseline"] == "model02 Original m0.9" and u["test"]["mean_diff"] < 0
    assert "| Unet resnet34 |" in comparison_markdown(table)


@pytest.mark.slow
def test_one_combination_trains_evaluates_and_predicts_end_to_end(tmp_path):
    """U-Net ResNet-18 (grid run 1) through run_grid, tools/evaluate.py and tools/predict.py, on CPU, tiny."""
    toy = make_toy_coco(tmp_path / "toy", n_train=3, n_val=2, size=64)
    opts = ["DATASETS.ROOT", str(toy), "DATASETS.TRAIN", "('toy_train',)", "DATASETS.TEST", "('toy_val',)",
            "MODEL.DEVICE", "cpu", "SOLVER.EPOCHS", "2", "SOLVER.IMS_PER_BATCH", "2", "INPUT.MAX_SIZE_TRAIN", "64",
            "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0", "INPUT.ENHANCE", "clahe",
            "EVAL.BOOTSTRAP_SAMPLES", "20"]
    grid = subprocess.run([sys.executable, "tools/run_grid.py", "configs/smp_grid.yaml", "-o", str(tmp_path / "runs"),
                           "--only", "1", "-q", *opts], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert grid.returncode == 0, grid.stderr[-3000:] + grid.stdout[-2000:]
    run = tmp_path / "runs" / "unet-resnet18"
    for f in ("config.yaml", "env.json", "metrics.json", "model_final.pth", "model_best.pth"):
        assert (run / f).is_file(), f
    cfg = load_cfg(run / "config.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "SMPSegmentor" and cfg.INPUT.ENHANCE == "clahe"
    assert cfg.SOLVER.STEPS_PER_EPOCH == 2 and cfg.SOLVER.MAX_ITER == 4  # 3 frames at batch 2: 2 steps an epoch
    rows = [json.loads(line) for line in (run / "metrics.json").read_text().splitlines()]
    epochs = [r for r in rows if "train_epoch_loss" in r]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("val_total_loss" in r for r in epochs)
    assert json.loads((run / "env.json").read_text())["enhance"] == "clahe"
    from fetalheart.cli.evaluate import main as evaluate_main
    from fetalheart.cli.predict import main as predict_main

    weights = ["MODEL.WEIGHTS", str(run / cfg.TEST.REPORT_CHECKPOINT)]
    assert cfg.TEST.REPORT_CHECKPOINT == "model_best.pth"
    assert evaluate_main(["--config-file", str(run / "config.yaml"), "-q", *weights]) == 0
    rep = json.loads((run / "eval" / "toy_val" / "report.json").read_text())
    assert rep["n_images"] == 2 and rep["run"]["family"] == "Unet resnet18" and math.isnan(rep["run"]["momentum"] or
                                                                                            math.nan)
    assert (run / "eval" / "toy_val" / "plots" / "loss_curves.png").is_file()
    out = tmp_path / "pred"
    assert predict_main(["--config-file", str(run / "config.yaml"), *weights, str(toy / "images"), "-o", str(out),
                         "--quiet", "--score-thresh", "0.5"]) == 0
    assert len(list((out / "labelme").glob("*.json"))) == 5 and (out / "coco_results.json").is_file()


def test_the_models_enhancement_is_applied_as_for_mask_rcnn():
    from fetalheart.data.mapper import build_test_mapper, build_train_mapper
    from fetalheart.enhance.augmentation import EnhanceAugmentation, PhotometricThenEnhance

    cfg = load_cfg(SMP_CONFIG, ["INPUT.ENHANCE", "ahe+clahe"])
    train = build_train_mapper(cfg).augmentations.augs
    # the recipe's brightness/contrast jitter runs before the enhancement, in one step, then the geometry
    assert isinstance(train[0], PhotometricThenEnhance) and train[0].enhancer.spec == "ahe+clahe"
    assert any(isinstance(a, EnhanceAugmentation) for a in build_test_mapper(cfg).augmentations.augs)
    assert build_train_mapper(cfg).use_instance_mask  # the per-class targets are made from the instance masks
