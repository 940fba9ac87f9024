"""Train (or evaluate) a fetal-heart model, Mask R-CNN or the U-Net family: detectron2's train_net.py, fetalheart's Trainer.

Same flags as detectron2's tools/train_net.py (--config-file, --resume, --eval-only,
--num-gpus, --num-machines, --machine-rank, --dist-url, trailing KEY VALUE overrides) and launch(),
so one GPU, several GPUs and several machines work as detectron2 users expect.
"""

from __future__ import annotations

import logging
import os
import sys

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.config import check_weights, format_config, load_cfg
from fetalheart.utils.cli import add_overwrite, add_quiet, run_cli
from fetalheart.utils.errors import FetalHeartError

from detectron2.engine import default_argument_parser, default_setup, launch

EPILOG = """examples:
  # the study's model 14 (AHE+CLAHE, momentum 0.9) on a labelme2coco output folder
  tools/train_net.py --config-file configs/study/model14.yaml DATASETS.ROOT data/coco OUTPUT_DIR output/model14
  # offline / CPU: from scratch, a short schedule
  tools/train_net.py --config-file configs/FetalHeart-MaskRCNN-R50-FPN-scratch.yaml \\
      DATASETS.ROOT data/coco SOLVER.EPOCHS 0 SOLVER.MAX_ITER 200 MODEL.DEVICE cpu OUTPUT_DIR output/try
  # the U-Net family (segmentation_models_pytorch): U-Net ResNet-34 with the thesis recipe, or any arch x encoder
  tools/train_net.py --config-file configs/FetalHeart-SMP.yaml DATASETS.ROOT data/coco OUTPUT_DIR output/unet \
      MODEL.SMP.ARCH DeepLabV3Plus MODEL.SMP.ENCODER efficientnet-b3
  # resume after an interruption, or evaluate a trained model
  tools/train_net.py --config-file output/try/config.yaml --resume OUTPUT_DIR output/try
  tools/train_net.py --config-file output/try/config.yaml --eval-only MODEL.WEIGHTS output/try/model_final.pth
  # what a config resolves to (nothing runs): the keys that match Matterport's defaults, or any keys
  tools/train_net.py --config-file configs/study/model14.yaml --print-config matterport
  tools/train_net.py --config-file configs/study/model14.yaml --print-config SOLVER.CLIP_GRADIENTS,MODEL.RPN

Pretrained weights (MODEL.INIT imagenet | coco) are files you provide: a missing one is reported before
anything runs, with where to get it and where to put it (docs/matterport_differences.md).
"""


def build_parser():
    parser = default_argument_parser(epilog=EPILOG)
    parser.prog = "train_net.py"
    parser.add_argument("--deterministic", action="store_true",
                        help="use deterministic algorithms (slower on GPU; bit-for-bit repeatable runs)")
    parser.add_argument("--base", default=None,
                        help="replace the config's _BASE_ chain with this file (e.g. the from-scratch base)")
    parser.add_argument("--overlay", action="append", default=[], metavar="YAML",
                        help="merge this overlay after the config (repeatable), e.g. configs/overlays/recommended.yaml")
    parser.add_argument("--print-config", nargs="?", const="all", metavar="KEYS",
                        help="print the resolved config and exit: all of it (YAML), 'matterport' (the keys that match "
                             "Matterport's defaults, docs/matterport_differences.md) or comma-separated keys/prefixes")
    add_quiet(parser, "only warnings and errors on the terminal (the full log is still in OUTPUT_DIR/log.txt)")
    add_overwrite(parser, "start again in an OUTPUT_DIR that already holds a finished or started run")
    return parser


class _OneLineTrainingErrors(logging.Filter):
    """detectron2 logs a full traceback for any training exception; ours become one line on stderr."""

    def filter(self, record):
        if record.exc_info and isinstance(record.exc_info[1], (FloatingPointError, FetalHeartError)):
            return False
        return True


