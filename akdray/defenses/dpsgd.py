"""DP-SGD baseline: pix2pix (GAN + lambda * L1) with both networks trained by DP-SGD (Opacus).

Privacy unit: one private pair i = (x_i, y_i). Both networks touch it every time it is sampled:
D through the real pair (x_i, y_i) and the fake pair (x_i, G(x_i)); G through |y_i - G(x_i)|_1 and
the GAN term D(x_i, G(x_i)). So both are trained with Opacus' per-sample clipping + Gaussian noise.

Design (see the module-level helpers for each point):

* **Norm.** Opacus forbids BatchNorm (running statistics mix examples and are not private).
  ``norm="batch"`` is replaced by ``"group"`` (``GroupNorm(min(32, C), C)``, the same layer
  ``ModuleValidator.fix`` would substitute), but the networks are *built* with ``norm="group"``
  so the convolutions also get their biases and the returned state_dict loads into
  ``build_generator(cfg.replace(norm="group"))``. ``"instance"`` (affine=False, no running stats)
  and ``"group"`` are kept. :func:`dp_norm` / :func:`dp_model_config` give the norm actually used;
  the checkpoint must record ``dp_model_config(cfg)``.
* **The step** is :func:`akdray.train.gan_l1_step`, unchanged, on Opacus ``GradSampleModule`` s
  with ``DPOptimizer`` s (Adam inside). Per-sample gradients:

  - D's loss 0.5*(BCE(D(x,y),1) + BCE(D(x,G(x).detach()),0)) runs D twice before one backward.
    Opacus 1.6 stores one activation per forward (``module.activations``, a stack) and counts
    forwards in ``p._forward_counter``; each backward-hook call pops the matching activation
    (autograd runs the later-built fake branch first, LIFO) and *adds* its per-sample gradient
    into ``p._current_grad_sample``, promoted to ``p.grad_sample`` when the counter is back to 0.
    So ``grad_sample[i]`` is the gradient of example i's *whole* D loss (real + fake term) and is
    clipped once, as one unit: sensitivity C, not 2C (tested against per-example loops and by the
    norm of the clipped-sum difference between neighbouring batches).
  - G's loss back-propagates through D. D's hooks would then compute D per-sample gradients
    that nobody uses (and append them to D's already-processed ``grad_sample``). The D optimizer
    (:class:`_GatedDPOptimizer`) therefore switches D's Opacus hooks off right after its step and
    back on at its next ``zero_grad`` (the first thing ``gan_l1_step`` does for D): D's per-sample
    state can never leak from a G step into a D step, and no time is wasted.
  - Opacus' full backward hooks forbid in-place ops on hooked layers' outputs, and pix2pix uses
    in-place (Leaky)ReLUs. They are made out-of-place while training (:func:`_out_of_place`);
    the U-Net's block-leading LeakyReLU, whose in-place effect also reaches the skip connection,
    becomes an Identity plus a pre-hook applying it to the block input, so the function computed
    is exactly the plain model's. Everything is undone on the returned generator.
* **Sampling.** Opacus' Poisson sampler (``UniformWithReplacementSampler``), seeded, with
  Opacus' ``make_private`` convention: ``ceil(N / batch_size)`` steps per epoch, sample rate
  q = 1 / that, expected batch N*q (the "mean" loss denominator). An empty batch still takes a
  noise-only step for both networks (as Opacus does), never a skipped one.
* **Accounting.** Each step releases two Gaussian mechanisms on the *same* Poisson batch: D's
  noisy clipped gradient and then G's (adaptively, through the new D). Conditioned on the batch
  the pair is an adaptive composition of two Gaussians of sensitivity C and noise sigma*C, i.e.
  one Gaussian with noise multiplier sigma/sqrt(2); with the shared subsampling the step is one
  sampled Gaussian mechanism (q, sigma/sqrt(2)). That is what is fed to Opacus' RDP accountant
  (:func:`dp_epsilon`). Adding the two mechanisms as independent steps (q, sigma) twice would
  under-count: they share the batch, so their privacy losses are not independently amplified
  (sigma=1, q=0.02, 250 steps, delta=1/200: 3.03 shared vs 1.72 "doubled history").
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from torch import nn
from tqdm.auto import tqdm

from akdray.config import RunConfig
from akdray.data.splits import PairedImages
from akdray.models import UnetBlock, build_discriminator, build_generator
from akdray.train import History, TrainingDiverged, gan_l1_step, linear_decay, make_adam, to_float

# Opacus attributes left on parameters / modules by its hooks and optimizers.
_PARAM_ATTRS = ("grad_sample", "_current_grad_sample", "summed_grad", "_forward_counter")
_MODULE_ATTRS = ("activations", "max_batch_len")
_FIRST_LAYER_WARNING = "Full backward hook is firing when gradients are computed with respect to module outputs"


# --------------------------------------------------------------------------------------------
# Configuration: the norm actually trained
# --------------------------------------------------------------------------------------------
def dp_norm(cfg: RunConfig) -> str:
    """The norm the DP-SGD networks use: BatchNorm is not allowed by Opacus -> GroupNorm."""
    return "group" if cfg.norm == "batch" else cfg.norm


def dp_model_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the norm actually used; record this one with the DP-SGD checkpoint."""
    return cfg if dp_norm(cfg) == cfg.norm else cfg.replace(norm=dp_norm(cfg))


