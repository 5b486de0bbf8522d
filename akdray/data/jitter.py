"""pix2pix's training jitter: resize to 286/256 of the image size, random crop back, random flip.

The official code (``--preprocess resize_and_crop``, ``--load_size 286 --crop_size 256``, flip on)
applies the same crop and flip to both halves of an A|B pair, so here one :func:`batch_jitter`
is drawn per batch and applied to the inputs and to the targets alike. The images already sit at
``image_size`` in memory, so the enlargement resizes them (bicubic, as PIL's default in pix2pix)
rather than the original file: at 256 px that is the official 256 -> 286 step exactly for data
stored at 256 px, as CMP Facades is.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

Augment = Callable[[torch.Tensor], torch.Tensor]
LOAD_RATIO = 286 / 256


def identity(images: torch.Tensor) -> torch.Tensor:
    return images


def batch_jitter(n: int, size: int, generator: torch.Generator) -> Augment:
    """One draw of crops and flips for ``n`` images: apply it to x and to y (float [n, 3, size, size])."""
    load = int(round(size * LOAD_RATIO))
    tops = torch.randint(0, load - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, load - size + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist()

    def apply(images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != n or images.shape[-1] != size:
            raise ValueError(f"jitter drawn for {n} images of {size} px, applied to {tuple(images.shape)}")
        big = F.interpolate(images, size=(load, load), mode="bicubic", align_corners=False).clamp_(-1.0, 1.0)
        crops = [big[i, :, t : t + size, l : l + size] for i, (t, l) in enumerate(zip(tops, lefts))]
        return torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips)])

    return apply
