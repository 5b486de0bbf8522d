"""Loader for the pix2pix "aligned" format: each file is A|B side by side.

The layout is the official pix2pix one (``ROOT/train``, ``ROOT/val``, ``ROOT/test``), so CMP
Facades or Cityscapes prepared for the official code load unchanged. Every file is decoded and
checked up front; any problem raises :class:`DataError` naming the file before training starts.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Largest image decoded (width x height). The header is read first, so a decompression bomb (a small
# file that claims a huge canvas) is refused before any memory is spent on its pixels. 64 Mpx is far
# above any pix2pix data set (CMP Facades A|B files are 512x256) and costs 192 MB as RGB.
MAX_PIXELS = 64_000_000


class DataError(ValueError):
    """A data set problem; the message names the folder or file."""


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"data folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        check_utf8_name(f)
    return files


def check_utf8_name(path: Path) -> None:
    """Refuse a file name that is not valid UTF-8: every image is named in JSON and Parquet results,
    which could not be written after the work was done."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"file name {os.fsencode(path)!r} is not valid UTF-8; rename it (results name every "
                        "image in JSON and Parquet)") from None


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise DataError(f"image {path} is {width}x{height} = {width * height / 1e6:.0f} Mpx, over the "
                        f"{MAX_PIXELS / 1e6:.0f} Mpx limit (a decompression bomb or not a pix2pix image)")


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header only, refused over MAX_PIXELS; nothing is decoded."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    _check_pixels(path, width, height)
    return width, height


def read_rgb(path: Path) -> Image.Image:
    """Decode an image fully (so truncated or corrupt files fail here, named); refuse > MAX_PIXELS."""
    try:
        with Image.open(path) as img:
            _check_pixels(path, *img.size)
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: convert("RGB") clips to white
                return Image.fromarray((np.asarray(img, dtype=np.int64) >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
            return img.convert("RGB")
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """``size`` x ``size`` uint8 array, bicubic (PIL), as pix2pix's loader resizes."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def load_aligned_split(folder: Path, size: int, direction: str, limit: int = 0):
    """Read up to ``limit`` (0 = all) A|B files; returns uint8 x, y [N,3,size,size] and names."""
    files = list_images(folder)
    if limit and limit > len(files):
        raise DataError(f"{folder} holds {len(files)} images, fewer than the {limit} requested")
    files = files[:limit] if limit else files
    xs, ys = [], []
    for path in files:
        img = read_rgb(path)
        width, height = img.size
        if width % 2:
            raise DataError(f"{path} is not an A|B pair: width {width} is odd (expected A and B side by side)")
        half = width // 2
        a = resize_square(img.crop((0, 0, half, height)), size)
        b = resize_square(img.crop((half, 0, width, height)), size)
        x, y = (a, b) if direction == "AtoB" else (b, a)
        xs.append(x)
        ys.append(y)
    to_tensor = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_tensor(xs), to_tensor(ys), tuple(str(p) for p in files)
