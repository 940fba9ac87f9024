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
