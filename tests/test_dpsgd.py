"""DP-SGD baseline (Opacus): per-sample gradients, clipping unit, accounting, determinism."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

import akdray.train
from akdray.defenses.dpsgd import (RDP_ORDERS, dp_epsilon, dp_model_config, dp_norm, fit_dpsgd, poisson_schedule,
                                   rdp_per_step)
from akdray.defenses.private_gan import _out_of_place
from akdray.models import UnetGenerator, build_generator
from akdray.testing import DP_CFG, float_batch as _batch, private_gan as _private, seeded_models as _models
from akdray.train import TrainingDiverged, gan_l1_step, gan_loss, make_adam

# The tests call backward on Opacus-wrapped first layers (whose input needs no grad) directly.
pytestmark = [pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
              pytest.mark.usefixtures("one_thread")]
CPU = torch.device("cpu")
CFG = DP_CFG


# One DP-SGD run shared by several tests: default norm ("batch"), a decay epoch, sigma = 2.
FIT_CFG = CFG.replace(norm="batch", epochs=1, epochs_decay=1, dp_noise_multiplier=2.0)


@pytest.fixture(scope="module")
def fitted(train_set):
    return fit_dpsgd(FIT_CFG, train_set, CPU)


def _loss_D(D, x, y, fake) -> torch.Tensor:  # the D loss of gan_l1_step
    return 0.5 * (gan_loss(D(x, y), True, "vanilla") + gan_loss(D(x, fake.detach()), False, "vanilla"))


def _loss_G(D, x, y, fake, lam: float) -> torch.Tensor:  # the G loss of gan_l1_step
    return lam * nn.functional.l1_loss(fake, y) + gan_loss(D(x, fake), True, "vanilla")


def _max_rel_err(grads: list[torch.Tensor], samples: list[torch.Tensor]) -> float:
    scale = max(g.abs().max().item() for g in grads)
    return max((g - s).abs().max().item() for g, s in zip(grads, samples)) / scale


# ------------------------------------------------------------------------------------------------
# Norm / model compatibility
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm, used", [("batch", "group"), ("group", "group"), ("instance", "instance")])
def test_norm_used_is_opacus_compatible(norm: str, used: str) -> None:
    cfg = CFG.replace(norm=norm)
    assert dp_norm(cfg) == used and dp_model_config(cfg).norm == used
    G, D = _models(dp_model_config(cfg))
    assert ModuleValidator.validate(G, strict=False) == [] and ModuleValidator.validate(D, strict=False) == []


def test_out_of_place_patch_keeps_the_function_and_is_undone() -> None:
    G, D = _models(CFG.replace(use_dropout=False))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ref_G, ref_D = G(x.clone()), D(x.clone(), x.clone())
        undo_G, undo_D = _out_of_place(G), _out_of_place(D)
        assert not any(getattr(m, "inplace", False) for m in [*G.modules(), *D.modules()])
        assert torch.equal(G(x.clone()), ref_G) and torch.equal(D(x.clone(), x.clone()), ref_D)
        undo_G(), undo_D()
        assert torch.equal(G(x.clone()), ref_G)
    fresh = build_generator(CFG.replace(use_dropout=False))
    assert [repr(m) for m in G.modules()] == [repr(m) for m in fresh.modules()]
    assert all(not m._forward_pre_hooks for m in G.modules())


# ------------------------------------------------------------------------------------------------
# Per-sample gradients: the privacy unit is the example, in D (two forwards) and in G (through D)
# ------------------------------------------------------------------------------------------------
def _after_d_backward(train_set):
    """A private pair (no dropout) and plain copies of its weights, after D's loss on 3 examples went backward."""
    cfg = CFG.replace(use_dropout=False)
    G, D = _models(cfg)
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D)
    gan = _private(cfg, G, D)
    x, y = _batch(train_set, 3)
    fake = gan.G(x)
    gan.opt_D.zero_grad(set_to_none=True)
    _loss_D(gan.D, x, y, fake).backward()
    return gan, G_ref, D_ref, x, y, fake


