"""The membership attacks, listed once: a new attack is one :class:`Attack` entry here plus its score
function in :mod:`akdray.attacks.scores`. Everything else - row columns (:mod:`akdray.schema`), the
suite, ``audit.json``, ROC plots, tables - iterates over :data:`REGISTRY` (no torch import).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from akdray.attacks import scores

# (target losses [N], reference losses [K, N], population mask [N]: the non-members) -> scores [N]
Score = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Attack:
    name: str  # column prefix: <name>_auc, ...
    score: Score  # higher = more likely a member
    min_references: int  # the attack runs when the run has at least this many reference models
    style: str  # matplotlib line style of its ROC curve
    summary: str  # what it is, in a few words (docs/columns.md: "<name> attack (<summary>)")


REGISTRY: dict[str, Attack] = {a.name: a for a in (
    Attack("loss", scores.loss_score, 0, "-", "Eq. 3"),
    Attack("lira", scores.lira_score, scores.LIRA_MIN_REFERENCES, "--", "offline LiRA; per-image variance from K = 16"),
    Attack("rmia", scores.rmia_score, scores.RMIA_MIN_REFERENCES, ":", "offline RMIA, a = 0.7"),
)}
ATTACKS = tuple(REGISTRY)


def available(n_references: int) -> tuple[str, ...]:
    """The attacks ``n_references`` reference models allow, in registry order."""
    return tuple(a.name for a in REGISTRY.values() if n_references >= a.min_references)
