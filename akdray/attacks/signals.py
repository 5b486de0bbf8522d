"""Signals: what a black-box attacker observes of a served generator.

The signal of every attack here is the per-image reconstruction loss ||G(x) - y||_1 (the
paper's Eq. 3), in pix2pix's [-1, 1] pixel units.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

Serve = Callable[[torch.Tensor], torch.Tensor]  # uint8 inputs [N,3,H,W] -> uint8 outputs


def reconstruction_loss(outputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per-image mean absolute error, both uint8 [N,3,H,W], in [-1, 1] units (as pix2pix's L1)."""
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ in shape")
    diff = (outputs.float() - targets.float()).abs() / 127.5
    return diff.flatten(1).mean(1).double().numpy()


def model_losses(serve: Serve, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The signal of one served model on the pairs (x, y): one loss per image."""
    return reconstruction_loss(serve(x), y)


def reference_losses(references: Sequence[Serve], x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The same signal from K reference models: [K, N] (shape [0, N] without references)."""
    if not references:
        return np.zeros((0, len(x)))
    return np.stack([model_losses(serve, x, y) for serve in references])
