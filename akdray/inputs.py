"""Input images for ``translate`` and ``protect``: one image, a folder, or an aligned A|B folder.

Files are listed and their headers checked (readable, at most :data:`akdray.data.aligned.MAX_PIXELS`, layout) before
any work; then each is decoded by :func:`akdray.data.aligned.read_rgb`, the input half is cut out of
an A|B file (the target half is dropped right after decoding and never leaves this module) and
resized to the model's size with bicubic interpolation, as the official pix2pix test pipeline does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from akdray.data.aligned import IMAGE_SUFFIXES, DataError, check_utf8_name, header_size, list_images, read_rgb, resize_square
from akdray.data.splits import InputImages

LAYOUTS = ("auto", "single", "aligned")


@dataclass(frozen=True)
class InputFile:
    """One input image; ``aligned`` = an A|B pair whose input half is used."""

    path: Path
    aligned: bool


def list_input_files(path: str | Path, layout: str = "auto") -> list[InputFile]:
    """The input images under ``path`` (a file or a folder), header-checked; ``layout`` ``auto``
    treats the inputs as A|B pairs when every image is exactly twice as wide as it is high."""
    if layout not in LAYOUTS:
        raise DataError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    root = Path(path)
    if root.is_file():
        if root.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"input {root} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        check_utf8_name(root)
        files = [root]
    elif root.is_dir():
        files = list_images(root)
    else:
        raise DataError(f"input {root} does not exist")
    sizes = [header_size(f) for f in files]
    pair = [w == 2 * h for w, h in sizes]
    if layout == "auto" and any(pair) and not all(pair):
        odd = files[pair.index(False)]
        raise DataError(f"{root} mixes A|B pairs ({files[pair.index(True)].name}) and single images ({odd.name}); "
                        "pass --layout single or --layout aligned")
    aligned = layout == "aligned" or (layout == "auto" and all(pair))
    if aligned:
        for f, (w, h) in zip(files, sizes):
            if w != 2 * h:
                raise DataError(f"{f} is {w}x{h}, not an A|B pair of two square halves (width = 2 x height): "
                                "--layout aligned would feed half of a single image to the model; use --layout single")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise DataError(f"{f} and {stems[f.stem]} would both be written as {f.stem}.png")
        stems[f.stem] = f
    return [InputFile(f, aligned) for f in files]


def read_input(file: InputFile, size: int, direction: str) -> torch.Tensor:
    """uint8 [3, size, size]: the image, or the input half of an A|B pair (A for AtoB, B for BtoA)."""
    img = read_rgb(file.path)
    if file.aligned:
        width, height = img.size
        half = width // 2
        box = (0, 0, half, height) if direction == "AtoB" else (half, 0, width, height)
        img = img.crop(box)
    return torch.from_numpy(np.array(resize_square(img, size))).permute(2, 0, 1).contiguous()


def load_inputs(path: str | Path, size: int, direction: str, layout: str = "auto") -> InputImages:
    """Every input under ``path`` as :class:`InputImages` (inputs only: no targets exist here)."""
    files = list_input_files(path, layout)
    x = torch.stack([read_input(f, size, direction) for f in files])
    return InputImages(x, tuple(str(f.path) for f in files))