def test_discriminator_per_sample_grad_is_whole_example_loss(train_set) -> None:
    gan, G_ref, D_ref, x, y, _fake = _after_d_backward(train_set)
    samples = [p.grad_sample for p in gan.D.parameters()]
    assert all(s.shape[0] == 3 for s in samples)  # one per example, not per forward pass
    for i in range(3):
        D_ref.zero_grad()
        xi, yi = x[i : i + 1], y[i : i + 1]
        _loss_D(D_ref, xi, yi, G_ref(xi)).backward()
        assert _max_rel_err([p.grad for p in D_ref.parameters()], [s[i] for s in samples]) < 1e-4


def test_generator_per_sample_grad_through_D_and_D_untouched(train_set) -> None:
    gan, G_ref, D_ref, x, y, fake = _after_d_backward(train_set)
    gan.opt_D.step()  # D's hooks are off from here until D's next zero_grad
    D_ref.load_state_dict(gan.D._module.state_dict())
    gan.opt_G.zero_grad(set_to_none=True)
    _loss_G(gan.D, x, y, fake, 100.0).backward()
    assert all(p.grad_sample is None for p in gan.D.parameters())  # no D per-sample state from G's step
    assert all(not getattr(m, "activations", None) for m in gan.D.modules())
    samples = [p.grad_sample for p in gan.G.parameters()]
    for i in range(3):
        G_ref.zero_grad()
        xi, yi = x[i : i + 1], y[i : i + 1]
        _loss_G(D_ref, xi, yi, G_ref(xi), 100.0).backward()
        assert _max_rel_err([p.grad for p in G_ref.parameters()], [s[i] for s in samples]) < 1e-4
    gan.opt_D.zero_grad(set_to_none=True)
    assert gan.D.hooks_enabled


@pytest.mark.parametrize("net", ["D", "G"])
def test_one_clipped_gradient_per_example(train_set, net: str) -> None:
    """Neighbouring batches (with / without example 0) differ by at most C in the clipped sum,
    and exactly C when clipping is active: D's real and fake halves are clipped together."""
    clip = 1e-3
    cfg = CFG.replace(use_dropout=False, dp_noise_multiplier=0.0, dp_max_grad_norm=clip)
    G, D = _models(cfg)
    gan = _private(cfg, G, D)
    x, y = _batch(train_set, 4)

    def clipped_sum(xb: torch.Tensor, yb: torch.Tensor) -> list[torch.Tensor]:
        fake = gan.G(xb)
        if net == "D":
            opt = gan.opt_D
            opt.zero_grad(set_to_none=True)
            _loss_D(gan.D, xb, yb, fake).backward()
        else:
            gan.D.disable_hooks()
            opt = gan.opt_G
            opt.zero_grad(set_to_none=True)
            _loss_G(gan.D, xb, yb, fake, 100.0).backward()
        opt.clip_and_accumulate()
        out = [p.summed_grad.clone() for p in opt.params]
        opt.zero_grad(set_to_none=True)
        return out

    full, without = clipped_sum(x, y), clipped_sum(x[1:], y[1:])
    diff = math.sqrt(sum(((a - b) ** 2).sum().item() for a, b in zip(full, without)))
    assert diff == pytest.approx(clip, rel=1e-3)


