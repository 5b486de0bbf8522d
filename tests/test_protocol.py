"""The fair protocol's small rules: gap sign, DP delta, a fresh student, paper presets, the embedded task."""
from __future__ import annotations

import pytest
import torch

from akdray.config import PRESETS, RunConfig, make_config
from akdray.data.synthetic import synthetic_facades
from akdray.defenses.distill import fit_student
from akdray.defenses.dpsgd import dp_delta
from akdray.data.splits import InputImages
from akdray.metrics.kid import generalization_gap
from akdray.models import build_generator
from akdray.train import fit_teacher
from akdray.testing import TINY

CPU = torch.device("cpu")


def test_gap_is_positive_for_a_model_that_overfits():
    # better (lower) NKID on its training inputs than on unseen ones: the paper's Table IV sign
    assert generalization_gap(nkid_train=0.10, nkid_test=0.30) == pytest.approx(0.20)
    assert generalization_gap(nkid_train=0.30, nkid_test=0.10) < 0


def test_dp_delta_default_is_well_below_one_over_n():
    cfg = RunConfig(**TINY)
    assert dp_delta(cfg, 200) == pytest.approx(1 / 2000) and dp_delta(cfg, 200) <= 1 / (10 * 200)
    assert dp_delta(cfg.replace(dp_delta=1e-5), 200) == 1e-5


def test_paper_presets_evaluate_and_query_the_teacher_as_the_official_test_script():
    for name in ("facades", "cityscapes"):
        assert PRESETS[name]["inference_mode"] == "train" and PRESETS[name]["teacher_inference_mode"] == "train"
    assert make_config("cpu-small").inference_mode == "eval"  # the embedded default says which it uses


@pytest.mark.train
def test_student_starts_from_its_own_weights_not_the_teachers():
    cfg = RunConfig(**TINY).replace(method="akd", teacher_checkpoint="unused", distill_epochs=0,
                                    distill_epochs_decay=1, lr=1e-12)
    torch.manual_seed(cfg.seed)
    teacher_init = build_generator(cfg).state_dict()
    x, _, names = synthetic_facades(4, 16, 0, "proxy")
    student, _ = fit_student(cfg, lambda t: t, InputImages(x, names), adversarial=False, device=CPU)
    first = "model.model.0.weight"
    assert not torch.allclose(student.state_dict()[first], teacher_init[first])
    again, _ = fit_student(cfg, lambda t: t, InputImages(x, names), adversarial=False, device=CPU)
    assert torch.equal(again.state_dict()[first], student.state_dict()[first])  # still seeded


@pytest.mark.train
def test_l1_only_teacher_has_no_discriminator_and_differs_from_gan_l1():
    cfg = RunConfig(**TINY)
    x, y, _ = synthetic_facades(8, 16, 0, "train")
    gan, gan_hist = fit_teacher(cfg, x, y, CPU)
    l1, l1_hist = fit_teacher(cfg.replace(gan_weight=0.0), x, y, CPU)
    assert "loss_D" in gan_hist.epochs[-1] and "loss_D" not in l1_hist.epochs[-1]
    assert not torch.equal(gan.state_dict()["model.model.0.weight"], l1.state_dict()["model.model.0.weight"])


def test_textured_task_hides_detail_from_the_label_map():
    """Two images with the same label map get different sharp detail: the L1 optimum must blur it."""
    x, y, _ = synthetic_facades(64, 32, 0, "train", "textured")
    # horizontal high-frequency energy of the photos (edges of bricks, glare, planks) ...
    detail = (y[:, :, :, 1:].float() - y[:, :, :, :-1].float()).abs().mean()
    x_flat, y_flat, _ = synthetic_facades(64, 32, 0, "train", "flat")
    flat_detail = (y_flat[:, :, :, 1:].float() - y_flat[:, :, :, :-1].float()).abs().mean()
    assert torch.equal(x, x_flat)  # the same layouts: only the rendering differs
    assert detail > 1.3 * flat_detail


def test_sharp_task_draws_only_the_detail_at_random():
    """``sharp``: another texture draw keeps the label map and the colours and moves the detail;
    the per-pixel median of redraws (the L1 optimum) has less detail than any real photo set."""
    x, y, _ = synthetic_facades(16, 32, 0, "test", "sharp")
    x_textured, _, _ = synthetic_facades(16, 32, 0, "test", "textured")
    assert torch.equal(x, x_textured)
    redraws = [synthetic_facades(16, 32, 0, "test", "sharp", texture_draw=k) for k in range(9)]
    assert all(torch.equal(xr, x) for xr, _, _ in redraws)
    ys = torch.stack([yr for _, yr, _ in redraws]).float()
    assert not torch.equal(ys[0], ys[1])
    # colour is mostly predictable: an image's mean colour moves between draws far less than
    # between two ``textured`` photos (whose palette is drawn per image) ...
    spread = lambda a, b: (a.float().mean((2, 3)) - b.float().mean((2, 3))).abs().mean()  # noqa: E731
    other = synthetic_facades(16, 32, 1, "test", "textured")[1]
    assert spread(ys[0], ys[1]) < 0.6 * spread(synthetic_facades(16, 32, 0, "test", "textured")[1], other)
    detail = lambda im: (im[..., 1:] - im[..., :-1]).abs().mean()  # noqa: E731
    # ... the detail is not: the median of the draws is much flatter than the photos themselves
    assert detail(ys.median(0).values) < 0.9 * detail(y.float())


def test_jitter_crops_and_flips_inputs_and_targets_alike():
    from akdray.data.jitter import batch_jitter

    x = torch.linspace(-1, 1, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    augment = batch_jitter(2, 16, torch.Generator().manual_seed(0))
    assert torch.equal(augment(x), augment(x.clone()))  # one draw: the same crop and flip for x and y
    assert augment(x).shape == x.shape and not torch.allclose(augment(x), x)
    other = batch_jitter(2, 16, torch.Generator().manual_seed(1))(x)
    assert not torch.allclose(other, augment(x))
    with pytest.raises(ValueError, match="jitter drawn for 2 images"):
        augment(x[:1])


@pytest.mark.train
def test_jittered_teacher_trains_and_is_reproducible():
    cfg = RunConfig(**TINY).replace(jitter=True)
    x, y, _ = synthetic_facades(8, 16, 0, "train")
    a, _ = fit_teacher(cfg, x, y, CPU)
    b, _ = fit_teacher(cfg, x, y, CPU)
    c, _ = fit_teacher(cfg.replace(jitter=False), x, y, CPU)
    key = "model.model.0.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
