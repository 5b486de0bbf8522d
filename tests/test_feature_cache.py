"""The per-image Inception feature cache: hits, invalidation, KID_max, and processes sharing the work.

The network is replaced by a cheap deterministic function of the image that records, in a file
every process appends to, how many images it computed. The concurrency tests use real processes
(forked), a real ``flock`` and a real SIGKILL.
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


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)


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
    return log


def test_each_image_is_computed_once_and_subsets_hit(cache):
    a = _images(10, seed=1)
    f = feature_cache.cached_features("val", a)
    torch.testing.assert_close(f, _fake_features(a))
    assert sum(_computed(cache).values()) == 10
    # the same images, a prefix of them under another key, and the same images twice in one call
    torch.testing.assert_close(feature_cache.cached_features("val", a.clone()), f)
    torch.testing.assert_close(feature_cache.cached_features("val-first-5", a[:5]), f[:5])
    both = feature_cache.cached_features_of_sets([("x", a), ("y", a[3:]), (None, a[:2])])
    torch.testing.assert_close(both[1][0], f[3:])
    assert both[2][1] is None and sum(_computed(cache).values()) == 12  # only the unkeyed set computed
    assert both[0][1] == feature_cache.images_digest("x", a) != both[1][1]


def test_a_changed_bit_or_a_damaged_entry_is_recomputed(cache):
    a = _images(4, seed=2)
    f = feature_cache.cached_features("set", a)
    b = a.clone()
    b[0, 0, 0, 0] ^= 1  # one bit differs: only that image is computed
    feature_cache.cached_features("set", b)
    assert sum(_computed(cache).values()) == 5
    entries = sorted((feature_cache.cache_dir() / "images").rglob("*.f32"))
    assert len(entries) == 5 and not [p for p in feature_cache.cache_dir().rglob(".*") if p.is_file()]
    digests = feature_cache.image_digests(a)
    path = feature_cache._entry_path(digests[1])
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    other = feature_cache._entry_path(digests[2])
    other.write_bytes(feature_cache._entry_path(digests[3]).read_bytes())  # another image's entry
    torch.testing.assert_close(feature_cache.cached_features("set", a), f)
    assert sum(_computed(cache).values()) == 7
    feature_cache.cached_features("set", a)
    assert sum(_computed(cache).values()) == 7


def test_kid_max_is_cached(cache, monkeypatch):
    real = _images(10, seed=3)
    v1 = K.kid_max(real, "km-set", KidOptions(subsets=5))
    monkeypatch.setattr(K, "kid_max_from_features", lambda *a, **k: pytest.fail("kid_max not cached"))
    assert K.kid_max(real, "km-set", KidOptions(subsets=5)) == v1


def _evaluate_sets(cache_root: str, log: str, sets, start, results) -> None:
    os.environ[storage.CACHE_ENV_VAR] = cache_root
    _install_fake(Path(log), delay_per_image=0.02)
    start.wait(timeout=60)
    out = feature_cache.cached_features_of_sets(sets)
    results.put([f.sum().item() for f, _ in out])


def test_two_processes_split_the_uncached_images(cache, tmp_path):
    """Two processes (a sweep's two teachers) need the same three real sets and their own generated
    sets at once: each real image is computed by one of them, and both finish well before either
    would have alone."""
    real = [("val", _images(32, seed=4)), ("test", _images(32, seed=5)), ("train", _images(32, seed=6))]
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_evaluate_sets, args=(os.environ[storage.CACHE_ENV_VAR], str(cache),
                                                      real + [(None, _images(32, seed=10 + i))], start, results))
             for i in range(2)]
    for p in procs:
        p.start()
    sums = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    per_process = _computed(cache)
    assert sum(per_process.values()) == 3 * 32 + 2 * 32  # every real image once, each generated set once
    assert len(per_process) == 2 and min(per_process.values()) >= 32 + 32  # both shared the real images
    assert sums[0][:3] == sums[1][:3] == [_fake_features(images).sum().item() for _, images in real]


def _claim_then_hang(cache_root: str, log: str, images, started) -> None:
    os.environ[storage.CACHE_ENV_VAR] = cache_root
    _install_fake(Path(log), started=started, hang=True)
    feature_cache.cached_features("set", images)


def test_images_of_a_killed_process_are_computed_by_the_one_waiting(cache):
    images = _images(2 * feature_cache.CLAIM_BATCHES * features.CPU_BATCH_SIZE, seed=7)
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    holder = ctx.Process(target=_claim_then_hang, args=(os.environ[storage.CACHE_ENV_VAR], str(cache), images, started))
    holder.start()
    assert started.wait(timeout=60)  # it holds the claims of its first CLAIM_BATCHES batches and computes
    out: list[torch.Tensor] = []
    waiter = threading.Thread(target=lambda: out.append(feature_cache.cached_features("set", images)))
    cpu = time.process_time()
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive()  # it computed the unclaimed half and waits for the claimed one,
    assert time.process_time() - cpu < 0.5  # blocked, not polling
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)
    waiter.join(timeout=60)
    assert holder.exitcode == -signal.SIGKILL and not waiter.is_alive()
    torch.testing.assert_close(out[0], _fake_features(images))
    assert _computed(cache) == {os.getpid(): len(images)}  # the killed process wrote nothing
