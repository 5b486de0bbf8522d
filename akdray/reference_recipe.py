"""Which run a reference model is: its training seed and config (no torch, so a sweep driver can plan
reference trials without loading the training stack).

Reference model ``k`` of run seed ``s`` is the teacher's recipe on the draw's reference pool, trained
with seed ``10_000 * (k + 1) + s`` (LiRA's shadow models; docs/attacks.md).
"""
from __future__ import annotations

from typing import Any

from akdray.config import RunConfig

REFERENCE_SEED_BASE = 10_000  # reference k of run seed s trains with seed 10_000 * (k + 1) + s


def reference_seed(seed: int, index: int) -> int:
    """The training seed of reference model ``index`` for run seed ``seed`` (never a run seed < 10,000)."""
    return REFERENCE_SEED_BASE * (index + 1) + seed


def reference_config(cfg: RunConfig, index: int) -> RunConfig:
    """Reference model ``index`` of ``cfg``'s data draw: the teacher's recipe on the reference pool."""
    return cfg.replace(method="reference", seed=reference_seed(cfg.seed, index), data_seed=cfg.resolved_data_seed,
                       teacher_checkpoint="", reference_checkpoints="")


def draw_key(item: RunConfig | Any) -> tuple[str, int]:
    """The (preset, data draw) a run's images come from, the key of its reference models: of a
    ``RunConfig``, or of a results row (any object with ``preset``, ``seed`` and ``data_seed``
    attributes, e.g. a row of ``DataFrame.itertuples``; ``data_seed`` -1 follows ``seed``)."""
    if not isinstance(item, RunConfig):
        item = RunConfig(preset=str(item.preset), seed=int(item.seed), data_seed=int(item.data_seed))
    return item.preset, item.resolved_data_seed
