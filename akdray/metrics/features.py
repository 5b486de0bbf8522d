"""Inception features of uint8 image tensors (their disk cache: :mod:`akdray.metrics.feature_cache`).

Images are ``uint8`` tensors ``[N, 3, H, W]`` (:func:`to_uint8` maps generator outputs in
``[-1, 1]`` to that). Features are the 2048-d pool features of the FID Inception network
(:mod:`akdray.metrics.inception`), float32 ``[N, 2048]`` on the CPU.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from akdray.metrics.inception import extractor

# Images per Inception pass when the caller gives none (``batch_size=None``). On CPU (channels_last)
# 4 per pass is as fast per image as 8 or 32 and keeps the 299 px activations small: peak RSS of 100
# images 950-957 MiB with 4, 1,046-1,055 with 8, 1,427-1,437 with 32; features bit-identical for
# 2/4/8 and within 5e-6 of 32 (bench_inception_batch.py, 2026-11-30). An accelerator wants full batches.
CPU_BATCH_SIZE = 4
ACCELERATOR_BATCH_SIZE = 32  # 299 px activations of 32 images: ~1 GB, fits a fractional GPU


def default_batch_size(device: str | torch.device) -> int:
    """Images per Inception pass on ``device``: :data:`CPU_BATCH_SIZE` on CPU, else :data:`ACCELERATOR_BATCH_SIZE`."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else ACCELERATOR_BATCH_SIZE


def to_uint8(images_in_minus1_1: Tensor) -> Tensor:
    """Map floats in ``[-1, 1]`` to uint8 ``[0, 255]`` (clamped, rounded to nearest), same shape."""
    x = images_in_minus1_1.detach()
    if not torch.is_floating_point(x):
        raise TypeError(f"to_uint8 expects a floating tensor in [-1, 1], got {x.dtype}")
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def check_images(images: Tensor, what: str = "images") -> None:
    """Refuse anything but a non-empty uint8 ``[N, 3, H, W]`` tensor (the message names ``what``)."""
    if not torch.is_tensor(images) or images.dtype != torch.uint8:
        raise TypeError(f"{what} must be a uint8 tensor [N, 3, H, W] (use to_uint8); got {getattr(images, 'dtype', type(images))}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must have shape [N, 3, H, W]; got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{what} is empty")


def inception_features(images_uint8: Tensor, batch_size: int | None = None,
                       device: str | torch.device = "cpu") -> Tensor:
    """2048-d Inception pool features (float32 ``[N, 2048]``, on CPU) of uint8 ``[N, 3, H, W]`` images,
    ``batch_size`` per pass (``None``: :func:`default_batch_size` of ``device``)."""
    check_images(images_uint8)
    dev = torch.device(device)
    batch_size = default_batch_size(dev) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fe = extractor(dev)
    out = []
    for start in range(0, images_uint8.shape[0], batch_size):
        (feats,) = fe(images_uint8[start : start + batch_size].to(dev))  # under torch.inference_mode
        out.append(feats.cpu())
    return torch.cat(out, 0)


def features_of_batches(batches: Sequence[Tensor], batch_size: int | None = None,
                        device: str | torch.device = "cpu") -> list[Tensor]:
    """Features of several image sets in one pass: sets of one image size are joined into full batches.

    Returns one ``[len(b), 2048]`` tensor per input set, in order.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, images in enumerate(batches):
        check_images(images)
        groups.setdefault(tuple(images.shape[1:]), []).append(i)
    out: list[Tensor] = [torch.empty(0)] * len(batches)
    for idx in groups.values():
        feats = inception_features(torch.cat([batches[i] for i in idx]), batch_size, device)
        for i, part in zip(idx, feats.split([len(batches[i]) for i in idx])):
            out[i] = part
    return out
