"""KID between two folders of images (what ``akdray kid`` prints), read as torch-fidelity reads them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from akdray.metrics.features import features_of_batches
from akdray.metrics.kid import KidOptions, clamp_subset_size, kid_from_features

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # torch-fidelity's default samples_find_ext


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """PNG/JPG/JPEG files directly in ``folder``, sorted as torch-fidelity sorts them (realpath)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not an image folder: {folder}")
    files = sorted(
        os.path.realpath(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder: {folder}")
    return [Path(f) for f in files]


def load_image_files(paths: Sequence[str | os.PathLike]) -> list[Tensor]:
    """Load images as RGB uint8 ``[3, H, W]`` tensors; a corrupt file raises naming that file."""
    from akdray.data.aligned import read_rgb  # the one reader: named errors, the pixel cap

    out = []
    for p in paths:
        arr = np.asarray(read_rgb(Path(p)), dtype=np.uint8)
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    return out


def kid_between_dirs(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, options: KidOptions = KidOptions()) -> dict:
    """KID between the images of two folders (PNG/JPG, read as RGB).

    Matches ``torch_fidelity.calculate_metrics(input1=real_dir, input2=fake_dir, kid=True,
    feature_extractor=FEATURE_EXTRACTOR_NAME, kid_subset_size=s, kid_subsets=subsets,
    rng_seed=seed)``. Returns ``kid_mean``, ``kid_std``, ``kid_subset_size`` (clamped),
    ``n_real`` and ``n_fake``.
    """
    real_files, fake_files = list_image_files(real_dir), list_image_files(fake_dir)
    real_imgs, fake_imgs = load_image_files(real_files), load_image_files(fake_files)
    clamp_subset_size(options.subset_size, len(real_imgs), len(fake_imgs))  # fail before the slow part
    # One pass over both folders; images of one size share batches, the original order is kept.
    feats = torch.cat(features_of_batches([im[None] for im in real_imgs + fake_imgs], options.batch_size, options.device))
    real, fake = feats[: len(real_imgs)], feats[len(real_imgs):]
    out = kid_from_features(real, fake, options)
    out.update(n_real=len(real_imgs), n_fake=len(fake_imgs))
    return out
