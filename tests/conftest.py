"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""
from __future__ import annotations

import os

import pytest
import torch

from akdray.config import RunConfig
from akdray.data.splits import PairedImages
from akdray.data.synthetic import synthetic_facades
from akdray.testing import TINY

# $OMP_NUM_THREADS wins (1 is much faster when several test runs share 2 cores); else at most 2 threads.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


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
