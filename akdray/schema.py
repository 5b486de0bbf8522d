"""Names of everything a run writes: row columns and the per-image files (no torch import).

A row is every ``RunConfig`` field plus ``METRIC_KEYS`` (None when the run failed) plus
``INFO_KEYS``; the analysis reads exactly these names from Parquet.
"""
from __future__ import annotations

ROW_FILE, CONFIG_FILE, SCORES_FILE, SAMPLES_FILE = "row.json", "config.json", "scores.parquet", "samples.parquet"

METRIC_KEYS = (
    "mia_auc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0p1pct_fpr", "mia_balanced_acc", "mia_n_members",
    "mia_n_nonmembers", "proxy_mia_auc", "proxy_mia_tpr_at_1pct_fpr", "proxy_mia_tpr_at_0p1pct_fpr",
    "proxy_mia_balanced_acc", "proxy_mia_n_members", "proxy_mia_n_nonmembers", "train_l1", "test_l1",
    "kid", "kid_std", "kid_max", "nkid", "kid_subset_size_used", "kid_train", "nkid_train", "gen_gap",
    "dp_epsilon", "dp_sample_rate", "dp_steps", "final_loss_G_l1", "final_loss_D",
)
INFO_KEYS = ("status", "error", "wall_s", "train_s", "eval_s", "device_used", "started_at", "finished_at",
             "akdray_version", "torch_version", "host")
SCORE_COLUMNS = ("attack", "role", "name", "is_member", "loss", "score")
SAMPLE_COLUMNS = ("name", "input_png", "target_png", "output_png")
