"""akdray's DP-SGD step is Opacus' step, made cheaper: per-sample gradients kept as computed, and
the noise drawn, added and scaled in one pass (akdray.defenses.private_gan)."""
from __future__ import annotations

import copy
import types

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from akdray.defenses.private_gan import _conv_transpose2d_grad_sample, _kept_as_computed
from test_dpsgd import CFG, _batch, _models, _private, one_thread, train_set  # noqa: F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")


def _stock_opacus(gan) -> None:
    """Give ``gan`` Opacus' own grad samplers (copying) and DPOptimizer.add_noise / scale_grad."""
    for opt, module in ((gan.opt_G, gan.G), (gan.opt_D, gan.D)):
        module.GRAD_SAMPLERS = {**GradSampleModule.GRAD_SAMPLERS, nn.ConvTranspose2d: _conv_transpose2d_grad_sample}
        opt.add_noise = types.MethodType(DPOptimizer.add_noise, opt)
        opt.scale_grad = types.MethodType(DPOptimizer.scale_grad, opt)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_lean_step_equals_stock_opacus_step(train_set, sigma: float) -> None:
    """Same weights, batch, dropout masks and noise seed: the gradients Adam receives (D's from its
    two forwards, G's through D), the noise included, are Opacus' to rounding, for three steps."""
    cfg = CFG.replace(dp_noise_multiplier=sigma, dp_max_grad_norm=0.05)
    G, D = _models(cfg)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    lean, stock = _private(cfg, G, D, seed=3), _private(cfg, G2, D2, seed=3)
    _stock_opacus(stock)
    x, y = _batch(train_set, 4)
    for step in range(3):
        for gan in (lean, stock):
            torch.manual_seed(50 + step)
            gan.step(x, y, cfg.l1_lambda, cfg.gan_mode)
        for a, b in ((lean.G, stock.G), (lean.D, stock.D)):
            scale = max(q.grad.abs().max().item() for q in b.parameters())
            for (name, p), q in zip(a.named_parameters(), b.parameters()):
                assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6 * scale), (step, name)
                assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), (step, name)


def test_a_computed_grad_sample_is_kept_and_a_view_of_the_backprops_is_copied() -> None:
    layer = nn.Conv2d(2, 3, 1)
    layer.max_batch_len = 4
    acts, backprops = [torch.randn(4, 2, 5, 5)], torch.randn(4, 3, 5, 5)
    fresh = torch.randn(4, 3, 2, 1, 1)
    sampled = _kept_as_computed(lambda _l, _a, b: {layer.weight: fresh, layer.bias: b[:, :, 0, 0]})(layer, acts, backprops)
    assert layer.weight._current_grad_sample is fresh  # stored, not copied, and not handed to Opacus
    assert list(sampled) == [layer.bias] and not hasattr(layer.bias, "_current_grad_sample")  # a view: Opacus copies it
    again = torch.randn(4, 3, 2, 1, 1)  # a second forward's gradient goes to Opacus, which adds it
    assert list(_kept_as_computed(lambda *_: {layer.weight: again})(layer, acts, backprops)) == [layer.weight]
