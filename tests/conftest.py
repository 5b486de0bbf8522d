"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""
from __future__ import annotations

import os

import pytest
import torch

from akdray.config import RunConfig

# $OMP_NUM_THREADS wins (1 is much faster when several test runs share 2 cores); else at most 2 threads.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))

TINY = dict(image_size=16, ngf=8, ndf=8, d_layers=2, n_train=16, proxy_pool_size=12, proxy_size=8, n_test=16,
            epochs=2, distill_epochs=2, batch_size=4, kid_subset_size=8, kid_subsets=10, kid_max_images=8,
            n_val=8, device="cpu")


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return RunConfig(**TINY)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature caches live in one per-session temp folder, never in the user's home."""
    monkeypatch.setenv("AKDRAY_CACHE", str(tmp_path_factory.getbasetemp() / "akdray-cache"))
