"""The black-box reconstruction-loss membership attack (Eq. 3 of the paper).

signals -> scores -> metrics, as separate steps: the per-image L1 loss ||G(x) - y||_1 is the
signal; the membership score is its negation (members are reconstructed better); AUCROC, TPR at
low FPR and the best balanced accuracy come from scikit-learn's ROC curve.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


def reconstruction_loss(outputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per-image mean absolute error, both uint8 [N,3,H,W], in [-1, 1] units (as pix2pix's L1)."""
    if outputs.shape != targets.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} differ in shape")
    diff = (outputs.float() - targets.float()).abs() / 127.5
    return diff.flatten(1).mean(1).double().numpy()


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Highest TPR among ROC thresholds whose FPR does not exceed ``max_fpr``."""
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def membership_metrics(member_loss: np.ndarray, nonmember_loss: np.ndarray, prefix: str = "mia") -> dict[str, float]:
    """AUCROC, TPR at 1% / 0.1% FPR and best balanced accuracy; score = -loss.

    With n non-members the FPR grid is 1/n, so TPR@0.1%FPR equals TPR@0%FPR when n < 1000.
    """
    if len(member_loss) == 0 or len(nonmember_loss) == 0:
        raise ValueError("the attack needs at least one member and one non-member")
    labels = np.r_[np.ones(len(member_loss)), np.zeros(len(nonmember_loss))]
    scores = -np.r_[member_loss, nonmember_loss]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {
        f"{prefix}_auc": float(roc_auc_score(labels, scores)),
        f"{prefix}_tpr_at_1pct_fpr": tpr_at_fpr(fpr, tpr, 0.01),
        f"{prefix}_tpr_at_0p1pct_fpr": tpr_at_fpr(fpr, tpr, 0.001),
        f"{prefix}_balanced_acc": float(np.max((tpr + 1.0 - fpr) / 2.0)),
        f"{prefix}_n_members": float(len(member_loss)),
        f"{prefix}_n_nonmembers": float(len(nonmember_loss)),
    }


def attack_sample(n_members_pool: int, n_nonmembers_pool: int, n_per_side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, equal-sized random picks of members (training pairs) and non-members (test pairs)."""
    n = min(n_members_pool, n_nonmembers_pool) if n_per_side == 0 else n_per_side
    gen = torch.Generator().manual_seed(seed + 7919)
    members = torch.randperm(n_members_pool, generator=gen)[:n].sort().values
    nonmembers = torch.randperm(n_nonmembers_pool, generator=gen)[:n].sort().values
    return members, nonmembers
