"""The disk cache of Inception features: one entry per image, shared by the processes of a machine.

An entry is addressed by its image: the SHA-256 of the extractor's identity (name and weights) and
the image's exact bytes and shape (:func:`image_digests`). So a set's first 50 images hit the
entries its 100 images left, and an image found in two sets goes through the network once.

Processes that need the same uncached images at the same time (a sweep's two teachers, started
together on the same data draw) split them instead of both computing all of them. A process
*claims* an image with an exclusive ``flock`` on the image's claim file (non-blocking: an image
another process holds is skipped), computes what it claimed, :data:`CLAIM_BATCHES` batches at a
time, writes the entries and lets go. The images another process held it reads once that process
has let go of them, after it has computed everything else it needs. A process never waits while it
holds a claim, and the kernel drops the claims of a process that dies: the waiting process then
finds no entry and computes the image itself. A holder that keeps an image longer than
:data:`WAIT_LIMIT_S` is not waited for any longer (the image is computed twice; entries are written
atomically, so either copy is whole). On a file system without ``flock`` (some network or FUSE
mounts) every process computes what it needs, as if alone.

Layout under ``akdray.storage.cache_root() / "inception"``: ``images/<2 hex>/<digest>.f32`` (a
header, then the 2048 float32 features; an entry whose header or length does not match is
recomputed) and ``claims/<2 hex>/<digest>.lock`` (empty; safe to delete while no akdray process
runs). Entries are written by :func:`akdray.storage.write_bytes`. KID_max entries
(:mod:`akdray.metrics.kid`) sit beside them; ``<key>-<hex>.pt`` files without ``kidmax`` are
whole-set feature entries of akdray before per-image entries, unused now and safe to delete.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from akdray import storage
from akdray.metrics import features
from akdray.metrics.inception import FEATURE_DIM, FEATURE_EXTRACTOR_NAME, INPUT_SIZE, find_inception_weights, weights_sha1

IMAGE_MAGIC = b"akdray-feat-v2\0\0"  # then the 32-byte digest, then FEATURE_DIM little-endian float32
_HEADER = len(IMAGE_MAGIC) + 32
CLAIM_BATCHES = 4  # Inception batches claimed (and computed) at a time
MAX_CLAIM = 256  # images claimed at a time, at most (each claim holds an open file)
WAIT_LIMIT_S = 600.0  # how long an image another process holds is waited for
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def cache_dir() -> Path:
    """The feature cache folder: ``akdray.storage.cache_root() / "inception"``."""
    return storage.cache_root() / "inception"


# --------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------
def extractor_hash(entry_format: str, *more: str) -> "hashlib._Hash":
    """A SHA-256 begun with the length-prefixed ``entry_format``, the extractor's name and weights, and
    ``more``: the start of every cache entry's address, so entries of other weights never match."""
    h = hashlib.sha256()
    for part in (entry_format, FEATURE_EXTRACTOR_NAME, weights_sha1(find_inception_weights()), *more):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h


def image_digests(images: Tensor) -> list[str]:
    """The hex digest of each uint8 ``[3, H, W]`` image of ``images``: extractor identity, shape, bytes."""
    prefix = extractor_hash("akdray-inception-image-v2")
    out = []
    for image in images.detach().cpu().contiguous().numpy():
        h = prefix.copy()
        h.update(repr(image.shape).encode())
        h.update(memoryview(image).cast("B"))
        out.append(h.hexdigest())
    return out


def _entry_path(digest: str) -> Path:
    return cache_dir() / "images" / digest[:2] / f"{digest}.f32"


def _load(digest: str) -> Tensor | None:
    """The features of one image, or ``None`` if missing, truncated or not this image's entry."""
    try:
        data = _entry_path(digest).read_bytes()
    except OSError:
        return None
    if (len(data) != _HEADER + 4 * FEATURE_DIM or data[:len(IMAGE_MAGIC)] != IMAGE_MAGIC
            or data[len(IMAGE_MAGIC):_HEADER] != bytes.fromhex(digest)):
        return None
    return torch.from_numpy(np.frombuffer(data, dtype="<f4", offset=_HEADER).copy())


def _save(digest: str, feats: Tensor) -> None:
    body = feats.detach().cpu().numpy().astype("<f4", copy=False).tobytes()
    storage.write_bytes(str(_entry_path(digest)), IMAGE_MAGIC + bytes.fromhex(digest) + body)


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------
def _open_claim_file(digest: str) -> int:
    path = cache_dir() / "claims" / digest[:2] / f"{digest}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)


def _claim(digest: str, stack: contextlib.ExitStack) -> bool:
    """Claim ``digest`` until ``stack`` closes; ``False`` if another process holds it. Without
    ``flock`` on this file system the claim is taken without a lock (a warning says so, once)."""
    fd = _open_claim_file(digest)
    stack.callback(os.close, fd)  # closing the descriptor drops its flock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise
        _warn_no_flock(exc)
    return True


