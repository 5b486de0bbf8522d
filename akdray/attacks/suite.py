"""The attack suite on one target: which images are audited, every attack's row columns, and the
per-image scores behind them (``scores.parquet``). Used by ``akdray run`` and ``akdray audit``.

Members are the target's training pairs, non-members held-out test pairs; with
``attack_n_per_side = 0`` (the default) every one of them is used, so the two classes may differ
in size (AUC and TPR at FPR do not need balance).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from akdray import seeds
from akdray.attacks.leak import MIN_PERMUTATIONS, leak_columns
from akdray.attacks.metrics import attack_metrics
from akdray.attacks.scores import attack_scores
from akdray.schema import ATTACKS, SCORE_COLUMNS, attack_columns


def audit_sample(n_members_pool: int, n_nonmembers_pool: int, n_per_side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the audited members and non-members: all of both (``n_per_side = 0``), or
    ``n_per_side`` of each drawn with ``seed``."""
    if n_per_side == 0:
        return torch.arange(n_members_pool), torch.arange(n_nonmembers_pool)
    gen = torch.Generator().manual_seed(seeds.AUDIT_SAMPLE.seed(seed))
    members = torch.randperm(n_members_pool, generator=gen)[:n_per_side].sort().values
    nonmembers = torch.randperm(n_nonmembers_pool, generator=gen)[:n_per_side].sort().values
    return members, nonmembers


def run_attacks(member_loss: np.ndarray, nonmember_loss: np.ndarray, ref_member_loss: np.ndarray,
                ref_nonmember_loss: np.ndarray, *, seed: int = 0,
                n_permutations: int = MIN_PERMUTATIONS) -> tuple[dict, dict[str, np.ndarray]]:
    """Every attack the K reference models allow (:mod:`akdray.attacks.registry`; the non-members are
    RMIA's population), and ``leak`` with its columns (:mod:`akdray.attacks.leak`, seeded by ``seed``).

    Returns the row columns (attacks not run are None) and the per-image scores, members first.
    """
    labels = np.r_[np.ones(len(member_loss), bool), np.zeros(len(nonmember_loss), bool)]
    target = np.r_[member_loss, nonmember_loss]
    refs = np.concatenate([np.asarray(ref_member_loss).reshape(-1, len(member_loss)),
                           np.asarray(ref_nonmember_loss).reshape(-1, len(nonmember_loss))], axis=1)
    scores = attack_scores(target, refs, ~labels)
    row: dict = {}
    for name in ATTACKS:
        row.update(attack_metrics(labels, scores[name], name) if name in scores else dict.fromkeys(attack_columns(name)))
    row.update(leak_columns(labels, scores, seed=seed, n_permutations=n_permutations))
    row.update(attack_n_members=float(len(member_loss)), attack_n_nonmembers=float(len(nonmember_loss)),
               n_references=float(refs.shape[0]))
    return row, scores


def scores_frame(scores: dict[str, np.ndarray], loss: np.ndarray, names: Sequence[str], roles: Sequence[str],
                 is_member: np.ndarray) -> pd.DataFrame:
    """Long format, one block per attack: attack, role, name, is_member, loss (the target's), score."""
    frames = [pd.DataFrame({"attack": attack, "role": list(roles), "name": list(names), "is_member": is_member,
                            "loss": loss, "score": score}) for attack, score in scores.items()]
    return pd.concat(frames, ignore_index=True)[list(SCORE_COLUMNS)]
