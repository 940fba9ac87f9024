"""Initial weights are files the user provides: named by MODEL.INIT / MODEL.WEIGHTS, loaded by the real
checkpoint code (tested with small checkpoints made here), and a missing one is reported before anything runs."""

import pickle
import subprocess
import sys

import fetalheart._compat  # noqa: F401
from fetalheart.config import INIT_WEIGHTS, check_weights, load_cfg, local_weights_path
from fetalheart.modeling.load import COCO_HEAD_PREFIXES, load_initial_weights
from fetalheart.utils.errors import FetalHeartError

import pytest
import torch
from detectron2.modeling import build_model

from tests.test_matterport_targets import SMALL

BASE = "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"
SCRATCH = "FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))  # detectron2's download cache (iopath)
    return tmp_path / "cache"


def test_missing_model_zoo_file_says_where_to_get_it_and_where_to_put_it(cache):
    cfg = load_cfg(BASE)
    with pytest.raises(FetalHeartError) as err:
        check_weights(cfg)
    msg = str(err.value)
    target = cache / "detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl"
    assert "https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/" \
           "model_final_f10217.pkl" in msg and str(target) in msg and "MODEL.INIT scratch" in msg and "\n" not in msg
    assert local_weights_path(cfg.MODEL.WEIGHTS) == target
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    check_weights(cfg)  # where detectron2 looks, so it is found (and never downloaded)


def test_missing_local_file_names_its_source(tmp_path):
    cfg = load_cfg(BASE, ["MODEL.WEIGHTS", str(tmp_path / "coco.pkl")])
    with pytest.raises(FetalHeartError, match="file not found: .*coco.pkl .*COCO-pretrained.*dl.fbaipublicfiles.com"):
        check_weights(cfg)
    check_weights(cfg, resuming=True)  # a run resuming from its own checkpoint loads no initial weights


def test_scratch_with_weights_is_refused_and_scratch_needs_nothing():
    check_weights(load_cfg(SCRATCH))
    with pytest.raises(FetalHeartError, match="MODEL.INIT scratch starts from random weights"):
        check_weights(load_cfg(SCRATCH, ["MODEL.WEIGHTS", "some.pth"]))


def _small(num_classes=10, init="coco", weights="", seed=0):
    cfg = load_cfg(BASE, [*SMALL, "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes), "MODEL.INIT", init,
                          "MODEL.WEIGHTS", weights], freeze=False)
    torch.manual_seed(seed)
    return cfg, build_model(cfg)


def _zoo_pkl(path, model):
    """A checkpoint in detectron2's model-zoo .pkl format (numpy arrays, an __author__)."""
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "fetalheart test"}, f)


@pytest.mark.parametrize("coco_classes", [80, 10])
def test_coco_init_loads_everything_but_the_class_specific_predictors(tmp_path, coco_classes):
    _, coco = _small(coco_classes, seed=1)
    _zoo_pkl(tmp_path / "coco.pkl", coco)
    cfg, model = _small(10, "coco", str(tmp_path / "coco.pkl"))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    dropped = load_initial_weights(model, cfg)
    assert sorted(dropped) == sorted(k for k in coco.state_dict() if k.startswith(COCO_HEAD_PREFIXES))
    loaded, theirs = model.state_dict(), coco.state_dict()
    for k, v in loaded.items():
        if k.startswith(COCO_HEAD_PREFIXES):  # re-initialised for our classes, even when the shapes match
            torch.testing.assert_close(v, fresh[k])
        elif k in theirs and "pixel_" not in k:
            torch.testing.assert_close(v, theirs[k])
    assert not torch.equal(loaded["backbone.bottom_up.res2.0.conv1.weight"], fresh["backbone.bottom_up.res2.0.conv1.weight"])


def test_imagenet_init_loads_a_backbone_and_refuses_a_detector(tmp_path):
    _, donor = _small(10, seed=1)
    backbone = {k: v for k, v in donor.state_dict().items() if k.startswith("backbone.bottom_up.")}
    torch.save({"model": backbone}, tmp_path / "r18.pth")
    cfg, model = _small(10, "imagenet", str(tmp_path / "r18.pth"))
    head_before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    assert load_initial_weights(model, cfg) == []
    torch.testing.assert_close(model.backbone.bottom_up.stem.conv1.weight, donor.backbone.bottom_up.stem.conv1.weight)
    torch.testing.assert_close(model.roi_heads.box_predictor.cls_score.weight, head_before)
    _zoo_pkl(tmp_path / "detector.pkl", donor)
    cfg, model = _small(10, "imagenet", str(tmp_path / "detector.pkl"))
    with pytest.raises(FetalHeartError, match="MODEL.INIT imagenet needs a backbone"):
        load_initial_weights(model, cfg)
    cfg, model = _small(10, "coco", str(tmp_path / "r18.pth"))
    with pytest.raises(FetalHeartError, match="MODEL.INIT coco needs a whole detector"):
        load_initial_weights(model, cfg)


def test_a_damaged_weights_file_is_one_line(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    cfg, model = _small(10, "coco", str(tmp_path / "bad.pkl"))
    with pytest.raises(FetalHeartError, match="cannot load MODEL.WEIGHTS"):
        load_initial_weights(model, cfg)


def test_train_net_reports_missing_weights_before_anything_runs(tmp_path, cache):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", "configs/study/model14.yaml",
                           "DATASETS.ROOT", str(tmp_path / "nowhere"), "OUTPUT_DIR", str(out), "MODEL.DEVICE", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "fetalheart downloads nothing" in proc.stderr and INIT_WEIGHTS["coco"] in proc.stderr
    assert not out.exists()  # no config.yaml, no dataset registered, nothing enhanced


def test_run_study_and_run_grid_report_missing_weights_before_the_first_stage(tmp_path, cache):
    from fetalheart.pipeline.grid import GridOptions, load_grid, run_grid
    from fetalheart.pipeline.study import StudyPlan, run_study

    (tmp_path / "labelme").mkdir()
    plan = StudyPlan(output=tmp_path / "study", labelme=tmp_path / "labelme", only=[14], quiet=True)
    with pytest.raises(FetalHeartError, match="is not on this machine"):
        run_study(plan, log=lambda _line: None)
    assert not (tmp_path / "study").exists()  # not even the output folder: no stage ran
    runs = load_grid("configs/study_grid.yaml", tmp_path / "grid", None)
    with pytest.raises(FetalHeartError, match="is not on this machine"):
        run_grid(runs[:1], out_dir=tmp_path / "grid", options=GridOptions(progress_every=0), log=lambda _line: None)
    assert not (tmp_path / "grid").exists()
