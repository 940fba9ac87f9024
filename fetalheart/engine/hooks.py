"""Training hooks detectron2 users keep asking for: validation loss, early stopping, a time budget, epoch losses.

Best-checkpoint selection reuses detectron2's own ``BestCheckpointer`` (see trainer.py).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

logger = logging.getLogger(__name__)


@contextmanager
def _frozen_norm_statistics(model: torch.nn.Module):
    """Restore BatchNorm running statistics afterwards: a forward pass in training mode updates them."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in bns]
    try:
        yield
    finally:
        for m, state in zip(bns, saved, strict=True):
            m.load_state_dict(state)


class ValidationLoss(HookBase):
    """Every ``period`` iterations (and at the end), the loss terms on the validation set.

    The model runs in training mode (losses only exist there) under ``torch.no_grad()``, with
    BatchNorm statistics restored afterwards: no parameter or buffer changes. Each term is
    averaged over validation images and stored as ``val_<term>`` (plus ``val_total_loss``) at the
    current iteration, so it lands in metrics.json and TensorBoard beside the training terms.
    """

    def __init__(self, period: int, data_loader_factory, max_images: int = 0):
        self._period = period
        self._factory = data_loader_factory  # built lazily: no cost when never reached
        self._loader = None
        self._max_images = max_images
        self.seconds = 0.0  # total time spent, for the training-speed benchmark

    def _compute(self) -> dict[str, float]:
        if self._loader is None:
            self._loader = self._factory()
        model = self.trainer.model
        model = getattr(model, "module", model)  # unwrap DDP: no gradient sync needed
        was_training = model.training
        sums: dict[str, float] = {}
        n = 0
        start = time.perf_counter()
        with torch.no_grad(), _frozen_norm_statistics(model):
            model.train()
            for batch in self._loader:
                losses = model(batch)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(batch)
                n += len(batch)
                if self._max_images and n >= self._max_images:
                    break
        model.train(was_training)
        # Sum over ranks (each sees its shard), then average.
        gathered = comm.all_gather((sums, n))
        total_n = sum(g[1] for g in gathered)
        merged = {k: sum(g[0].get(k, 0.0) for g in gathered) / max(total_n, 1) for k in sums}
        self.seconds += time.perf_counter() - start
        merged["total_loss"] = sum(merged.values())
        return merged

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter == self.trainer.max_iter or (self._period > 0 and next_iter % self._period == 0):
            losses = self._compute()
            if not all(math.isfinite(v) for v in losses.values()):
                logger.warning("validation loss is not finite at iteration %d: %s", next_iter, losses)
            if comm.is_main_process():
                self.trainer.storage.put_scalars(**{f"val_{k}": v for k, v in losses.items()},
                                                 smoothing_hint=False)
                logger.info("validation loss at iteration %d: %s", next_iter,
                            ", ".join(f"{k}={v:.4f}" for k, v in sorted(losses.items())))


class EarlyStop(BaseException):
    """Raised by EarlyStopping. A BaseException, so detectron2's training loop does not log it as a
    crash (it catches Exception), while its ``finally: after_train()`` still runs."""


class EarlyStopping(HookBase):
    """Stop when ``metric`` has not improved for ``patience`` evaluations (place after EvalHook)."""

    def __init__(self, period: int, metric: str, patience: int, mode: str = "max"):
        self._period, self._metric, self._patience, self._mode = period, metric, patience, mode
        self.best: float | None = None
        self.bad_evals = 0

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period <= 0 or next_iter % self._period or next_iter == self.trainer.max_iter:
            return
        latest = self.trainer.storage.latest().get(self._metric)
        if latest is None:
            return
        value = latest[0]
        better = self.best is None or (value > self.best if self._mode == "max" else value < self.best)
        if better and math.isfinite(value):
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals >= self._patience:
            logger.info("early stopping at iteration %d: %s has not improved for %d evaluations (best %.4f)",
                        next_iter, self._metric, self.bad_evals, self.best if self.best is not None else float("nan"))
            raise EarlyStop(next_iter)


class TimeBudget(HookBase):
    """Stop training once ``seconds`` of wall time have passed since it started (``SOLVER.MAX_SECONDS``):
    two model families compared at one budget. Put it last, so the iteration it stops at is fully written."""

    def __init__(self, seconds: float):
        self._seconds = float(seconds)
        self._start = 0.0

    def before_train(self):
        self._start = time.perf_counter()

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter < self.trainer.max_iter and time.perf_counter() - self._start >= self._seconds:
            logger.info("time budget of %.0f s reached at iteration %d of %d", self._seconds, next_iter,
                        self.trainer.max_iter)
            self.trainer.stopped_by = f"time budget {self._seconds:g} s at iteration {next_iter}"
            raise EarlyStop(next_iter)


class EpochLoss(HookBase):
    """The mean training loss of each epoch (``train_epoch_loss``, with ``epoch``) at the epoch's last
    iteration, beside detectron2's windowed ``total_loss``: metrics.json then holds train and validation
    loss per epoch (the validation loss runs once per epoch too when TEST.EVAL_PERIOD is one epoch)."""

    def __init__(self, steps_per_epoch: int):
        self._steps = int(steps_per_epoch)
        self._sum, self._n = 0.0, 0

    def after_step(self):
        if not comm.is_main_process():
            return
        hist = self.trainer.storage.histories().get("total_loss")
        if hist is None:
            return
        self._sum, self._n = self._sum + float(hist.latest()), self._n + 1
        next_iter = self.trainer.iter + 1
        if next_iter % self._steps == 0 or next_iter == self.trainer.max_iter:
            self.trainer.storage.put_scalars(epoch=-(-next_iter // self._steps), train_epoch_loss=self._sum / self._n,
                                             smoothing_hint=False)
            self._sum, self._n = 0.0, 0
