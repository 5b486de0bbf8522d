"""Shared fixtures: tiny configs that train in seconds on 2 CPU cores."""
from __future__ import annotations

import os

import pytest
import torch

from akdray.config import PRESETS, RunConfig

# $OMP_NUM_THREADS wins (1 is much faster when several test runs share 2 cores); else at most 2 threads.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))

TINY = {**PRESETS["tiny"], "device": "cpu"}  # the ``tiny`` preset's sizes, on the CPU


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return RunConfig(**TINY)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature caches live in one per-session temp folder, never in the user's home."""
    monkeypatch.setenv("AKDRAY_CACHE", str(tmp_path_factory.getbasetemp() / "akdray-cache"))
