"""Every random stream of a run, named in one place (no torch import).

A run has one seed, ``cfg.seed``. Network initialisation (``torch.manual_seed(cfg.seed)``), the
epoch order of the training batches and each other draw below take a stream of their own, derived
from the run seed by a fixed offset or stream id, so that adding a draw to one place never moves the
draws of another. The values are those the literals had before they were named here (a run's draws
are unchanged, but for one: DP-SGD's training jitter, whose step key now restarts every epoch as the
other methods' always did, since all share one training loop); ``tests/test_seeds.py`` checks that
the streams of a run never share a seed.

Two kinds of stream:

* :class:`Offset` - ``torch.Generator().manual_seed(run_seed * stride + offset)``: simple, and what
  most of the code used first. The offsets (primes, or the DP-SGD pair) keep a run's streams apart,
  with two known coincidences kept so that no draw changes: the proxy subset, the Gauss noise and the
  networks' initialisation all take the run seed itself; and run seed 0's epoch order reaches the
  seeds of the offset streams from epoch 31 on (``0 * 100_003 + 31``), other run seeds only past
  epoch 4,700.
* :class:`Sequence` - ``numpy.random.SeedSequence([*keys, stream_id])``: the hashed streams of the
  training jitter and the student's initial weights, which take more keys (epoch, step).

The synthetic data are another matter: their draw is ``data_seed`` and an image's stream is
``(data_seed, role, index)`` (:data:`akdray.data.synthetic.ROLE_IDS`); reference model ``k`` of run
seed ``s`` trains with seed ``REFERENCE_SEED_BASE * (k + 1) + s`` (:mod:`akdray.reference_recipe`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Offset:
    """A stream seeded ``run_seed * stride + offset``."""

    name: str
    offset: int
    stride: int = 1

    def seed(self, run_seed: int) -> int:
        return int(run_seed) * self.stride + self.offset


@dataclass(frozen=True)
class Sequence:
    """A stream seeded by ``numpy.random.SeedSequence([*keys, stream_id])``."""

    name: str
    stream_id: int

    def state(self, *keys: int, dtype=np.uint32) -> int:
        """The first word of the sequence's state (uint32 by default, as ``generate_state(1)``)."""
        return int(np.random.SeedSequence([*keys, self.stream_id]).generate_state(1, dtype)[0])

    def rng(self, *keys: int) -> np.random.Generator:
        """A numpy generator of the sequence: ``numpy.random.default_rng([*keys, stream_id])``."""
        return np.random.default_rng([*keys, self.stream_id])


# torch.Generator streams seeded with the run seed itself (as torch.manual_seed(cfg.seed), the
# networks' initialisation): three streams that share one seed, kept so that no draw changes
PROXY_SUBSET = Offset("proxy subset: the proxy_size inputs drawn from the proxy pool (data.splits, protect)", 0)
GAUSS_NOISE = Offset("Gauss defense: the output noise (run)", 0)
# torch.Generator streams, seed + offset
AUDIT_SAMPLE = Offset("audit sample: the members and non-members an attack audits (attacks.suite)", 7919)
MEMBER_HALVES = Offset("member halves: the validation / test halves of the members (evaluate)", 65_537)
PROXY_MIA = Offset("proxy MIA: the proxy pairs audited as members (evaluate)", 31)
REFERENCE_SET = Offset("reference set: a reference model's pairs drawn from its pool (data.splits)", 104_729)
# torch.Generator streams with a stride: one seed per run and epoch, or two per run (DP-SGD)
EPOCH_ORDER = Offset("epoch order: the shuffled batches, seed * 100_003 + epoch (train)", 0, 100_003)
DP_SAMPLING = Offset("DP-SGD Poisson sampling (defenses.dpsgd)", 17, 1_000_003)
DP_NOISE = Offset("DP-SGD gradient noise (defenses.dpsgd)", 71, 1_000_003)
# Optuna: a study's TPE sampler, search_seed + seed * 101 + the defense's index + crc32(tag) % 100_003
STUDY_SAMPLER = Offset("a study's Optuna TPE sampler, stride 101 per run seed (sweep.search)", 0, 101)
# SeedSequence streams
JITTER = Sequence("training jitter: crops and flips of a batch, keys (seed, epoch, step) (train)", 0x117)
STUDENT_INIT = Sequence("a student's initial weights, keys (seed,) (defenses.distill)", 0x57D)
LEAK_FOLDS = Sequence("leak: the two halves of an audited block, keys (seed,) (attacks.leak)", 104_729)
LEAK_PERMUTATIONS = Sequence("leak_p: the member-label shuffles, keys (seed,) (attacks.leak)", 130_363)

OFFSETS = (PROXY_SUBSET, GAUSS_NOISE, AUDIT_SAMPLE, MEMBER_HALVES, PROXY_MIA, REFERENCE_SET, EPOCH_ORDER, DP_SAMPLING, DP_NOISE)
SEQUENCES = (JITTER, STUDENT_INIT, LEAK_FOLDS, LEAK_PERMUTATIONS)
