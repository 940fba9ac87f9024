"""Every config key fetalheart adds to detectron2's CfgNode, documented in one place.

Detectron2 idiom (cf. ``add_pointrend_config``): ``add_fetalheart_config(cfg)`` adds keys with
defaults and nothing else (no hardware probing: a saved config must not depend on the machine it
was written on); YAML files, overlays and ``KEY VALUE`` overrides then set them. ``finalize_cfg``
derives what follows from other keys: the schedule from the study's epochs, and ``MODEL.DEVICE``
"auto" from the machine the config is used on.

Two protocols ship (docs/training.md, "Configuration"): the *study-faithful* base
(``Base-FetalHeart-MaskRCNN-R50-FPN.yaml``, every value sourced) and the *recommended* overlay
(``overlays/recommended.yaml``). ``STUDY.PROTOCOL`` names the one a run used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.classes import NUM_CLASSES
from fetalheart.enhance.config import add_enhance_config
from fetalheart.utils.errors import FetalHeartError

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

#: Folder holding the shipped YAML configs (repo checkout or installed share).
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

#: Protocol name -> the overlays it adds (the study-faithful protocol is the configs' own base).
PROTOCOL_OVERLAYS: dict[str, tuple[str, ...]] = {"study-faithful": (), "recommended": ("overlays/recommended.yaml",)}


#: MODEL.INIT choices ("" = MODEL.WEIGHTS loaded as detectron2 loads it).
INIT_CHOICES = ("", "imagenet", "coco", "scratch")
#: The file each named initialisation uses when MODEL.WEIGHTS is empty: detectron2's model zoo, in
#: detectron2's download cache (local_weights_path). fetalheart downloads nothing (check_weights).
INIT_WEIGHTS = {
    "imagenet": "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    "coco": "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
}
INIT_WHAT = {"imagenet": "ImageNet-pretrained ResNet-50 (MSRA)",
             "coco": "COCO-pretrained Mask R-CNN R50-FPN 3x, detectron2 model zoo"}
#: Matterport's train(layers=...) -> detectron2's MODEL.BACKBONE.FREEZE_AT (stem + res2..res<k> frozen).
TRAIN_LAYERS_FREEZE_AT = {"heads": 5, "5+": 4, "4+": 3, "3+": 2, "all": 0}
#: Allowed values of the target-assignment keys, default (detectron2's) first.
TARGET_CHOICES = {"MODEL.RPN.PRE_NMS_SCOPE": ("level", "image"), "MODEL.ROI_HEADS.SAMPLING": ("fill", "ratio"),
                  "MODEL.ROI_HEADS.LEVEL_ASSIGNMENT": ("floor", "round"),
                  "SOLVER.WEIGHT_DECAY_MODE": ("sgd", "matterport"),
                  "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": ("value", "norm", "full_model")}


#: The keys through which the study-faithful base matches (or names) Matterport's defaults: the rows of
#: docs/matterport_differences.md (tests/test_matterport_table.py) and ``train_net.py --print-config matterport``.
MATTERPORT_KEYS = (
    "MODEL.INIT", "MODEL.WEIGHTS", "MODEL.TRAIN_LAYERS", "MODEL.BACKBONE.FREEZE_AT", "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.NORM", "MODEL.RESNETS.STRIDE_IN_1X1", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
    "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.OFFSET",
    "MODEL.RPN.IOU_THRESHOLDS", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.RPN.POSITIVE_FRACTION",
    "MODEL.RPN.BBOX_REG_WEIGHTS", "MODEL.RPN.SMOOTH_L1_BETA", "MODEL.RPN.NMS_THRESH", "MODEL.RPN.PRE_NMS_SCOPE",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "MODEL.RPN.PRE_NMS_TOPK_TEST", "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "MODEL.CROWD_IGNORE_IOU", "MODEL.ROI_HEADS.IOU_THRESHOLDS",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "MODEL.ROI_HEADS.SAMPLING",
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "MODEL.ROI_HEADS.LEVEL_ASSIGNMENT", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "MODEL.ROI_BOX_HEAD.NUM_FC",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", "MODEL.ROI_MASK_HEAD.NUM_CONV", "MODEL.ROI_MASK_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.SQUARE_SIZE",
    "INPUT.RANDOM_FLIP", "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "SOLVER.IMS_PER_BATCH", "SOLVER.BASE_LR",
    "SOLVER.MOMENTUM", "SOLVER.MAX_ITER", "SOLVER.STEPS", "SOLVER.WARMUP_ITERS", "SOLVER.WEIGHT_DECAY",
    "SOLVER.WEIGHT_DECAY_MODE", "SOLVER.CLIP_GRADIENTS.ENABLED", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "TEST.DETECTIONS_PER_IMAGE", "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "EVAL.SCORE_THRESH", "EVAL.STUDY_MAP_MIN_SCORE",
)


def protocol_overlays(protocol: str) -> list[str]:
    """The overlays a protocol name stands for; an unknown name is a one-line error."""
    if protocol not in PROTOCOL_OVERLAYS:
        raise FetalHeartError(f"protocol must be {' or '.join(PROTOCOL_OVERLAYS)}, got {protocol!r}")
    return list(PROTOCOL_OVERLAYS[protocol])


#: The study-faithful base: what a protocol's defaults are resolved on (protocol_default).
STUDY_FAITHFUL_BASE = "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"


@functools.cache
def _protocol_cfg(protocol: str) -> CN:
    return load_cfg(STUDY_FAITHFUL_BASE, overlays=protocol_overlays(protocol))


def protocol_default(key: str) -> str:
    """A key's value under each protocol, as help texts and docs state it ("0.7 study-faithful,
    0.5 recommended", or one value when both agree): read from the configs, never written twice."""
    values = {p: _get(_protocol_cfg(p), key) for p in PROTOCOL_OVERLAYS}
    if len(set(map(repr, values.values()))) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{v} {p}" for p, v in values.items())


