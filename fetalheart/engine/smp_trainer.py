"""``SMPTrainer``: the fetalheart Trainer for the U-Net family (``MODEL.META_ARCHITECTURE SMPSegmentor``).

Everything but the optimizer is the Mask R-CNN trainer's: the loaders with the model's enhancement
(photometric augmentation before it), validation loss, detectron2's BestCheckpointer (the U-Net recipe
keeps the lowest ``val_total_loss`` as model_best.pth), early stopping, the time budget, and the run
folder (config.yaml, env.json, metrics.json, model_final.pth). The recipe's optimizer is Adam
(``SOLVER.OPTIMIZER ADAM``): torch's, with detectron2's gradient clipping and LR schedule around it.
"""

from __future__ import annotations

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
import fetalheart.modeling.smp  # noqa: F401  (registers SMPSegmentor with detectron2)
from fetalheart.engine.trainer import Trainer

import torch
from detectron2.solver.build import maybe_add_gradient_clipping


class SMPTrainer(Trainer):
    """Trainer whose optimizer follows ``SOLVER.OPTIMIZER`` (ADAM for the U-Net recipe)."""

    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.SOLVER.OPTIMIZER != "ADAM":
            return super().build_optimizer(cfg, model)
        params = [p for p in model.parameters() if p.requires_grad]
        adam = maybe_add_gradient_clipping(cfg, torch.optim.Adam)
        return adam(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
