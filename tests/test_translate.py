"""``akdray translate``: the official test pipeline on images, folders and A|B folders; bad input refused."""
import numpy as np
import pytest
import torch
from PIL import Image

import akdray.data.aligned
from akdray.checkpoint import save_generator
from akdray.cli import main
from akdray.config import RunConfig
from akdray.models import build_generator
from akdray.translate import official_uint8
from official_reference import official_state

RNG = np.random.default_rng(0)


def _img(path, w, h):
    Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def run_dir(tmp_path):
    cfg = RunConfig(image_size=32, ngf=4)
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    g = build_generator(cfg)
    save_generator(run / "checkpoint.pt", g, cfg)
    return run, g


def _expected(g, image: Image.Image, size=32):
    """By hand: bicubic resize, [-1, 1], the network in eval mode, tensor2im's uint8."""
    x = torch.from_numpy(np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)))
    x = x.permute(2, 0, 1)[None].float() / 127.5 - 1
    g.eval()
    with torch.no_grad():
        return official_uint8(g(x))[0].permute(1, 2, 0).numpy()


def _read(path):
    return np.asarray(Image.open(path))


def test_folder_of_images_gives_one_png_per_input_as_the_official_pipeline(tmp_path, run_dir, capsys):
    run, g = run_dir
    src = tmp_path / "in"
    src.mkdir()
    for name, (w, h) in {"a.png": (32, 32), "b.jpg": (40, 40), "c.png": (48, 32)}.items():
        _img(src / name, w, h)
    out = tmp_path / "out"
    assert main(["translate", "--checkpoint", str(run), "--input", str(src), "--out", str(out),
                 "--inference-mode", "eval"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    for name in ("a.png", "b.jpg", "c.png"):
        assert np.array_equal(_read(out / f"{name[0]}.png"), _expected(g, Image.open(src / name)))
    printed = capsys.readouterr().out
    assert "inference_mode     eval" in printed and "seconds_per_image" in printed


@pytest.mark.parametrize("direction, half", [("AtoB", 0), ("BtoA", 1)])
def test_aligned_folder_uses_the_input_half(tmp_path, run_dir, direction, half):
    run, g = run_dir
    src = tmp_path / "ab"
    src.mkdir()
    for i in range(2):
        _img(src / f"{i}.png", 64, 32)
    out = tmp_path / "out"
    assert main(["translate", "--checkpoint", str(run), "--input", str(src), "--out", str(out),
                 "--direction", direction, "--inference-mode", "eval"]) == 0
    for i in range(2):
        pair = Image.open(src / f"{i}.png")
        wanted = pair.crop((32 * half, 0, 32 * half + 32, 32))
        assert np.array_equal(_read(out / f"{i}.png"), _expected(g, wanted))


def test_official_file_defaults_to_train_mode_at_its_size_and_is_seeded(tmp_path, capsys):
    ckpt = tmp_path / "latest_net_G.pth"
    torch.save(official_state(6, 4), ckpt)
    image = _img(tmp_path / "x.png", 64, 64)
    outs = []
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["translate", "--checkpoint", str(ckpt), "--input", str(image), "--out", str(tmp_path / name),
                     "--seed", seed]) == 0
        outs.append(_read(tmp_path / name / "x.png"))
    printed = capsys.readouterr().out
    assert "inference_mode     train" in printed and "image_size         64" in printed and "pix2pix" in printed
    assert outs[0].shape == (64, 64, 3) and np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def _corrupt(src):
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return "bad.png"


def _mixed(src):
    _img(src / "wide.png", 64, 32)
    return "--layout"


def _same_stem(src):
    _img(src / "a.jpg", 32, 32)
    return "a.png"


def _bomb(src):  # over the (lowered) pixel cap
    _img(src / "huge.png", 200, 100)
    return "huge.png"


@pytest.mark.parametrize("breaker", [_corrupt, _mixed, _same_stem, _bomb])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, run_dir, capsys, monkeypatch, breaker):
    run, _ = run_dir
    monkeypatch.setattr(akdray.data.aligned, "MAX_PIXELS", 10_000)
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png", 32, 32)
    needle = breaker(src)
    out = tmp_path / "out"
    assert main(["translate", "--checkpoint", str(run), "--input", str(src), "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in", "run"]


def test_missing_input_and_non_empty_out_are_refused(tmp_path, run_dir, capsys):
    run, _ = run_dir
    assert main(["translate", "--checkpoint", str(run), "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    image = _img(tmp_path / "x.png", 32, 32)
    assert main(["translate", "--checkpoint", str(run), "--input", str(image), "--out", str(run)]) == 2
    assert "not empty" in capsys.readouterr().err
