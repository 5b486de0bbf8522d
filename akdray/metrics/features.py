"""Inception features of uint8 image tensors, and their disk cache.

Images are ``uint8`` tensors ``[N, 3, H, W]`` (:func:`to_uint8` maps generator outputs in
``[-1, 1]`` to that). Features are the 2048-d pool features of the FID Inception network
(:mod:`akdray.metrics.inception`), float32 ``[N, 2048]`` on the CPU.

The cache lives in ``akdray.storage.cache_root() / "inception"``. An entry's file name hashes its
key *and* the exact image bytes (and the weights), so changed images never hit a stale entry;
entries are written atomically by :func:`akdray.storage.write_bytes`.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from akdray import storage
from akdray.metrics.inception import FEATURE_EXTRACTOR_NAME, INPUT_SIZE, extractor, find_inception_weights, weights_sha1

CACHE_FORMAT = "akdray-inception-features-v1"
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


# --------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The feature cache folder: ``akdray.storage.cache_root() / "inception"``."""
    return storage.cache_root() / "inception"


def cache_file(key: str, tag: str, kind: str = "") -> Path:
    """Path of the cache entry of ``key`` with hex ``tag`` (``kind`` separates e.g. KID_max entries)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:48].strip("._") or "key"
    return cache_dir() / f"{safe}{'-' + kind if kind else ''}-{tag[:40]}.pt"


def load_entry(path: Path) -> dict | None:
    """A cache entry written by :func:`save_entry`; ``None`` if missing, unreadable or of another format."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or truncated: recompute and overwrite
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == CACHE_FORMAT else None


def save_entry(path: Path, entry: dict) -> None:
    """Write ``entry`` (plus the cache format) atomically."""
    buf = io.BytesIO()
    torch.save({"format": CACHE_FORMAT, **entry}, buf)
    storage.write_bytes(str(path), buf.getvalue())


def images_digest(key: str, images: Tensor) -> str:
    """SHA-256 over the extractor identity, the key and the exact image bytes/shape."""
    h = hashlib.sha256()
    for part in (CACHE_FORMAT, FEATURE_EXTRACTOR_NAME, weights_sha1(find_inception_weights()), key):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    arr = images.detach().cpu().contiguous().numpy()
    h.update(repr((str(arr.dtype), arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cached_features_of_sets(sets: Sequence[tuple[str | None, Tensor]], batch_size: int | None = None,
                            device: str | torch.device = "cpu") -> list[tuple[Tensor, str | None]]:
    """``(features, digest)`` of each ``(key, images)`` set; every uncached image goes through the network once.

    Sets with a key are read from the cache, and the missing ones written to it; sets with key
    ``None`` are always computed (digest ``None``). All computed sets share one pass
    (:func:`features_of_batches`).
    """
    for _, images in sets:
        check_images(images)
    digests = [None if key is None else images_digest(key, images) for key, images in sets]
    features: list[Tensor | None] = []
    for (key, _), digest in zip(sets, digests):
        entry = None if key is None else load_entry(cache_file(key, digest))
        features.append(entry["features"] if entry is not None and entry.get("digest") == digest else None)
    todo = [i for i, feats in enumerate(features) if feats is None]
    for i, feats in zip(todo, features_of_batches([sets[i][1] for i in todo], batch_size, device)):
        features[i] = feats
        key = sets[i][0]
        if key is not None:
            save_entry(cache_file(key, digests[i]), {"key": key, "digest": digests[i], "features": feats})
    return list(zip(features, digests))


def cached_features(key: str, images_uint8: Tensor, batch_size: int | None = None,
                    device: str | torch.device = "cpu") -> Tensor:
    """Inception features of ``images_uint8``, cached on disk under ``key`` (and the image bytes)."""
    return cached_features_of_sets([(key, images_uint8)], batch_size, device)[0][0]


def black_feature(device: str | torch.device = "cpu") -> Tensor:
    """Inception feature ``[1, 2048]`` of one all-black image (cached on disk).

    Every black image gives the same feature whatever its size (bilinear resizing of zeros is
    zeros), so KID_max uses this single feature repeated once per real image.
    """
    black = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)
    return cached_features("black-image", black, 1, device)
