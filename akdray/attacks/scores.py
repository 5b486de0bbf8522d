"""Scores: one membership score per image from the signals; higher = "more likely a member".

* ``loss`` - the paper's attack (Eq. 3): score = -L_target(x, y).
* ``cal``  - difficulty calibration (Watson et al., ICLR 2022, Sec. 3): score =
  mean_k L_ref_k(x, y) - L_target(x, y). An image that is hard for every model is no longer
  mistaken for a non-member, nor an easy one for a member.
* ``lira`` - offline LiRA (Carlini et al., S&P 2022, Sec. IV-C, "offline" variant with OUT
  models only). Statistic: s = log L(x, y) (losses are positive and right-skewed; the log makes
  the reference distribution close to Gaussian, the role the logit of the confidence plays in
  LiRA). Per image, fit N(mu, sigma^2) to the K reference statistics; the score is the one-sided
  test that the target's statistic is *lower* than the reference distribution (members are
  reconstructed better): score = -log Phi((s_target - mu) / sigma). As LiRA recommends for few
  shadow models (its "global variance" variant), sigma is one global value - the root mean of the
  per-image variances - when K < ``LIRA_PER_IMAGE_STD_MIN_K``; per image otherwise.

Reference losses are always from models that never saw the audited images (members and
non-members alike), so all three scores need only OUT models.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm


LIRA_MIN_REFERENCES = 2  # a variance needs two reference statistics per image
LIRA_PER_IMAGE_STD_MIN_K = 16  # below this, one global sigma (LiRA's fixed-variance variant)
_EPS = 1e-8  # floor of a loss before the log (a perfect reconstruction has loss 0)


def loss_score(target: np.ndarray, refs: np.ndarray | None = None) -> np.ndarray:
    """Eq. 3: lower reconstruction loss -> more likely a member (``refs`` unused)."""
    return -np.asarray(target, dtype=float)


def cal_score(target: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Difficulty calibration: mean reference loss minus the target's loss; refs is [K, N], K >= 1."""
    refs = np.asarray(refs, dtype=float)
    if refs.ndim != 2 or refs.shape[0] < 1:
        raise ValueError("the calibrated attack needs at least one reference model")
    return refs.mean(axis=0) - np.asarray(target, dtype=float)


def lira_score(target: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Offline LiRA on log-losses: -log Phi(z), z = (log L_target - mu_ref) / sigma_ref."""
    refs = np.asarray(refs, dtype=float)
    if refs.ndim != 2 or refs.shape[0] < LIRA_MIN_REFERENCES:
        raise ValueError(f"LiRA needs at least {LIRA_MIN_REFERENCES} reference models, got {refs.shape[0]}")
    stat_ref = np.log(np.maximum(refs, _EPS))
    stat = np.log(np.maximum(np.asarray(target, dtype=float), _EPS))
    mu = stat_ref.mean(axis=0)
    var = stat_ref.var(axis=0, ddof=1)
    if refs.shape[0] < LIRA_PER_IMAGE_STD_MIN_K:
        var = np.full_like(var, var.mean())
    sigma = np.sqrt(np.maximum(var, 1e-12))
    return -norm.logcdf((stat - mu) / sigma)


def attack_scores(target: np.ndarray, refs: np.ndarray) -> dict[str, np.ndarray]:
    """Every attack of the registry (:mod:`akdray.attacks.registry`) the K reference models allow."""
    from akdray.attacks.registry import REGISTRY, available

    refs = np.asarray(refs, dtype=float)
    k = refs.shape[0] if refs.ndim == 2 else 0
    return {name: REGISTRY[name].score(target, refs) for name in available(k)}
