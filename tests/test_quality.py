"""Issue #24: the sharpness measures beside NKID, the stochastic teachers, and their labels reaching a student."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from akdray.config import RunConfig
from akdray.data.splits import InputImages
from akdray.data.synthetic import render_one, synthetic_facades
from akdray.defenses.distill import fit_student, teacher_query
from akdray.defenses.renderer_teacher import RendererTeacher
from akdray.metrics.features import to_uint8
from akdray.metrics.sharpness import hfer, sharpness_of, swd
from akdray.models import build_generator
from akdray.train import to_float
from akdray.testing import TINY


@pytest.fixture(scope="module")
def sharp_sets():
    """64 real ``sharp`` test photos at 32 px, a redraw of their detail, the median of 9 redraws, a blur."""
    n = 64
    real = synthetic_facades(n, 32, 0, "test", "sharp")[1]
    redraw = synthetic_facades(n, 32, 0, "test", "sharp", texture_draw=0)[1]
    draws = torch.stack([synthetic_facades(n, 32, 0, "test", "sharp", texture_draw=k)[1] for k in range(1, 10)])
    median = draws.float().median(0).values.round().to(torch.uint8)
    blurred = gaussian_blur(real.float(), kernel_size=7, sigma=1.0).round().to(torch.uint8)
    noise = torch.randn(median.shape, generator=torch.Generator().manual_seed(0))
    noisy_median = to_uint8(to_float(median) + 0.2 * noise)
    return dict(real=real, redraw=redraw, median=median, blurred=blurred, noisy_median=noisy_median)


def test_patch_distance_ranks_real_redraw_median_blurred(sharp_sets):
    s = sharp_sets
    d = {name: swd(s[name], s["real"], seed=3) for name in ("real", "redraw", "median", "blurred")}
    assert d["real"] < d["redraw"] < d["median"] < d["blurred"], d
    assert d["median"] > 4 * d["redraw"]  # the L1 optimum is far from the GAN optimum, not a rounding apart
    # noise lifts the energy ratio of the median towards 1 but leaves its patches far from real ones
    assert hfer(s["median"], s["real"]) < hfer(s["noisy_median"], s["real"])
    assert swd(s["noisy_median"], s["real"], seed=3) > 2 * d["redraw"]


def test_energy_ratio_ranks_detail(sharp_sets):
    s = sharp_sets
    r = {name: hfer(s[name], s["real"]) for name in ("real", "redraw", "median", "blurred")}
    assert r["real"] == pytest.approx(1.0)
    assert abs(r["redraw"] - 1.0) < 0.15  # another draw of the same detail has about as much of it
    assert r["blurred"] < r["median"] < 0.8 < r["redraw"], r


def test_sharpness_is_seeded_and_checks_its_inputs(sharp_sets):
    s = sharp_sets
    assert swd(s["median"], s["real"], seed=5) == swd(s["median"], s["real"], seed=5)
    assert swd(s["median"], s["real"], seed=5) != swd(s["median"], s["real"], seed=6)
    assert set(sharpness_of(s["median"], s["real"], 1)) == {"hfer", "swd"}
    flat = torch.full((4, 3, 16, 16), 7, dtype=torch.uint8)
    assert math.isnan(hfer(flat, flat))  # no detail in the real set: undefined (a null in the row), not a crash
    with pytest.raises(ValueError, match="differ in size"):
        swd(s["real"][:, :, :16, :16].contiguous(), s["real"])
    with pytest.raises(TypeError, match="output images must be a uint8"):
        hfer(s["real"].float(), s["real"])


def _teacher() -> tuple[RunConfig, torch.nn.Module, torch.Tensor]:
    cfg = RunConfig(**{**TINY, "method": "akd", "teacher_checkpoint": "unused"})
    torch.manual_seed(0)
    G = build_generator(cfg)  # untrained: dropout acts on its outputs all the same
    x = to_float(synthetic_facades(cfg.proxy_size, cfg.image_size, 0, "proxy", "sharp")[0])
    return cfg, G, x


def test_teacher_in_train_mode_resamples_each_query_and_eval_mode_does_not():
    _, G, x = _teacher()
    served = teacher_query(G, "train", dropout=False)
    assert not torch.equal(served(x), served(x))  # dropout (pix2pix's noise z) drawn again
    fixed = teacher_query(G, "eval", dropout=False)
    assert torch.equal(fixed(x), fixed(x))
    noisy_eval = teacher_query(G, "eval", dropout=True)  # eval statistics, dropout kept on
    assert not torch.equal(noisy_eval(x), noisy_eval(x))


def test_renderer_teacher_redraws_detail_per_query_and_the_control_does_not():
    proxy = synthetic_facades(6, 32, 2, "proxy", "sharp")[0]
    x = to_float(proxy[[4, 1]])
    sto = RendererTeacher(proxy, 2, stochastic=True)
    first, second = sto(x), sto(x)
    assert not torch.equal(first, second)
    assert sto.queries == {4: 2, 1: 2}
    # each label is the renderer's photo of that very layout, with texture draw first_draw + query
    photo = render_one(4, 32, 2, "proxy", "sharp", 101)[1]
    assert torch.equal(to_uint8(second[0]), torch.from_numpy(photo).permute(2, 0, 1))
    ctl = RendererTeacher(proxy, 2, stochastic=False)
    assert torch.equal(ctl(x), ctl(x))
    twin = sto.fork()
    assert torch.equal(twin(x), first) and sto.queries[4] == 2  # a fork replays the sequence from the start
    with pytest.raises(KeyError, match="not one of the 6 proxy inputs"):
        sto(to_float(synthetic_facades(1, 32, 3, "proxy", "sharp")[0]))


def _labels_per_epoch(cfg: RunConfig, query, proxy: torch.Tensor) -> list[dict[bytes, torch.Tensor]]:
    """Train a student through fit_student and record, per epoch, the label each proxy input got."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        y = query(x)
        seen.extend(zip(x.clone(), y.clone()))
        return y

    fit_student(cfg, recording, InputImages(proxy, tuple(map(str, range(len(proxy))))), adversarial=True,
                device=torch.device("cpu"))
    n = len(proxy)
    assert len(seen) == n * cfg.distill_epochs
    epochs = [seen[e * n:(e + 1) * n] for e in range(cfg.distill_epochs)]
    return [{to_uint8(xi).numpy().tobytes(): yi for xi, yi in epoch} for epoch in epochs]


