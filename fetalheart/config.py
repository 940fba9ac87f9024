"""Every config key fetalheart adds to detectron2's CfgNode, documented in one place.

Detectron2 idiom (cf. ``add_pointrend_config``): ``add_fetalheart_config(cfg)`` adds keys with
defaults; YAML files and ``KEY VALUE`` overrides then set them. ``finalize_cfg`` applies the one
derived setting: the study's epochs are translated into iterations here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fetalheart.classes import NUM_CLASSES
from fetalheart.enhance.config import add_enhance_config
from fetalheart.utils.errors import FetalHeartError

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

#: Folder holding the shipped YAML configs (repo checkout or installed share).
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def add_fetalheart_config(cfg: CN) -> None:
    """Add fetalheart's keys (with defaults) to a detectron2 config, in place."""
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES

    # --- Preprocessing: the study's variable. Part of the model: saved in config.yaml, so
    # evaluation and prediction apply exactly what training applied.
    # INPUT.ENHANCE (spec, e.g. "ahe+clahe"), ENHANCE_MASK ("none" | "auto": inside the fan only),
    # ENHANCE_CACHE_DIR (disk cache for bd; "" = OUTPUT_DIR/enhance_cache when training) and
    # ENHANCE_PARAMS.* (clip limit, tiles, bd kernel size, ...): defined by the enhance package.
    add_enhance_config(cfg)

    # --- Augmentation that respects anatomy. Flipping mirrors a four-chamber view (left and right
    # heart swap sides), so it is off by default; everything else is small and switchable.
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.AUG = CN()
    cfg.INPUT.AUG.ROTATION = 0.0  # max |angle| in degrees; 0 disables
    cfg.INPUT.AUG.SCALE = (1.0, 1.0)  # random rescale range applied after the resize
    cfg.INPUT.AUG.BRIGHTNESS = 0.0  # intensity factor in [1-b, 1+b]; 0 disables
    cfg.INPUT.AUG.CONTRAST = 0.0  # contrast factor in [1-c, 1+c]; 0 disables
    cfg.INPUT.AUG.GAMMA = 0.0  # gamma in [1-g, 1+g]; 0 disables
    cfg.INPUT.AUG.SPECKLE = 0.0  # std of multiplicative Gaussian noise; 0 disables

    # --- Schedule in the study's words. EPOCHS > 0 sets MAX_ITER = EPOCHS * STEPS_PER_EPOCH
    # (the study: 20 x 500 = 10,000 at batch 1). EPOCHS = 0 uses SOLVER.MAX_ITER as given.
    cfg.SOLVER.EPOCHS = 0
    cfg.SOLVER.STEPS_PER_EPOCH = 500
    cfg.SOLVER.EARLY_STOP_PATIENCE = 0  # evaluations without improvement before stopping; 0 = off
    cfg.SOLVER.BEST_CHECKPOINT_METRIC = "segm/AP"  # EvalHook key tracked for model_best.pth; "" = off
    cfg.SOLVER.BEST_CHECKPOINT_MODE = "max"

    # --- Data: a labelme2coco output folder. Each DATASETS.TRAIN/TEST name "<prefix>_<split>" not
    # registered yet is registered from ROOT/annotations/<split>.json with images in ROOT/images.
    cfg.DATASETS.ROOT = ""

    # --- Validation: loss terms on the validation set every TEST.EVAL_PERIOD (0 = one epoch).
    cfg.TEST.VAL_LOSS = True
    cfg.TEST.EVAL_DURING_TRAINING = True  # False: no COCO/IoU evaluation in training (evaluate afterwards)
    cfg.TEST.VAL_LOSS_PERIOD = 0  # iterations between validation-loss passes; 0 = TEST.EVAL_PERIOD
    cfg.TEST.VAL_LOSS_MAX_IMAGES = 0  # 0 = whole validation set

    # --- Evaluation (fetalheart.evaluation).
    cfg.EVAL = CN()
    cfg.EVAL.SCORE_THRESH = 0.5  # predicted masks with score >= this count for IoU/Dice
    cfg.EVAL.BOOTSTRAP_SAMPLES = 1000  # for 95% confidence intervals over images
    cfg.EVAL.BOUNDARY_METRICS = False  # HD95 / ASSD per class (slower)
    cfg.EVAL.SEED = 0

    # --- Which model of the study this is (Table 5: 1..22), for reports and comparisons.
    cfg.STUDY = CN()
    cfg.STUDY.MODEL_ID = 0
    cfg.STUDY.NAME = ""

    cfg.SEED = 0  # detectron2 uses -1 = random; fixed by default for reproducible runs

    import torch

    # detectron2 defaults to "cuda"; choosing what is there lets the same YAML run on a laptop.
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def get_cfg() -> CN:
    """detectron2's defaults plus fetalheart's keys."""
    cfg = _d2_get_cfg()
    add_fetalheart_config(cfg)
    return cfg


