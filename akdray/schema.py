"""Names of everything a run writes: row columns and the per-image files (no torch import).

A row is every ``RunConfig`` field plus ``METRIC_KEYS`` (None when the run failed or the metric was
not measured) plus ``INFO_KEYS``; the analysis reads exactly these names from Parquet.
"""
from __future__ import annotations

from akdray.attacks.registry import ATTACKS  # the attacks, listed once (numpy, no torch)

ROW_FILE, CONFIG_FILE, SCORES_FILE, SAMPLES_FILE = "row.json", "config.json", "scores.parquet", "samples.parquet"
AUDIT_FILE, ROC_FILE = "audit.json", "roc.png"
GROUPNORM_PICK = "teacher-groupnorm"  # column pick of the teacher trained with norm=group (DP-SGD's architecture)

ATTACK_SUFFIXES = ("auc", "auc_lo", "auc_hi",
                   *(f"{kind}_at_{point}_fpr{end}" for point in ("1pct", "0p1pct")
                     for kind, end in (("tpr", ""), ("tpr", "_lo"), ("tpr", "_hi"), ("fpr", ""))),
                   "balanced_acc")


def attack_columns(prefix: str) -> tuple[str, ...]:
    """``<prefix>_auc`` and its 95 % CI ``_auc_lo`` / ``_auc_hi``; per FPR point (1 %, 0.1 %) the TPR, its
    95 % Clopper-Pearson CI and the FPR reached (``_fpr_at_1pct_fpr``); best balanced accuracy."""
    return tuple(f"{prefix}_{s}" for s in ATTACK_SUFFIXES)


# leak (akdray.attacks.leak): the AUC of the attack chosen on the other half, unfolded, its CI and the
# choices; the old maximum over attacks with its permutation null.
LEAK_KEYS = ("leak", "leak_lo", "leak_hi", "leak_attack", "leak_source", "leak_max", "leak_p", "leak_null_mean")
TEXT_METRIC_KEYS = ("leak_source", "leak_attack", "val_leak_source", "val_leak_attack")
# The validation block (search objectives val_leak, val_nkid): the attack suite on the validation half
# of the members vs the validation non-members, and KID/NKID of the validation images.
VAL_METRIC_KEYS = tuple(f"val_{c}" for c in (
    *(c for a in ATTACKS for c in attack_columns(a)), "attack_n_members", "attack_n_nonmembers", *LEAK_KEYS,
    "kid", "nkid", "hfer", "swd"))
METRIC_KEYS = (
    *(c for a in ATTACKS for c in attack_columns(a)), "attack_n_members", "attack_n_nonmembers", "n_references",
    *LEAK_KEYS, *attack_columns("proxy_mia"), "proxy_mia_n_members", "proxy_mia_n_nonmembers",
    "train_l1", "test_l1", "kid", "kid_std", "kid_max", "nkid", "hfer", "swd", "kid_subset_size_used", "kid_train",
    "nkid_train", "gen_gap", "dp_epsilon", "dp_sample_rate", "dp_steps", "final_loss_G_l1", "final_loss_D", *VAL_METRIC_KEYS,
)
INFO_KEYS = ("status", "error", "wall_s", "prepare_s", "train_s", "eval_s", "device_used", "started_at", "finished_at",
             "akdray_version", "torch_version", "host", "code_commit")
SCORE_COLUMNS = ("attack", "role", "name", "is_member", "loss", "score")
SAMPLE_COLUMNS = ("name", "input_png", "target_png", "output_png")
