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
  - Two changes make the step cheaper, not different (bit for bit Opacus' own step, the noise
    included; tested): a per-sample gradient a grad sampler has just computed is kept as is instead
    of being copied into a fresh zero tensor (:func:`~akdray.defenses.private_gan._kept_as_computed`),
    and each noisy gradient is drawn, added and scaled in one pass (``_LeanDPOptimizer``): 0.90
    of a cpu-small step, 0.80 with the fused Adam of :func:`akdray.train.make_adam`
    (``benchmarks/bench_dpsgd_step.py``).
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
from typing import Iterator

import numpy as np
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn

from akdray import seeds
from akdray.config import RunConfig
from akdray.data.splits import PairedImages
from akdray.defenses.private_gan import make_private_gan
from akdray.models import build_discriminator, build_generator
from akdray.train import History, Step, TrainingDiverged, fit_gan_l1, to_float

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
    """``cfg.dp_delta``, or 1 / (10 N_train) when it is 0.

    delta = 1/N would allow a mechanism that publishes one training record in the clear; the usual
    rule is delta well below 1/N, here ten times below.
    """
    return cfg.dp_delta if cfg.dp_delta > 0 else 0.1 / n_train


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


# RDP orders the accountant minimises over. Opacus' default grid starts at 1.1 and ends at 63; at
# small noise (sigma/sqrt(2) < 0.3, the low end of the sweep's sigma range) the optimal order lies
# below 1.1, so the default grid returns a valid but loose epsilon (cpu-small, sigma 0.2: 3,545 vs
# 1,410 here) with Opacus' "optimal order is the smallest alpha" warning; large noise wants > 63.
# Fractional orders cost ~7 ms each (a series), so the grid below 1.1 is coarse.
RDP_ORDERS: tuple[float, ...] = tuple(sorted({
    *(1 + x / 1000 for x in range(1, 10)), *(1 + x / 100 for x in range(1, 10)),
    *RDPAccountant.DEFAULT_ALPHAS, *range(64, 257, 8), 384, 512, 1024}))


def rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of one joint (D + G) step at each of :data:`RDP_ORDERS`: the sampled Gaussian mechanism
    (q, sigma/sqrt(2)) (Mironov et al. 2019); T steps compose to T times this (Mironov 2017, Prop. 1)."""
    return np.asarray(compute_rdp(q=sample_rate, noise_multiplier=effective_noise_multiplier(noise_multiplier),
                                  steps=1, orders=list(RDP_ORDERS)))


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
               per_step: np.ndarray | None = None) -> float:
    """epsilon at ``delta`` after ``steps`` joint (D + G) steps: Opacus' RDP accountant
    (``get_privacy_spent``, the conversion of Balle et al. 2020) minimised over :data:`RDP_ORDERS`.

    ``per_step`` (from :func:`rdp_per_step` with the same sigma and q) skips recomputing the
    per-step RDP, the expensive part, when epsilon is asked for after every epoch.
    """
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    rdp = (rdp_per_step(noise_multiplier, sample_rate) if per_step is None else per_step) * steps
    eps, _ = get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    eps = float(eps)
    return eps if math.isfinite(eps) else float("inf")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _generators(cfg: RunConfig, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """Seeded, independent streams for Poisson sampling (CPU) and the DP noise (on ``device``)."""
    sampling = torch.Generator().manual_seed(seeds.DP_SAMPLING.seed(cfg.seed))
    noise = torch.Generator(device=device).manual_seed(seeds.DP_NOISE.seed(cfg.seed))
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
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=sample_rate,
                                            generator=sampling_gen, steps=steps_per_epoch)
    ys = train.y.to(device)
    per_step = rdp_per_step(cfg.dp_noise_multiplier, sample_rate) if cfg.dp_noise_multiplier > 0 else None

    def poisson_batches(epoch: int) -> Iterator[torch.Tensor]:  # the sampler's generator runs on across epochs
        return (torch.as_tensor(indices, dtype=torch.long, device=device) for indices in sampler)

    def epsilon(history: History) -> float:
        return dp_epsilon(cfg.dp_noise_multiplier, sample_rate, history.steps, delta, per_step)

    history = fit_gan_l1(
        train.x.to(device), lambda index, x, augment: augment(to_float(ys[index])), cfg,
        step=Step(lambda x, target: gan.step(x, target, cfg.l1_lambda, cfg.gan_mode), (gan.opt_G, gan.opt_D)),
        batches=poisson_batches, epochs=cfg.epochs, epochs_decay=cfg.epochs_decay, desc="dpsgd", device=device,
        status=lambda h: {"eps": f"{epsilon(h):.2f}"},
    )
    generator = gan.unwrap_generator()
    bad = [name for name, p in generator.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(f"non-finite generator weights after DP-SGD ({', '.join(bad[:3])}...)")
    privacy = {"dp_epsilon": epsilon(history), "dp_delta": float(delta), "dp_sample_rate": float(sample_rate),
               "dp_steps": int(history.steps)}
    return generator, history, privacy