def resolve_config_path(config_file: str | os.PathLike) -> Path:
    """Find a config: as given, else relative to the shipped ``configs/`` folder."""
    path = Path(config_file)
    if path.is_file():
        return path
    shipped = CONFIGS_DIR / path
    if shipped.is_file():
        return shipped
    raise FetalHeartError(f"config file not found: {config_file}")


def load_cfg(config_file: str | os.PathLike | None = None, opts: Sequence[str] = (), base: str | None = None,
             freeze: bool = True, cpu_fallback: bool = False) -> CN:
    """Load a YAML config (``_BASE_`` chains allowed) and ``KEY VALUE`` overrides, then finalize.

    ``base`` replaces the file's own ``_BASE_`` chain: the study's model files carry only what
    differs between models, so ``run_grid`` can train them on the from-scratch base instead.
    ``cpu_fallback``: a config saved on a GPU machine says "cuda"; evaluation and prediction on a
    machine without one run on the CPU instead of failing (training still fails: it would be slow).
    """
    cfg = get_cfg()
    try:
        if base:
            cfg.merge_from_file(str(resolve_config_path(base)))
        if config_file:
            path = resolve_config_path(config_file)
            if base:
                own = yaml.safe_load(path.read_text()) or {}
                own.pop("_BASE_", None)
                cfg.merge_from_other_cfg(CN(own))
            else:
                cfg.merge_from_file(str(path))
        cfg.merge_from_list(list(opts))
        if cpu_fallback and cfg.MODEL.DEVICE.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                cfg.MODEL.DEVICE = "cpu"
    except (KeyError, AssertionError, ValueError) as exc:
        # yacs says "Non-existent config key: X" for unknown keys; keep its wording, on one line.
        raise FetalHeartError(f"bad config: {str(exc).strip()}") from None
    finalize_cfg(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def finalize_cfg(cfg: CN) -> CN:
    """Derive MAX_ITER and periods from the epoch settings; check what would fail later."""
    if cfg.SOLVER.EPOCHS > 0:
        cfg.SOLVER.MAX_ITER = int(cfg.SOLVER.EPOCHS * cfg.SOLVER.STEPS_PER_EPOCH)
    if cfg.TEST.EVAL_PERIOD <= 0:
        cfg.TEST.EVAL_PERIOD = int(cfg.SOLVER.STEPS_PER_EPOCH)
    if cfg.INPUT.RANDOM_FLIP not in ("none", "horizontal", "vertical"):
        raise FetalHeartError(f"INPUT.RANDOM_FLIP must be none|horizontal|vertical, got {cfg.INPUT.RANDOM_FLIP!r}")
    if cfg.MODEL.DEVICE.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FetalHeartError(
                f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA GPU is available here; use MODEL.DEVICE cpu"
            )
    from fetalheart.enhance import parse_spec

    parse_spec(cfg.INPUT.ENHANCE)  # an unknown spec fails now, not after an hour of training
    return cfg