def dp_delta(cfg: RunConfig, n_train: int) -> float:
    """``cfg.dp_delta``, or 1 / N_train when it is 0."""
    return cfg.dp_delta if cfg.dp_delta > 0 else 1.0 / n_train


def poisson_schedule(n_train: int, batch_size: int) -> tuple[int, float, float]:
    """(steps per epoch, sample rate q, expected batch size), as Opacus' ``make_private``:
    ``ceil(N / B)`` steps of Poisson batches with q = 1 / steps, so an epoch sees N on average."""
    if n_train <= 0:
        raise ValueError("DP-SGD needs a non-empty training set")
    steps = math.ceil(n_train / batch_size)
    return steps, 1.0 / steps, n_train / steps


# --------------------------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------------------------
def effective_noise_multiplier(noise_multiplier: float) -> float:
    """One step = D's and G's Gaussian mechanisms on the same batch = one of noise sigma/sqrt(2)."""
    return noise_multiplier / math.sqrt(2.0)


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """epsilon at ``delta`` after ``steps`` joint (D + G) steps, from Opacus' RDP accountant."""
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    accountant = RDPAccountant()
    accountant.history = [(effective_noise_multiplier(noise_multiplier), sample_rate, steps)]
    eps = float(accountant.get_epsilon(delta))
    return eps if math.isfinite(eps) else float("inf")


# --------------------------------------------------------------------------------------------
# Making pix2pix's networks Opacus-compatible
# --------------------------------------------------------------------------------------------
def _out_of_place(model: nn.Module) -> Callable[[], None]:
    """Make every in-place activation out-of-place without changing the function; returns undo.

    A non-outermost U-Net block starts with ``LeakyReLU(inplace=True)`` on its input x and then
    returns ``cat([x, out])``: the in-place op also changes the skip half. That LeakyReLU becomes
    an Identity and a forward pre-hook applies it (out of place) to the block's input, so the
    skip still carries LeakyReLU(x).
    """
    undo: list[Callable[[], None]] = []
    for block in list(model.modules()):
        if isinstance(block, UnetBlock) and not block.outermost:
            act = block.model[0]
            if isinstance(act, nn.LeakyReLU) and act.inplace:
                block.model[0] = nn.Identity()
                handle = block.register_forward_pre_hook(
                    lambda _m, args, slope=act.negative_slope: (nn.functional.leaky_relu(args[0], slope), *args[1:]))

                def restore(block=block, act=act, handle=handle) -> None:
                    handle.remove()
                    block.model[0] = act
                undo.append(restore)
    for m in model.modules():
        if getattr(m, "inplace", None) is True:
            m.inplace = False
            undo.append(lambda m=m: setattr(m, "inplace", True))

    def undo_all() -> None:
        for fn in reversed(undo):
            fn()
    return undo_all


