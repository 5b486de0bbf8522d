"""Issue #25, paths and files: storage URIs, names, outputs inside inputs, symlinks, file names that are
not UTF-8, 16-bit PNGs, ``~``, A|B layouts and protect's proxy/test overlap. Nothing is trained."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from akdray.config import ConfigError
from akdray.data.aligned import read_rgb
from akdray.preflight import check_name, check_not_inside, check_uri
from akdray.storage import join
from refusals_support import T16, T32, aligned, cli, every_file, write_ckpt, write_pairs, sweep


def test_join_puts_names_into_the_path_never_the_query():
    assert join("s3://b/p?endpoint_override=x", "n", "sweep.json") == "s3://b/p/n/sweep.json?endpoint_override=x"
    assert join("/a/b/", "c") == "/a/b/c" and join("file:///x", "n") == "file:///x/n"
    assert len({join("s3://b/p?e=1", "n", leaf) for leaf in ("sweep.json", "results", "stages")}) == 3


@pytest.mark.parametrize("storage", ["s3://b/p?endpoint_override=localhost:9000", "file:///tmp/x?y=1", "s3://b/p#f"])
def test_storage_with_a_query_is_refused_with_how_to_set_an_endpoint(tmp_path, capsys, storage):
    for extra in (["--dry-run"], []):
        code, _, err = sweep(["--smoke-test", "--storage", storage, *extra], capsys)
        assert code == 2 and "AWS_ENDPOINT_URL" in err
    with pytest.raises(ConfigError, match="query strings"):
        check_uri(storage, "--storage")


@pytest.mark.parametrize("name", ["..", "a/../../b", ".", "", "a/b", " x"])
def test_sweep_names_are_one_path_component(tmp_path, capsys, name):
    for extra in (["--dry-run"], []):
        code, _, err = sweep(["--smoke-test", "--storage", tmp_path, "--name", name, *extra], capsys)
        assert code == 2 and "one path component" in err
    assert not any(tmp_path.iterdir()) and not (tmp_path.parent / "b").exists()
    check_name("pareto-cpu-small.v2")  # an ordinary name passes


def test_outputs_inside_inputs_are_refused(tmp_path, capsys):
    data = aligned(tmp_path / "data")
    target = write_ckpt(tmp_path / "all", every_file(data))
    before = sorted(p.name for p in data.iterdir())
    cases = [["audit", "--checkpoint", target, "--data", data, "--out", data / "audit"],
             ["audit", "--checkpoint", target, "--out", target / "audit"],
             ["translate", "--checkpoint", target, "--input", data / "val", "--out", data / "val" / "out"],
             ["export", write_ckpt(tmp_path / "t32", T32), "--format", "pix2pix", "--out", tmp_path / "t32" / "p"]]
    for argv in cases:
        code, _, err = cli(argv, capsys)
        assert code == 2 and "lies inside" in err, argv
    assert sorted(p.name for p in data.iterdir()) == before
    with pytest.raises(ConfigError, match="contains --data"):
        check_not_inside(tmp_path, {"--data": data})


@pytest.mark.parametrize("link", ["dangling", "to_folder"])
def test_out_may_not_be_a_symlink(tmp_path, capsys, link):
    out = tmp_path / "out"
    os.symlink(tmp_path / ("nowhere" if link == "dangling" else "."), out)
    code, _, err = cli(["run", "--method", "teacher", "--preset", "tiny", "--set", "device=cpu", "--out", out], capsys)
    assert code == 2 and "symbolic link" in err


def test_file_names_that_are_not_utf8_are_refused_before_the_audit(tmp_path, capsys):
    data = aligned(tmp_path / "data")
    os.rename(data / "test" / "003.png", os.fsencode(data / "test") + b"/\xff\xfe.png")
    out = tmp_path / "out"
    code, _, err = cli(["audit", "--checkpoint", write_ckpt(tmp_path / "t", every_file(data)), "--data", data,
                        "--out", out], capsys)
    assert code == 2 and "not valid UTF-8" in err and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no half-written audit folder


def test_16_bit_png_decodes_to_its_grey_levels_not_white(tmp_path):
    grey = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert np.asarray(read_rgb(tmp_path / "g.png"))[0, :, 0].tolist() == [0, 128, 255]


def test_an_audit_of_16_bit_pngs_runs_on_their_pixels(tmp_path, capsys):
    root = tmp_path / "g16"
    for split, seed in (("train", 1), ("test", 2)):
        (root / split).mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(8):
            Image.fromarray(rng.integers(0, 65535, (16, 32), dtype=np.uint16)).save(root / split / f"{i}.png")
    out = tmp_path / "out"
    code, _, err = cli(["audit", "--checkpoint", write_ckpt(tmp_path / "t", T16), "--data", root, "--out", out], capsys)
    assert code == 0, err
    assert json.loads((out / "audit.json").read_text())["attack_n_members"] == 8


def test_tilde_is_expanded_by_run_as_by_the_sweep(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    aligned(tmp_path / "data")
    code, out, err = cli(["run", "--method", "teacher", "--preset", "tiny", "--set", "data_root=~/data", "--dry-run"],
                         capsys)
    assert code == 0, err
    assert json.loads(out)["data_root"] == str(tmp_path / "data")


def test_layout_aligned_on_square_images_is_refused(tmp_path, capsys):
    write_pairs(tmp_path / "sq", 3, 16, 16)
    out = tmp_path / "out"
    code, _, err = cli(["translate", "--checkpoint", write_ckpt(tmp_path / "t", T16), "--input", tmp_path / "sq",
                        "--layout", "aligned", "--out", out], capsys)
    assert code == 2 and "--layout single" in err and not out.exists()


@pytest.fixture
def owner(tmp_path):
    return aligned(tmp_path / "d32", size=32, train=8, val=8, test=8), write_ckpt(tmp_path / "t32", T32)


@pytest.mark.parametrize("proxy", ["test", "train"])
def test_protect_proxy_may_not_be_the_audited_members_or_non_members(owner, tmp_path, capsys, proxy):
    data, teacher = owner
    out = tmp_path / "out"
    code, _, err = cli(["protect", "--teacher", teacher, "--proxy", data / proxy, "--audit-data", data,
                        "--preset", "tiny", "--out", out], capsys)
    assert code == 2 and ("non-member" if proxy == "test" else "input of member") in err and not out.exists()


@pytest.mark.parametrize("setting", ["method=dmp", "data_root=/x", "teacher_checkpoint=/x", "proxy_split=train"])
def test_protect_refuses_settings_it_would_ignore(owner, tmp_path, capsys, setting):
    data, teacher = owner
    out = tmp_path / "out"
    code, _, err = cli(["protect", "--teacher", teacher, "--proxy", data / "val", "--set", setting, "--out", out],
                       capsys)
    assert code == 2 and "protect sets" in err and setting.split("=")[0] in err and not out.exists()


def test_protect_audit_data_of_mixed_sizes_is_refused(owner, tmp_path, capsys):
    data, teacher = owner
    write_pairs(data / "test", 2, 128, 64, start=8)
    out = tmp_path / "out"
    code, _, err = cli(["protect", "--teacher", teacher, "--proxy", data / "val", "--audit-data", data,
                        "--preset", "tiny", "--out", out], capsys)
    assert code == 2 and "must have one size" in err and not out.exists()
