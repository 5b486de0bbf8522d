"""Files and objects with known properties, for the tests and benchmarks (as ``numpy.testing`` is for
numpy's); the helpers test modules share live here, not in one another.

No torch import at module level (the DP-SGD helpers import it when called). The analysis' hand-built
sweeps are in :mod:`analysis.testing`.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from akdray.config import PRESETS, RunConfig

TINY = {**PRESETS["tiny"], "device": "cpu"}  # the ``tiny`` preset's sizes, on the CPU: trains in seconds
# DP-SGD's step tests: GroupNorm networks of 4 filters on 16 px images
DP_CFG = RunConfig(image_size=16, ngf=4, ndf=4, n_train=16, n_test=8, proxy_pool_size=8, proxy_size=4,
                   d_layers=2, epochs=1, batch_size=4, method="dpsgd", norm="group")


def write_aligned_folder(root: Path, counts: dict[str, int], size: int, seed: int = 0) -> Path:
    """pix2pix aligned folders ``root/<split>/NNN.png`` (A|B side by side, ``size`` x ``2 size``, random pixels)."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size, 2 * size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i:03d}.png")
    return root


def png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG that *claims* width x height (a decompression bomb: a few bytes, gigapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def write_pair(path: Path, width: int = 24, height: int = 12, seed: int = 0) -> None:
    """One aligned A|B image of random pixels."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def make_aligned(root: Path, counts=(6, 4, 4), width: int = 24) -> Path:
    """``root/{train,val,test}/NNN.png`` with ``counts`` images each, every image seeded by its place."""
    seed = 0
    for split, n in zip(("train", "val", "test"), counts):
        (root / split).mkdir(parents=True)
        for i in range(n):
            write_pair(root / split / f"{i:03d}.png", width=width, seed=seed)
            seed += 1
    return root


class Tripwire:
    """Stands in for data that must not be read (private targets, test pairs): any use at all fails."""

    def __getattr__(self, name):
        raise AssertionError(f"private targets were read (.{name})")

    def __getitem__(self, item):
        raise AssertionError("private targets were indexed")

    def __len__(self):
        raise AssertionError("private targets were measured")


def float_batch(train, n: int = 4):
    """The first ``n`` pairs of ``train`` (``PairedImages``) as float [-1, 1] tensors (x, y)."""
    from akdray.train import to_float

    return to_float(train.x[:n].clone()), to_float(train.y[:n].clone())


def seeded_models(cfg: RunConfig, seed: int = 0):
    """A generator and a discriminator of ``cfg`` initialised after ``torch.manual_seed(seed)``."""
    import torch

    from akdray.models import build_discriminator, build_generator

    torch.manual_seed(seed)
    return build_generator(cfg), build_discriminator(cfg)


def private_gan(cfg: RunConfig, G, D, expected: float = 4.0, seed: int = 0):
    """akdray's DP-SGD pair of ``G`` and ``D`` (expected batch ``expected``), its noise seeded with ``seed``."""
    import torch

    from akdray.defenses.private_gan import make_private_gan

    return make_private_gan(G, D, cfg, expected_batch_size=expected, noise_generator=torch.Generator().manual_seed(seed))