def add_fetalheart_config(cfg: CN) -> None:
    """Add fetalheart's keys (with defaults) to a detectron2 config, in place.

    Every key added here keys the training runs automatically (a changed value retrains the model);
    a key that only decides how, where or how fast a run trains, or how it is evaluated, belongs in
    ``fetalheart.pipeline.keys.RUN_ONLY_KEYS`` (docs/data_and_caching.md).
    """
    for add in (_add_model_keys, _add_init_keys, _add_target_keys, _add_input_keys, _add_augmentation_keys,
                _add_solver_keys, _add_dataset_keys, _add_test_keys, _add_eval_keys, _add_study_keys, add_smp_config,
                add_small_structures_config):
        add(cfg)


#: The meta-architecture of the U-Net family (fetalheart.modeling.smp): any segmentation_models_pytorch model.
SMP_META_ARCHITECTURE = "SMPSegmentor"


def add_smp_config(cfg: CN) -> None:
    """MODEL.SMP and the family-neutral training keys: the U-Net family on segmentation_models_pytorch.

    ``MODEL.META_ARCHITECTURE "SMPSegmentor"`` selects the family: train_net, evaluate, predict and the
    grid take it from the config (configs/smp/). Defaults are the companion thesis's recipe (docs/model_families.md).
    """
    cfg.MODEL.SMP = CN()
    cfg.MODEL.SMP.ARCH = "Unet"  # a segmentation_models_pytorch class: Unet, UnetPlusPlus, MAnet, Linknet, FPN, ...
    cfg.MODEL.SMP.ENCODER = "resnet34"  # an smp encoder name (resnet18..101, efficientnet-b0..b7, mobilenet_v2, tu-*)
    # "" = random initialisation; else a LOCAL file with the encoder's state dict (.pth/.pt/.safetensors).
    # Nothing is downloaded ("imagenet" is refused with where to put the file instead).
    cfg.MODEL.SMP.ENCODER_WEIGHTS = ""
    cfg.MODEL.SMP.IN_CHANNELS = 1  # grey input: the frame's channels averaged (ultrasound is grey)
    cfg.MODEL.SMP.LOSS_WEIGHTS = (0.5, 0.5)  # BCE and soft Dice, on one sigmoid channel per class
    # Semantic -> instances (fetalheart.annotations.components): a pixel is class c when its probability
    # is >= PROB_THRESH; each 8-connected component is one instance, scored by SCORE_RULE ("mean" or
    # "max" probability inside it); components under MIN_AREA pixels (original resolution) are dropped.
    cfg.MODEL.SMP.PROB_THRESH = 0.5
    cfg.MODEL.SMP.SCORE_RULE = "mean"
    cfg.MODEL.SMP.MIN_AREA = 0
    # "SGD": detectron2's build_optimizer (Mask R-CNN); "ADAM": torch.optim.Adam(BASE_LR, WEIGHT_DECAY),
    # the U-Net recipe (fetalheart.engine.smp_trainer).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # > 0: stop training after this many seconds of wall time (model_final.pth saved where it stopped),
    # so models of two families can be compared at one time budget. 0 = off.
    cfg.SOLVER.MAX_SECONDS = 0  # whole seconds
    # The checkpoint of a run that run_study evaluates and compare_runs reports. The U-Net recipe
    # selects model_best.pth (lowest validation loss); Mask R-CNN reports model_final.pth (docs/training.md, "Model selection").
    cfg.TEST.REPORT_CHECKPOINT = "model_final.pth"


#: MODEL.ROI_MASK_HEAD.PASTE.MODE values (fetalheart.modeling.paste).
PASTE_MODES = ("bilinear", "gaussian")
#: The step-2 refiner's default target classes: the small structures (valves and aorta), by name.
REFINE_DEFAULT_CLASSES = ("TV", "PV", "MV", "AV", "Ao")


