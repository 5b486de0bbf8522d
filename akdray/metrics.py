"""Image-quality metrics: KID, normalised KID (NKID) and the generalisation gap.

KID is computed by torch-fidelity (``kid_features_to_metric``) over 2048-d pool features of
the FID Inception network (:mod:`akdray.inception`, registered with torch-fidelity as the
feature extractor :data:`FEATURE_EXTRACTOR_NAME`); real-image features and KID_max are cached.

Conventions: images are ``uint8`` tensors ``[N, 3, H, W]`` (use :func:`to_uint8` for generator
outputs in ``[-1, 1]``); the real set is always torch-fidelity's ``input1`` and the generated set
``input2``; NKID = KID / KID_max where KID_max = KID(real, all-black images).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from akdray.storage import CACHE_ENV_VAR, cache_root  # noqa: F401  (CACHE_ENV_VAR is re-exported)
from akdray.inception import (  # noqa: F401  (re-exported: the metric's public API)
    FEATURE_DIM, FEATURE_EXTRACTOR_NAME, FEATURE_LAYER, INPUT_SIZE, WEIGHTS_ENV_VAR, FeatureExtractorInceptionFidHelper,
    _check_images, _weights_sha1, find_inception_weights, inception_features, register_feature_extractor_once, to_uint8,
)

__all__ = [
    "FEATURE_EXTRACTOR_NAME",
    "FEATURE_LAYER",
    "DEFAULT_KID_SUBSET_SIZE",
    "WEIGHTS_ENV_VAR",
    "CACHE_ENV_VAR",
    "KID_BLAS_THREADS_ENV_VAR",
    "FeatureExtractorInceptionFidHelper",
    "find_inception_weights",
    "register_feature_extractor_once",
    "to_uint8",
    "inception_features",
    "clamp_subset_size",
    "kid_from_features",
    "kid",
    "cache_dir",
    "cached_features",
    "black_feature",
    "kid_max_from_features",
    "kid_max",
    "nkid",
    "evaluate_quality",
    "generalization_gap",
    "list_image_files",
    "load_image_files",
    "kid_between_dirs",
    "main_kid",
]

DEFAULT_KID_SUBSET_SIZE = 1000  # torch-fidelity's default; clamped to the smaller set
KID_BLAS_THREADS_ENV_VAR = "AKDRAY_KID_BLAS_THREADS"  # 0: leave numpy's BLAS threads alone
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # torch-fidelity's default samples_find_ext
_CACHE_FORMAT = "akdray-inception-features-v1"



def clamp_subset_size(subset_size: int | None, n_real: int, n_fake: int) -> int:
    """KID subset size: ``subset_size`` (default 1000) clamped to ``min(n_real, n_fake)``; needs >= 2."""
    n = min(n_real, n_fake)
    if n < 2:
        raise ValueError(f"KID needs at least 2 images per set; got {n_real} real and {n_fake} fake")
    size = DEFAULT_KID_SUBSET_SIZE if subset_size is None else int(subset_size)
    if size < 2:
        raise ValueError(f"KID subset size must be >= 2, got {subset_size}")
    return min(size, n)


def _blas_threads():
    """Cap numpy's BLAS threads while KID runs (``$AKDRAY_KID_BLAS_THREADS``, default 1).

    torch-fidelity's KID is numpy matmuls; multi-threaded OpenBLAS on a busy machine (parallel
    trials) was measured 2-70x slower than one thread here. Needs threadpoolctl, else a no-op.
    """
    n = int(os.environ.get(KID_BLAS_THREADS_ENV_VAR, "1") or 0)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas") if n > 0 else contextlib.nullcontext()


def kid_from_features(
    real_feats: Tensor, fake_feats: Tensor, subset_size: int | None = None, subsets: int = 100, seed: int = 0
) -> dict:
    """KID via torch-fidelity's ``kid_features_to_metric`` (poly kernel, unbiased MMD², subsets).

    Returns ``kid_mean``, ``kid_std`` and the clamped ``kid_subset_size`` actually used.
    """
    if real_feats.dim() != 2 or fake_feats.dim() != 2 or real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError(f"feature shapes differ or are not 2-D: {tuple(real_feats.shape)} vs {tuple(fake_feats.shape)}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    size = clamp_subset_size(subset_size, len(real_feats), len(fake_feats))
    with _blas_threads():
        out = kid_features_to_metric(
            real_feats, fake_feats, kid_subsets=int(subsets), kid_subset_size=size, rng_seed=int(seed), verbose=False
        )
    return {"kid_mean": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD], "kid_subset_size": size}


def kid(
    real_uint8: Tensor,
    fake_uint8: Tensor,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict:
    """KID between two uint8 image sets (see :func:`kid_from_features`)."""
    real = inception_features(real_uint8, batch_size, device)
    fake = inception_features(fake_uint8, batch_size, device)
    return kid_from_features(real, fake, subset_size, subsets, seed)


# --------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Cache folder: ``$AKDRAY_CACHE`` or ``~/.cache/akdray`` (features live in ``inception/``)."""
    return cache_root() / "inception"


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:48].strip("._") or "key"


