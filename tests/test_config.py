"""Configs: the base matches the study, the 22 model files match Table 5, errors are one line."""

from pathlib import Path

from fetalheart.config import CONFIGS_DIR, load_cfg
from fetalheart.utils.errors import FetalHeartError

import pytest

BASE = "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"
SCRATCH = "FetalHeart-MaskRCNN-R50-FPN-scratch.yaml"


def test_base_is_the_study_setup():
    cfg = load_cfg(BASE)
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.MASK_ON
    assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.IMS_PER_BATCH == 1 and cfg.SOLVER.MOMENTUM == 0.9
    assert cfg.SOLVER.MAX_ITER == 20 * 500 == 10_000  # epochs translated in finalize_cfg
    assert cfg.INPUT.MAX_SIZE_TRAIN == 512 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 10
    assert cfg.INPUT.RANDOM_FLIP == "none"
    assert cfg.TEST.EVAL_PERIOD == 500


def test_scratch_variant_uses_groupnorm_and_no_weights():
    cfg = load_cfg(SCRATCH)
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.INIT == "scratch" and cfg.MODEL.TRAIN_LAYERS == "all"


def test_epochs_zero_keeps_max_iter():
    cfg = load_cfg(SCRATCH, ["SOLVER.EPOCHS", "0", "SOLVER.MAX_ITER", "7"])
    assert cfg.SOLVER.MAX_ITER == 7


