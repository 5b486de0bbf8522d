"""The shared pix2pix optimisation: conditional GAN + lambda * L1 (Eq. 1-2 of the paper).

``fit_gan_l1`` trains a generator towards a *target function* of the batch: for the teacher
("regular training") the target is the real y; for AKD it is the teacher's output G_t(x)
(Eq. 4-5); DMP drops the GAN term. DP-SGD runs the same loop with its private step on Poisson batches.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from akdray import seeds
from akdray.config import ConfigError, RunConfig
from akdray.data.jitter import batch_jitter, identity


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run is recorded as failed, not as a result."""


def resolve_device(cfg: RunConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def existing_device(device: torch.device | str) -> torch.device:
    """``device`` if this machine has it; else a ConfigError naming the field (before any work)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"field 'device': {device!r} is not cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"field 'device': {str(device)!r} asks for a GPU but this machine has no CUDA device "
                              "(use device=auto or cpu)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"field 'device': {str(device)!r} does not exist; this machine has "
                              f"{count} CUDA device(s): cuda:0..cuda:{count - 1}")
    elif device.type != "cpu":
        raise ConfigError(f"field 'device': {str(device)!r} is not cpu, cuda or cuda:N")
    return device


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """Eq. 1's log-loss (``vanilla``, with logits) or the least-squares variant (``lsgan``)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "lsgan":
        return nn.functional.mse_loss(logits, target)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def linear_decay(epochs: int, epochs_decay: int) -> Callable[[int], float]:
    """pix2pix's 'linear' lr policy: constant for ``epochs``, then linearly to 0 over ``epochs_decay``."""
    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)
    return factor


def make_adam(module: nn.Module, cfg: RunConfig) -> torch.optim.Adam:
    """pix2pix's Adam(lr, (beta1, beta2)), as torch's fused kernel (one pass over all parameters).

    The same update rule as the per-tensor loop ``torch.optim.Adam`` runs by default on a CPU,
    rounded differently (so runs are not bit for bit those of akdray before it). A cpu-small pix2pix
    step on one CPU core costs 0.85-0.90 of the loop's (``benchmarks/bench_dpsgd_step.py``).
    """
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def gan_l1_step(G: nn.Module, D: nn.Module | None, opt_G, opt_D, x: torch.Tensor, target: torch.Tensor,
                lam: float, gan_mode: str, gan_weight: float = 1.0) -> dict[str, float]:
    """One pix2pix iteration. D: max log D(x,t) + log(1 - D(x,G(x))); G: w * GAN + lam * |t - G(x)|_1.

    With ``D=None`` it is a pure L1 regression (the DMP-style distillation baseline, or an L1-only
    teacher with ``gan_weight=0``).
    """
    fake = G(x)
    losses: dict[str, float] = {}
    if D is not None:
        opt_D.zero_grad(set_to_none=True)
        loss_D = 0.5 * (gan_loss(D(x, target), True, gan_mode) + gan_loss(D(x, fake.detach()), False, gan_mode))
        loss_D.backward()
        opt_D.step()
        losses["loss_D"] = loss_D.item()
    opt_G.zero_grad(set_to_none=True)
    loss_l1 = nn.functional.l1_loss(fake, target)
    loss_G = lam * loss_l1
    if D is not None:
        loss_gan = gan_loss(D(x, fake), True, gan_mode)
        loss_G = loss_G + gan_weight * loss_gan
        losses["loss_G_gan"] = loss_gan.item()
    loss_G.backward()
    opt_G.step()
    losses["loss_G_l1"] = loss_l1.item()
    if not all(math.isfinite(v) for v in losses.values()):
        raise TrainingDiverged(f"non-finite loss {losses}")
    return losses


@dataclass
class History:
    """Per-epoch mean losses (over the steps that returned losses) and the steps taken."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0  # every optimiser step, noise-only ones (an empty DP-SGD batch) included

    def add(self, sums: dict[str, float], n: int) -> dict[str, float]:
        mean = {k: v / max(n, 1) for k, v in sums.items()}
        self.epochs.append(mean)
        return mean


# One training step: (x, target) of a batch -> its losses, or None for a step that saw no example
# (DP-SGD's noise-only step on an empty Poisson batch).
StepFn = Callable[[torch.Tensor, torch.Tensor], "dict[str, float] | None"]
Batches = Callable[[int], Iterable[torch.Tensor]]  # epoch -> the index batches of that epoch


@dataclass(frozen=True)
class Step:
    """What :func:`fit_gan_l1` trains with: the step, and the optimisers whose learning rate it decays."""

    run: StepFn
    optimizers: tuple[torch.optim.Optimizer, ...]


def jitter_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The crops and flips of one batch: a seed stream of their own, fixed by (seed, epoch, step), where
    ``step`` counts the batches of ``epoch`` from 0."""
    state = seeds.JITTER.state(seed, epoch, step, dtype=np.uint64)
    return torch.Generator().manual_seed(state & 0x7FFF_FFFF_FFFF_FFFF)


def shuffled_batches(n: int, batch_size: int, seed: int) -> Batches:
    """Every index once per epoch, in an order drawn from (``seed``, epoch), ``batch_size`` at a time."""
    def epoch_batches(epoch: int) -> Iterator[torch.Tensor]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seeds.EPOCH_ORDER.seed(seed) + epoch))
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]
    return epoch_batches


