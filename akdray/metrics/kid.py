"""KID, KID_max, normalised KID (NKID) and the generalisation gap (the paper's Eq. 6).

KID is torch-fidelity's ``kid_features_to_metric`` (polynomial kernel, unbiased MMD² averaged
over random subsets; Bińkowski et al. 2018) over the 2048-d Inception features of
:mod:`akdray.metrics.features`. The real set is always torch-fidelity's ``input1`` and the
generated set ``input2``. NKID = KID(outputs, real) / KID_max with KID_max = KID(black images,
real): black images score 1, the real set itself about 0. Real-image features are cached on disk
per image (:mod:`akdray.metrics.feature_cache`), KID_max per real set (its key and exact images).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch
from torch import Tensor
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

from akdray import storage
from akdray.metrics.feature_cache import black_feature, cache_dir, cached_features_of_sets, extractor_hash
from akdray.metrics.features import check_images

if TYPE_CHECKING:
    from akdray.config import RunConfig

DEFAULT_KID_SUBSET_SIZE = 1000  # torch-fidelity's default; clamped to the smaller set
KID_BLAS_THREADS_ENV_VAR = "AKDRAY_KID_BLAS_THREADS"  # 0: leave numpy's BLAS threads alone
KID_MAX_FORMAT = "akdray-inception-features-v1"  # KID_max cache entries (the name of the format they began in)


@dataclass(frozen=True)
class KidOptions:
    """How KID is computed: subset size (``None``: 1000, clamped to the smaller set), subsets, seed,
    and where the Inception features are computed (``batch_size`` images per pass on ``device``;
    ``None``: :func:`akdray.metrics.features.default_batch_size` of the device)."""

    subset_size: int | None = None
    subsets: int = 100
    seed: int = 0
    batch_size: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.subsets < 1:
            raise ValueError(f"subsets must be >= 1, got {self.subsets}")
        if self.subset_size is not None and self.subset_size < 2:
            raise ValueError(f"KID subset size must be >= 2, got {self.subset_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        object.__setattr__(self, "device", str(torch.device(self.device)))

    @classmethod
    def from_config(cls, cfg: "RunConfig", device: str | torch.device = "cpu") -> "KidOptions":
        """A run's options: ``kid_subset_size``, ``kid_subsets`` and ``seed`` of its ``RunConfig``."""
        return cls(subset_size=cfg.kid_subset_size, subsets=cfg.kid_subsets, seed=cfg.seed, device=str(device))


def clamp_subset_size(subset_size: int | None, n_real: int, n_fake: int) -> int:
    """KID subset size: ``subset_size`` (default 1000) clamped to ``min(n_real, n_fake)``; needs >= 2."""
    n = min(n_real, n_fake)
    if n < 2:
        raise ValueError(f"KID needs at least 2 images per set; got {n_real} real and {n_fake} fake")
    size = DEFAULT_KID_SUBSET_SIZE if subset_size is None else int(subset_size)
    if size < 2:
        raise ValueError(f"KID subset size must be >= 2, got {subset_size}")
    return min(size, n)


def blas_thread_limit():
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


def kid_from_features(real_feats: Tensor, fake_feats: Tensor, options: KidOptions = KidOptions()) -> dict:
    """KID via torch-fidelity's ``kid_features_to_metric``.

    Returns ``kid_mean``, ``kid_std`` and the clamped ``kid_subset_size`` actually used.
    """
    if real_feats.dim() != 2 or fake_feats.dim() != 2 or real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError(f"feature shapes differ or are not 2-D: {tuple(real_feats.shape)} vs {tuple(fake_feats.shape)}")
    size = clamp_subset_size(options.subset_size, len(real_feats), len(fake_feats))
    with blas_thread_limit():
        out = kid_features_to_metric(real_feats, fake_feats, kid_subsets=options.subsets, kid_subset_size=size,
                                     rng_seed=options.seed, verbose=False)
    return {"kid_mean": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD], "kid_subset_size": size}


def kid_max_from_features(real_feats: Tensor, options: KidOptions = KidOptions()) -> dict:
    """KID(real, black images): the black feature repeated ``len(real_feats)`` times."""
    black = black_feature(options.device).repeat(len(real_feats), 1)
    return kid_from_features(real_feats, black, options)