def add_small_structures_config(cfg: CN) -> None:
    """MODEL.ROI_MASK_HEAD.PASTE and MODEL.REFINE: Gaussian-smoothed mask pasting and two-step refinement of
    small structures (docs/small_structures.md). Both off by default: the study pastes bilinearly, in one step."""
    p = cfg.MODEL.ROI_MASK_HEAD.PASTE = CN()
    # "bilinear": detectron2's paste (resize into the box, threshold 0.5). "gaussian": the resized soft mask is
    # blurred with sigma = a * box width + b (output pixels) before the threshold; (a, b) fitted on
    # DATASETS.TRAIN's ground truth per mask resolution and stored beside the model (mask_paste.json).
    p.MODE = "bilinear"
    p.SIGMA_GRID = tuple(round(0.25 * i, 2) for i in range(13))  # candidate sigmas, output pixels (0 .. 3)
    p.FIT_FILE = ""  # "" = mask_paste.json beside MODEL.WEIGHTS (else in OUTPUT_DIR)
    p.FIT_MAX_INSTANCES = 2000  # ground-truth instances the fit uses at most (evenly spaced over the split)
    r = cfg.MODEL.REFINE = CN()
    # Two-step refinement: each detection of CLASSES (names; classes absent from the model's label set are
    # ignored with a note) is cropped square around its step-1 mask, grown by MARGIN x the mask's longer
    # side on EACH side (so the side is (1 + 2 MARGIN) x the mask's), resized to SIZE x SIZE, segmented by a
    # step-2 network (segmentation_models_pytorch ARCH/ENCODER, random init), and its mask pasted back
    # through the crop box (PASTE applies, at SIZE cells): class, score and box of step 1 are kept.
    r.ENABLED = False
    # "detections": each step-1 detection of CLASSES is cropped and segmented again (class, score, box kept).
    # "heart": one crop around the heart (the union of step 1's confident detections of HEART_CLASSES,
    # MARGIN added) in which step 2 segments every class of CLASSES; its connected components (score = mean
    # probability) replace step 1's detections of those classes ("crop the heart, then segment at full size").
    r.MODE = "detections"
    r.CLASSES = REFINE_DEFAULT_CLASSES
    r.HEART_CLASSES = ("LA", "RA", "LV", "RV")  # heart mode: the classes whose detections (score >= 0.5) outline it
    r.SIZE = 64
    r.MARGIN = 0.15
    # Where the crop comes from: "original" = the frame at its original resolution, enhanced (the paper crops
    # the full-resolution image; a valve 3 px wide at a 160 px input is 8 px wide in a 429 px frame);
    # "input" = the model's resized input.
    r.SOURCE = "original"
    r.ARCH = "Unet"
    r.ENCODER = "resnet34"  # the paper's; resnet18 or mobilenet_v2 for quick CPU runs
    r.WEIGHTS = ""  # "" = refiner.pth beside MODEL.WEIGHTS (else in OUTPUT_DIR)
    t = r.TRAIN = CN()
    # Step 2 trains on ground-truth-centred crops of DATASETS.TRAIN (test-time resize and enhancement), the
    # centre moved by up to JITTER_CENTER x the side and the side scaled by 1 +- JITTER_SCALE, so it sees step
    # 1's localisation errors. Adam, BCE + soft Dice on the crop's class channel.
    t.ITERS = 1000
    t.BATCH_SIZE = 16
    t.BASE_LR = 1e-3
    t.JITTER_CENTER = 0.1
    t.JITTER_SCALE = 0.15
    t.MAX_SECONDS = 0  # stop after this many seconds (0 = ITERS only)


def _check_small_structures(cfg: CN) -> None:
    p, r = cfg.MODEL.ROI_MASK_HEAD.PASTE, cfg.MODEL.REFINE
    if p.MODE not in PASTE_MODES:
        raise FetalHeartError(f"MODEL.ROI_MASK_HEAD.PASTE.MODE must be one of {', '.join(PASTE_MODES)}, got {p.MODE!r}")
    if not p.SIGMA_GRID or min(p.SIGMA_GRID) < 0:
        raise FetalHeartError("MODEL.ROI_MASK_HEAD.PASTE.SIGMA_GRID must be a non-empty list of sigmas >= 0")
    if r.ENABLED and is_smp(cfg):
        raise FetalHeartError("MODEL.REFINE refines Mask R-CNN detections; the U-Net family has no boxes to refine")
    if r.SIZE < 8 or r.MARGIN < 0 or r.TRAIN.ITERS < 0 or r.TRAIN.BATCH_SIZE < 1 or r.TRAIN.MAX_SECONDS < 0:
        raise FetalHeartError("MODEL.REFINE: SIZE must be >= 8, MARGIN >= 0, TRAIN.ITERS >= 0, TRAIN.BATCH_SIZE >= 1, "
                              "TRAIN.MAX_SECONDS >= 0")
    if r.MODE not in ("detections", "heart"):
        raise FetalHeartError(f"MODEL.REFINE.MODE must be detections or heart, got {r.MODE!r}")
    if r.SOURCE not in ("original", "input"):
        raise FetalHeartError(f"MODEL.REFINE.SOURCE must be original or input, got {r.SOURCE!r}")
    if not 0 <= r.TRAIN.JITTER_CENTER < 1 or not 0 <= r.TRAIN.JITTER_SCALE < 1:
        raise FetalHeartError("MODEL.REFINE.TRAIN.JITTER_CENTER and JITTER_SCALE must lie in [0, 1)")


def _add_model_keys(cfg: CN) -> None:
    """MODEL: classes and device."""
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    # Class names in output order; () = the 10 structures of fetalheart.classes. Set from the
    # training dataset (labelme2coco's categories), so config.yaml carries the model's label set.
    cfg.MODEL.CLASS_NAMES = ()
    # "auto": the GPU when there is one, else the CPU, decided by finalize_cfg where the config is used.
    cfg.MODEL.DEVICE = "auto"