def test_study_model_files_match_table5():
    from fetalheart.enhance import SPECS_OF_STUDY

    for n in range(1, 23):
        cfg = load_cfg(CONFIGS_DIR / "study" / f"model{n:02d}.yaml")
        assert cfg.STUDY.MODEL_ID == n
        assert cfg.SOLVER.MOMENTUM == (0.7 if n % 2 else 0.9)
        assert cfg.INPUT.ENHANCE == SPECS_OF_STUDY[(n - 1) // 2]
    assert load_cfg(CONFIGS_DIR / "study" / "model14.yaml").INPUT.ENHANCE == "ahe+clahe"


def test_base_override_swaps_the_base_chain():
    cfg = load_cfg(CONFIGS_DIR / "study" / "model14.yaml", base=SCRATCH)
    assert cfg.MODEL.RESNETS.NORM == "GN" and cfg.INPUT.ENHANCE == "ahe+clahe" and cfg.STUDY.MODEL_ID == 14


@pytest.mark.parametrize("opts, words", [
    (["SOLVER.NO_SUCH_KEY", "1"], "Non-existent key: SOLVER.NO_SUCH_KEY"),
    (["MODEL.DEVICE", "cuda"], "no CUDA GPU"),
    (["INPUT.ENHANCE", "ahe+sharpen"], "sharpen"),
])
def test_bad_config_is_one_line_error(opts, words, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI, even on a GPU box
    with pytest.raises(FetalHeartError) as err:
        load_cfg(SCRATCH, opts)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file():
    with pytest.raises(FetalHeartError, match="not found"):
        load_cfg(Path("nope.yaml"))


# ----------------------------------------------------------------- study-faithful vs recommended

STUDY_FAITHFUL = {  # key: (value, source): the study's statements, else Matterport's defaults
    "MODEL.RESNETS.DEPTH": 50, "MODEL.MASK_ON": True, "SOLVER.BASE_LR": 0.01, "SOLVER.IMS_PER_BATCH": 1,
    "SOLVER.MOMENTUM": 0.9, "SOLVER.MAX_ITER": 10_000, "SOLVER.STEPS": (), "SOLVER.WARMUP_ITERS": 0,
    "SOLVER.WEIGHT_DECAY": 1e-4, "SOLVER.WEIGHT_DECAY_MODE": "matterport", "SOLVER.CLIP_GRADIENTS.ENABLED": True,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model", "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 5.0,
    "MODEL.RPN.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0), "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": (10.0, 10.0, 5.0, 5.0),
    "MODEL.RPN.SMOOTH_L1_BETA": 1.0, "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 1.0, "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": False,
    "MODEL.RPN.PRE_NMS_SCOPE": "image", "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 6000, "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.CROWD_IGNORE_IOU": 0.001, "MODEL.ROI_HEADS.SAMPLING": "ratio", "MODEL.ROI_HEADS.LEVEL_ASSIGNMENT": "round",
    "MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE": 56, "MODEL.INIT": "coco", "MODEL.TRAIN_LAYERS": "heads",
    "MODEL.BACKBONE.FREEZE_AT": 5, "MODEL.PROPOSAL_GENERATOR.NAME": "FetalHeartRPN",
    "MODEL.ROI_HEADS.NAME": "FetalHeartROIHeads", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 200,
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": 0.33, "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.3,
    "TEST.DETECTIONS_PER_IMAGE": 100, "EVAL.SCORE_THRESH": 0.7, "EVAL.STUDY_MAP_MIN_SCORE": 0.7,
    "EVAL.STUDY_MAP_MODE": "matterport", "MODEL.RPN.POST_NMS_TOPK_TRAIN": 2000, "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "INPUT.MAX_SIZE_TRAIN": 512, "INPUT.SQUARE_SIZE": 512, "MODEL.META_ARCHITECTURE": "FetalHeartRCNN",
    "INPUT.AUG.ROTATION": 0.0, "INPUT.AUG.SCALE": (1.0, 1.0), "INPUT.AUG.BRIGHTNESS": 0.0, "INPUT.AUG.CONTRAST": 0.0,
    "INPUT.RANDOM_FLIP": "none", "DATALOADER.FILTER_EMPTY_ANNOTATIONS": True, "STUDY.PROTOCOL": "study-faithful",
    "INPUT.ENHANCE": "ahe+clahe", "STUDY.MODEL_ID": 14, "MODEL.RESNETS.NORM": "FrozenBN",
}


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("layers, freeze_at", [("heads", 5), ("5+", 4), ("4+", 3), ("3+", 2), ("all", 0)])
def test_matterport_training_layers_set_freeze_at(layers, freeze_at):
    assert load_cfg(BASE, ["MODEL.TRAIN_LAYERS", layers]).MODEL.BACKBONE.FREEZE_AT == freeze_at
    assert load_cfg(BASE, ["MODEL.TRAIN_LAYERS", "", "MODEL.BACKBONE.FREEZE_AT", "1"]).MODEL.BACKBONE.FREEZE_AT == 1
    with pytest.raises(FetalHeartError, match="MODEL.TRAIN_LAYERS must be one of heads"):
        load_cfg(BASE, ["MODEL.TRAIN_LAYERS", "2+"])


def test_named_initialisation_fills_an_empty_weights_key():
    from fetalheart.config import INIT_WEIGHTS

    assert load_cfg(SCRATCH, ["MODEL.INIT", "imagenet"]).MODEL.WEIGHTS == INIT_WEIGHTS["imagenet"]
    assert load_cfg(BASE).MODEL.WEIGHTS == INIT_WEIGHTS["coco"]
    with pytest.raises(FetalHeartError, match="MODEL.INIT must be one of"):
        load_cfg(BASE, ["MODEL.INIT", "kinetics"])


def test_print_config_shows_the_resolved_matterport_keys():
    from fetalheart.config import format_config

    text = format_config(load_cfg(CONFIGS_DIR / "study" / "model14.yaml"), "matterport")
    for line in ("SOLVER.CLIP_GRADIENTS.CLIP_TYPE 'full_model'", "SOLVER.WEIGHT_DECAY_MODE 'matterport'",
                 "MODEL.RPN.BBOX_REG_WEIGHTS (10.0, 10.0, 5.0, 5.0)", "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT False",
                 "MODEL.INIT 'coco'", "MODEL.TRAIN_LAYERS 'heads'", "MODEL.RPN.PRE_NMS_TOPK_TRAIN 6000"):
        assert line in text.splitlines()
    some = format_config(load_cfg(BASE), "SOLVER.CLIP_GRADIENTS").splitlines()
    assert "SOLVER.CLIP_GRADIENTS.CLIP_TYPE 'full_model'" in some and len(some) == 4
    with pytest.raises(FetalHeartError, match="no config key"):
        format_config(load_cfg(BASE), "SOLVER.NOPE")


def test_model14_resolves_to_the_study_faithful_values():
    cfg = load_cfg(CONFIGS_DIR / "study" / "model14.yaml")
    got = {k: _get(cfg, k) for k in STUDY_FAITHFUL}
    assert got == STUDY_FAITHFUL
    assert [Path(p).name for p in cfg.STUDY.CONFIG_FILES] == ["model14.yaml"]  # the chain it came from


@pytest.mark.parametrize("epochs, steps, warmup, checkpoint", [
    (5, (1875, 2250), 125, 625), (20, (7500, 9000), 500, 2500), (40, (15000, 18000), 1000, 5000)])
def test_recommended_schedule_scales_with_epochs(epochs, steps, warmup, checkpoint):
    cfg = load_cfg(CONFIGS_DIR / "study" / "model14.yaml", ["SOLVER.EPOCHS", str(epochs)],
                   overlays=["overlays/recommended.yaml"])
    assert cfg.SOLVER.MAX_ITER == epochs * 500 and cfg.SOLVER.STEPS == steps
    assert cfg.SOLVER.WARMUP_ITERS == warmup and cfg.SOLVER.CHECKPOINT_PERIOD == checkpoint
    assert cfg.TEST.EVAL_PERIOD == 500  # one epoch
    assert cfg.STUDY.PROTOCOL == "recommended" and not cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert cfg.INPUT.AUG.ROTATION == 10.0 and cfg.INPUT.ENHANCE == "ahe+clahe"  # the model file survives
    assert Path(cfg.STUDY.CONFIG_FILES[-1]).name == "recommended.yaml"


def test_overlay_with_base_is_refused(tmp_path):
    bad = tmp_path / "o.yaml"
    bad.write_text("_BASE_: x.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(FetalHeartError, match="must not have _BASE_"):
        load_cfg(BASE, overlays=[bad])


def test_bad_fraction_is_one_line():
    with pytest.raises(FetalHeartError, match="STEP_FRACTIONS"):
        load_cfg(BASE, ["SOLVER.STEP_FRACTIONS", "(0.5, 1.5)"])


def test_device_is_chosen_where_the_config_is_used(monkeypatch):
    from fetalheart.config import get_cfg

    import torch

    assert get_cfg().MODEL.DEVICE == "auto"  # adding keys probes no hardware
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_cfg(BASE).MODEL.DEVICE == "cpu"
    assert load_cfg(BASE, ["MODEL.DEVICE", "cuda"], cpu_fallback=True).MODEL.DEVICE == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load_cfg(BASE).MODEL.DEVICE == "cuda"


def test_class_names_must_match_num_classes():
    with pytest.raises(FetalHeartError, match="CLASS_NAMES has 2 names"):
        load_cfg(BASE, ["MODEL.CLASS_NAMES", "('LV', 'Myocardium')"])
    cfg = load_cfg(BASE, ["MODEL.CLASS_NAMES", "('LV', 'Myocardium')", "MODEL.ROI_HEADS.NUM_CLASSES", "2"])
    from fetalheart.config import class_names

    assert class_names(cfg) == ("LV", "Myocardium") and len(class_names(load_cfg(BASE))) == 10