# ------------------------------------------------------------------------------------------------
# sigma = 0 and a huge clipping norm is plain training
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["group", "instance"])
def test_sigma0_huge_clip_equals_plain_training(train_set, norm: str) -> None:
    """Same batch, same dropout masks, Adam: the DP path (sigma=0, C=1e9) is gan_l1_step's step."""
    cfg = CFG.replace(dp_noise_multiplier=0.0, dp_max_grad_norm=1e9, norm=norm)
    G, D = _models(cfg)
    G_dp, D_dp = copy.deepcopy(G), copy.deepcopy(D)
    opt_G, opt_D = make_adam(G, cfg), make_adam(D, cfg)
    gan = _private(cfg, G_dp, D_dp, expected=4.0)
    x, y = _batch(train_set, 4)
    pairs = [(G, gan.G._module), (D, gan.D._module)]
    peak: dict[str, float] = {}
    for step in range(3):  # several steps: D's state must survive G's backward through it
        torch.manual_seed(100 + step)
        plain = gan_l1_step(G, D, opt_G, opt_D, x, y, cfg.l1_lambda, cfg.gan_mode)
        torch.manual_seed(100 + step)
        private = gan.step(x, y, cfg.l1_lambda, cfg.gan_mode)
        assert private == pytest.approx(plain, rel=1e-4)
        for ref, dp in pairs:  # the gradients Adam consumed (D's include G's backward, in both)
            scale = max(p.grad.abs().max().item() for p in ref.parameters())
            for (name, p), q in zip(ref.named_parameters(), dp.parameters()):
                assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale), name
                peak[name + str(id(ref))] = max(peak.get(name + str(id(ref)), 0.0), p.grad.abs().max().item() / scale)
    # Adam's first steps are ~lr * sign(grad): parameters whose gradient is exactly 0 in exact
    # arithmetic (conv biases right before a per-channel GroupNorm) move by rounding noise; skip them.
    live = 0
    for ref, dp in pairs:
        for (name, p), q in zip(ref.named_parameters(), dp.parameters()):
            if peak[name + str(id(ref))] > 1e-5:
                live += 1
                assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name
    assert live >= 0.6 * len(peak)


