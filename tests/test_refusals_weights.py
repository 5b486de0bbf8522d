"""Issue #25, weights: every checkpoint path (akdray and official) refuses weights that are not finite
floating-point tensors at load time, and a reference run is never a teacher. Nothing is trained."""
from __future__ import annotations

import pytest
import torch

from akdray.checkpoint import check_finite_weights, load_generator
from akdray.config import ConfigError
from refusals_support import TAMPER, T16, T32, aligned, cli, write_ckpt, write_official

NEEDLE = {"nan": "non-finite", "inf": "non-finite", "int": "int64 tensor", "complex": "complex64 tensor"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return aligned(tmp_path_factory.mktemp("inputs") / "d32", size=32) / "val"


def bad_checkpoint(tmp_path, kind: str, fmt: str):
    if fmt == "official":
        return write_official(tmp_path / f"off-{kind}", T32, TAMPER[kind])
    return write_ckpt(tmp_path / f"ak-{kind}", T32, tamper=TAMPER[kind])


@pytest.mark.parametrize("fmt", ["akdray", "official"])
@pytest.mark.parametrize("kind", list(TAMPER))
def test_loader_refuses_weights_that_are_not_finite_floats(tmp_path, kind, fmt):
    with pytest.raises(ConfigError, match=NEEDLE[kind]):
        load_generator(bad_checkpoint(tmp_path, kind, fmt))


def test_batchnorm_step_counter_may_be_an_integer_and_good_files_load(tmp_path):
    state = write_official(tmp_path / "ok", T32)
    loaded = load_generator(state)
    counters = [k for k in torch.load(state, weights_only=True) if k.endswith("num_batches_tracked")]
    assert counters and loaded.format == "pix2pix"
    check_finite_weights({"a.num_batches_tracked": torch.tensor(3)}, tmp_path / "x")
    with pytest.raises(ConfigError, match="'a.running_var' holds 1 non-finite"):
        check_finite_weights({"a.running_var": torch.tensor([1.0, float("nan")])}, tmp_path / "x")


@pytest.mark.parametrize("command", ["translate", "export", "audit"])
@pytest.mark.parametrize("kind, fmt", [("nan", "official"), ("inf", "akdray"), ("int", "akdray"), ("complex", "official")])
def test_commands_refuse_bad_weights_before_any_output(tmp_path, capsys, inputs, command, kind, fmt):
    if command == "export" and fmt == "official":
        fmt = "akdray"  # export reads akdray runs
    ck = bad_checkpoint(tmp_path, kind, fmt)
    out = tmp_path / "out"
    argv = {"translate": ["translate", "--checkpoint", ck, "--input", inputs],
            "export": ["export", ck, "--format", "pix2pix"],
            "audit": ["audit", "--checkpoint", ck, *(["--data", inputs.parent] if fmt == "official" else [])]}[command]
    code, _, err = cli([*argv, "--out", out], capsys)
    assert code == 2 and NEEDLE[kind] in err and not out.exists()


@pytest.mark.parametrize("method", ["gauss", "akd"])
def test_runs_refuse_a_nan_teacher_before_training(tmp_path, capsys, method):
    teacher = write_ckpt(tmp_path / "nan", T32, tamper=TAMPER["nan"])
    out = tmp_path / "out"
    code, _, err = cli(["run", "--method", method, "--preset", "tiny", "--set", "image_size=32", "--set", "device=cpu",
                        "--teacher", teacher, "--out", out], capsys)
    assert code == 2 and "non-finite" in err and not out.exists()


def test_protect_refuses_a_nan_teacher_before_training(tmp_path, capsys, inputs):
    out = tmp_path / "out"
    code, _, err = cli(["protect", "--teacher", write_official(tmp_path / "o", T32, TAMPER["nan"]), "--proxy", inputs,
                        "--preset", "tiny", "--out", out], capsys)
    assert code == 2 and "non-finite" in err and not out.exists()


@pytest.mark.parametrize("method", ["gauss", "dmp"])
def test_a_reference_run_is_not_a_teacher(tmp_path, capsys, inputs, method):
    ref = write_ckpt(tmp_path / "ref", T16.replace(method="reference", seed=10_000, data_seed=0))
    out = tmp_path / "out"
    code, _, err = cli(["run", "--method", method, "--preset", "tiny", "--set", "device=cpu", "--teacher", ref,
                        "--out", out], capsys)
    assert code == 2 and "is a 'reference' run" in err and not out.exists()
    code, _, err = cli(["protect", "--teacher", ref, "--proxy", inputs, "--out", out], capsys)
    assert code == 2 and "is a 'reference' run" in err and not out.exists()
