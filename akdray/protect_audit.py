"""The before/after audit of ``akdray protect``: the attack suite of :mod:`akdray.attacks` on teacher and student.

:func:`audit_model` runs :func:`akdray.evaluate.evaluate` on the owner's data (members = ``train/``,
non-members = ``test/``): the loss attack (Eq. 3) always, and the calibrated ``rmia`` (K >= 1) and
``lira`` (K >= 2) attacks when reference models are given (``akdray protect --references K``). Every
AUC has its 95 % CI (logit-DeLong); leakage is ``leak`` (:mod:`akdray.attacks.leak`): the audited
images are split in two halves, the attack and its direction are chosen on one half and its AUC is
measured on the other (both ways, averaged), so a model that leaked nothing reads 0.5 on average,
before as after. ``leak_max`` (the largest max(AUC, 1 − AUC)) is kept with its permutation p-value.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from akdray.attacks.signals import Serve
from akdray.config import RunConfig
from akdray.data.splits import Splits
from akdray.evaluate import evaluate
from akdray.schema import ATTACKS, LEAK_KEYS

QUALITY_KEYS = ("train_l1", "test_l1", "kid", "nkid", "gen_gap")


def audit_model(serve: Serve, audit: Splits, cfg: RunConfig, device: torch.device,
                references: Sequence[Serve] = ()) -> tuple[dict, pd.DataFrame]:
    """Every privacy and quality number of one deployed model; returns (row, per-image scores)."""
    return evaluate(serve, audit, cfg, proxy_leakage=False, references=references, device=device)


def model_summary(row: dict) -> dict:
    """Per attack that ran: AUC, CI, whether the CI contains 0.5, TPR at 1 % / 0.1 % FPR; leak; quality."""
    attacks = {}
    for a in ATTACKS:
        if row.get(f"{a}_auc") is None:
            continue
        lo, hi = row[f"{a}_auc_lo"], row[f"{a}_auc_hi"]
        attacks[a] = {"auc": row[f"{a}_auc"], "auc_lo": lo, "auc_hi": hi, "ci_contains_chance": bool(lo <= 0.5 <= hi),
                      "tpr_at_1pct_fpr": row.get(f"{a}_tpr_at_1pct_fpr"),
                      "tpr_at_0p1pct_fpr": row.get(f"{a}_tpr_at_0p1pct_fpr")}
    return {"attacks": attacks, **{k: row.get(k) for k in LEAK_KEYS},
            **{k: row.get(k) for k in QUALITY_KEYS}}