def _kid_max_entry(real_key: str, real_uint8: Tensor, options: KidOptions) -> tuple[Path, str]:
    """(path, tag) of the KID_max cache entry of a real set: its key, exact images, extractor and options."""
    h = extractor_hash(KID_MAX_FORMAT, real_key)
    arr = real_uint8.detach().cpu().contiguous().numpy()
    h.update(repr((str(arr.dtype), arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    tag = hashlib.sha256(f"{h.hexdigest()}|kid_max|{options.subset_size}|{options.subsets}|{options.seed}".encode()).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", real_key)[:48].strip("._") or "key"
    return cache_dir() / f"{safe}-kidmax-{tag[:40]}.pt", tag


def _kid_max_cached(real_key: str | None, real_uint8: Tensor, real_feats: Tensor, options: KidOptions) -> float:
    """KID_max with ``options.subset_size`` already clamped; cached under the real set's key and images."""
    if real_key is None:
        return kid_max_from_features(real_feats, options)["kid_mean"]
    path, tag = _kid_max_entry(real_key, real_uint8, options)
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, unreadable or truncated: computed and written again
        entry = None
    if isinstance(entry, dict) and entry.get("format") == KID_MAX_FORMAT and entry.get("tag") == tag:
        return float(entry["kid_max"])
    value = kid_max_from_features(real_feats, options)["kid_mean"]
    buf = io.BytesIO()
    torch.save({"format": KID_MAX_FORMAT, "key": real_key, "tag": tag, "kid_max": float(value)}, buf)
    storage.write_bytes(str(path), buf.getvalue())
    return value


def kid_max(real_uint8: Tensor, real_key: str | None, options: KidOptions = KidOptions()) -> float:
    """KID_max = KID(real, black images), N = len(real); cached under ``real_key`` if given."""
    check_images(real_uint8, "real images")
    (real_feats,) = cached_features_of_sets([(real_key is not None, real_uint8)], options.batch_size, options.device)
    size = clamp_subset_size(options.subset_size, len(real_feats), len(real_feats))
    return _kid_max_cached(real_key, real_uint8, real_feats, replace(options, subset_size=size))


def nkid(kid_value: float, kid_max: float) -> float:
    """Normalised KID = KID / KID_max (black images score 1 by construction)."""
    if not (kid_max > 0 and math.isfinite(kid_max)):
        raise ValueError(f"KID_max must be positive and finite, got {kid_max}")
    return float(kid_value) / float(kid_max)


def quality_of_sets(sets: Mapping[str, tuple[Tensor, Tensor, str | None]], options: KidOptions) -> dict[str, dict]:
    """KID, KID_max and NKID of each named ``(real, fake, real_key)`` set, all features in one network pass.

    Real features (per image) and KID_max are cached if ``real_key`` is given (``None``: no caching). KID and KID_max
    of a set use the same clamped subset size, subset count and seed. Returns, per name, ``kid``,
    ``kid_std``, ``kid_max``, ``nkid`` and ``kid_subset_size``.
    """
    for name, (real, fake, _) in sets.items():
        check_images(real, f"{name} real images".strip())
        check_images(fake, f"{name} fake images".strip())
    entries = [(key is not None, real) for real, _, key in sets.values()] + [(False, fake) for _, fake, _ in sets.values()]
    feats = cached_features_of_sets(entries, options.batch_size, options.device)
    out = {}
    for i, (name, (real, _, key)) in enumerate(sets.items()):
        real_feats, fake_feats = feats[i], feats[len(sets) + i]
        k = kid_from_features(real_feats, fake_feats, options)
        km = _kid_max_cached(key, real, real_feats, replace(options, subset_size=k["kid_subset_size"]))
        out[name] = {"kid": k["kid_mean"], "kid_std": k["kid_std"], "kid_max": km, "nkid": nkid(k["kid_mean"], km),
                     "kid_subset_size": k["kid_subset_size"]}
    return out


def evaluate_quality(real_uint8: Tensor, fake_uint8: Tensor, real_key: str | None,
                     options: KidOptions = KidOptions()) -> dict:
    """KID, KID_max and NKID of ``fake`` against ``real`` (one set of :func:`quality_of_sets`)."""
    return quality_of_sets({"": (real_uint8, fake_uint8, real_key)}, options)[""]


def generalization_gap(nkid_train: float, nkid_test: float) -> float:
    """Generalisation gap (Eq. 6) with the sign of the paper's Table IV: ``NKID_test - NKID_train``.

    Positive means the model is worse on unseen inputs than on its training inputs (it overfits).
    """
    return float(nkid_test) - float(nkid_train)
