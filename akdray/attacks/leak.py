"""``leak``: the privacy axis, an attack's AUC that reads 0.5 on average for a model that leaked nothing.

Why not the largest max(AUC, 1 - AUC) over the attacks (``leak_max``, the axis before issue #27):
a maximum over attacks and over both directions is biased upward under no leakage - simulated,
0.533 at 100 members vs 1,000 non-members, 0.535 at 100 vs 500, 0.575 at 200 vs 20
(docs/attacks.md). So the attack and its direction are *chosen on other images than they are
measured on*, by two-fold cross-fitting within the audited block:

1. The block's members and non-members are each cut in two halves by a seeded permutation
   (:func:`folds`, stream :data:`akdray.seeds.LEAK_FOLDS` of the run's seed): folds A and B.
2. On fold A, the attack with the largest max(AUC, 1 - AUC) is chosen, with its direction
   (sign +1 if its AUC >= 0.5, else -1; ties: registry order). Its AUC on fold B, *unfolded*
   (the score times the sign, so a chance result below 0.5 stays below 0.5), is one estimate;
   the same with A and B swapped is the other.
3. ``leak`` = their mean. Given the choice, each estimate is the AUC of a fixed score on images the
   choice never saw, so with no leakage it is 0.5 on average (``tests/test_attacks_stats.py``: 0.5
   within 0.02 over simulated draws). ``leak_lo``/``leak_hi``: the logit interval of
   :mod:`akdray.attacks.metrics` with variance (v_A + v_B) / 4 of the two halves. ``leak_attack``
   names the two choices (A's, B's; "-" = flipped), ``leak_source`` the attacks chosen from.

The maximum is kept only with its null, ``leak_max`` with ``leak_p`` and ``leak_null_mean``: the
same statistic over ``n_permutations`` (>= 1,000) shuffles of the member labels (stream
:data:`akdray.seeds.LEAK_PERMUTATIONS`; the scores are held fixed), p = (1 + #{null >= observed}) / (1 + n). The
same definition serves the validation block (``val_leak``, the search objective), the test block,
``akdray audit`` and ``akdray protect``: no block needs another.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.stats import rankdata

from akdray import seeds
from akdray.attacks.metrics import auc_interval, delong

MIN_PERMUTATIONS = 1000


def folds(labels: np.ndarray, seed: int) -> np.ndarray:
    """0/1 per image: each class cut into two halves (the first half of a seeded permutation is fold 0)."""
    labels = np.asarray(labels, dtype=bool)
    rng = seeds.LEAK_FOLDS.rng(seed)
    out = np.zeros(len(labels), dtype=int)
    for cls in (True, False):
        idx = np.flatnonzero(labels == cls)
        order = rng.permutation(idx)
        out[order[len(order) // 2:]] = 1
    return out


def choose(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """The attack with the largest max(AUC, 1 - AUC) on ``labels`` and its sign (ties: first in order)."""
    best, best_value, best_sign = "", -1.0, 1
    for name, score in scores.items():
        a = delong(labels, score)[0]
        if max(a, 1 - a) > best_value + 1e-12:
            best, best_value, best_sign = name, max(a, 1 - a), 1 if a >= 0.5 else -1
    return best, best_sign


def cross_fit(labels: np.ndarray, scores: Mapping[str, np.ndarray], seed: int) -> dict:
    """``leak``, ``leak_lo``, ``leak_hi``, ``leak_attack`` by the two-fold rule of the module docstring."""
    labels = np.asarray(labels, dtype=bool)
    fold = folds(labels, seed)
    estimates, variances, chosen = [], [], []
    for held_out in (1, 0):
        pick, score = fold != held_out, fold == held_out
        if labels[pick].all() or not labels[pick].any() or labels[score].all() or not labels[score].any():
            raise ValueError("leak needs at least 2 members and 2 non-members (one of each per half)")
        name, sign = choose(labels[pick], {k: v[pick] for k, v in scores.items()})
        a, var = delong(labels[score], sign * np.asarray(scores[name], dtype=float)[score])
        estimates.append(a)
        variances.append(var)
        chosen.append(("-" if sign < 0 else "") + name)
    leak = float(np.mean(estimates))
    m, n = int(labels.sum()) // 2, int((~labels).sum()) // 2
    lo, hi = auc_interval(leak, sum(variances) / 4, 2 * m, 2 * n)  # the floor at the pooled counts
    return {"leak": leak, "leak_lo": lo, "leak_hi": hi, "leak_attack": ",".join(chosen)}


def max_statistic(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> float:
    """The largest max(AUC, 1 - AUC) over the attacks (the axis before issue #27)."""
    values = [delong(labels, s)[0] for s in scores.values()]
    return float(max(max(a, 1 - a) for a in values))


def permutation_null(labels: np.ndarray, scores: Mapping[str, np.ndarray], n_permutations: int,
                     seed: int) -> tuple[float, float, float]:
    """(leak_max, leak_p, leak_null_mean): the maximum and its permutation null (module docstring)."""
    if n_permutations < MIN_PERMUTATIONS:
        raise ValueError(f"leak_p needs at least {MIN_PERMUTATIONS} permutations, got {n_permutations}")
    labels = np.asarray(labels, dtype=bool)
    m, n = int(labels.sum()), int((~labels).sum())
    observed = max_statistic(labels, scores)
    rng = seeds.LEAK_PERMUTATIONS.rng(seed)
    null = np.zeros(n_permutations)
    ranks = [rankdata(np.asarray(s, dtype=float)) for s in scores.values()]
    chunk = max(1, 2_000_000 // len(labels))  # bound memory on big audits
    for start in range(0, n_permutations, chunk):
        b = min(chunk, n_permutations - start)
        members = rng.permuted(np.tile(np.arange(len(labels)), (b, 1)), axis=1)[:, :m]
        for r in ranks:
            a = (r[members].sum(axis=1) - m * (m + 1) / 2) / (m * n)
            null[start:start + b] = np.maximum(null[start:start + b], np.maximum(a, 1 - a))
    p = (1 + int((null >= observed - 1e-12).sum())) / (1 + n_permutations)
    return observed, float(p), float(null.mean())


def leak_columns(labels: np.ndarray, scores: Mapping[str, np.ndarray], *, seed: int, n_permutations: int) -> dict:
    """Every ``leak*`` column of a block (:data:`akdray.schema.LEAK_KEYS`)."""
    row = cross_fit(labels, scores, seed)
    row["leak_max"], row["leak_p"], row["leak_null_mean"] = permutation_null(labels, scores, n_permutations, seed)
    row["leak_source"] = ",".join(scores)
    return row
