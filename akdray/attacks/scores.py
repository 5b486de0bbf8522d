"""Scores: one membership score per image from the signals; higher = "more likely a member".

Every score function takes the target's losses ``target`` [N], the K reference models' losses
``refs`` [K, N] (models that never saw any audited image) and ``population`` [N], a boolean mask
of the audited images an attack may use as population samples (the non-members); the attacks are
listed once, in :mod:`akdray.attacks.registry`.

* ``loss`` - the paper's attack (Eq. 3): score = -L_target(x, y).
* ``lira`` - offline LiRA (Carlini et al., S&P 2022, Sec. IV-C, the "offline" variant with OUT
  models only). Statistic: s = log L(x, y) (losses are positive and right-skewed; the log makes
  the reference distribution close to Gaussian, the role the logit of the confidence plays in
  LiRA). Per image, fit N(mu, sigma^2) to the K reference statistics; the score is the one-sided
  test that the target's statistic is *lower* than the reference distribution (members are
  reconstructed better): score = -log Phi((s_target - mu) / sigma). sigma is per image from
  K >= ``LIRA_PER_IMAGE_STD_MIN_K`` = 16 reference models, one global value (the root mean of the
  per-image variances; LiRA's fixed-variance variant) below. The line: a per-image variance from K
  models has K - 1 degrees of freedom, its relative standard error sqrt(2 / (K - 1)) is 0.37 at
  K = 16 and 0.76 at K = 4, and the z-score inherits that noise; LiRA's authors report the fixed
  variance stronger below about 16 shadow models. With the global sigma the score is monotone in
  mean_k log L_ref_k - log L_target: it ranks images as the difficulty calibration of Watson et al.
  (ICLR 2022) on log losses, so that calibration is not a separate attack.
* ``rmia`` - offline RMIA (Zarifzadeh et al., ICML 2024, Sec. 3-4), the attack designed for few
  reference models. The signal Pr(x | theta) of an image is exp(-L(x)): the per-pixel Laplace
  likelihood of the target image with scale 1 in pix2pix's [-1, 1] units, as a geometric mean over
  pixels (a number in (0, 1], the role of the true-class probability of a classifier). With OUT
  reference models only, Pr(x) = (1 + a)/2 * mean_k Pr(x | theta_k) + (1 - a)/2, the paper's offline
  approximation of the average over IN and OUT models: it reads Pr_IN(x) ~ a Pr_OUT(x) + (1 - a).
  ``RMIA_A`` = a = 0.7. The paper tunes a on reference models with known members (its code's
  default, 0.3, fits classifiers whose confidences sit near 1); here, with p = exp(-L) and small
  L, Pr_IN ~ a Pr_OUT + (1 - a) holds for a = L_IN / L_OUT, and a cpu-small reference model (the
  teacher's recipe) reconstructs its own training pairs at L1 0.242 vs 0.347 on held-out pairs
  (train_l1 / test_l1 in a reference run's row.json, 2026-12-07): a = 0.70. Smaller a calibrates
  less (a = 0 is the loss attack scaled); simulated with strongly varying difficulty, AUC 0.72 at
  a = 0.3, 0.91 at 0.6, 0.96 at 1.0 (LiRA 0.998). Likelihood ratio LR(x) = Pr(x | theta) / Pr(x); the
  score of x is the share of population samples z (every non-member of the audited block but x itself) with
  LR(x) / LR(z) > ``RMIA_GAMMA`` = 1. That share is monotone in LR(x): the population maps the score
  to [0, 1] (comparable across targets) and leaves AUC and TPR at FPR as LR(x) itself gives them.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

LIRA_MIN_REFERENCES = 2  # a variance needs two reference statistics per image
LIRA_PER_IMAGE_STD_MIN_K = 16  # from here per-image sigma; below, one global sigma (see the docstring)
RMIA_MIN_REFERENCES = 1
RMIA_A = 0.7  # offline RMIA's a (docstring): Pr(x) ~ (1 + a)/2 * mean OUT Pr(x | theta_ref) + (1 - a)/2
RMIA_GAMMA = 1.0  # x beats z when LR(x) / LR(z) > gamma
_EPS = 1e-8  # floor of a loss before the log (a perfect reconstruction has loss 0)


def _refs(refs: np.ndarray, k_min: int, name: str) -> np.ndarray:
    refs = np.asarray(refs, dtype=float)
    k = refs.shape[0] if refs.ndim == 2 else 0
    if k < k_min:
        raise ValueError(f"{name} needs at least {k_min} reference models, got {k}")
    return refs


def loss_score(target: np.ndarray, refs: np.ndarray | None = None, population: np.ndarray | None = None) -> np.ndarray:
    """Eq. 3: lower reconstruction loss -> more likely a member (``refs``, ``population`` unused)."""
    return -np.asarray(target, dtype=float)


def lira_score(target: np.ndarray, refs: np.ndarray, population: np.ndarray | None = None) -> np.ndarray:
    """Offline LiRA on log-losses: -log Phi(z), z = (log L_target - mu_ref) / sigma_ref."""
    refs = _refs(refs, LIRA_MIN_REFERENCES, "LiRA")
    stat_ref = np.log(np.maximum(refs, _EPS))
    stat = np.log(np.maximum(np.asarray(target, dtype=float), _EPS))
    mu = stat_ref.mean(axis=0)
    var = stat_ref.var(axis=0, ddof=1)
    if refs.shape[0] < LIRA_PER_IMAGE_STD_MIN_K:
        var = np.full_like(var, var.mean())
    sigma = np.sqrt(np.maximum(var, 1e-12))
    return -norm.logcdf((stat - mu) / sigma)


def rmia_score(target: np.ndarray, refs: np.ndarray, population: np.ndarray, a: float = RMIA_A,
               gamma: float = RMIA_GAMMA) -> np.ndarray:
    """Offline RMIA: per image, the share of population samples z != x with LR(x) / LR(z) > gamma."""
    refs = _refs(refs, RMIA_MIN_REFERENCES, "RMIA")
    population = np.asarray(population, dtype=bool)
    if population.sum() < 2:
        raise ValueError("RMIA needs at least 2 population samples (non-members)")
    p_target = np.exp(-np.asarray(target, dtype=float))
    p_x = (1 + a) / 2 * np.exp(-refs).mean(axis=0) + (1 - a) / 2
    log_lr = np.log(p_target) - np.log(p_x)
    z = np.sort(log_lr[population])
    # LR(x) / LR(z) > gamma  <=>  log LR(z) < log LR(x) - log gamma; x never beats itself (gamma >= 1)
    beaten = np.searchsorted(z, log_lr - np.log(gamma), side="left").astype(float)
    if gamma < 1:
        beaten -= population  # with gamma < 1 an image would count itself
    return beaten / (len(z) - population.astype(float))


def attack_scores(target: np.ndarray, refs: np.ndarray, population: np.ndarray) -> dict[str, np.ndarray]:
    """Every attack of the registry (:mod:`akdray.attacks.registry`) the K reference models allow."""
    from akdray.attacks.registry import REGISTRY, available

    refs = np.asarray(refs, dtype=float)
    k = refs.shape[0] if refs.ndim == 2 else 0
    return {name: REGISTRY[name].score(target, refs, population) for name in available(k)}
