"""Files with known properties, for the tests and benchmarks (as ``numpy.testing`` is for numpy's).

No torch import. The analysis' hand-built sweeps are in :mod:`analysis.testing`.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


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
