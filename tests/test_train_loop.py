"""The one training loop (akdray.train.fit_gan_l1) with a recording step: no network is trained."""
from __future__ import annotations

import pytest
import torch

from akdray.config import make_config
from akdray.data.jitter import batch_jitter
from akdray.train import Step, fit_gan_l1, jitter_generator, to_float


def _fit(cfg, inputs, plan):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    seen = []

    def run(x, target):
        opt.step()
        seen.append((x, target, opt.param_groups[0]["lr"]))
        return None if len(x) == 0 else {"loss": float(len(x)), "other": 1.0}

    history = fit_gan_l1(inputs, lambda index, x, augment: augment(to_float(inputs[index])), cfg,
                         step=Step(run, (opt,)), batches=lambda epoch: plan[epoch], epochs=1, epochs_decay=1,
                         desc="test", device=torch.device("cpu"))
    return history, seen


def test_the_loop_jitters_each_batch_by_its_epoch_and_place_in_the_epoch():
    """Batch k of epoch e is jittered by jitter_generator(seed, e, k), the same crop and flip for x and its
    target; an empty batch (DP-SGD's noise-only step) takes its place in the count. DP-SGD's copy of the
    loop counted steps across epochs; the one loop counts them per epoch, as the teacher and students did."""
    cfg = make_config("tiny", {"jitter": True, "seed": 3})
    inputs = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    none = torch.zeros(0, dtype=torch.long)
    plan = {0: [torch.tensor([0, 1]), none, torch.tensor([4])], 1: [torch.tensor([3, 2, 1])]}
    history, seen = _fit(cfg, inputs, plan)
    x, target, _ = seen[3]
    expected = batch_jitter(3, 16, jitter_generator(3, 1, 0))(to_float(inputs[[3, 2, 1]]))
    assert torch.equal(x, expected) and torch.equal(target, expected)
    assert not torch.equal(x, batch_jitter(3, 16, jitter_generator(3, 1, 3))(to_float(inputs[[3, 2, 1]])))
    x, _, _ = seen[2]
    assert torch.equal(x, batch_jitter(1, 16, jitter_generator(3, 0, 2))(to_float(inputs[[4]])))
    assert seen[1][0].shape == (0, 3, 16, 16)


def test_the_loop_counts_every_step_averages_those_with_losses_and_decays_the_learning_rate():
    cfg = make_config("tiny", {"jitter": False})
    inputs = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    none = torch.zeros(0, dtype=torch.long)
    plan = {0: [torch.tensor([0, 1]), none, torch.tensor([4])], 1: [torch.tensor([3, 2, 1])]}
    history, seen = _fit(cfg, inputs, plan)
    assert history.steps == 4
    assert history.epochs == [{"loss": 1.5, "other": 1.0}, {"loss": 3.0, "other": 1.0}]  # (2 + 1) / 2 steps with losses
    assert [lr for _, _, lr in seen] == [1.0, 1.0, 1.0, pytest.approx(0.5)]  # pix2pix's linear decay: epoch 2 of 1 + 1
    assert torch.equal(seen[0][0], to_float(inputs[[0, 1]]))  # no jitter: the batch as it is
