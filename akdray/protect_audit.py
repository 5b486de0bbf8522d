"""Audit a deployed generator on the owner's data: the attack suite, NKID, and the AUC's bootstrap CI.

:func:`audit_model` is the one entry point: today it runs the loss attack of :mod:`akdray.attack`
through :func:`akdray.evaluate.evaluate` (members = ``train/``, non-members = ``test/``); a stronger
(calibrated) attack plugs in here without touching ``protect``. Every AUC comes with a stratified
bootstrap 95 % interval and the number of images it rests on. Leakage is ``|AUC - 0.5|``: an AUC
below 0.5 means the attacker should flip its score, not that the model is more private.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from akdray.config import RunConfig
from akdray.data.splits import Splits
from akdray.evaluate import Serve, evaluate

N_BOOTSTRAP = 2000
ATTACK = "mia"  # the loss attack (Eq. 3); the scores frame names it


def bootstrap_auc_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, n_resamples: int = N_BOOTSTRAP,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the AUC, resampling members and non-members separately (seeded)."""
    members, nonmembers = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    aucs = np.empty(n_resamples)
    for i in range(n_resamples):
        m = members[rng.integers(0, len(members), len(members))]
        n = nonmembers[rng.integers(0, len(nonmembers), len(nonmembers))]
        aucs[i] = roc_auc_score(labels, np.r_[m, n])
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(aucs, [tail, 100.0 - tail])
    return float(lo), float(hi)


def attack_summary(scores: pd.DataFrame, seed: int) -> dict:
    """AUC, its CI, leakage |AUC - 0.5| and whether the CI contains chance, from per-image scores."""
    s = scores[scores["attack"] == ATTACK]
    member = s["is_member"].astype(bool).to_numpy()
    score = s["score"].to_numpy(float)
    auc = float(roc_auc_score(member, score))
    lo, hi = bootstrap_auc_ci(score[member], score[~member], seed=seed)
    return {"mia_auc": auc, "mia_auc_ci_low": lo, "mia_auc_ci_high": hi, "leakage": abs(auc - 0.5),
            "ci_contains_chance": bool(lo <= 0.5 <= hi), "n_members": int(member.sum()),
            "n_nonmembers": int((~member).sum()), "n_bootstrap": N_BOOTSTRAP}


def audit_model(serve: Serve, audit: Splits, cfg: RunConfig, device: torch.device) -> tuple[dict, pd.DataFrame]:
    """Every privacy and quality number of one deployed model; returns (metrics, per-image scores)."""
    metrics, scores = evaluate(serve, audit, cfg, proxy_leakage=False, device=device)
    metrics.update(attack_summary(scores, cfg.seed))
    return metrics, scores


def roc_plot(scores: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    """ROC curves of the audited models on log-log axes (rates floored at half a step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    floor = 1.0
    for (name, frame), color in zip(scores.items(), ("black", "tab:red", "tab:blue")):
        s = frame[frame["attack"] == ATTACK]
        member = s["is_member"].astype(bool).to_numpy()
        fpr, tpr, _ = roc_curve(member, s["score"].to_numpy(float))
        low = 0.5 / max(member.sum(), (~member).sum())
        floor = min(floor, low)
        auc = roc_auc_score(member, s["score"].to_numpy(float))
        ax.plot(np.maximum(fpr, low), np.maximum(tpr, low), color=color, lw=1.5, label=f"{name} (AUC {auc:.3f})")
    ax.plot([floor, 1], [floor, 1], color="grey", ls=":", lw=1, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