def test_empty_poisson_batch_takes_a_noise_only_step() -> None:
    cfg = CFG.replace(dp_noise_multiplier=1.0)
    G, D = _models(cfg)
    gan = _private(cfg, G, D)
    before = [p.detach().clone() for p in [*gan.G.parameters(), *gan.D.parameters()]]
    empty = torch.zeros(0, 3, 16, 16)
    assert gan.step(empty, empty, cfg.l1_lambda, cfg.gan_mode) is None
    after = list(gan.G.parameters()) + list(gan.D.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


# ------------------------------------------------------------------------------------------------
# Accounting
# ------------------------------------------------------------------------------------------------
def test_epsilon_grows_as_sigma_falls_and_counts_both_networks() -> None:
    steps, q, _ = poisson_schedule(200, 4)
    assert q == pytest.approx(0.02)
    hi, lo = dp_epsilon(2.0, q, 5 * steps, 1 / 200), dp_epsilon(0.7, q, 5 * steps, 1 / 200)
    assert 0 < hi < lo < math.inf
    assert dp_epsilon(0.0, q, steps, 1e-5) == math.inf
    assert dp_epsilon(1.0, q, 0, 1e-5) == 0.0
    # One step is D's and G's Gaussian on the same batch: worse than either alone, and than the
    # two counted as independently sampled steps.
    from opacus.accountants import RDPAccountant

    single, doubled = RDPAccountant(), RDPAccountant()
    single.history, doubled.history = [(1.0, q, 250)], [(1.0, q, 500)]
    joint = dp_epsilon(1.0, q, 250, 1 / 200)
    assert joint > doubled.get_epsilon(1 / 200) > single.get_epsilon(1 / 200)


@pytest.mark.parametrize("sigma", [0.1, 0.2, 0.47, 1.0, 4.0])
def test_epsilon_is_minimised_over_orders_that_hold_the_optimum(sigma) -> None:
    """At small sigma Opacus' default orders (1.1-63) miss the optimum and overstate epsilon."""
    import warnings

    from opacus.accountants import RDPAccountant

    steps, q, _ = poisson_schedule(200, 4)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Optimal order is the")  # an edge of the grid
        eps = dp_epsilon(sigma, q, 40 * steps, 1 / 2000)
    default = RDPAccountant()
    default.history = [(sigma / math.sqrt(2), q, 40 * steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loose = default.get_epsilon(1 / 2000)
    assert 0 < eps <= loose * (1 + 1e-12)
    if sigma <= 0.2:
        assert eps < 0.5 * loose  # cpu-small, sigma 0.2: 1,410 instead of 3,545
    accountant = RDPAccountant()  # the same number as Opacus' accountant given the same orders
    accountant.history = [(sigma / math.sqrt(2), q, 40 * steps)]
    assert eps == pytest.approx(accountant.get_epsilon(1 / 2000, alphas=list(RDP_ORDERS)), rel=1e-9)
    per_step = rdp_per_step(sigma, q)  # computed once per run, then any step count is cheap
    assert dp_epsilon(sigma, q, 7 * steps, 1 / 2000, per_step) == pytest.approx(dp_epsilon(sigma, q, 7 * steps, 1 / 2000))


@pytest.mark.train
def test_fit_reports_privacy(fitted) -> None:
    _, history, privacy = fitted
    assert len(history.epochs) == 2 and set(history.epochs[0]) == {"loss_D", "loss_G_gan", "loss_G_l1"}
    assert set(privacy) == {"dp_epsilon", "dp_delta", "dp_sample_rate", "dp_steps"}
    assert privacy["dp_steps"] == 2 * 4 and privacy["dp_sample_rate"] == pytest.approx(0.25)
    assert privacy["dp_delta"] == pytest.approx(1 / 160)  # cfg.dp_delta = 0 -> 1 / (10 N_train)
    assert privacy["dp_epsilon"] == pytest.approx(dp_epsilon(2.0, 0.25, 8, 1 / 160))
    assert math.isfinite(privacy["dp_epsilon"]) and privacy["dp_epsilon"] < dp_epsilon(0.7, 0.25, 8, 1 / 160)


# ------------------------------------------------------------------------------------------------
# Divergence, determinism, the returned generator
# ------------------------------------------------------------------------------------------------
@pytest.mark.train
def test_nan_loss_raises_training_diverged(train_set, monkeypatch) -> None:
    monkeypatch.setattr(akdray.train, "gan_loss", lambda logits, real, mode: logits.mean() * float("nan"))
    with pytest.raises(TrainingDiverged, match="non-finite"):
        fit_dpsgd(CFG, train_set, CPU)


@pytest.mark.train
def test_huge_lr_raises_training_diverged(train_set) -> None:
    with pytest.raises(TrainingDiverged):
        fit_dpsgd(CFG.replace(lr=1e30, epochs=2), train_set, CPU)


@pytest.mark.train
def test_same_seed_same_weights(train_set, fitted) -> None:
    a, _, pa = fitted
    b, _, pb = fit_dpsgd(FIT_CFG, train_set, CPU)
    c, _, _ = fit_dpsgd(FIT_CFG.replace(seed=1), train_set, CPU)
    assert pa == pb
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.train
def test_returned_generator_is_plain_and_loads(train_set, fitted) -> None:
    G, _, _ = fitted  # FIT_CFG has the default norm "batch": trained (and to be recorded) as "group"
    G = copy.deepcopy(G)
    assert type(G) is UnetGenerator
    assert any(isinstance(m, nn.GroupNorm) for m in G.modules())
    assert all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in G.modules())
    assert all(not hasattr(p, "grad_sample") and not hasattr(p, "_forward_counter") for p in G.parameters())
    fresh = build_generator(dp_model_config(FIT_CFG))
    assert dp_model_config(FIT_CFG).norm == "group"
    fresh.load_state_dict(G.state_dict(), strict=True)
    assert [repr(m) for m in G.modules()] == [repr(m) for m in fresh.modules()]
    x = akdray.train.to_float(train_set.x[:2].clone())
    with torch.no_grad():
        assert torch.equal(G.eval()(x), fresh.eval()(x))
