"""Metrics of one attack: AUC with an interval that holds at high AUC, TPR at low FPR with its
Clopper-Pearson interval and the FPR actually reached, best balanced accuracy.

Statistics, stated with the sample they rest on (as LiRA and ML Privacy Meter report them):

* **AUC CI** - logit-DeLong with a variance floor: the AUC's variance is DeLong's (DeLong et al.
  1988, from the placement values), floored by Newcombe's modified Hanley-McNeil variance
  (Newcombe 2006, method 5: N* = (m + n)/2 - 1 in both Q terms) at the estimate, and the 95 %
  interval is built on logit(AUC) and mapped back (so it stays inside (0, 1)). Why: the plain
  DeLong interval and the percentile bootstrap under-cover near AUC 1 (their variance estimate
  collapses when almost every pair is ordered: simulated coverage 0.90 and 0.83 at AUC 0.997, 100
  members vs 1,000 non-members); the floor restores it. Simulated on binormal scores (docs/attacks.md,
  ``tests/test_attacks_stats.py``): coverage 0.945-0.997 from AUC 0.5 to 0.997 at 100 vs 1,000 and
  100 vs 500; conservative above AUC 0.95. Deterministic: no seed.
* **TPR at FPR f** - the threshold is the lowest one whose FPR on the non-members is <= f; the TPR
  of the members above it, its 95 % Clopper-Pearson interval (exact binomial on the members, the
  threshold held fixed) and the realised FPR (<= f; on a grid of 1/n). **Null** (None, never 0)
  when there are fewer than ``10 / f`` non-members (ten expected false positives at ``f``): with
  100 non-members "TPR @ 0.1 % FPR" would be a TPR at zero false positives. So TPR @ 1 % needs
  >= 1,000 non-members, TPR @ 0.1 % >= 10,000.

Which attack a row's ``leak`` reports is chosen in :mod:`akdray.attacks.leak`.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta, norm, rankdata
from sklearn.metrics import roc_curve

FPR_POINTS = ((0.01, "1pct"), (0.001, "0p1pct"))
NULL_RULE_FACTOR = 10  # TPR at FPR f needs at least NULL_RULE_FACTOR / f non-members
CI_LEVEL = 0.95


def _check(labels: np.ndarray) -> None:
    if labels.all() or not labels.any():
        raise ValueError("the attack needs at least one member and one non-member")


def delong(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong variance) from the placement values; ties count one half, as in ``roc_auc_score``."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    _check(labels)
    pos, neg = scores[labels], scores[~labels]
    m, n = len(pos), len(neg)
    ranks = rankdata(np.r_[pos, neg])
    below_pos = (ranks[:m] - rankdata(pos)) / n  # per member: share of non-members scored below it
    above_neg = 1.0 - (ranks[m:] - rankdata(neg)) / m  # per non-member: share of members scored above it
    auc = float(below_pos.mean())
    var = (below_pos.var(ddof=1) / m if m > 1 else 0.0) + (above_neg.var(ddof=1) / n if n > 1 else 0.0)
    return auc, float(var)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return delong(labels, scores)[0]


def newcombe_variance(a: float, m: int, n: int) -> float:
    """Newcombe's (2006) modified Hanley-McNeil variance of an AUC ``a`` from ``m`` vs ``n`` scores."""
    big_n = (m + n) / 2.0 - 1.0
    return a * (1 - a) * (1 + (big_n - 1) * ((1 - a) / (2 - a) + a / (1 + a))) / (m * n)


def auc_interval(a: float, var: float, m: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """The logit interval of an AUC ``a`` with variance ``var`` (floored by :func:`newcombe_variance`)."""
    eps = 0.5 / max(m, n)  # an AUC of exactly 0 or 1 is read as half a step inside
    a = min(max(a, eps), 1 - eps)
    se = np.sqrt(max(var, newcombe_variance(a, m, n))) / (a * (1 - a))
    z = norm.ppf(0.5 + level / 2)
    centre = np.log(a / (1 - a))
    return float(1 / (1 + np.exp(-(centre - z * se)))), float(1 / (1 + np.exp(-(centre + z * se))))


def auc_ci(labels: np.ndarray, scores: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The logit-DeLong interval of the module docstring."""
    labels = np.asarray(labels, dtype=bool)
    a, var = delong(labels, scores)
    return auc_interval(a, var, int(labels.sum()), int((~labels).sum()), level)


def clopper_pearson(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a proportion k / n."""
    tail = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def tpr_at_fpr_full(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> tuple[float, float, float, float] | None:
    """(TPR, its Clopper-Pearson lo, hi, realised FPR) at the lowest threshold with FPR <= ``max_fpr``;
    None with fewer than 10 / max_fpr non-members."""
    labels = np.asarray(labels, dtype=bool)
    _check(labels)
    if (~labels).sum() < NULL_RULE_FACTOR / max_fpr - 1e-9:
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    i = np.flatnonzero(fpr <= max_fpr + 1e-12)[-1]  # fpr rises along the curve: the last point within budget
    m = int(labels.sum())
    k = int(round(tpr[i] * m))
    return float(tpr[i]), *clopper_pearson(k, m), float(fpr[i])


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float | None:
    """Highest TPR with FPR <= ``max_fpr``; None with fewer than 10 / max_fpr non-members."""
    full = tpr_at_fpr_full(labels, scores, max_fpr)
    return None if full is None else full[0]


def balanced_accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best balanced accuracy (TPR + TNR) / 2 over all thresholds."""
    fpr, tpr, _ = roc_curve(np.asarray(labels, dtype=bool), scores)
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


def attack_metrics(labels: np.ndarray, scores: np.ndarray, prefix: str) -> dict[str, float | None]:
    """Every column of :func:`akdray.schema.attack_columns` for one attack's scores."""
    labels = np.asarray(labels, dtype=bool)
    a, var = delong(labels, scores)
    lo, hi = auc_interval(a, var, int(labels.sum()), int((~labels).sum()))
    row: dict[str, float | None] = {f"{prefix}_auc": a, f"{prefix}_auc_lo": lo, f"{prefix}_auc_hi": hi}
    for fpr, name in FPR_POINTS:
        full = tpr_at_fpr_full(labels, scores, fpr)
        for i, suffix in enumerate(("", "_lo", "_hi")):
            row[f"{prefix}_tpr_at_{name}_fpr{suffix}"] = None if full is None else full[i]
        row[f"{prefix}_fpr_at_{name}_fpr"] = None if full is None else full[3]
    row[f"{prefix}_balanced_acc"] = balanced_accuracy(labels, scores)
    return row


def log_roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC points for log-log axes: rates floored at half a step (0.5 / n) so zeros stay visible."""
    labels = np.asarray(labels, dtype=bool)
    fpr, tpr, _ = roc_curve(labels, scores)
    floor = 0.5 / max(labels.sum(), (~labels).sum())
    return np.maximum(fpr, floor), np.maximum(tpr, floor), floor
