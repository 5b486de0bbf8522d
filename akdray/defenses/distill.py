"""Knowledge distillation of the private teacher into a student trained on proxy inputs only.

AKD (Section III, Eq. 4-5): a fresh student G_s and student discriminator D_s; D_s tells
(x, G_t(x)) from (x, G_s(x)); G_s minimises the GAN term + lambda * ||G_s(x) - G_t(x)||_1 over
proxy inputs x. DMP-style baseline: the same with the L1 term only (no discriminator).

Privacy by construction: :func:`fit_student` receives the teacher as a *query function* and the
proxy set as :class:`InputImages` (inputs, no targets). Nothing here can reach a private pair.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from akdray import seeds
from akdray.config import RunConfig
from akdray.data.splits import InputImages
from akdray.models import build_discriminator, build_generator
from akdray.train import History, fit_gan_l1, forward_in_mode, gan_l1, inference_copy, shuffled_batches

TeacherQuery = Callable[[torch.Tensor], torch.Tensor]


def teacher_query(teacher: nn.Module, mode: str, dropout: bool) -> TeacherQuery:
    """Black-box access to G_t: float [-1, 1] batch in, float batch out, no gradients.

    The teacher is queried through a private frozen copy (:func:`akdray.train.inference_copy`):
    ``mode="train"`` runs image by image with batch statistics and dropout; ``mode="eval"`` uses
    the running statistics, with dropout (the noise z) on only if ``dropout``.
    """
    model = inference_copy(teacher, mode, dropout)

    @torch.no_grad()
    def query(x: torch.Tensor) -> torch.Tensor:
        return forward_in_mode(model, x, mode)

    return query


def fit_student(cfg: RunConfig, query: TeacherQuery, proxy: InputImages, *, adversarial: bool,
                device: torch.device) -> tuple[nn.Module, History]:
    """Train a fresh student on ``proxy`` inputs labelled by ``query`` (AKD if ``adversarial``, else DMP)."""
    if not isinstance(proxy, InputImages):
        raise TypeError("fit_student takes the proxy set as InputImages (inputs only), "
                        f"not {type(proxy).__name__}")
    # A fresh student: its initial weights come from a seed stream of their own, not the teacher's
    # (the teacher was initialised after manual_seed(cfg.seed)).
    torch.manual_seed(seeds.STUDENT_INIT.state(cfg.seed))
    student = build_generator(cfg)
    student_d = build_discriminator(cfg) if adversarial else None
    history = fit_gan_l1(
        proxy.x, lambda index, x, augment: query(x), cfg,
        step=gan_l1(student, student_d, cfg, lam=cfg.distill_lambda, device=device),
        batches=shuffled_batches(len(proxy.x), cfg.batch_size, cfg.seed),
        epochs=cfg.distill_epochs, epochs_decay=cfg.distill_epochs_decay, desc="akd" if adversarial else "dmp",
        device=device,
    )
    return student, history