def _add_init_keys(cfg: CN) -> None:
    """MODEL.INIT and MODEL.TRAIN_LAYERS: where training starts and what it trains (Matterport's words)."""
    # --- Initialisation, a named choice (INIT_CHOICES): "imagenet" (an ImageNet-pretrained ResNet-50,
    # heads random), "coco" (COCO-pretrained Mask R-CNN R50-FPN, the class-specific predictors re-initialised
    # for our classes, as Matterport's samples load COCO weights excluding mrcnn_class_logits/bbox/mask),
    # "scratch" (random everywhere: MODEL.WEIGHTS must be empty). "" = load MODEL.WEIGHTS as detectron2 does.
    # MODEL.WEIGHTS names the file (a path, or detectron2:// in detectron2's download cache); fetalheart
    # downloads nothing, and a missing file is reported before any stage runs (check_weights).
    cfg.MODEL.INIT = ""
    # Matterport's train(layers=...): "heads" (RPN, FPN and heads; the ResNet frozen), "3+", "4+", "5+"
    # (ResNet stage 3/4/5 and up), "all". Sets MODEL.BACKBONE.FREEZE_AT (finalize_cfg); "" = FREEZE_AT as given.
    cfg.MODEL.TRAIN_LAYERS = ""


def _add_target_keys(cfg: CN) -> None:
    """How anchors and RoIs get their training targets: detectron2's defaults, Matterport's on request."""
    # --- Each default is detectron2's behaviour; the study-faithful base sets Matterport's
    # (docs/matterport_differences.md). The RPN options need MODEL.PROPOSAL_GENERATOR.NAME "FetalHeartRPN",
    # the RoI ones MODEL.ROI_HEADS.NAME "FetalHeartROIHeads" (fetalheart.modeling).
    # An anchor or RoI whose IoU with an ignore (iscrowd) region is >= this is never a negative (Matterport:
    # 0.001, build_rpn_targets and detection_targets_graph); 0 = ignore regions are left out of training
    # (detectron2's DatasetMapper drops them, so they train as background).
    cfg.MODEL.CROWD_IGNORE_IOU = 0.0
    # "level": PRE_NMS_TOPK_* per FPN level and NMS per level (detectron2); "image": the top PRE_NMS_TOPK_*
    # anchors of the whole image, one NMS across levels (Matterport's ProposalLayer, PRE_NMS_LIMIT 6000).
    cfg.MODEL.RPN.PRE_NMS_SCOPE = "level"
    # "fill": BATCH_SIZE_PER_IMAGE RoIs, negatives fill what positives leave (detectron2); "ratio":
    # negatives = int(positives / POSITIVE_FRACTION) - positives (Matterport's detection_targets_graph).
    cfg.MODEL.ROI_HEADS.SAMPLING = "fill"
    # FPN level of a RoI, 4 + log2(sqrt(area) / 224): "floor" (detectron2) or "round" (Matterport's tf.round).
    cfg.MODEL.ROI_HEADS.LEVEL_ASSIGNMENT = "floor"
    # > 0: mask targets come from each ground-truth mask resampled to this square inside its box first
    # (Matterport's mini-masks, MINI_MASK_SHAPE 56x56); 0 = from the full-resolution mask (detectron2).
    cfg.MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE = 0


def _add_input_keys(cfg: CN) -> None:
    """INPUT: the enhancement under study and Matterport's square padding."""
    # --- Preprocessing: the study's variable. Part of the model: saved in config.yaml, so
    # evaluation and prediction apply exactly what training applied.
    # INPUT.ENHANCE (spec, e.g. "ahe+clahe"), ENHANCE_MASK ("none" | "auto": inside the fan only),
    # ENHANCE_CACHE_DIR (disk cache for bd; "" = OUTPUT_DIR/enhance_cache when training) and
    # ENHANCE_PARAMS.* (clip limit, tiles, bd kernel size, ...): defined by the enhance package.
    add_enhance_config(cfg)
    # Matterport's "square" mode: after resizing the long side, pad to SQUARE_SIZE x SQUARE_SIZE
    # with black (needs MODEL.META_ARCHITECTURE "FetalHeartRCNN"). 0 = detectron2's padding to /32.
    cfg.INPUT.SQUARE_SIZE = 0


def _add_augmentation_keys(cfg: CN) -> None:
    """INPUT.RANDOM_FLIP and INPUT.AUG: augmentation that respects anatomy."""
    # --- Augmentation that respects anatomy. Flipping mirrors a four-chamber view (left and right
    # heart swap sides), so it is off by default; everything else is small and switchable.
    # Photometric terms (brightness, contrast, gamma, speckle) run BEFORE the enhancement under study.
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.AUG = CN()
    cfg.INPUT.AUG.ROTATION = 0.0  # max |angle| in degrees; 0 disables
    cfg.INPUT.AUG.SCALE = (1.0, 1.0)  # random rescale range applied after the resize
    cfg.INPUT.AUG.BRIGHTNESS = 0.0  # intensity factor in [1-b, 1+b]; 0 disables
    cfg.INPUT.AUG.CONTRAST = 0.0  # contrast factor in [1-c, 1+c]; 0 disables
    cfg.INPUT.AUG.GAMMA = 0.0  # gamma in [1-g, 1+g]; 0 disables
    cfg.INPUT.AUG.SPECKLE = 0.0  # std of multiplicative Gaussian noise; 0 disables


