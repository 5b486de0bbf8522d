"""Gauss baseline: the teacher's outputs plus N(0, sigma^2) noise, post hoc (no training).

The noise is added in [-1, 1] pixel units and the result clipped to that range, as an API
serving images would; the attack and KID see exactly these noisy images.
"""
from __future__ import annotations

import torch


def add_output_noise(outputs: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``clip(outputs + sigma * N(0, I), -1, 1)``; sigma = 0 returns the outputs unchanged."""
    if sigma < 0:
        raise ValueError(f"gauss_sigma must be non-negative, got {sigma}")
    if sigma == 0:
        return outputs.clone()
    noise = torch.randn(outputs.shape, generator=generator, dtype=outputs.dtype)
    return (outputs + sigma * noise).clamp_(-1.0, 1.0)
