"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores; the marks of tests that train or
start Ray, checked (a test that runs the training loop unmarked, or starts Ray without ``slow``, fails)."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import akdray.defenses.distill
import akdray.defenses.dpsgd
import akdray.train
from akdray.config import RunConfig
from akdray.data.splits import PairedImages
from akdray.data.synthetic import synthetic_facades
from akdray.testing import TINY

# $OMP_NUM_THREADS wins (1 is much faster when several test runs share 2 cores); else at most 2 threads.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))

# Every training path runs akdray.train.fit_gan_l1 (teacher, AKD, DMP, DP-SGD); these modules call it.
LOOP_USERS = (akdray.train, akdray.defenses.distill, akdray.defenses.dpsgd)


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return RunConfig(**TINY)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is as fast, and it avoids OpenMP stalls of seconds per op
    when other processes share the 2 cores (the module then runs in seconds, not minutes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_set() -> PairedImages:
    return PairedImages(*synthetic_facades(16, 16, 0, "train"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature caches live in one per-session temp folder, never in the user's home."""
    monkeypatch.setenv("AKDRAY_CACHE", str(tmp_path_factory.getbasetemp() / "akdray-cache"))


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


LOOPS_RUN = [0, 0]  # training loops run in this process: all, and all before the current test's setup


@pytest.fixture(scope="session", autouse=True)
def _count_training_loops():
    loop = akdray.train.fit_gan_l1

    def counted(*args, **kwargs):
        LOOPS_RUN[0] += 1
        return loop(*args, **kwargs)

    for module in LOOP_USERS:
        setattr(module, "fit_gan_l1", counted)
    yield
    for module in LOOP_USERS:
        setattr(module, "fit_gan_l1", loop)


@pytest.fixture(autouse=True)
def _marked_if_it_trains(request, _count_training_loops):
    """A test that trains in this process (in its body or in a fixture set up for it, e.g. a module's
    shared run) must be marked ``train`` or ``slow``; one that starts Ray, ``slow`` (docs/development.md).
    Runs in other processes (``akdray`` subprocesses, Ray workers) are not seen here: mark those by hand."""
    ray_before = _ray_running()
    yield
    trained, LOOPS_RUN[1] = LOOPS_RUN[0] - LOOPS_RUN[1], LOOPS_RUN[0]
    marks = {m.name for m in request.node.iter_markers()}
    if trained and not marks & {"train", "slow"}:
        pytest.fail(f"this test trains ({trained} run(s) of akdray.train.fit_gan_l1): mark it @pytest.mark.train "
                    "or slow", pytrace=False)
    if not ray_before and _ray_running() and "slow" not in marks:
        pytest.fail("this test starts Ray: mark it @pytest.mark.slow", pytrace=False)
