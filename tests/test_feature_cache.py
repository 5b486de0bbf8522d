"""The per-image Inception feature cache: hits, invalidation, KID_max, and processes sharing the work.

The network is replaced by a cheap deterministic function of the image that records, in a file
every process appends to, how many images it computed. The concurrency tests use real processes
(spawned: a fork of a test process whose other threads hold locks can hang), a real ``flock`` and a
real SIGKILL.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from akdray import storage
from akdray.metrics import feature_cache, features
from akdray.metrics import kid as K
from akdray.metrics.kid import KidOptions


def _images(n: int, seed: int, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _fake_features(images: torch.Tensor) -> torch.Tensor:
    x = images.double().flatten(1)
    return torch.cat([x.mean(1, keepdim=True), x.std(1, keepdim=True)], 1).repeat(1, 1024).float()


def _install_fake(log: Path, delay_per_image: float = 0.0, started=None, hang: bool = False) -> None:
    """In this process: the network becomes :func:`_fake_features`, each call appended to ``log``."""
    def fake(images, batch_size=None, device="cpu"):
        if started is not None:
            started.set()
        if hang:
            time.sleep(600)
        time.sleep(delay_per_image * len(images))
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {len(images)}\n")
        return _fake_features(images)
    features.inception_features = fake


def _computed(log: Path) -> dict[int, int]:
    """Images computed per process id."""
    out: dict[int, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            pid, n = map(int, line.split())
            out[pid] = out.get(pid, 0) + n
    return out


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv(storage.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(features, "inception_features", features.inception_features)  # restored after the test
    log = tmp_path / "computed.log"
    _install_fake(log)
    feature_cache.image_digests(_images(1, seed=0))  # hashes the weights once, before any timing
    return log


def test_each_image_is_computed_once_and_subsets_hit(cache):
    a = _images(10, seed=1)
    f = feature_cache.cached_features(a)
    torch.testing.assert_close(f, _fake_features(a))
    assert sum(_computed(cache).values()) == 10
    # the same images, a prefix of them, and the same images twice in one call, with an uncached set
    torch.testing.assert_close(feature_cache.cached_features(a.clone()), f)
    torch.testing.assert_close(feature_cache.cached_features(a[:5]), f[:5])
    out = feature_cache.cached_features_of_sets([(True, a), (True, a[3:]), (False, a[:2])])
    torch.testing.assert_close(out[1], f[3:])
    torch.testing.assert_close(out[2], f[:2])
    assert sum(_computed(cache).values()) == 12  # only the uncached set


def test_repeated_images_and_mixed_sizes_in_one_call(cache):
    small, large = _images(3, seed=2), _images(2, seed=3, size=12)
    repeated = torch.cat([small, small[:1], small])
    out = feature_cache.cached_features_of_sets([(True, repeated), (True, large)])
    torch.testing.assert_close(out[0], _fake_features(repeated))
    torch.testing.assert_close(out[1], _fake_features(large))
    assert sum(_computed(cache).values()) == 5


def test_a_changed_bit_or_a_damaged_entry_is_recomputed(cache):
    a = _images(5, seed=4)
    f = feature_cache.cached_features(a)
    b = a.clone()
    b[0, 0, 0, 0] ^= 1  # one bit differs: only that image is computed
    feature_cache.cached_features(b)
    assert sum(_computed(cache).values()) == 6
    entries = sorted((feature_cache.cache_dir() / "images").rglob("*.f32"))
    assert len(entries) == 6 and not [p for p in feature_cache.cache_dir().rglob(".*") if p.is_file()]
    paths = [feature_cache._entry_path(d) for d in feature_cache.image_digests(a)]
    paths[1].write_bytes(paths[1].read_bytes()[:-4])  # truncated
    paths[2].write_bytes(paths[3].read_bytes())  # another image's entry
    paths[3].write_bytes(b"X" + paths[3].read_bytes()[1:])  # not an entry of this format
    torch.testing.assert_close(feature_cache.cached_features(a), f)
    assert sum(_computed(cache).values()) == 9
    feature_cache.cached_features(a)
    assert sum(_computed(cache).values()) == 9


def test_kid_max_is_cached(cache, monkeypatch):
    real = _images(10, seed=5)
    v1 = K.kid_max(real, "km-set", KidOptions(subsets=5))
    n = sum(_computed(cache).values())
    monkeypatch.setattr(K, "kid_max_from_features", lambda *a, **k: pytest.fail("kid_max not cached"))
    assert K.kid_max(real, "km-set", KidOptions(subsets=5)) == v1
    assert sum(_computed(cache).values()) == n  # nor the features


def _evaluate_sets(cache_root: str, log: str, sets, start, results) -> None:
    os.environ[storage.CACHE_ENV_VAR] = cache_root
    _install_fake(Path(log), delay_per_image=0.02)
    feature_cache.image_digests(sets[0][1][:1])  # the weights hashed before the start, in both
    start.wait(timeout=60)
    t0 = time.monotonic()
    out = feature_cache.cached_features_of_sets(sets)
    results.put(([f.sum().item() for f in out], time.monotonic() - t0))


def test_two_processes_split_the_uncached_images(cache, tmp_path):
    """Two processes (a sweep's two teachers) need the same three real sets and their own generated
    sets at once: each real image is computed by one of them, and both finish sooner than either
    would have alone."""
    real = [(True, _images(32, seed=6)), (True, _images(32, seed=7)), (True, _images(32, seed=8))]
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_evaluate_sets, daemon=True,
                         args=(os.environ[storage.CACHE_ENV_VAR], str(cache), real + [(False, _images(32, seed=10 + i))],
                               start, results)) for i in range(2)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    per_process = _computed(cache)
    assert sum(per_process.values()) == 3 * 32 + 2 * 32  # every real image once, each generated set once
    assert len(per_process) == 2 and min(per_process.values()) >= 32 + 16  # both computed real images
    alone = (3 * 32 + 32) * 0.02
    assert max(seconds for _, seconds in out) < 0.9 * alone
    assert out[0][0][:3] == out[1][0][:3] == [_fake_features(images).sum().item() for _, images in real]


def _claim_then_hang(cache_root: str, log: str, images, started) -> None:
    os.environ[storage.CACHE_ENV_VAR] = cache_root
    _install_fake(Path(log), started=started, hang=True)
    feature_cache.cached_features(images)


def test_images_of_a_killed_process_are_computed_by_the_one_waiting(cache):
    images = _images(2 * feature_cache.CLAIM_BATCHES * features.CPU_BATCH_SIZE, seed=9)
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_claim_then_hang, daemon=True,
                         args=(os.environ[storage.CACHE_ENV_VAR], str(cache), images, started))
    holder.start()
    try:
        assert started.wait(timeout=120)  # it holds the claims of its first CLAIM_BATCHES batches and computes
        out: list[torch.Tensor] = []
        waiter = threading.Thread(target=lambda: out.append(feature_cache.cached_features(images)), daemon=True)
        waiter.start()
        deadline = time.monotonic() + 30
        while sum(_computed(cache).values()) < len(images) // 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the waiter computes the images nobody held
        cpu = time.process_time()
        time.sleep(1.0)
        assert waiter.is_alive()  # and waits for the held ones,
        assert time.process_time() - cpu < 0.3  # sleeping between looks, not spinning
    finally:
        os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)
    waiter.join(timeout=60)
    assert holder.exitcode == -signal.SIGKILL and not waiter.is_alive()
    torch.testing.assert_close(out[0], _fake_features(images))
    assert _computed(cache) == {os.getpid(): len(images)}  # the killed process wrote nothing
