"""The study's optimizer: SGD with Keras 2.x global-norm clipping and Matterport's weight decay.

detectron2's ``build_optimizer`` knows two clip types, ``value`` and ``norm``, both applied to each
parameter tensor on its own. The study ran Matterport Mask R-CNN on standalone Keras 2.3.1, whose
``Optimizer.get_gradients`` (keras/optimizers.py) computes ONE norm over all gradients,
``norm = sqrt(sum(K.sum(K.square(g)) for g in grads))``, and scales every gradient by
``clipnorm / norm`` when ``norm >= clipnorm``: a global clip (``SOLVER.CLIP_GRADIENTS.CLIP_TYPE
"full_model"``, the name detectron2's DETR project uses for it). Per-parameter clipping lets the total
norm reach ``CLIP_VALUE * sqrt(number of tensors)``.

Matterport adds ``l2(WEIGHT_DECAY)(w) / tf.size(w)`` to the loss for every trainable weight whose
name has neither ``gamma`` nor ``beta`` (mrcnn/model.py, ``MaskRCNN.compile``): the gradient of
``WEIGHT_DECAY * sum(w**2) / numel(w)`` is ``2 * WEIGHT_DECAY * w / numel(w)`` per element, 1e5 to
1e7 times weaker than SGD weight decay on a convolution. ``SOLVER.WEIGHT_DECAY_MODE "matterport"``
adds exactly that to each gradient, normalisation-layer parameters excluded, *before* the clip (in
Keras the regularisation loss is part of the clipped gradient), and the SGD step itself then has no
weight decay. With momentum and a constant learning rate, Keras' ``v = m*v - lr*g; w += v`` and
torch's ``b = m*b + g; w -= lr*b`` are the same update.
"""

from __future__ import annotations

import logging
from typing import Any

import fetalheart._compat  # noqa: F401  (detectron2 shims before detectron2 is imported)
from fetalheart.utils.errors import FetalHeartError

import torch
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, reduce_param_groups
from detectron2.utils.events import get_event_storage

logger = logging.getLogger(__name__)

#: Normalisation layers: their scale and shift are Matterport's "gamma" and "beta" (never decayed).
NORM_LAYERS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def matterport_decay(param: torch.nn.Parameter, weight_decay: float) -> float:
    """Matterport's per-element decay coefficient for one weight: d/dw [wd * sum(w^2) / n] = (2 wd / n) w."""
    return 2.0 * weight_decay / param.numel()


def matterport_param_groups(model: torch.nn.Module, base_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """One group per distinct coefficient: ``l2_decay`` = 2 wd / numel(w); 0 for normalisation layers."""
    groups, seen = [], set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            decay = 0.0 if isinstance(module, NORM_LAYERS) else matterport_decay(param, weight_decay)
            groups.append({"params": [param], "lr": base_lr, "weight_decay": 0.0, "l2_decay": decay})
    return reduce_param_groups(groups)


class StudySGD(torch.optim.SGD):
    """SGD whose step first adds each group's ``l2_decay * w`` to the gradients, then clips them by
    their global norm (``clip_norm`` > 0), as Keras 2.x does; the norm before clipping is stored in
    ``last_grad_norm`` and, inside a detectron2 training loop, as the ``grad_norm`` scalar."""

    def __init__(self, params, *, clip_norm: float = 0.0, **kwargs):
        super().__init__(params, **kwargs)
        self.clip_norm = float(clip_norm)
        self.last_grad_norm: float | None = None

    @torch.no_grad()
    def add_decay_gradients(self) -> None:
        for group in self.param_groups:
            decay = group.get("l2_decay", 0.0)
            if not decay:
                continue
            for p in group["params"]:
                if p.grad is None:  # Keras differentiates the regulariser of every trainable weight
                    p.grad = torch.zeros_like(p)
            # One fused call per group (as torch's own optimizers): grad += decay * w.
            torch._foreach_add_([p.grad for p in group["params"]], group["params"], alpha=decay)

    def clip_global_norm(self) -> float:
        """Scale all gradients by clip_norm / norm when their joint L2 norm exceeds clip_norm."""
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        # torch's clip_grad_norm_ is Keras' clip_norm up to an epsilon: clip_norm / (norm + 1e-6).
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=self.clip_norm if self.clip_norm > 0 else float("inf"))
        return float(norm)

    def step(self, closure=None):
        self.add_decay_gradients()
        self.last_grad_norm = self.clip_global_norm()
        try:
            get_event_storage().put_scalar("grad_norm", self.last_grad_norm, smoothing_hint=False)
        except AssertionError:  # outside a training loop: no event storage
            pass
        return super().step(closure)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """detectron2's SGD, or ``StudySGD`` when the config asks for a global clip or Matterport's decay."""
    s = cfg.SOLVER  # values checked by fetalheart.config.finalize_cfg
    mode = s.get("WEIGHT_DECAY_MODE", "sgd")
    full_model = s.CLIP_GRADIENTS.ENABLED and s.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    if mode == "sgd" and not full_model:
        return d2_build_optimizer(cfg, model)
    if full_model and s.CLIP_GRADIENTS.NORM_TYPE != 2.0:
        raise FetalHeartError("SOLVER.CLIP_GRADIENTS.CLIP_TYPE full_model clips the L2 norm (Keras): NORM_TYPE must be 2.0")
    if mode == "matterport":
        params = matterport_param_groups(model, s.BASE_LR, s.WEIGHT_DECAY)
        weight_decay = 0.0
    else:
        params = get_default_optimizer_params(model, base_lr=s.BASE_LR, weight_decay_norm=s.WEIGHT_DECAY_NORM,
                                              bias_lr_factor=s.BIAS_LR_FACTOR, weight_decay_bias=s.WEIGHT_DECAY_BIAS)
        weight_decay = s.WEIGHT_DECAY
    clip = s.CLIP_GRADIENTS.CLIP_VALUE if full_model else 0.0
    return StudySGD(params, lr=s.BASE_LR, momentum=s.MOMENTUM, nesterov=s.NESTEROV, weight_decay=weight_decay,
                    clip_norm=clip)
