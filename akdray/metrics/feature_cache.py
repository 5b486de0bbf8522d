"""The disk cache of Inception features: one entry per image, shared by the processes of a machine.

An entry is addressed by its image: the SHA-256 of the extractor's identity (name and weights) and
the image's exact bytes and shape (:func:`image_digests`). So a set's first 50 images hit the
entries its 100 images left, and an image found in two sets goes through the network once.

Processes that need the same uncached images at the same time (a sweep's two teachers, started
together on the same data draw) split them instead of both computing all of them: a process
*claims* an image with an exclusive ``flock`` on its claim file, computes what it claimed, a few
batches at a time, and writes the entries; images claimed by another process it reads once that
process lets go of them, after it has computed everything else it needs. A claim is held only while
its images are computed, never while waiting for another claim, and the kernel drops it when its
process dies: the waiting process then finds no entry and computes the images itself.

Entries (``cache_root() / "inception" / "images" / <2 hex> / <digest>.f32``) are written atomically
by :func:`akdray.storage.write_bytes`; one whose header or length does not match is recomputed. The
whole-set entries of KID_max (:mod:`akdray.metrics.kid`) use :func:`cache_file` and
:func:`load_entry` / :func:`save_entry`, and a set's :func:`images_digest`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from akdray import storage
from akdray.metrics import features
from akdray.metrics.inception import FEATURE_DIM, FEATURE_EXTRACTOR_NAME, INPUT_SIZE, find_inception_weights, weights_sha1

CACHE_FORMAT = "akdray-inception-features-v1"  # whole-set entries (KID_max)
IMAGE_MAGIC = b"akdray-feat-v2\0\0"  # 16 bytes, then the 32-byte digest, then FEATURE_DIM float32
_ENTRY_BYTES = len(IMAGE_MAGIC) + 32 + 4 * FEATURE_DIM
CLAIM_BATCHES = 4  # Inception batches claimed (and computed) at a time


def cache_dir() -> Path:
    """The feature cache folder: ``akdray.storage.cache_root() / "inception"``."""
    return storage.cache_root() / "inception"


# --------------------------------------------------------------------------------------------
# Per-image entries
# --------------------------------------------------------------------------------------------
def _extractor_prefix() -> hashlib._Hash:
    h = hashlib.sha256()
    for part in ("akdray-inception-image-v2", FEATURE_EXTRACTOR_NAME, weights_sha1(find_inception_weights())):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h


def image_digests(images: Tensor) -> list[str]:
    """The hex digest of each uint8 ``[3, H, W]`` image of ``images``: extractor identity, shape, bytes."""
    prefix = _extractor_prefix()
    arr = images.detach().cpu().contiguous().numpy()
    out = []
    for image in arr:
        h = prefix.copy()
        h.update(repr(image.shape).encode())
        h.update(memoryview(image).cast("B"))
        out.append(h.hexdigest())
    return out


def _entry_path(digest: str) -> Path:
    return cache_dir() / "images" / digest[:2] / f"{digest}.f32"


def _load_image(digest: str) -> Tensor | None:
    """The features of one image, or ``None`` if missing, truncated or not this image's entry."""
    try:
        data = _entry_path(digest).read_bytes()
    except OSError:
        return None
    if len(data) != _ENTRY_BYTES or data[:len(IMAGE_MAGIC)] != IMAGE_MAGIC or data[16:48] != bytes.fromhex(digest):
        return None
    return torch.from_numpy(np.frombuffer(data, dtype="<f4", offset=48).copy())


def _save_image(digest: str, feats: Tensor) -> None:
    body = feats.detach().cpu().numpy().astype("<f4", copy=False).tobytes()
    storage.write_bytes(str(_entry_path(digest)), IMAGE_MAGIC + bytes.fromhex(digest) + body)


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------
def _claim_path(digest: str) -> Path:
    return cache_dir() / "claims" / digest[:2] / f"{digest}.lock"


def _try_claim(digest: str) -> int | None:
    """An open descriptor holding the exclusive claim on ``digest``, or ``None`` if another process holds it."""
    path = _claim_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _released_after(fds: Sequence[int]) -> Iterator[None]:
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor drops its flock


def _wait_for(digest: str) -> None:
    """Block until no process holds the claim on ``digest``."""
    path = _claim_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with _released_after([fd]):
        fcntl.flock(fd, fcntl.LOCK_EX)


