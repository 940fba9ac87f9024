"""``Trainer(DefaultTrainer)``: detectron2's training loop with fetalheart's data and hooks.

Overrides only what it must (cf. detectron2's projects/PointRend/train_net.py): loaders that
apply the model's enhancement, the evaluators, and three hooks (validation loss, detectron2's
BestCheckpointer, early stopping) inserted so that each evaluation happens once per period.
"""

from __future__ import annotations

import logging
import math
import os

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
import fetalheart.modeling  # noqa: F401  (registers FetalHeartRCNN with detectron2)
from fetalheart.data.loaders import build_test_loader, build_train_loader, build_val_loss_loader
from fetalheart.engine.hooks import EarlyStop, EarlyStopping, EpochLoss, TimeBudget, ValidationLoss
from fetalheart.engine.optimizer import build_optimizer
from fetalheart.evaluation.build import build_evaluators
from fetalheart.modeling.load import load_initial_weights
from fetalheart.utils.errors import FetalHeartError

from detectron2.engine import DefaultTrainer, hooks
from detectron2.utils import comm

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """DefaultTrainer + enhancement-aware loaders, fetalheart evaluators and hooks."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluators(cfg, dataset_name, output_folder)

    def build_hooks(self):
        ret = super().build_hooks()
        cfg = self.cfg
        if not cfg.TEST.EVAL_DURING_TRAINING:
            ret = [h for h in ret if not isinstance(h, hooks.EvalHook)]
        period = cfg.TEST.EVAL_PERIOD
        extra = []
        if cfg.TEST.VAL_LOSS and cfg.DATASETS.TEST:
            self.val_loss_hook = ValidationLoss(
                cfg.TEST.VAL_LOSS_PERIOD or period,
                lambda: build_val_loss_loader(cfg, cfg.DATASETS.TEST[0]),
                cfg.TEST.VAL_LOSS_MAX_IMAGES,
            )
            extra.append(self.val_loss_hook)
        metric = cfg.SOLVER.BEST_CHECKPOINT_METRIC
        # A validation-loss metric ("val_total_loss", the U-Net recipe) needs no evaluator, only the loss hook.
        by_val_loss = metric.startswith("val_") and bool(cfg.TEST.VAL_LOSS and cfg.DATASETS.TEST)
        evaluating = by_val_loss or bool(cfg.DATASETS.TEST and cfg.TEST.EVAL_DURING_TRAINING)
        best_period = (cfg.TEST.VAL_LOSS_PERIOD or period) if by_val_loss else period
        if metric and evaluating and comm.is_main_process():
            # detectron2's own hook; it reads the metric EvalHook (or ValidationLoss) just stored, so no second evaluation.
            extra.append(hooks.BestCheckpointer(best_period, self.checkpointer, metric, cfg.SOLVER.BEST_CHECKPOINT_MODE))
        if cfg.SOLVER.EARLY_STOP_PATIENCE > 0 and metric and evaluating:
            extra.append(EarlyStopping(best_period, metric, cfg.SOLVER.EARLY_STOP_PATIENCE,
                                       cfg.SOLVER.BEST_CHECKPOINT_MODE))
        if cfg.SOLVER.EPOCHS > 0 and cfg.SOLVER.STEPS_PER_EPOCH > 0:
            extra.append(EpochLoss(cfg.SOLVER.STEPS_PER_EPOCH))
        # After EvalHook (which produces the metrics), before PeriodicWriter (which writes them).
        writer_at = next((i for i, h in enumerate(ret) if isinstance(h, hooks.PeriodicWriter)), len(ret))
        if writer_at < len(ret) and period > 0:
            # Writers only see the latest value of each metric: write at every evaluation, or an
            # evaluation whose iteration the 20-iteration writer skips would be lost from metrics.json.
            every = math.gcd(math.gcd(20, period), cfg.TEST.VAL_LOSS_PERIOD or period)
            if any(isinstance(h, EpochLoss) for h in extra):  # ... and at every epoch's end
                every = math.gcd(every, int(cfg.SOLVER.STEPS_PER_EPOCH))
            ret[writer_at] = hooks.PeriodicWriter(self.build_writers(), period=every)
        budget = [TimeBudget(cfg.SOLVER.MAX_SECONDS)] if cfg.SOLVER.MAX_SECONDS > 0 else []
        return ret[:writer_at] + extra + ret[writer_at:] + budget

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    def resume_or_load(self, resume: bool = True):
        """Resume from OUTPUT_DIR's last checkpoint, or start from ``MODEL.INIT`` / ``MODEL.WEIGHTS``
        (fetalheart.modeling.load: COCO's class-specific predictors re-initialised, files checked)."""
        if resume and self.checkpointer.has_checkpoint():
            try:
                return super().resume_or_load(resume=True)
            except (OSError, RuntimeError, ValueError) as exc:
                raise FetalHeartError(f"cannot resume from {self.cfg.OUTPUT_DIR}: {str(exc).splitlines()[0][:200]}") from None
        load_initial_weights(self.model, self.cfg)
        return None

    def train(self):
        """Train; an early stop ends training cleanly with model_final.pth saved."""
        try:
            return super().train()
        except EarlyStop as stop:
            if comm.is_main_process():
                self.checkpointer.save("model_final", iteration=int(stop.args[0]) - 1)
            self.early_stopped_at = int(stop.args[0])
            return getattr(self, "_last_eval_results", None)
        except FloatingPointError as exc:
            raise FetalHeartError(
                f"training diverged ({exc}); lower SOLVER.BASE_LR, keep SOLVER.CLIP_GRADIENTS on, or check the "
                "data; without pretrained weights use the from-scratch (GroupNorm) config") from None

