"""Issue #25, bounds and shared checks: every count and size field and flag has an upper bound a run could
finish, a dry run refuses what the real run would, the device and seed checks are shared, and a stored
sweep.json is checked field by field. Nothing is trained, and no case may hang."""
from __future__ import annotations

import json

import pytest
import torch

from akdray.config import FIELD_MAX, ConfigError, make_config
from refusals_support import T32, aligned, cli, write_ckpt, sweep


@pytest.mark.parametrize("name", sorted(FIELD_MAX))
def test_every_bounded_field_refuses_one_above_its_bound(name):
    with pytest.raises(ConfigError, match=f"field '{name}' must be at most"):
        make_config("cpu-small", {name: str(int(FIELD_MAX[name]) * 2)})


def test_fields_lists_the_bounds(capsys):
    code, out, _ = cli(["fields"], capsys)
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and "<= 100,000" in lines["attack_bootstrap"] and "<= 1,024" in lines["image_size"]


@pytest.mark.parametrize("setting", ["attack_bootstrap=1000000000", "image_size=65536", "ngf=1000000", "n_train=1",
                                     "kid_subset_size=1", "kid_max_images=1"])
def test_a_dry_run_refuses_what_a_real_run_could_not_finish(capsys, setting):
    code, out, err = cli(["run", "--method", "teacher", "--set", setting, "--dry-run"], capsys)
    assert code == 2 and setting.split("=")[0] in err and not out


@pytest.mark.parametrize("argv, needle", [
    (["--subsets", "2147483647"], "--subsets must be in 1..10,000"), (["--subset-size", "1"], "--subset-size"),
    (["--batch-size", "100000000"], "--batch-size"), (["--seed", str(2**40)], "--seed"),
])
def test_kid_flags_are_bounded(tmp_path, capsys, argv, needle):
    data = aligned(tmp_path / "d", train=3, val=0, test=3)
    code, _, err = cli(["kid", data / "train", data / "test", *argv], capsys)
    assert code == 2 and needle in err


@pytest.mark.parametrize("argv, needle", [
    (["--seed", str(10**23)], "--seed must be in 0..2,147,483,647"), (["--seed", "-1"], "--seed"),
    (["--image-size", "100000"], "--image-size must be in 16..1,024"),
])
def test_translate_seed_and_size_are_bounded(tmp_path, capsys, argv, needle):
    data = aligned(tmp_path / "d", size=32, train=0, val=2, test=0)
    out = tmp_path / "out"
    code, _, err = cli(["translate", "--checkpoint", write_ckpt(tmp_path / "t", T32), "--input", data / "val", *argv,
                        "--out", out], capsys)
    assert code == 2 and needle in err and not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["protect", "audit"])
def test_the_device_check_is_shared(tmp_path, capsys, command):
    data = aligned(tmp_path / "d", size=32, train=8, val=8, test=8)
    teacher = write_ckpt(tmp_path / "t", T32.replace(device="cuda"))
    out = tmp_path / "out"
    argv = (["protect", "--teacher", teacher, "--proxy", data / "val", "--set", "device=cuda"] if command == "protect"
            else ["audit", "--checkpoint", teacher])
    code, _, err = cli([*argv, "--out", out], capsys)
    assert code == 2 and "no CUDA device" in err and not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--seeds", "100000000"], "--seeds must be at most 1,000"),
    (["--num-samples", "1000000000"], "--num-samples"), (["--references", "1000000"], "--references must be at most"),
    (["--cpus-per-trial", "nan"], "--cpus-per-trial must be finite"),
    (["--gpus-per-trial", "inf"], "--gpus-per-trial must be finite"),
    (["--max-concurrent", str(10**12)], "--max-concurrent"), (["--max-failures", str(10**9)], "--max-failures"),
    (["--defenses", "akd,akd"], "twice"), (["--defenses", ","], "no empty entry"),
    (["--set", "seed=2147483647", "--seeds", "5"], "last seed"),
])
def test_sweep_flags_are_bounded_before_any_config_is_built(tmp_path, capsys, argv, needle):
    for extra in (["--dry-run"], []):
        code, _, err = sweep(["--preset", "tiny", "--storage", tmp_path, *argv, *extra], capsys)
        assert code == 2 and needle in err
    assert not any(tmp_path.iterdir())


def test_confirm_seeds_are_bounded(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({"name": "s", "storage": str(tmp_path)}))
    code, _, err = sweep(["--confirm", tmp_path / "s", "--confirm-seeds", str(10**9), "--dry-run"], capsys)
    assert code == 2 and "--confirm-seeds must be at most 1,000" in err


@pytest.mark.parametrize("storage, needle", [("FILE", "is a file"), ("FILE/under", "cannot be written")])
def test_a_dry_run_probes_the_storage(tmp_path, capsys, storage, needle):
    (tmp_path / "FILE").write_text("x")
    code, _, err = sweep(["--smoke-test", "--storage", tmp_path / storage, "--dry-run"], capsys)
    assert code == 2 and needle in err


def test_a_dry_run_probes_remote_data(tmp_path, capsys):
    code, _, err = sweep(["--smoke-test", "--storage", tmp_path, "--set", f"data_root=file://{tmp_path}/none",
                          "--set", "n_val=4", "--dry-run"], capsys)
    assert code == 2 and "data_root" in err and "not a folder" in err


def test_a_sweep_over_data_of_mixed_sizes_is_refused(tmp_path, capsys):
    from refusals_support import write_pairs

    data = aligned(tmp_path / "d", train=16, val=12, test=0)
    write_pairs(data / "test", 16, 64, 32)
    code, _, err = sweep(["--smoke-test", "--storage", tmp_path / "s", "--set", f"data_root={data}", "--set", "n_val=4",
                          "--set", "n_train=0", "--set", "n_test=0", "--set", "proxy_pool_size=0", "--dry-run"], capsys)
    assert code == 2 and "must have one size" in err


@pytest.mark.parametrize("stored, needle", [
    ("{not json", "not valid JSON"), ({"seeds": "abc"}, "sweep field 'seeds'"),
    ({"references": "x"}, "'references'"), ({"num_samples": {"akd": "x"}}, "--num-samples akd"),
    ({"defenses": ["akd", "akd"]}, "name one twice"), ({"seeds": 10**8}, "--seeds must be at most"),
])
def test_a_stored_sweep_is_checked_on_resume(tmp_path, capsys, stored, needle):
    folder = tmp_path / "s"
    folder.mkdir()
    base = {"name": "s", "storage": str(tmp_path), "preset": "tiny", "sweep_id": "s-x"}
    (folder / "sweep.json").write_text(stored if isinstance(stored, str) else json.dumps({**base, **stored}))
    for extra in (["--dry-run"], []):  # the real resume is refused before Ray starts
        code, _, err = sweep(["--storage", tmp_path, "--name", "s", "--resume", *extra], capsys)
        assert code == 2 and needle in err


def test_resume_says_which_flags_it_ignores(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    spec = {"name": "s", "storage": str(tmp_path), "preset": "tiny", "sweep_id": "s-x"}
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(spec))
    code, out, _ = sweep(["--storage", tmp_path, "--name", "s", "--resume", "--seeds", "3", "--dry-run"], capsys)
    assert code == 0 and "would resume" in out and "ignored" in out and "--seeds" in out
