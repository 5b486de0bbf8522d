"""Official pix2pix generator files: read, compute as the official network, write back, refuse bad files."""
import numpy as np
import pytest
import torch
from PIL import Image

from akdray.checkpoint import load_generator, save_generator
from akdray.cli import main
from akdray.config import ConfigError, RunConfig
from akdray.models import build_generator
from akdray.pix2pix_format import OFFICIAL_G_FILE, official_state_dict
from official_reference import OfficialUnet, official_state


def _save(tmp_path, state, name=OFFICIAL_G_FILE):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_reference_is_the_official_unet_256():
    """The reference itself: the official unet_256 (ngf 64, batch norm) has 54,413,955 parameters."""
    ref = OfficialUnet(8, 64, "batch")
    assert sum(p.numel() for p in ref.parameters()) == 54_413_955
    assert sum(isinstance(m, torch.nn.Dropout) for m in ref.modules()) == 3
    assert "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.3.weight" in ref.state_dict()


@pytest.mark.parametrize("depth, ngf, norm", [(8, 8, "batch"), (7, 4, "batch"), (5, 8, "batch"), (6, 4, "instance"),
                                              (8, 4, "instance")])
def test_official_file_loads_and_round_trips_exactly(tmp_path, depth, ngf, norm):
    state = official_state(depth, ngf, norm)
    loaded = load_generator(_save(tmp_path, state))
    cfg = loaded.cfg
    assert loaded.format == "pix2pix" and (cfg.resolved_unet_depth, cfg.ngf, cfg.norm, cfg.image_size) == (depth, ngf, norm, 2 ** depth)
    exported = official_state_dict(loaded.generator, cfg)
    assert list(exported) == list(state)
    assert all(exported[k].shape == v.shape and exported[k].dtype == v.dtype and torch.equal(exported[k], v)
               for k, v in state.items())


@pytest.mark.parametrize("depth, norm", [(5, "batch"), (6, "batch"), (7, "instance")])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_imported_network_computes_what_the_official_one_does(tmp_path, depth, norm, mode):
    state = official_state(depth, 4, norm, seed=depth)
    ref = OfficialUnet(depth, 4, norm, use_dropout=True)
    ref.load_state_dict(state, strict=True)
    loaded = load_generator(_save(tmp_path, state))
    own = build_generator(loaded.cfg)  # akdray's own network, same weights
    own.load_state_dict(state, strict=True)
    x = torch.rand(2 if mode == "eval" else 1, 3, 2 ** depth, 2 ** depth) * 2 - 1
    outs = []
    for net in (ref, loaded.generator, own):
        net.train(mode == "train")
        torch.manual_seed(11)  # same dropout masks, drawn in the same order
        with torch.no_grad():
            outs.append(net(x))
    assert torch.allclose(outs[0], outs[1], atol=1e-6) and torch.equal(outs[1], outs[2])
    if mode == "train" and depth >= 6:  # dropout is really on: another seed, another output
        torch.manual_seed(12)
        with torch.no_grad():
            assert not torch.allclose(loaded.generator(x), outs[1])


def test_old_instance_norm_buffers_and_dataparallel_prefix_are_accepted(tmp_path):
    state = official_state(6, 4, "instance")
    old = {f"module.{k}": v for k, v in state.items()}  # pre-0.4 InstanceNorm kept running stats
    old["module.model.model.1.model.2.running_mean"] = torch.zeros(8)
    old["module.model.model.1.model.2.running_var"] = torch.ones(8)
    loaded = load_generator(_save(tmp_path, old))
    assert loaded.cfg.norm == "instance" and torch.equal(loaded.generator.state_dict()["model.model.0.weight"],
                                                         state["model.model.0.weight"])


def _run_dir(tmp_path, **fields):
    cfg = RunConfig(ngf=4, **fields)
    run = tmp_path / "run"
    run.mkdir()
    g = build_generator(cfg)
    save_generator(run / "checkpoint.pt", g, cfg)
    return run, g, cfg


@pytest.mark.parametrize("fields", [dict(image_size=32), dict(image_size=128, norm="instance", use_dropout=False),
                                    dict(image_size=256)])