def _add_solver_keys(cfg: CN) -> None:
    """SOLVER: the schedule in the study's words, early stopping, best checkpoint."""
    # --- Schedule in the study's words. EPOCHS > 0 sets MAX_ITER = EPOCHS * STEPS_PER_EPOCH
    # (the study: 20 x 500 = 10,000 at batch 1) and derives, as fractions of MAX_ITER, the LR
    # steps, the warm-up and the checkpoint period. EPOCHS = 0 uses the absolute keys as given.
    cfg.SOLVER.EPOCHS = 0
    cfg.SOLVER.STEPS_PER_EPOCH = 500
    cfg.SOLVER.STEP_FRACTIONS = ()  # e.g. (0.75, 0.9): LR x GAMMA there; () = constant LR
    cfg.SOLVER.WARMUP_FRACTION = 0.0  # linear warm-up over this fraction of training
    cfg.SOLVER.CHECKPOINT_FRACTION = 0.25  # a checkpoint every quarter of training
    cfg.SOLVER.EARLY_STOP_PATIENCE = 0  # evaluations without improvement before stopping; 0 = off
    # model_best.pth: selected on DATASETS.TEST. Reporting numbers on that same split is optimistic:
    # the study pipeline evaluates model_final.pth (docs/training.md, "Model selection"). "" = off.
    cfg.SOLVER.BEST_CHECKPOINT_METRIC = ""
    cfg.SOLVER.BEST_CHECKPOINT_MODE = "max"
    # "sgd": detectron2's SGD weight decay WEIGHT_DECAY * w; "matterport": the gradient of Matterport's
    # L2 loss WEIGHT_DECAY * sum(w^2) / numel(w), i.e. 2 * WEIGHT_DECAY * w / numel(w), normalisation
    # layers excluded (fetalheart.engine.optimizer). SOLVER.CLIP_GRADIENTS.CLIP_TYPE may also be
    # "full_model": one L2 norm over all gradients, as Keras 2.x clipnorm.
    cfg.SOLVER.WEIGHT_DECAY_MODE = "sgd"


def _add_dataset_keys(cfg: CN) -> None:
    """DATASETS: a labelme2coco output folder and the fold."""
    # --- Data: a labelme2coco output folder. Each DATASETS.TRAIN/TEST name "<prefix>_<split>"
    # (split "train", "val", "fold<k>_train", "fold<k>_val") not registered yet is registered from
    # ROOT/annotations/<split>.json with images in ROOT/images.
    cfg.DATASETS.ROOT = ""
    cfg.DATASETS.FOLD = -1  # which cross-validation fold this run trains on; -1 = a plain split


def _add_test_keys(cfg: CN) -> None:
    """TEST: validation loss and evaluation during training."""
    # --- Validation: loss terms on the validation set every TEST.EVAL_PERIOD (0 = one epoch).
    cfg.TEST.VAL_LOSS = True
    cfg.TEST.EVAL_DURING_TRAINING = True  # False: no COCO/IoU evaluation in training (evaluate afterwards)
    cfg.TEST.VAL_LOSS_PERIOD = 0  # iterations between validation-loss passes; 0 = TEST.EVAL_PERIOD
    cfg.TEST.VAL_LOSS_MAX_IMAGES = 0  # 0 = whole validation set


def _add_eval_keys(cfg: CN) -> None:
    """EVAL: how predictions are scored (fetalheart.evaluation.settings)."""
    # --- Evaluation (fetalheart.evaluation).
    cfg.EVAL = CN()
    cfg.EVAL.SCORE_THRESH = 0.5  # predicted masks with score >= this count for IoU/Dice
    cfg.EVAL.STUDY_MAP_MODE = "matterport"  # "matterport" (compute_ap_range, quirks included) | "corrected"
    cfg.EVAL.STUDY_MAP_MIN_SCORE = 0.7  # Matterport's DETECTION_MIN_CONFIDENCE
    cfg.EVAL.BOOTSTRAP_SAMPLES = 1000  # for 95% confidence intervals
    cfg.EVAL.BOUNDARY_METRICS = False  # HD95 / ASSD per class (slower)
    cfg.EVAL.SEED = 0


def _add_study_keys(cfg: CN) -> None:
    """STUDY and SEED: which model of the study this is, under which protocol."""
    # --- Which model of the study this is (Table 5: 1..22) and under which protocol it was trained.
    cfg.STUDY = CN()
    cfg.STUDY.MODEL_ID = 0
    cfg.STUDY.NAME = ""
    cfg.STUDY.PROTOCOL = ""  # "study-faithful" (the base) or "recommended" (the overlay)
    cfg.STUDY.CONFIG_FILES = ()  # base, model file and overlays merged, in order (set by load_cfg)

    cfg.SEED = 0  # detectron2 uses -1 = random; fixed by default for reproducible runs


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


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise FetalHeartError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FetalHeartError(f"{path}: a config must be a mapping of KEY: value")
    return data


def _merge_overlay(cfg: CN, path: Path) -> None:
    """An overlay changes a few keys on top of whatever config it is given: it has no _BASE_."""
    data = _read_yaml(path)
    if "_BASE_" in data:
        raise FetalHeartError(f"{path}: an overlay must not have _BASE_ (it applies on top of any config)")
    cfg.merge_from_other_cfg(CN(data))