@pytest.mark.slow
def test_stochastic_labelling_reaches_the_student():
    cfg, G, _ = _teacher()
    proxy = synthetic_facades(cfg.proxy_size, cfg.image_size, 0, "proxy", "sharp")[0]
    cfg = cfg.replace(teacher_inference_mode="train", distill_epochs=2)
    first, second = _labels_per_epoch(cfg, teacher_query(G, cfg.teacher_inference_mode, cfg.teacher_dropout), proxy)
    assert first.keys() == second.keys() and len(first) == len(proxy)  # the same proxy inputs in both epochs
    assert all(not torch.equal(first[k], second[k]) for k in first)  # ... each with a new label
    cfg = cfg.replace(teacher_inference_mode="eval")
    first, second = _labels_per_epoch(cfg, teacher_query(G, cfg.teacher_inference_mode, cfg.teacher_dropout), proxy)
    assert all(torch.equal(first[k], second[k]) for k in first)  # eval mode: the same label every epoch


@pytest.mark.slow
def test_every_row_records_the_sharpness_measures_beside_nkid(tiny_cfg):
    from akdray.run import run

    row = run(tiny_cfg.replace(method="teacher", synthetic_style="sharp"))
    for prefix in ("", "val_"):
        assert row[f"{prefix}nkid"] is not None
        assert row[f"{prefix}hfer"] > 0 and row[f"{prefix}swd"] > 0, row
