"""The attack suite (signals -> scores -> metrics): known answers, the null TPR rule, reproducible
CIs, leak's symmetry, and - trained at tiny size - the control and a memorising target."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
import torch

from akdray.attacks.metrics import attack_metrics, auc_ci, tpr_at_fpr
from akdray.attacks.scores import lira_score, rmia_score
from akdray.attacks.signals import reconstruction_loss
from akdray.attacks.suite import audit_sample, run_attacks
from akdray.audit import audit_checkpoint
from akdray.reference_recipe import reference_config
from akdray.config import RunConfig
from akdray.run import run
from akdray.testing import TINY


def _labels(n_in: int, n_out: int) -> np.ndarray:
    return np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]


def test_perfect_inverted_and_known_auc():
    labels = _labels(4, 4)
    member, nonmember = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.5, 3.5, 4.5, 5.5])
    m = attack_metrics(labels, -np.r_[member, nonmember], "loss")
    assert m["loss_auc"] == pytest.approx(13 / 16)  # 13 of 16 pairs ordered correctly
    assert attack_metrics(labels, np.r_[np.ones(4), np.zeros(4)], "x")["x_auc"] == 1.0
    assert attack_metrics(labels, np.r_[np.zeros(4), np.ones(4)], "x")["x_auc"] == 0.0


def test_tpr_at_low_fpr_is_null_without_enough_nonmembers():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    labels = _labels(100, 100)  # 100 non-members: TPR @ 0.1 % (needs 10,000) and @ 1 % (needs 1,000) are null
    m = attack_metrics(labels, scores, "loss")
    assert m["loss_tpr_at_0p1pct_fpr"] is None and m["loss_tpr_at_1pct_fpr"] is None
    labels = _labels(100, 1000)
    scores = np.r_[np.full(100, 5.0), rng.normal(size=1000)]  # members all above every non-member
    assert tpr_at_fpr(labels, scores, 0.01) == 1.0 and tpr_at_fpr(labels, scores, 0.001) is None


def test_auc_ci_is_deterministic_and_brackets_the_auc():
    rng = np.random.default_rng(1)
    labels, scores = _labels(50, 80), np.r_[rng.normal(0.5, 1, 50), rng.normal(0, 1, 80)]
    a = auc_ci(labels, scores)
    assert a == auc_ci(labels, scores)
    auc = attack_metrics(labels, scores, "x")["x_auc"]
    assert a[0] < auc < a[1] and 0.1 < a[1] - a[0] < 0.4
    assert 0 < auc_ci(labels, np.r_[np.ones(50), np.zeros(80)])[0] < 1.0 == attack_metrics(  # AUC 1: inside (0, 1)
        labels, np.r_[np.ones(50), np.zeros(80)], "x")["x_auc"]


def test_every_attack_has_the_same_columns_and_leak_names_what_it_rests_on():
    rng = np.random.default_rng(2)
    member, nonmember = rng.gamma(2, 0.05, 40), rng.gamma(2, 0.07, 60)
    refs_in, refs_out = rng.gamma(2, 0.07, (3, 40)), rng.gamma(2, 0.07, (3, 60))
    row, scores = run_attacks(member, nonmember, refs_in, refs_out)
    assert row["leak_source"] == "loss,lira,rmia" and set(scores) == {"loss", "lira", "rmia"}
    assert {k.split("_", 1)[1] for k in row if k.startswith("lira_")} == {k.split("_", 1)[1] for k in row
                                                                          if k.startswith("rmia_")}
    assert row["leak_lo"] < row["leak"] < row["leak_hi"] and 0 < row["leak_p"] <= 1
    without, _ = run_attacks(member, nonmember, np.zeros((0, 40)), np.zeros((0, 60)))
    assert without["leak_source"] == "loss" and without["lira_auc"] is None and without["n_references"] == 0
    one, _ = run_attacks(member, nonmember, refs_in[:1], refs_out[:1])  # RMIA needs one reference, LiRA two
    assert one["leak_source"] == "loss,rmia" and one["lira_auc"] is None


def test_calibration_removes_per_image_difficulty():
    rng = np.random.default_rng(3)
    difficulty = rng.gamma(2, 0.1, 200)  # per image, shared by every model
    refs = difficulty * rng.lognormal(0, 0.05, (4, 200))
    target = difficulty * rng.lognormal(0, 0.05, 200)
    target[:100] *= 0.8  # members reconstructed 20 % better
    labels = _labels(100, 100)
    loss = attack_metrics(labels, -target, "loss")["loss_auc"]
    lira = attack_metrics(labels, lira_score(target, refs), "lira")["lira_auc"]
    rmia = attack_metrics(labels, rmia_score(target, refs, ~labels), "rmia")["rmia_auc"]
    assert loss < 0.8 and lira > 0.95 and rmia > 0.9
    with pytest.raises(ValueError, match="at least 2"):
        lira_score(target, refs[:1])


def test_reconstruction_loss_units_and_audit_sample():
    a, b = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert np.allclose(reconstruction_loss(a, b), 2.0) and np.allclose(reconstruction_loss(a, a), 0.0)
    members, nonmembers = audit_sample(50, 200, 0, seed=1)
    assert len(members) == 50 and len(nonmembers) == 200  # default: every member and non-member
    m1, n1 = audit_sample(50, 20, 10, seed=1)
    assert len(m1) == len(n1) == 10 and torch.equal(m1, audit_sample(50, 20, 10, seed=1)[0])


@pytest.mark.slow
def test_control_and_memorising_target(tmp_path):
    """A held-out reference as the target: lira and rmia CIs contain 0.5. A teacher trained many
    epochs on 8 images: lira and rmia AUC near 1, with the same reference models, and the attacks
    rank its images differently."""
    base = RunConfig(**{**TINY, "n_train": 8, "n_test": 32, "epochs": 40, "ngf": 16, "use_dropout": False,
                        "reference_pool_size": 40})
    refs = []
    for k in range(4):
        path = tmp_path / f"ref{k}"
        row = run(reference_config(base, k), path)
        assert row["status"] == "ok" and row["nkid"] is None  # a reference run costs no KID
        refs.append(str(path))
    control = audit_checkpoint(refs[0], tmp_path / "control", reference_runs=refs[1:])
    for attack in ("lira", "rmia"):
        assert control[f"{attack}_auc_lo"] <= 0.5 <= control[f"{attack}_auc_hi"], control
    teacher = run(base.replace(reference_checkpoints=",".join(refs[1:])), tmp_path / "teacher")
    # every member is audited against the test set (half of them also against the validation set)
    assert teacher["lira_auc"] > 0.9 and teacher["rmia_auc"] > 0.9
    assert teacher["attack_n_members"] == 8 and teacher["attack_n_nonmembers"] == 32 and teacher["val_attack_n_members"] == 4
    scores = pd.read_parquet(tmp_path / "teacher" / "scores.parquet")
    by = {a: scores[scores["attack"] == a].sort_values("name")["score"].to_numpy() for a in ("loss", "lira", "rmia")}
    for a, b in (("loss", "lira"), ("lira", "rmia"), ("loss", "rmia")):
        assert spearmanr(by[a], by[b]).statistic < 0.99, (a, b)