def load_cfg(config_file: str | os.PathLike | None = None, opts: Sequence[str] = (), base: str | None = None,
             freeze: bool = True, cpu_fallback: bool = False, overlays: Sequence[str | os.PathLike] = ()) -> CN:
    """Load a YAML config (``_BASE_`` chains allowed), overlays, ``KEY VALUE`` overrides; finalize.

    ``base`` replaces the file's own ``_BASE_`` chain: the study's model files carry only what
    differs between models, so ``run_grid`` can train them on the from-scratch base instead.
    ``overlays`` (e.g. ``overlays/recommended.yaml``) are merged in order after the file.
    ``cpu_fallback``: a config saved on a GPU machine says "cuda"; evaluation and prediction on a
    machine without one run on the CPU instead of failing (training still fails: it would be slow).
    """
    cfg = get_cfg()
    merged: list[str] = []
    try:
        if base:
            merged.append(str(resolve_config_path(base)))
            cfg.merge_from_file(merged[-1])
        if config_file:
            path = resolve_config_path(config_file)
            merged.append(str(path))
            if base:
                own = _read_yaml(path)
                own.pop("_BASE_", None)
                cfg.merge_from_other_cfg(CN(own))
            else:
                cfg.merge_from_file(str(path))
        for overlay in overlays:
            merged.append(str(resolve_config_path(overlay)))
            _merge_overlay(cfg, Path(merged[-1]))
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError, TypeError) as exc:
        # yacs says "Non-existent config key: X" for unknown keys; keep its wording, on one line.
        raise FetalHeartError(f"bad config: {' '.join(str(exc).split())}") from None
    if merged and not cfg.STUDY.CONFIG_FILES:
        cfg.STUDY.CONFIG_FILES = tuple(merged)
    finalize_cfg(cfg, cpu_fallback=cpu_fallback)
    if freeze:
        cfg.freeze()
    return cfg


