"""The study's optimizer against formulas computed by hand on a small model.

Keras 2.x (keras/optimizers.py, ``Optimizer.get_gradients``): ``norm = sqrt(sum_g sum(g^2))`` over all
gradients, every gradient scaled by ``clipnorm / norm`` when ``norm >= clipnorm``. Matterport
(mrcnn/model.py, ``compile``): loss += ``wd * sum(w^2) / numel(w)`` for each weight but BN gamma/beta.
"""

import math

import fetalheart._compat  # noqa: F401
from fetalheart.config import load_cfg
from fetalheart.engine.optimizer import StudySGD, build_optimizer, matterport_param_groups
from fetalheart.utils.errors import FetalHeartError

import pytest
import torch

BASE = "Base-FetalHeart-MaskRCNN-R50-FPN.yaml"


class Small(torch.nn.Module):
    """A conv (weight 2x1x3x3 + bias 2), a GroupNorm (gamma, beta) and a linear layer (3x8 + 3)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.norm = torch.nn.GroupNorm(1, 2)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).flatten(1))


def _setup(seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = Small()
    x = torch.randn(4, 1, 4, 4)
    loss = scale * model(x).pow(2).sum()
    loss.backward()
    return model


def _cfg(*opts):
    return load_cfg(BASE, ["SOLVER.BASE_LR", "0.1", "SOLVER.MOMENTUM", "0.0", *opts], freeze=False)


def test_global_clip_scales_every_gradient_by_clipnorm_over_the_joint_norm():
    model = _setup(scale=50.0)  # gradients far above the clip
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))  # Keras' norm, by hand
    assert norm > 5.0
    opt = build_optimizer(_cfg("SOLVER.WEIGHT_DECAY_MODE", "sgd", "SOLVER.WEIGHT_DECAY", "0.0"), model)
    assert isinstance(opt, StudySGD) and opt.clip_norm == 5.0
    opt.step()
    assert opt.last_grad_norm == pytest.approx(norm, rel=1e-6)
    for n, p in model.named_parameters():
        expected = before[n] - 0.1 * grads[n] * (5.0 / norm)  # w -= lr * g * clipnorm / norm
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
    clipped = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    assert clipped == pytest.approx(5.0, rel=1e-5)  # the joint norm, not each tensor's, is 5


def test_global_clip_differs_from_detectron2s_per_parameter_clip():
    model = _setup(scale=50.0)
    per_tensor = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
    opt = build_optimizer(_cfg("SOLVER.WEIGHT_DECAY_MODE", "sgd", "SOLVER.WEIGHT_DECAY", "0.0"), model)
    opt.step()
    after = {n: float(p.grad.norm()) for n, p in model.named_parameters()}
    # Each tensor keeps its share of the joint norm: ratios between tensors are unchanged.
    names = list(per_tensor)
    for a, b in zip(names, names[1:], strict=False):
        assert after[a] / after[b] == pytest.approx(per_tensor[a] / per_tensor[b], rel=1e-5)
    # detectron2's "norm" clips each tensor to 5 on its own; the total may then reach 5 * sqrt(6).
    d2 = _cfg("SOLVER.WEIGHT_DECAY_MODE", "sgd", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm")
    model2 = _setup(scale=50.0)
    build_optimizer(d2, model2).step()
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model2.parameters()))
    assert total > 5.0 * 1.5


def test_small_gradients_are_not_clipped():
    model = _setup(scale=1e-3)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt = build_optimizer(_cfg("SOLVER.WEIGHT_DECAY_MODE", "sgd", "SOLVER.WEIGHT_DECAY", "0.0"), model)
    opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n])


def test_matterport_weight_decay_is_two_wd_w_over_numel_and_spares_norm_layers():
    wd = 1e-4
    model = _setup(scale=1e-3)  # small loss gradients: no clipping, decay visible
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(_cfg("SOLVER.WEIGHT_DECAY", str(wd)), model)  # the base: matterport + full_model
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)  # the SGD step adds none of its own
    opt.step()
    numel = {"conv.weight": 18, "conv.bias": 2, "fc.weight": 24, "fc.bias": 3}
    for n, p in model.named_parameters():
        decay = 2 * wd / numel[n] if n in numel else 0.0  # norm.weight / norm.bias = gamma / beta: none
        torch.testing.assert_close(p.grad, grads[n] + decay * weights[n], rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(p.detach(), weights[n] - 0.1 * (grads[n] + decay * weights[n]),
                                   rtol=1e-6, atol=1e-9)
    # 2e-4 / 18 on the conv: 18,000 times weaker than SGD weight decay 1e-4.
    assert (1e-4 / (2 * wd / 18)) == pytest.approx(9.0)
    assert 1e-4 / (2 * wd / 24) == pytest.approx(12.0)


def test_matterport_decay_gradient_equals_autograd_of_its_l2_loss():
    """The decay term is the gradient of Matterport's regulariser, checked with autograd."""
    wd = 1e-4
    model = Small()
    reg = sum(wd * (p ** 2).sum() / p.numel() for n, p in model.named_parameters() if not n.startswith("norm"))
    reg.backward()
    groups = matterport_param_groups(model, 0.1, wd)
    coeff = {id(p): g["l2_decay"] for g in groups for p in g["params"]}
    for _n, p in model.named_parameters():
        autograd = p.grad if p.grad is not None else torch.zeros_like(p)  # norm layers: not in the loss
        torch.testing.assert_close(coeff[id(p)] * p.detach(), autograd, rtol=1e-6, atol=0)


def test_decay_is_clipped_with_the_loss_gradient_as_in_keras():
    wd = 1e-4
    model = _setup(scale=50.0)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    numel = {"conv.weight": 18, "conv.bias": 2, "fc.weight": 24, "fc.bias": 3}
    total = {n: grads[n] + (2 * wd / numel[n] if n in numel else 0.0) * weights[n] for n in grads}
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in total.values()))
    opt = build_optimizer(_cfg("SOLVER.WEIGHT_DECAY", str(wd)), model)
    opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, total[n] * 5.0 / norm, rtol=1e-5, atol=1e-9)


def test_momentum_update_matches_keras_velocity_form():
    """Keras: v = m v - lr g; w += v. torch: b = m b + g; w -= lr b. Same weights after two steps."""
    model = _setup(scale=1e-3)
    w0 = model.fc.weight.detach().clone()
    g = model.fc.weight.grad.clone()
    opt = build_optimizer(_cfg("SOLVER.MOMENTUM", "0.9", "SOLVER.WEIGHT_DECAY", "0.0"), model)
    opt.step()
    opt.step()  # same gradient twice
    v1 = -0.1 * g
    v2 = 0.9 * v1 - 0.1 * g
    torch.testing.assert_close(model.fc.weight.detach(), w0 + v1 + v2, rtol=1e-6, atol=1e-9)


def test_study_faithful_base_builds_the_study_optimizer_and_detectron2_defaults_stay():
    assert isinstance(build_optimizer(_cfg(), Small()), StudySGD)
    plain = _cfg("SOLVER.WEIGHT_DECAY_MODE", "sgd", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm")
    assert not isinstance(build_optimizer(plain, Small()), StudySGD)  # detectron2's own


def test_matterport_decay_with_per_parameter_clip_is_refused():
    with pytest.raises(FetalHeartError, match="full_model"):
        load_cfg(BASE, ["SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm"])
    with pytest.raises(FetalHeartError, match="WEIGHT_DECAY_MODE"):
        load_cfg(BASE, ["SOLVER.WEIGHT_DECAY_MODE", "keras"])