class _Images:
    """The features of the keyed images one call needs, found in the cache or computed."""

    def __init__(self, images: dict[str, Tensor], batch_size: int | None, device) -> None:
        self.images, self.batch_size, self.device = images, batch_size, device
        self.claim_size = CLAIM_BATCHES * (batch_size or features.default_batch_size(device))
        self.found: dict[str, Tensor] = {}
        for digest in images:
            feats = _load_image(digest)
            if feats is not None:
                self.found[digest] = feats

    def missing(self, digests: Sequence[str]) -> list[str]:
        return [d for d in digests if d not in self.found]

    def compute_claimable(self, digests: Sequence[str]) -> list[str]:
        """Claim, compute and store every image of ``digests`` no other process holds,
        :data:`CLAIM_BATCHES` batches at a time; returns the ones another process held."""
        held: list[str] = []
        todo = list(digests)
        while todo:
            claimed: list[tuple[str, int]] = []
            while todo and len(claimed) < self.claim_size:
                digest = todo.pop(0)
                fd = _try_claim(digest)
                if fd is None:
                    held.append(digest)
                    continue
                feats = _load_image(digest)  # written by another process since this call looked
                if feats is not None:
                    self.found[digest] = feats
                    os.close(fd)
                else:
                    claimed.append((digest, fd))
            if not claimed:
                break
            with _released_after([fd for _, fd in claimed]):
                names = [d for d, _ in claimed]
                computed = features.inception_features(torch.stack([self.images[d] for d in names]),
                                                       self.batch_size, self.device)
                for digest, feats in zip(names, computed):
                    _save_image(digest, feats)
                    self.found[digest] = feats
        return held

    def read_when_released(self, digests: Sequence[str]) -> None:
        """Wait for each image's claim to be let go of, then read its entry (if it was written)."""
        for digest in digests:
            _wait_for(digest)
            feats = _load_image(digest)
            if feats is not None:
                self.found[digest] = feats


def cached_features_of_sets(sets: Sequence[tuple[str | None, Tensor]], batch_size: int | None = None,
                            device: str | torch.device = "cpu") -> list[tuple[Tensor, str | None]]:
    """``(features, digest)`` of each ``(key, images)`` set; every uncached image goes through the network once.

    Sets with a key are read from the per-image cache; their missing images are claimed and computed
    (see the module doc), and written to it. Sets with key ``None`` are always computed, in one pass
    (:func:`akdray.metrics.features.features_of_batches`), after this process's claimed images and
    before it waits for another process's. The digest of a keyed set is :func:`images_digest` of its
    key and images (``None`` for an unkeyed set).
    """
    for _, images in sets:
        features.check_images(images)
    keyed: dict[int, list[str]] = {i: image_digests(images) for i, (key, images) in enumerate(sets) if key is not None}
    needed: dict[str, Tensor] = {}
    for i, digests in keyed.items():
        for digest, image in zip(digests, sets[i][1]):
            needed.setdefault(digest, image)
    cache = _Images(needed, batch_size, device)
    unkeyed = [i for i, (key, _) in enumerate(sets) if key is None]
    waiting = cache.compute_claimable(cache.missing(list(needed)))
    computed = dict(zip(unkeyed, features.features_of_batches([sets[i][1] for i in unkeyed], batch_size, device)))
    while waiting:  # another process computes these; then any it left (it died) are claimed here
        cache.read_when_released(waiting)
        waiting = cache.compute_claimable(cache.missing(waiting))
    out = []
    for i, (key, images) in enumerate(sets):
        if key is None:
            out.append((computed[i], None))
        else:
            out.append((torch.stack([cache.found[d] for d in keyed[i]]), images_digest(key, images)))
    return out


def cached_features(key: str, images_uint8: Tensor, batch_size: int | None = None,
                    device: str | torch.device = "cpu") -> Tensor:
    """Inception features of ``images_uint8``, each image cached on disk (``key`` names the set)."""
    return cached_features_of_sets([(key, images_uint8)], batch_size, device)[0][0]


def black_feature(device: str | torch.device = "cpu") -> Tensor:
    """Inception feature ``[1, 2048]`` of one all-black image (cached on disk).

    Every black image gives the same feature whatever its size (bilinear resizing of zeros is
    zeros), so KID_max uses this single feature repeated once per real image.
    """
    black = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)
    return cached_features("black-image", black, 1, device)


# --------------------------------------------------------------------------------------------
# Whole-set entries (KID_max)
# --------------------------------------------------------------------------------------------
def images_digest(key: str, images: Tensor) -> str:
    """SHA-256 over the extractor identity, the key and the exact image bytes/shape of a whole set."""
    h = hashlib.sha256()
    for part in (CACHE_FORMAT, FEATURE_EXTRACTOR_NAME, weights_sha1(find_inception_weights()), key):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    arr = images.detach().cpu().contiguous().numpy()
    h.update(repr((str(arr.dtype), arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def cache_file(key: str, tag: str, kind: str = "") -> Path:
    """Path of the whole-set entry of ``key`` with hex ``tag`` (``kind`` separates e.g. KID_max entries)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:48].strip("._") or "key"
    return cache_dir() / f"{safe}{'-' + kind if kind else ''}-{tag[:40]}.pt"


def load_entry(path: Path) -> dict | None:
    """A whole-set entry written by :func:`save_entry`; ``None`` if missing, unreadable or of another format."""
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
