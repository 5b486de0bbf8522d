"""akdray's DP-SGD step is Opacus' step, made cheaper: per-sample gradients kept as computed, and
the noise drawn, added and scaled in one pass (akdray.defenses.private_gan)."""
from __future__ import annotations

import copy

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from akdray.defenses.private_gan import _LeanDPOptimizer, _kept_as_computed
from akdray.testing import DP_CFG as CFG, float_batch as _batch, private_gan as _private, seeded_models as _models

pytestmark = [pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_lean_step_equals_stock_opacus_step(train_set, sigma: float) -> None:
    """Same weights, batch, dropout masks and noise seed: the gradients Adam receives (D's from its
    two forwards, G's through D), the noise included, and the weights are Opacus', bit for bit, for
    three steps. The expected batch (6) is not the batch drawn (4) and not a power of two."""
    cfg = CFG.replace(dp_noise_multiplier=sigma, dp_max_grad_norm=0.05)
    G, D = _models(cfg)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    lean, stock = _private(cfg, G, D, expected=6.0, seed=3), _private(cfg, G2, D2, expected=6.0, seed=3)
    stock.use_stock_opacus()
    for net in ("G", "D"):  # the reference really is Opacus' step, and akdray's is not
        assert getattr(stock, net).GRAD_SAMPLERS[nn.Conv2d] is GradSampleModule.GRAD_SAMPLERS[nn.Conv2d]
        assert getattr(lean, net).GRAD_SAMPLERS[nn.Conv2d] is not GradSampleModule.GRAD_SAMPLERS[nn.Conv2d]
        assert getattr(stock, "opt_" + net).add_noise.__func__ is DPOptimizer.add_noise
        assert getattr(lean, "opt_" + net).add_noise.__func__ is not DPOptimizer.add_noise
    x, y = _batch(train_set, 4)
    for step in range(3):
        for gan in (lean, stock):
            torch.manual_seed(50 + step)
            gan.step(x, y, cfg.l1_lambda, cfg.gan_mode)
        for a, b in ((lean.G, stock.G), (lean.D, stock.D)):
            for (name, p), q in zip(a.named_parameters(), b.parameters()):
                assert torch.equal(p.grad, q.grad), (step, name)
                assert torch.equal(p, q), (step, name)


@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("iterations", [1, 2])
def test_lean_noise_and_scale_are_opacus(secure: bool, iterations: int) -> None:
    """One optimiser step from given per-sample gradients (``iterations`` accumulated batches; Opacus'
    secure noise too): the gradient handed to Adam is DPOptimizer's, bit for bit."""
    grads = {}
    for cls in (_LeanDPOptimizer, DPOptimizer):
        torch.manual_seed(0)
        layer = nn.Linear(3, 2)
        opt = cls(torch.optim.Adam(layer.parameters()), noise_multiplier=1.3, max_grad_norm=0.7,
                  expected_batch_size=6.0, loss_reduction="mean", generator=torch.Generator().manual_seed(9),
                  secure_mode=secure)
        g = torch.Generator().manual_seed(1)
        for p in layer.parameters():
            parts = [torch.randn(5, *p.shape, generator=g) for _ in range(iterations)]
            p.grad_sample = parts[0] if iterations == 1 else parts
        assert opt.pre_step()
        grads[cls] = [p.grad.clone() for p in layer.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(grads[_LeanDPOptimizer], grads[DPOptimizer]))
    assert not torch.equal(grads[DPOptimizer][0], torch.zeros_like(grads[DPOptimizer][0]))


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