def resolve_device(device: str, cpu_fallback: bool = False) -> str:
    """"auto" -> "cuda" or "cpu" for this machine; "cuda" without a GPU is an error unless ``cpu_fallback``."""
    if device != "auto" and not device.startswith("cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device == "auto" or cpu_fallback:
        return "cpu"
    raise FetalHeartError(f"MODEL.DEVICE is {device!r} but no CUDA GPU is available here; use MODEL.DEVICE cpu")


def _derive_schedule(cfg: CN) -> None:
    """EPOCHS > 0: MAX_ITER, LR steps, warm-up and periods as fractions of training (study's words)."""
    s = cfg.SOLVER
    if s.EPOCHS <= 0 or s.STEPS_PER_EPOCH <= 0:  # STEPS_PER_EPOCH 0: set_epoch_length, once the data is known
        return
    s.MAX_ITER = max(1, int(round(s.EPOCHS * s.STEPS_PER_EPOCH)))
    bad = [f for f in s.STEP_FRACTIONS if not 0 < f < 1]
    if bad or not 0 <= s.WARMUP_FRACTION < 1:
        raise FetalHeartError("SOLVER.STEP_FRACTIONS and SOLVER.WARMUP_FRACTION must lie in (0, 1) / [0, 1)")
    # A step at or after the last iteration never happens (and detectron2 refuses it): tiny schedules drop it.
    s.STEPS = tuple(sorted({int(round(f * s.MAX_ITER)) for f in s.STEP_FRACTIONS} & set(range(1, s.MAX_ITER))))
    s.WARMUP_ITERS = min(int(round(s.WARMUP_FRACTION * s.MAX_ITER)), s.MAX_ITER - 1)
    if s.CHECKPOINT_FRACTION > 0:
        s.CHECKPOINT_PERIOD = max(1, int(round(s.CHECKPOINT_FRACTION * s.MAX_ITER)))


def set_epoch_length(cfg: CN, n_train_images: int) -> bool:
    """``SOLVER.STEPS_PER_EPOCH 0`` means one pass over DATASETS.TRAIN at SOLVER.IMS_PER_BATCH: set it
    from the training set's size and derive the schedule (train_net does this after registration).
    Returns whether anything changed."""
    s = cfg.SOLVER
    if s.STEPS_PER_EPOCH > 0 or s.EPOCHS <= 0:
        return False
    if n_train_images <= 0:
        raise FetalHeartError("SOLVER.STEPS_PER_EPOCH 0 (one pass over the training set) needs training images")
    frozen = cfg.is_frozen()
    cfg.defrost()
    s.STEPS_PER_EPOCH = -(-int(n_train_images) // max(1, int(s.IMS_PER_BATCH)))
    _derive_schedule(cfg)
    if cfg.TEST.EVAL_PERIOD <= 0:
        cfg.TEST.EVAL_PERIOD = int(s.STEPS_PER_EPOCH)
    if frozen:
        cfg.freeze()
    return True


def is_smp(cfg: CN) -> bool:
    """Whether the config is a U-Net-family model (segmentation_models_pytorch) rather than Mask R-CNN."""
    return cfg.MODEL.META_ARCHITECTURE == SMP_META_ARCHITECTURE


def model_label(cfg: CN) -> str:
    """The model family and backbone in words, for grid listings, reports and compare_runs."""
    if is_smp(cfg):
        return f"{cfg.MODEL.SMP.ARCH} {cfg.MODEL.SMP.ENCODER}"
    depth = cfg.MODEL.RESNETS.DEPTH
    name = f"Mask R-CNN R{depth}-FPN" if "fpn" in cfg.MODEL.BACKBONE.NAME.lower() else f"Mask R-CNN R{depth}"
    return name + small_structures_label(cfg)


def small_structures_label(cfg: CN) -> str:
    """" + two-step S64 + Gaussian paste" for a model with the small-structure options on ("" without): a
    refined model is another row of compare_runs, not a seed of the plain one."""
    parts = []
    if cfg.MODEL.REFINE.ENABLED:
        parts.append(f"two-step{' heart' if cfg.MODEL.REFINE.MODE == 'heart' else ''} S{cfg.MODEL.REFINE.SIZE}")
    if cfg.MODEL.ROI_MASK_HEAD.PASTE.MODE == "gaussian":
        parts.append("Gaussian paste")
    return "".join(f" + {p}" for p in parts)


def _check_smp(cfg: CN) -> None:
    if cfg.SOLVER.OPTIMIZER not in ("SGD", "ADAM"):
        raise FetalHeartError(f"SOLVER.OPTIMIZER must be SGD or ADAM, got {cfg.SOLVER.OPTIMIZER!r}")
    if cfg.SOLVER.OPTIMIZER == "ADAM" and not is_smp(cfg):
        raise FetalHeartError("SOLVER.OPTIMIZER ADAM is the U-Net family's (MODEL.META_ARCHITECTURE SMPSegmentor); "
                              "Mask R-CNN trains with SGD")
    if cfg.MODEL.SMP.SCORE_RULE not in ("mean", "max"):
        raise FetalHeartError(f"MODEL.SMP.SCORE_RULE must be mean or max, got {cfg.MODEL.SMP.SCORE_RULE!r}")
    if not 0 < cfg.MODEL.SMP.PROB_THRESH <= 1:
        raise FetalHeartError(f"MODEL.SMP.PROB_THRESH must be in (0, 1], got {cfg.MODEL.SMP.PROB_THRESH}")
    if cfg.SOLVER.MAX_SECONDS < 0:
        raise FetalHeartError("SOLVER.MAX_SECONDS must be >= 0 (0 = no time budget)")


def finalize_cfg(cfg: CN, cpu_fallback: bool = False) -> CN:
    """Derive the schedule, periods and device; check what would otherwise fail later."""
    _derive_schedule(cfg)
    if cfg.TEST.EVAL_PERIOD <= 0:
        cfg.TEST.EVAL_PERIOD = int(cfg.SOLVER.STEPS_PER_EPOCH)
    if cfg.INPUT.RANDOM_FLIP not in ("none", "horizontal", "vertical"):
        raise FetalHeartError(f"INPUT.RANDOM_FLIP must be none|horizontal|vertical, got {cfg.INPUT.RANDOM_FLIP!r}")
    if cfg.INPUT.SQUARE_SIZE and cfg.MODEL.META_ARCHITECTURE != "FetalHeartRCNN":
        raise FetalHeartError("INPUT.SQUARE_SIZE needs MODEL.META_ARCHITECTURE FetalHeartRCNN "
                              f"(got {cfg.MODEL.META_ARCHITECTURE}); or set INPUT.SQUARE_SIZE 0")
    if cfg.MODEL.CLASS_NAMES and len(cfg.MODEL.CLASS_NAMES) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise FetalHeartError(f"MODEL.CLASS_NAMES has {len(cfg.MODEL.CLASS_NAMES)} names but "
                              f"MODEL.ROI_HEADS.NUM_CLASSES is {cfg.MODEL.ROI_HEADS.NUM_CLASSES}")
    _check_init(cfg)
    _check_targets(cfg)
    _check_smp(cfg)
    _check_small_structures(cfg)
    cfg.MODEL.DEVICE = resolve_device(cfg.MODEL.DEVICE, cpu_fallback)
    from fetalheart.enhance import parse_spec

    parse_spec(cfg.INPUT.ENHANCE)  # an unknown spec fails now, not after an hour of training
    return cfg


def _get(cfg: CN, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def flat_config(cfg: CN, prefix: str = "") -> dict[str, object]:
    """Every leaf of a config as ``{"SOLVER.BASE_LR": 0.01, ...}``, in the config's order."""
    out: dict[str, object] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, CN):
            out.update(flat_config(value, name + "."))
        else:
            out[name] = value
    return out


def format_config(cfg: CN, selection: str = "all") -> str:
    """``all``: the resolved config as YAML; ``matterport``: MATTERPORT_KEYS; else comma-separated keys or
    key prefixes (``SOLVER.CLIP_GRADIENTS,MODEL.RPN``), one ``KEY value`` line each."""
    if selection == "all":
        return cfg.dump()
    flat = flat_config(cfg)
    wanted = MATTERPORT_KEYS if selection == "matterport" else [k.strip() for k in selection.split(",") if k.strip()]
    lines = []
    for want in wanted:
        hits = [k for k in flat if k == want or k.startswith(want + ".")]
        if not hits:
            raise FetalHeartError(f"--print-config: no config key {want!r}")
        lines += [f"{k} {flat[k]!r}" for k in hits]
    return "\n".join(lines)


def _check_init(cfg: CN) -> None:
    """MODEL.INIT and MODEL.TRAIN_LAYERS are known; the named file fills an empty MODEL.WEIGHTS; FREEZE_AT follows."""
    m = cfg.MODEL
    if m.INIT not in INIT_CHOICES:
        raise FetalHeartError(f"MODEL.INIT must be one of {', '.join(repr(c) for c in INIT_CHOICES)}, got {m.INIT!r}")
    if m.TRAIN_LAYERS and m.TRAIN_LAYERS not in TRAIN_LAYERS_FREEZE_AT:
        raise FetalHeartError(f"MODEL.TRAIN_LAYERS must be one of {', '.join(TRAIN_LAYERS_FREEZE_AT)} or '', "
                              f"got {m.TRAIN_LAYERS!r}")
    if m.INIT in INIT_WEIGHTS and not m.WEIGHTS:
        m.WEIGHTS = INIT_WEIGHTS[m.INIT]
    if m.TRAIN_LAYERS:
        m.BACKBONE.FREEZE_AT = TRAIN_LAYERS_FREEZE_AT[m.TRAIN_LAYERS]


def _check_targets(cfg: CN) -> None:
    """Known values; a Matterport option is only accepted where the module that implements it is used."""
    for key, choices in TARGET_CHOICES.items():
        if _get(cfg, key) not in choices:
            raise FetalHeartError(f"{key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    m, s = cfg.MODEL, cfg.SOLVER
    if s.WEIGHT_DECAY_MODE == "matterport" and s.CLIP_GRADIENTS.ENABLED and s.CLIP_GRADIENTS.CLIP_TYPE != "full_model":
        raise FetalHeartError("SOLVER.WEIGHT_DECAY_MODE matterport needs SOLVER.CLIP_GRADIENTS.CLIP_TYPE full_model "
                              "(its decay gradient is clipped with the loss gradient, as in Keras) or clipping off")
    if not 0 <= m.CROWD_IGNORE_IOU <= 1 or m.ROI_MASK_HEAD.MINI_MASK_SIZE < 0:
        raise FetalHeartError("MODEL.CROWD_IGNORE_IOU must lie in [0, 1] and MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE be >= 0")
    needs = {"FetalHeartRPN": [("MODEL.RPN.PRE_NMS_SCOPE", m.RPN.PRE_NMS_SCOPE != "level"),
                               ("MODEL.CROWD_IGNORE_IOU", m.CROWD_IGNORE_IOU > 0)],
             "FetalHeartROIHeads": [("MODEL.ROI_HEADS.SAMPLING", m.ROI_HEADS.SAMPLING != "fill"),
                                    ("MODEL.ROI_HEADS.LEVEL_ASSIGNMENT", m.ROI_HEADS.LEVEL_ASSIGNMENT != "floor"),
                                    ("MODEL.ROI_MASK_HEAD.MINI_MASK_SIZE", m.ROI_MASK_HEAD.MINI_MASK_SIZE > 0),
                                    ("MODEL.CROWD_IGNORE_IOU", m.CROWD_IGNORE_IOU > 0)]}
    names = {"FetalHeartRPN": ("MODEL.PROPOSAL_GENERATOR.NAME", m.PROPOSAL_GENERATOR.NAME),
             "FetalHeartROIHeads": ("MODEL.ROI_HEADS.NAME", m.ROI_HEADS.NAME)}
    for module, options in needs.items():
        key, name = names[module]
        used = [k for k, on in options if on]
        if used and name != module:
            raise FetalHeartError(f"{used[0]} {_get(cfg, used[0])} needs {key} {module} (got {name})")


def local_weights_path(weights: str) -> Path:
    """Where MODEL.WEIGHTS is read from: the path itself, or for a detectron2:// or http(s) name the file in
    detectron2's download cache (iopath: $FVCORE_CACHE or ~/.torch/iopath_cache) that detectron2 would read."""
    from urllib.parse import urlparse

    from iopath.common.file_io import get_cache_dir

    url = weights_url(weights)
    if url is None:
        return Path(weights)
    return Path(get_cache_dir()) / os.path.dirname(urlparse(url).path.lstrip("/")) / url.split("/")[-1]


def weights_url(weights: str) -> str | None:
    """The download address of a detectron2:// or http(s) MODEL.WEIGHTS name; None for a local path."""
    from detectron2.utils.file_io import Detectron2Handler

    if weights.startswith(Detectron2Handler.PREFIX):
        return Detectron2Handler.S3_DETECTRON2_PREFIX + weights[len(Detectron2Handler.PREFIX):]
    return weights if weights.startswith(("http://", "https://")) else None


def check_weights(cfg: CN, resuming: bool = False) -> None:
    """Before anything runs: the file a new training run starts from exists here (nothing is downloaded).

    A clear one-line error otherwise, saying what the file is, where to get it and where to put it.
    ``resuming``: the run continues from its own last checkpoint and loads no initial weights.
    """
    init, weights = cfg.MODEL.INIT, cfg.MODEL.WEIGHTS
    if resuming or not weights:
        return
    if init == "scratch":
        raise FetalHeartError(f"MODEL.INIT scratch starts from random weights, but MODEL.WEIGHTS names {weights}: "
                              "empty MODEL.WEIGHTS, or MODEL.INIT '' to start from that file")
    path = local_weights_path(weights)
    if path.is_file():
        return
    what = INIT_WHAT.get(init, "the initial weights")
    scratch = "; without pretrained weights use MODEL.INIT scratch (configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml)"
    url = weights_url(weights)
    if url:
        raise FetalHeartError(f"MODEL.WEIGHTS {weights} ({what}) is not on this machine and fetalheart downloads "
                              f"nothing: download {url} and put it at {path}, or set MODEL.WEIGHTS to your copy{scratch}")
    source = f", from {weights_url(INIT_WEIGHTS[init])}" if init in INIT_WEIGHTS else ""
    raise FetalHeartError(f"MODEL.WEIGHTS file not found: {weights} ({what}{source}): put the file there or set "
                          f"MODEL.WEIGHTS to where it is{scratch}")


def class_names(cfg: CN) -> tuple[str, ...]:
    """The model's class names in output order (the 10 structures unless the config names others)."""
    from fetalheart.classes import CLASS_NAMES

    if cfg.MODEL.CLASS_NAMES:
        return tuple(cfg.MODEL.CLASS_NAMES)
    n = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    return CLASS_NAMES if n == len(CLASS_NAMES) else tuple(f"class{i + 1}" for i in range(n))
