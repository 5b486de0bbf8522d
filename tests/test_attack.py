import numpy as np
import pytest
import torch

from akdray.attack import attack_sample, membership_metrics, reconstruction_loss
from akdray.config import RunConfig
from akdray.data.synthetic import synthetic_facades
from akdray.metrics import to_uint8
from akdray.train import fit_teacher, generate


def test_perfect_and_inverted_and_tied_scores():
    perfect = membership_metrics(np.array([0.1, 0.2]), np.array([0.5, 0.6]))
    assert perfect["mia_auc"] == 1.0 and perfect["mia_tpr_at_1pct_fpr"] == 1.0 and perfect["mia_balanced_acc"] == 1.0
    inverted = membership_metrics(np.array([0.5, 0.6]), np.array([0.1, 0.2]))
    assert inverted["mia_auc"] == 0.0 and inverted["mia_tpr_at_1pct_fpr"] == 0.0
    tied = membership_metrics(np.full(5, 0.3), np.full(5, 0.3))
    assert tied["mia_auc"] == 0.5 and tied["mia_balanced_acc"] == 0.5


def test_known_auc_and_low_fpr_tpr():
    # members' losses 1..4 vs non-members 2.5..: pairs ordered correctly 13 of 16 -> AUC 0.8125
    member = np.array([1.0, 2.0, 3.0, 4.0])
    nonmember = np.array([2.5, 3.5, 4.5, 5.5])
    m = membership_metrics(member, nonmember)
    assert m["mia_auc"] == pytest.approx(13 / 16)
    # at FPR 0 (no non-member flagged) the best threshold is loss < 2.5 -> TPR 2/4
    assert m["mia_tpr_at_1pct_fpr"] == 0.5 and m["mia_tpr_at_0p1pct_fpr"] == 0.5


def test_reconstruction_loss_units():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    b = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert np.allclose(reconstruction_loss(a, b), 2.0) and np.allclose(reconstruction_loss(a, a), 0.0)


def test_attack_sample_is_seeded_and_balanced():
    m1, n1 = attack_sample(50, 20, 0, seed=1)
    m2, n2 = attack_sample(50, 20, 0, seed=1)
    assert len(m1) == len(n1) == 20 and torch.equal(m1, m2) and torch.equal(n1, n2)
    assert not torch.equal(attack_sample(50, 20, 0, seed=2)[0], m1)


def test_attack_beats_chance_on_an_overfit_model():
    cfg = RunConfig(image_size=16, ngf=16, ndf=8, d_layers=2, n_train=12, n_test=12, epochs=60, batch_size=4,
                    use_dropout=False, device="cpu")
    x, y, _ = synthetic_facades(12, 16, 0, "train")
    xt, yt, _ = synthetic_facades(12, 16, 0, "test")
    G, _ = fit_teacher(cfg, x, y, torch.device("cpu"))
    serve = lambda inp: to_uint8(generate(G, inp, "eval", device=torch.device("cpu")))  # noqa: E731
    m = membership_metrics(reconstruction_loss(serve(x), y), reconstruction_loss(serve(xt), yt))
    assert m["mia_auc"] > 0.8, m