class _GatedDPOptimizer(DPOptimizer):
    """DPOptimizer whose module's Opacus hooks are on only from ``zero_grad`` to ``step``.

    Used for D: between D's step and its next ``zero_grad`` the only backward through D is G's,
    whose D per-sample gradients must neither be computed nor reach D's next clipped step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, gsm: GradSampleModule, **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        self._gsm = gsm

    def zero_grad(self, set_to_none: bool = False) -> None:
        super().zero_grad(set_to_none)
        self._gsm.enable_hooks()

    def step(self, closure=None):
        out = super().step(closure)
        self._gsm.disable_hooks()
        for p in self.params:
            p.grad_sample = None
        return out


@dataclass
class PrivateGAN:
    """G and D wrapped for DP-SGD, with their DP optimisers; :meth:`step` is one iteration."""

    G: GradSampleModule
    D: GradSampleModule
    opt_G: DPOptimizer
    opt_D: _GatedDPOptimizer
    _undo: tuple[Callable[[], None], ...]

    def step(self, x: torch.Tensor, target: torch.Tensor, lam: float, gan_mode: str) -> dict[str, float] | None:
        """One pix2pix iteration on a Poisson batch (losses), or a noise-only step if it is empty (None)."""
        if len(x) == 0:
            self._noise_only_step()
            return None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_FIRST_LAYER_WARNING)
            return gan_l1_step(self.G, self.D, self.opt_G, self.opt_D, x, target, lam, gan_mode)

    def _noise_only_step(self) -> None:
        """Empty batch: clipped sum is 0, the update is noise only (Opacus' behaviour), D then G."""
        for opt in (self.opt_D, self.opt_G):
            opt.zero_grad(set_to_none=True)
            for p in opt.params:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            opt.step()

    def unwrap_generator(self) -> nn.Module:
        """The plain generator: Opacus hooks removed, in-place activations restored."""
        return _unwrap(self.G, self._undo[0])

    def unwrap_discriminator(self) -> nn.Module:
        return _unwrap(self.D, self._undo[1])


def _conv_transpose2d_grad_sample(layer: nn.ConvTranspose2d, activations: list[torch.Tensor],
                                  backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients of a ConvTranspose2d (Opacus 1.6 only has a slow functorch fallback).

    conv_transpose2d(a; W) is the adjoint of conv2d(.; W) (same W, same stride / padding), so
    <g, conv_transpose2d(a; W)> = <conv2d(g; W), a> and the per-sample weight gradient is that of
    a conv2d with input g and output gradient a: ``grad_W[n] = a[n] @ unfold(g[n])^T``.
    """
    a = activations[0].to(backprops.dtype)
    n = a.shape[0]
    ret: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        cols = nn.functional.unfold(backprops, layer.kernel_size, padding=layer.padding, stride=layer.stride)
        grad = torch.einsum("nil,njl->nij", a.reshape(n, a.shape[1], -1), cols)
        ret[layer.weight] = grad.reshape(n, *layer.weight.shape).contiguous()
    if layer.bias is not None and layer.bias.requires_grad:
        ret[layer.bias] = backprops.sum(dim=(2, 3))
    return ret


class _Pix2PixGradSampleModule(GradSampleModule):
    """Opacus' hook-based GradSampleModule plus an exact ConvTranspose2d grad sampler (local to
    this class: Opacus' global registry is left untouched)."""

    GRAD_SAMPLERS = {**GradSampleModule.GRAD_SAMPLERS, nn.ConvTranspose2d: _conv_transpose2d_grad_sample}

    def __init__(self, m: nn.Module, **kwargs) -> None:
        for name, layer in m.named_modules():
            if isinstance(layer, nn.ConvTranspose2d) and (
                    layer.groups != 1 or tuple(layer.dilation) != (1, 1) or tuple(layer.output_padding) != (0, 0)
                    or isinstance(layer.padding, str)):
                raise NotImplementedError(f"{name}: only groups=1, dilation=1, output_padding=0 ConvTranspose2d is supported")
        super().__init__(m, **kwargs)


def _unwrap(gsm: GradSampleModule, undo: Callable[[], None]) -> nn.Module:
    gsm.remove_hooks()
    module = gsm._module
    undo()
    for p in module.parameters():
        p.grad = None  # the last noisy gradient; not part of the model
        for attr in _PARAM_ATTRS:
            if hasattr(p, attr):
                delattr(p, attr)
    for m in module.modules():
        for attr in _MODULE_ATTRS:
            if hasattr(m, attr):
                delattr(m, attr)
    return module


def make_private_gan(G: nn.Module, D: nn.Module, cfg: RunConfig, *, expected_batch_size: float,
                     noise_generator: torch.Generator | None) -> PrivateGAN:
    """Wrap G and D (modified in place) for DP-SGD with Adam(cfg) inside Opacus DPOptimizers.

    ``noise_multiplier=cfg.dp_noise_multiplier``, ``max_grad_norm=cfg.dp_max_grad_norm``,
    loss_reduction "mean" over ``expected_batch_size``, ``secure_mode=False`` (seeded noise).
    """
    for name, model in (("generator", G), ("discriminator", D)):
        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise ValueError(f"the {name} is not Opacus-compatible (norm={cfg.norm!r}; DP-SGD needs "
                             f"norm='group' or 'instance'): {errors}")
    undo = (_out_of_place(G), _out_of_place(D))
    G_dp = _Pix2PixGradSampleModule(G, batch_first=True, loss_reduction="mean")
    D_dp = _Pix2PixGradSampleModule(D, batch_first=True, loss_reduction="mean")
    kwargs = dict(noise_multiplier=cfg.dp_noise_multiplier, max_grad_norm=cfg.dp_max_grad_norm,
                  expected_batch_size=expected_batch_size, loss_reduction="mean",
                  generator=noise_generator, secure_mode=False)
    opt_G = DPOptimizer(make_adam(G_dp, cfg), **kwargs)
    opt_D = _GatedDPOptimizer(make_adam(D_dp, cfg), gsm=D_dp, **kwargs)
    return PrivateGAN(G_dp, D_dp, opt_G, opt_D, undo)



# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _generators(cfg: RunConfig, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """Seeded, independent streams for Poisson sampling (CPU) and the DP noise (on ``device``)."""
    sampling = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)
    noise = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + 71)
    return sampling, noise