def gan_l1(G: nn.Module, D: nn.Module | None, cfg: RunConfig, *, lam: float, device: torch.device,
           gan_weight: float = 1.0) -> Step:
    """The plain pix2pix step (:func:`gan_l1_step`) of G (and D), on ``device``, in train mode, each with
    its own Adam (:func:`make_adam`)."""
    G.to(device).train()
    opt_G, opt_D = make_adam(G, cfg), None
    if D is not None:
        D.to(device).train()
        opt_D = make_adam(D, cfg)

    def run(x: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return gan_l1_step(G, D, opt_G, opt_D, x, target, lam, cfg.gan_mode, gan_weight)

    return Step(run, (opt_G,) if opt_D is None else (opt_G, opt_D))


def fit_gan_l1(inputs: torch.Tensor, target_fn: Callable[[torch.Tensor, torch.Tensor, Callable], torch.Tensor],
               cfg: RunConfig, *, step: Step, batches: Batches, epochs: int, epochs_decay: int, desc: str,
               device: torch.device, status: Callable[[History], dict[str, str]] | None = None) -> History:
    """The one training loop: ``epochs + epochs_decay`` epochs of ``batches`` of uint8 ``inputs``.

    Each batch of indices is jittered (``cfg.jitter``: :func:`jitter_generator` of the batch's epoch and
    its place in the epoch), labelled by ``target_fn`` and handed to ``step``; the learning rates of
    ``step.optimizers`` follow pix2pix's linear decay (:func:`linear_decay`), and each epoch's mean
    losses go into the returned :class:`History`. Teachers and students take :func:`gan_l1` over
    :func:`shuffled_batches`; DP-SGD its private step over Poisson batches (:mod:`akdray.defenses.dpsgd`).

    ``target_fn(index, x, augment)`` returns the batch's float targets on ``device``; it is the only
    way the loop learns targets, so callers decide exactly what the generator is allowed to see.
    ``x`` is already jittered; ``augment`` applies the same crop and flip to targets that are read
    from storage (a labeller that maps x to its target, as the teacher query, needs none).
    ``status(history)`` adds to the progress bar's figures (DP-SGD: epsilon so far).
    """
    scheds = [torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(epochs, epochs_decay)) for opt in step.optimizers]
    history = History()
    bar = tqdm(range(epochs + epochs_decay), desc=desc, unit="ep", leave=False, dynamic_ncols=True)
    for epoch in bar:
        sums: dict[str, float] = {}
        counted = 0
        for batch, index in enumerate(batches(epoch)):
            augment = identity
            if cfg.jitter and len(index):
                augment = batch_jitter(len(index), inputs.shape[-1], jitter_generator(cfg.seed, epoch, batch))
            x = augment(to_float(inputs[index].to(device)))
            losses = step.run(x, target_fn(index, x, augment))
            history.steps += 1
            if losses is not None:
                counted += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
        for s in scheds:
            s.step()
        shown = {k: f"{v:.3f}" for k, v in history.add(sums, counted).items()}
        bar.set_postfix({**shown, **(status(history) if status else {})})
    return history


def inference_copy(G: nn.Module, mode: str, dropout: bool = False) -> nn.Module:
    """A frozen deep copy of G for inference, so the caller's running statistics never change.

    ``mode="eval"`` uses BatchNorm running statistics (dropout, the noise z, on only if
    ``dropout``); ``mode="train"`` is pix2pix's default test behaviour: batch statistics and
    dropout on (run it one image at a time with :func:`forward_in_mode`).
    """
    model = copy.deepcopy(G)
    model.requires_grad_(False)
    model.train(mode == "train")
    if mode == "eval" and dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train()
    return model


def forward_in_mode(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """``model(x)``; in train mode image by image (batch 1), as pix2pix tests."""
    if mode == "train":
        return torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    return model(x)


@torch.inference_mode()
def generate(G: nn.Module, inputs: torch.Tensor, mode: str, *, device: torch.device,
             batch_size: int = 16, dropout: bool = False) -> torch.Tensor:
    """G(x) for uint8 inputs -> float [-1, 1] on CPU, in inference ``mode`` (see :func:`inference_copy`)."""
    model = inference_copy(G, mode, dropout).to(device)
    outs = [forward_in_mode(model, to_float(inputs[i : i + batch_size].to(device)), mode).cpu()
            for i in range(0, len(inputs), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, 3, *inputs.shape[2:])


def fit_teacher(cfg: RunConfig, train_x: torch.Tensor, train_y: torch.Tensor, device: torch.device):
    """Regular pix2pix training on the private pairs (the model that leaks)."""
    from akdray.models import build_discriminator, build_generator

    torch.manual_seed(cfg.seed)
    G = build_generator(cfg)
    D = build_discriminator(cfg) if cfg.gan_weight > 0 else None  # gan_weight 0: L1-only pix2pix
    targets = train_y.to(device)
    history = fit_gan_l1(train_x, lambda index, x, augment: augment(to_float(targets[index.to(device)])), cfg,
                         step=gan_l1(G, D, cfg, lam=cfg.l1_lambda, device=device, gan_weight=cfg.gan_weight),
                         batches=shuffled_batches(len(train_x), cfg.batch_size, cfg.seed),
                         epochs=cfg.epochs, epochs_decay=cfg.epochs_decay, desc="teacher", device=device)
    return G, history
