"""Metrics: AUC with a seeded bootstrap CI, TPR at low FPR (null where the sample cannot carry it),
best balanced accuracy, and ``leak`` - the privacy axis centred on chance.

Statistics, stated with the sample they rest on (as LiRA and ML Privacy Meter report them):

* **AUC CI** - the 95 % percentile interval of the AUC over ``n_boot`` (>= 1,000) stratified
  bootstrap resamples (members and non-members resampled separately, so each resample keeps both
  classes and their counts), drawn from ``numpy.random.default_rng(seed)``: same seed, same CI.
* **TPR at FPR f** - the highest TPR among ROC thresholds whose FPR <= f; **null** (None, never 0)
  when there are fewer than ``10 / f`` non-members (ten expected false positives at ``f``). With n
  non-members the FPR grid is 1/n: 100 non-members make "TPR @ 0.1 % FPR" a TPR at zero false
  positives and "TPR @ 1 %" a TPR at one. So TPR @ 1 % needs >= 1,000 non-members, TPR @ 0.1 %
  >= 10,000.
* **leak** - the largest max(AUC, 1 - AUC) over the row's attacks: 0.5 = no measurable leakage; an
  AUC of 0.3 leaks as much as 0.7 (the attacker flips the sign of the score).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

FPR_POINTS = ((0.01, "1pct"), (0.001, "0p1pct"))
NULL_RULE_FACTOR = 10  # TPR at FPR f needs at least NULL_RULE_FACTOR / f non-members
CI_LEVEL = 0.95


def _check(labels: np.ndarray) -> None:
    if labels.all() or not labels.any():
        raise ValueError("the attack needs at least one member and one non-member")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=bool)
    _check(labels)
    return float(roc_auc_score(labels, scores))


def bootstrap_auc_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     level: float = CI_LEVEL) -> tuple[float, float]:
    """Stratified percentile bootstrap CI of the AUC (vectorised: rank-sum AUC per resample)."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    _check(labels)
    pos, neg = scores[labels], scores[~labels]
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (len(pos) + len(neg)))  # bound memory on big audits
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        sample = np.concatenate([pos[rng.integers(0, len(pos), (b, len(pos)))],
                                 neg[rng.integers(0, len(neg), (b, len(neg)))]], axis=1)
        ranks = rankdata(sample, axis=1)  # ties get their average rank, as in roc_auc_score
        rank_sum = ranks[:, : len(pos)].sum(axis=1)
        aucs[start:start + b] = (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(aucs, [tail, 100 - tail])
    return float(lo), float(hi)


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float | None:
    """Highest TPR with FPR <= ``max_fpr``; None with fewer than 10 / max_fpr non-members."""
    labels = np.asarray(labels, dtype=bool)
    _check(labels)
    if (~labels).sum() < NULL_RULE_FACTOR / max_fpr - 1e-9:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max())


def balanced_accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best balanced accuracy (TPR + TNR) / 2 over all thresholds."""
    fpr, tpr, _ = roc_curve(np.asarray(labels, dtype=bool), scores)
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


def attack_metrics(labels: np.ndarray, scores: np.ndarray, prefix: str, *, n_boot: int = 1000,
                   seed: int = 0) -> dict[str, float | None]:
    """``<prefix>_auc``, ``_auc_lo``, ``_auc_hi``, ``_tpr_at_1pct_fpr``, ``_tpr_at_0p1pct_fpr``."""
    lo, hi = bootstrap_auc_ci(labels, scores, n_boot, seed)
    row: dict[str, float | None] = {f"{prefix}_auc": auc(labels, scores), f"{prefix}_auc_lo": lo, f"{prefix}_auc_hi": hi}
    for fpr, name in FPR_POINTS:
        row[f"{prefix}_tpr_at_{name}_fpr"] = tpr_at_fpr(labels, scores, fpr)
    return row


def leakage(aucs: Mapping[str, float | None]) -> tuple[float | None, str]:
    """(leak, source): max over attacks of max(AUC, 1 - AUC), and the attacks it was taken over."""
    present = {k: float(v) for k, v in aucs.items() if v is not None and np.isfinite(v)}
    if not present:
        return None, ""
    return max(max(v, 1.0 - v) for v in present.values()), ",".join(present)


def log_roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC points for log-log axes: rates floored at half a step (0.5 / n) so zeros stay visible."""
    labels = np.asarray(labels, dtype=bool)
    fpr, tpr, _ = roc_curve(labels, scores)
    floor = 0.5 / max(labels.sum(), (~labels).sum())
    return np.maximum(fpr, floor), np.maximum(tpr, floor), floor