def _terminal_warnings_only() -> None:
    """-q: detectron2's INFO lines stay in OUTPUT_DIR/log.txt but leave the terminal."""
    for name in ("detectron2", "fvcore", "fetalheart", "d2"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:  # not the FileHandler subclass
                handler.setLevel(logging.WARNING)


def _epoch_from_dataset(cfg) -> None:
    """SOLVER.STEPS_PER_EPOCH 0: one epoch is one pass over the training images the loader uses."""
    from fetalheart.config import set_epoch_length

    if cfg.SOLVER.EPOCHS > 0 and cfg.SOLVER.STEPS_PER_EPOCH <= 0:
        from detectron2.data import get_detection_dataset_dicts

        n = len(get_detection_dataset_dicts(list(cfg.DATASETS.TRAIN), filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS))
        set_epoch_length(cfg, n)
        logging.getLogger(__name__).info("one epoch = %d iterations (%d training images, batch %d)",
                                             cfg.SOLVER.STEPS_PER_EPOCH, n, cfg.SOLVER.IMS_PER_BATCH)


def setup(args):
    """Config (+ overrides), logging, seed, config.yaml/env.json in OUTPUT_DIR, dataset registration."""
    from fetalheart.collect_env import write_run_info
    from fetalheart.data.registration import register_datasets_from_cfg

    cfg = load_cfg(args.config_file, args.opts, base=args.base, overlays=args.overlay)
    out = cfg.OUTPUT_DIR
    started = os.path.isdir(out) and any(f == "last_checkpoint" or (f.startswith("model_") and f.endswith(".pth"))
                                         for f in os.listdir(out))
    if started and not (args.resume or args.eval_only or args.overwrite):
        raise FetalHeartError(f"{out} already holds a training run: pass --resume to continue it, "
                              "--overwrite to start again, or choose another OUTPUT_DIR")
    if not args.eval_only:  # before anything is registered, enhanced or written
        check_weights(cfg, resuming=args.resume and os.path.isfile(os.path.join(out, "last_checkpoint")))
    if args.deterministic:
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    register_datasets_from_cfg(cfg, training=not args.eval_only)
    default_setup(cfg, args)
    if not args.eval_only:
        _epoch_from_dataset(cfg)
    if args.quiet:
        _terminal_warnings_only()
    logging.getLogger("detectron2.engine.train_loop").addFilter(_OneLineTrainingErrors())
    from detectron2.utils import comm

    if comm.is_main_process():
        from fetalheart.data.enhancement_changes import enhancement_changes

        names = list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
        write_run_info(out, cfg, {"deterministic": bool(args.deterministic), "resume": bool(args.resume),
                                  "eval_only": bool(args.eval_only),
                                  "enhancement_changes": enhancement_changes(cfg, names)})
    return cfg


def train(args):
    """One process's work (launch() runs it once per GPU)."""
    from fetalheart.engine import trainer_class
    from fetalheart.modeling.load import load_model_for_inference

    from detectron2.utils import comm

    cfg = setup(args)
    if args.eval_only:
        model = load_model_for_inference(cfg)
        return trainer_class(cfg).test(cfg, model)
    from fetalheart.config import class_names
    from fetalheart.engine.refiner import fit_paste, train_refiner

    main = comm.is_main_process()
    if main and cfg.MODEL.ROI_MASK_HEAD.PASTE.MODE == "gaussian":  # before training: evaluations in training use it
        fit_paste(cfg, cfg.OUTPUT_DIR, class_names(cfg))
    trainer = trainer_class(cfg)(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if main and cfg.MODEL.REFINE.ENABLED:  # step 2 after step 1 (docs/small_structures.md)
        train_refiner(cfg, cfg.OUTPUT_DIR, class_names(cfg))
    return results


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_config:
        print(format_config(load_cfg(args.config_file, args.opts, base=args.base, overlays=args.overlay),
                            args.print_config))
        return 0
    if args.num_gpus > 1 or args.num_machines > 1:
        launch(train, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    else:
        train(args)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