def _images_digest(key: str, images: Tensor) -> str:
    """SHA-256 over the extractor identity, the key and the exact image bytes/shape."""
    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, FEATURE_EXTRACTOR_NAME, _weights_sha1(find_inception_weights()), key):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    arr = images.detach().cpu().contiguous().numpy()
    h.update(repr((str(arr.dtype), arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _try_load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or truncated: recompute and overwrite
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == _CACHE_FORMAT else None


def _features_path(key: str, digest: str) -> Path:
    return cache_dir() / f"{_safe(key)}-{digest[:40]}.pt"


def cached_features(
    key: str, images_uint8: Tensor, batch_size: int = 32, device: str | torch.device = "cpu"
) -> Tensor:
    """Inception features of ``images_uint8``, cached on disk.

    The file name hashes ``key`` *and* the image bytes (and the weights), so changed images can
    never hit a stale entry. Writes are atomic (temporary file + ``os.replace``).
    """
    return _cached_features_and_digest(key, images_uint8, batch_size, device)[0]


def _cached_features_and_digest(key: str, images_uint8: Tensor, batch_size: int, device) -> tuple[Tensor, str]:
    _check_images(images_uint8)
    digest = _images_digest(key, images_uint8)
    path = _features_path(key, digest)
    obj = _try_load(path)
    if obj is not None and obj.get("digest") == digest:
        return obj["features"], digest
    feats = inception_features(images_uint8, batch_size, device)
    _atomic_save({"format": _CACHE_FORMAT, "key": key, "digest": digest, "features": feats}, path)
    return feats, digest


# --------------------------------------------------------------------------------------------
# KID_max, NKID, evaluation
# --------------------------------------------------------------------------------------------


def black_feature(device: str | torch.device = "cpu") -> Tensor:
    """Inception feature ``[1, 2048]`` of one all-black image (cached on disk).

    Every black image gives the same feature whatever its size (bilinear resizing of zeros is
    zeros), so KID_max uses this single feature repeated once per real image.
    """
    black = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)
    return cached_features("black-image", black, 1, device)


def kid_max_from_features(
    real_feats: Tensor, subset_size: int | None = None, subsets: int = 100, seed: int = 0, device: str | torch.device = "cpu"
) -> dict:
    """KID(real, black images): the black feature repeated ``len(real_feats)`` times."""
    black = black_feature(device).repeat(len(real_feats), 1)
    return kid_from_features(real_feats, black, subset_size, subsets, seed)


def _kid_max_cached(real_key: str | None, real_digest: str | None, real_feats: Tensor, subset_size: int,
                    subsets: int, seed: int, device) -> float:
    if real_key is None or real_digest is None:
        return kid_max_from_features(real_feats, subset_size, subsets, seed, device)["kid_mean"]
    tag = hashlib.sha256(f"{real_digest}|kid_max|{subset_size}|{subsets}|{seed}".encode()).hexdigest()
    path = cache_dir() / f"{_safe(real_key)}-kidmax-{tag[:40]}.pt"
    obj = _try_load(path)
    if obj is not None and obj.get("tag") == tag:
        return float(obj["kid_max"])
    value = kid_max_from_features(real_feats, subset_size, subsets, seed, device)["kid_mean"]
    _atomic_save({"format": _CACHE_FORMAT, "key": real_key, "tag": tag, "kid_max": float(value)}, path)
    return value


def kid_max(
    real_uint8: Tensor,
    real_key: str | None = None,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> float:
    """KID_max = KID(real, black images), N = len(real); cached under ``real_key`` if given."""
    real_feats, digest = _real_features(real_uint8, real_key, batch_size, device)
    size = clamp_subset_size(subset_size, len(real_feats), len(real_feats))
    return _kid_max_cached(real_key, digest, real_feats, size, subsets, seed, device)


def _real_features(real_uint8: Tensor, real_key: str | None, batch_size: int, device) -> tuple[Tensor, str | None]:
    if real_key is None:
        return inception_features(real_uint8, batch_size, device), None
    _check_images(real_uint8, "real images")
    return _cached_features_and_digest(real_key, real_uint8, batch_size, device)


def nkid(kid_value: float, kid_max: float) -> float:
    """Normalised KID = KID / KID_max (black images score 1 by construction)."""
    if not (kid_max > 0 and math.isfinite(kid_max)):
        raise ValueError(f"KID_max must be positive and finite, got {kid_max}")
    return float(kid_value) / float(kid_max)


def evaluate_quality(
    real_uint8: Tensor,
    fake_uint8: Tensor,
    real_key: str | None,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict:
    """KID, KID_max and NKID of ``fake`` against ``real``.

    Real features and KID_max are cached under ``real_key`` (``None``: no caching). KID and
    KID_max use the same clamped subset size, subset count and seed. Returns ``kid``,
    ``kid_std``, ``kid_max``, ``nkid`` and ``kid_subset_size``.
    """
    _check_images(fake_uint8, "fake images")
    real_feats, digest = _real_features(real_uint8, real_key, batch_size, device)
    fake_feats = inception_features(fake_uint8, batch_size, device)
    k = kid_from_features(real_feats, fake_feats, subset_size, subsets, seed)
    size = k["kid_subset_size"]
    km = _kid_max_cached(real_key, digest, real_feats, size, subsets, seed, device)
    return {
        "kid": k["kid_mean"],
        "kid_std": k["kid_std"],
        "kid_max": km,
        "nkid": nkid(k["kid_mean"], km),
        "kid_subset_size": size,
    }


def generalization_gap(nkid_train: float, nkid_test: float) -> float:
    """Generalisation gap (Eq. 6) with the sign of the paper's Table IV: ``NKID_test - NKID_train``.

    Positive means the model is worse on unseen inputs than on its training inputs (it overfits).
    """
    return float(nkid_test) - float(nkid_train)


# --------------------------------------------------------------------------------------------
# Folders of images and the `akdray kid` command
# --------------------------------------------------------------------------------------------


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


def _features_of_list(images: Sequence[Tensor], batch_size: int, device) -> Tensor:
    """Features of images that may differ in size (grouped by shape, original order kept)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    out = torch.empty(len(images), FEATURE_DIM, dtype=torch.float32)
    for idx in groups.values():
        out[idx] = inception_features(torch.stack([images[i] for i in idx]), batch_size, device)
    return out


def kid_between_dirs(
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict:
    """KID between the images of two folders (PNG/JPG, read as RGB).

    Matches ``torch_fidelity.calculate_metrics(input1=real_dir, input2=fake_dir, kid=True,
    feature_extractor=FEATURE_EXTRACTOR_NAME, kid_subset_size=s, kid_subsets=subsets,
    rng_seed=seed)``. Returns ``kid_mean``, ``kid_std``, ``kid_subset_size`` (clamped),
    ``n_real`` and ``n_fake``.
    """
    real_files, fake_files = list_image_files(real_dir), list_image_files(fake_dir)
    real_imgs, fake_imgs = load_image_files(real_files), load_image_files(fake_files)
    clamp_subset_size(subset_size, len(real_imgs), len(fake_imgs))  # fail before the slow part
    real = _features_of_list(real_imgs, batch_size, device)
    fake = _features_of_list(fake_imgs, batch_size, device)
    out = kid_from_features(real, fake, subset_size, subsets, seed)
    out.update(n_real=len(real_imgs), n_fake=len(fake_imgs))
    return out


def main_kid(argv: Sequence[str] | None = None) -> int:
    """``akdray kid REAL_DIR FAKE_DIR``: print ``{"kid_mean", "kid_std", "kid_subset_size"}`` as JSON."""
    ap = argparse.ArgumentParser(prog="akdray kid", description="KID between two folders of images.")
    ap.add_argument("real_dir")
    ap.add_argument("fake_dir")
    ap.add_argument("--subset-size", type=int, default=None, help="default 1000, clamped to the smaller set")
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    from akdray.config import MAX_SEED
    from akdray.train import existing_device

    try:
        for flag, value, low in (("--subsets", args.subsets, 1), ("--batch-size", args.batch_size, 1),
                                 ("--subset-size", args.subset_size, 2), ("--seed", args.seed, 0)):
            if value is not None and not low <= value <= MAX_SEED:
                raise ValueError(f"{flag} must be in {low}..{MAX_SEED}, got {value}")
        device = existing_device(args.device)
        res = kid_between_dirs(
            args.real_dir, args.fake_dir, args.subset_size, args.subsets, args.seed, args.batch_size, device
        )
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"akdray kid: error: {e}", file=sys.stderr)
        return 2
    keys = ("kid_mean", "kid_std", "kid_subset_size")
    print(json.dumps({k: res[k] for k in keys}))
    return 0