def fit_dpsgd(cfg: RunConfig, train: PairedImages, device: torch.device) -> tuple[nn.Module, History, dict]:
    """DP-SGD pix2pix on the private pairs; returns (plain UnetGenerator, History, privacy dict).

    The generator is built with :func:`dp_model_config` ``(cfg)`` (norm "group" instead of
    "batch"); the dict is ``{"dp_epsilon", "dp_delta", "dp_sample_rate", "dp_steps"}`` with
    dp_steps = G optimiser steps (each also a D step, accounted jointly, see module doc).
    """
    n = len(train)
    steps_per_epoch, sample_rate, expected_batch = poisson_schedule(n, cfg.batch_size)
    delta = dp_delta(cfg, n)
    model_cfg = dp_model_config(cfg)

    torch.manual_seed(cfg.seed)
    G, D = build_generator(model_cfg).to(device).train(), build_discriminator(model_cfg).to(device).train()
    sampling_gen, noise_gen = _generators(cfg, device)
    gan = make_private_gan(G, D, cfg, expected_batch_size=expected_batch, noise_generator=noise_gen)
    factor = linear_decay(cfg.epochs, cfg.epochs_decay)
    scheds = [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in (gan.opt_G, gan.opt_D)]
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=sample_rate,
                                            generator=sampling_gen, steps=steps_per_epoch)
    xs, ys = train.x.to(device), train.y.to(device)

    history = History()
    steps = 0
    bar = tqdm(range(cfg.epochs + cfg.epochs_decay), desc="dpsgd", unit="ep", leave=False, dynamic_ncols=True)
    for _epoch in bar:
        sums: dict[str, float] = {}
        nonempty = 0
        for indices in sampler:
            index = torch.as_tensor(indices, dtype=torch.long, device=device)
            x, target = to_float(xs[index]), to_float(ys[index])
            losses = gan.step(x, target, cfg.l1_lambda, cfg.gan_mode)
            steps += 1
            if losses is not None:
                nonempty += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
        for s in scheds:
            s.step()
        mean = history.add(sums, nonempty)
        eps = dp_epsilon(cfg.dp_noise_multiplier, sample_rate, steps, delta)
        bar.set_postfix({**{k: f"{v:.3f}" for k, v in mean.items()}, "eps": f"{eps:.2f}"})

    generator = gan.unwrap_generator()
    bad = [name for name, p in generator.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(f"non-finite generator weights after DP-SGD ({', '.join(bad[:3])}...)")
    privacy = {"dp_epsilon": dp_epsilon(cfg.dp_noise_multiplier, sample_rate, steps, delta),
               "dp_delta": float(delta), "dp_sample_rate": float(sample_rate), "dp_steps": int(steps)}
    return generator, history, privacy
