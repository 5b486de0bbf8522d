import pytest
import torch

from akdray.checkpoint import load_generator, save_generator
from akdray.config import ConfigError, RunConfig
from akdray.models import build_discriminator, build_generator


@pytest.mark.parametrize("size, ngf, patch", [(32, 8, 2), (64, 8, 6), (256, 8, 30)])
def test_output_shapes(size, ngf, patch):
    cfg = RunConfig(image_size=size, ngf=ngf, ndf=8)
    g, d = build_generator(cfg), build_discriminator(cfg)
    x = torch.randn(1, 3, size, size)
    g.eval()
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    assert d(x, y).shape == (1, 1, patch, patch)


def test_unet256_is_the_official_size():
    g = build_generator(RunConfig(image_size=256, ngf=64))
    assert sum(p.numel() for p in g.parameters()) == 54_413_955
    assert sum(isinstance(m, torch.nn.Dropout) for m in g.modules()) == 3


@pytest.mark.parametrize("norm", ["batch", "instance", "group"])
def test_norm_choice(norm):
    g = build_generator(RunConfig(image_size=32, ngf=8, norm=norm))
    kinds = {type(m).__name__ for m in g.modules()}
    assert {"batch": "BatchNorm2d", "instance": "InstanceNorm2d", "group": "GroupNorm"}[norm] in kinds


def test_checkpoint_round_trip(tmp_path):
    cfg = RunConfig(image_size=32, ngf=8, seed=3)
    g = build_generator(cfg)
    save_generator(tmp_path / "checkpoint.pt", g, cfg)
    loaded = load_generator(tmp_path)  # a run folder works as well as the file
    assert loaded.cfg == cfg and loaded.format == "akdray"
    for a, b in zip(g.state_dict().values(), loaded.generator.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_other_architecture_is_refused(tmp_path):
    g = build_generator(RunConfig(image_size=32, ngf=8))
    save_generator(tmp_path / "checkpoint.pt", g, RunConfig(image_size=32, ngf=16))
    with pytest.raises(ConfigError, match="does not match the architecture"):
        load_generator(tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_generator(tmp_path / "missing")