def test_export_loads_strictly_into_the_official_layout(tmp_path, capsys, fields):
    run, g, cfg = _run_dir(tmp_path, **fields)
    out = tmp_path / "official"
    assert main(["export", str(run), "--format", "pix2pix", "--out", str(out)]) == 0
    state = torch.load(out / OFFICIAL_G_FILE, weights_only=True)
    ref = OfficialUnet(cfg.resolved_unet_depth, 4, cfg.norm, cfg.use_dropout)
    ref.load_state_dict(state, strict=True)
    opt = (out / "opt.txt").read_text()
    assert f"--ngf 4 --norm {cfg.norm}" in opt and ("--no_dropout" in opt) == (not cfg.use_dropout)
    assert {256: "--netG unet_256", 128: "--netG unet_128"}.get(cfg.image_size, "no --netG name") in opt or \
        cfg.image_size == 32 and "define_G" in opt
    ref.eval(), g.eval()
    x = torch.rand(1, 3, cfg.image_size, cfg.image_size) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ref(x), g(x), atol=1e-6)


def test_export_refuses_what_the_official_code_cannot_build(tmp_path, capsys):
    run, _, _ = _run_dir(tmp_path, image_size=16, d_layers=2)
    out = tmp_path / "official"
    assert main(["export", str(run), "--format", "pix2pix", "--out", str(out)]) == 2
    assert "4-level" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ConfigError, match="GroupNorm"):
        official_state_dict(build_generator(RunConfig(norm="group")), RunConfig(norm="group"))


def _resnet_state():
    return {"model.1.weight": torch.randn(8, 3, 7, 7), "model.2.weight": torch.ones(8),
            "model.10.conv_block.1.weight": torch.randn(32, 32, 3, 3), "model.10.conv_block.2.weight": torch.ones(32)}


def _discriminator_state():
    return {"model.0.weight": torch.randn(8, 6, 4, 4), "model.0.bias": torch.zeros(8), "model.2.weight": torch.randn(16, 8, 4, 4),
            "model.3.weight": torch.ones(16), "model.11.weight": torch.randn(1, 64, 4, 4), "model.11.bias": torch.zeros(1)}


def _truncated(tmp_path):
    full = _save(tmp_path, official_state(5, 4), "full.pth")
    return full.read_bytes()[: full.stat().st_size // 2]


def _no_norm_state():  # --norm none: conv weights only (no biases but the outermost up-conv's), no norm layers
    return {k: v for k, v in official_state(5, 4).items() if v.dim() == 4 or k == "model.model.3.bias"}


BAD_FILES = {
    "resnet": (lambda tmp: _resnet_state(), "ResNet generator"),
    "discriminator": (lambda tmp: _discriminator_state(), "discriminator"),
    "truncated": (_truncated, "cannot be read"),
    "not tensors": (lambda tmp: {"epoch": 3, "lr": 0.0002}, "not a tensor"),
    "a list": (lambda tmp: [torch.zeros(2)], "not a non-empty state_dict"),
    "norm none": (lambda tmp: _no_norm_state(), "--norm none"),
    "grayscale": (lambda tmp: {**official_state(5, 4), "model.model.0.weight": torch.randn(4, 1, 4, 4)}, "channels"),
    "wrong shape": (lambda tmp: {**official_state(5, 4), "model.model.1.model.1.weight": torch.randn(8, 4, 3, 3)},
                    "layout"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
@pytest.mark.parametrize("command", ["translate", "export"])
def test_bad_checkpoint_exits_2_naming_file_and_problem(tmp_path, capsys, name, command):
    make, needle = BAD_FILES[name]
    content = make(tmp_path)
    bad = tmp_path / "latest_net_D.pth"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        torch.save(content, bad)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    args = (["translate", "--checkpoint", str(bad), "--input", str(tmp_path / "x.png")] if command == "translate"
            else ["export", str(bad), "--format", "pix2pix"])
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_image_size_that_does_not_fit_the_depth_is_refused(tmp_path, capsys):
    ckpt = _save(tmp_path, official_state(7, 4))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
    for size in ("64", "192"):
        assert main(["translate", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x.png"), "--image-size", size,
                     "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"image size {size} does not fit" in err and "unet_128" in err and str(ckpt) in err
    assert not (tmp_path / "out").exists()