@contextlib.contextmanager
def _claim_when_released(digest: str):
    """Hold the claim on ``digest`` once no other process does (polling, up to :data:`WAIT_LIMIT_S`;
    after that, without it)."""
    deadline, pause = time.monotonic() + WAIT_LIMIT_S, 0.02
    with contextlib.ExitStack() as stack:
        while not _claim(digest, stack) and time.monotonic() < deadline:
            stack.close()
            time.sleep(pause)
            pause = min(2 * pause, 1.0)
        yield


_warned: list[bool] = []


def _warn_no_flock(exc: OSError) -> None:
    if not _warned:
        _warned.append(True)
        warnings.warn(f"{cache_dir()}: no flock on this file system ({exc}); processes that need the same "
                      "Inception features at once will each compute them", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Features of sets
# --------------------------------------------------------------------------------------------
class _SharedImages:
    """The features of the images one call needs: read from the cache, computed, or left to the
    process that holds them and read after."""

    def __init__(self, images: dict[str, Tensor], batch_size: int | None, device) -> None:
        self.images, self.batch_size, self.device = images, batch_size, device
        self.claim_size = min(MAX_CLAIM, CLAIM_BATCHES * (batch_size or features.default_batch_size(device)))
        self.features = {d: f for d in images if (f := _load(d)) is not None}

    def missing(self) -> list[str]:
        return [d for d in self.images if d not in self.features]

    def _compute(self, digests: Sequence[str]) -> None:
        out = features.features_of_batches([self.images[d][None] for d in digests], self.batch_size, self.device)
        for digest, feats in zip(digests, out):
            _save(digest, feats[0])
            self.features[digest] = feats[0]

    def compute_unheld(self, digests: Sequence[str]) -> list[str]:
        """Claim, compute and store every image of ``digests`` no other process holds, a claim at a
        time; returns the images another process held."""
        held: list[str] = []
        todo = deque(digests)
        while todo:
            with contextlib.ExitStack() as stack:
                claimed: list[str] = []
                while todo and len(claimed) < self.claim_size:
                    digest = todo.popleft()
                    if not _claim(digest, stack):
                        held.append(digest)
                    elif (feats := _load(digest)) is not None:  # written by another process since __init__
                        self.features[digest] = feats
                    else:
                        claimed.append(digest)
                self._compute(claimed)
        return held

    def read_when_released(self, digests: Sequence[str]) -> None:
        """Each image once its holder let go: its entry, or (the holder died) computed here."""
        for digest in digests:
            with _claim_when_released(digest):
                feats = _load(digest)
                if feats is None:
                    self._compute([digest])
                else:
                    self.features[digest] = feats


def cached_features_of_sets(sets: Sequence[tuple[bool, Tensor]], batch_size: int | None = None,
                            device: str | torch.device = "cpu") -> list[Tensor]:
    """The Inception features of each ``(cached, images)`` set; every uncached image goes through the network once.

    Images of ``cached`` sets are read from the per-image cache, and the missing ones claimed,
    computed and written to it (see the module doc). The other sets are always computed, in one
    pass (:func:`akdray.metrics.features.features_of_batches`), after the images this process
    claimed and before it waits for those another process holds.
    """
    for _, images in sets:
        features.check_images(images)
    digests = {i: image_digests(images) for i, (cached, images) in enumerate(sets) if cached}
    needed: dict[str, Tensor] = {}
    for i, ds in digests.items():
        for digest, image in zip(ds, sets[i][1]):
            needed.setdefault(digest, image)
    shared = _SharedImages(needed, batch_size, device)
    held = shared.compute_unheld(shared.missing())
    uncached = [i for i, (cached, _) in enumerate(sets) if not cached]
    computed = dict(zip(uncached, features.features_of_batches([sets[i][1] for i in uncached], batch_size, device)))
    shared.read_when_released(held)
    return [torch.stack([shared.features[d] for d in digests[i]]) if cached else computed[i]
            for i, (cached, _) in enumerate(sets)]


def cached_features(images_uint8: Tensor, batch_size: int | None = None, device: str | torch.device = "cpu") -> Tensor:
    """Inception features of ``images_uint8``, each image cached on disk."""
    return cached_features_of_sets([(True, images_uint8)], batch_size, device)[0]


def black_feature(device: str | torch.device = "cpu") -> Tensor:
    """Inception feature ``[1, 2048]`` of one all-black image (cached on disk).

    Every black image gives the same feature whatever its size (bilinear resizing of zeros is
    zeros), so KID_max uses this single feature repeated once per real image.
    """
    return cached_features(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8), 1, device)
