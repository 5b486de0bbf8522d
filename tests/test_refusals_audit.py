"""Issue #25, audit inputs: sizes, audit size, foreign checkpoints and reference models (akdray.audit_inputs).

Each case used to print a privacy number with exit 0; now it is refused (exit 2, the file named, nothing
written) before any work. None of these tests trains a model.
"""
from __future__ import annotations

import json

import pytest

from akdray.audit_inputs import check_audit_counts
from akdray.config import MIN_AUDIT_PER_SIDE, ConfigError, make_config
from akdray.data.aligned import DataError
from refusals_support import T16, T32, aligned, cli, every_file, write_ckpt, write_official, write_pairs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = tmp_path_factory.mktemp("audit")
    data = aligned(w / "d16")
    return {"w": w, "data": data, "t16": write_ckpt(w / "t16", T16), "all": write_ckpt(w / "all", every_file(data)),
            "refs": [write_ckpt(w / f"ref{k}", T16.replace(method="reference", seed=10_000 * (k + 1), data_seed=0),
                                seed=10 + k) for k in range(2)]}


def audit(world, *args, out=None):
    return ["audit", *args, "--out", out or world["w"] / "out" / str(abs(hash(args)))]


@pytest.mark.parametrize("layout, needle", [
    ("test_other_size", "must have one size"),  # test/ pairs 32 px, train/ 16 px
    ("test_other_aspect", "must have one size"),  # test/ halves 32x16
    ("only_first_train_ok", "must have one size"),  # the first train file 16 px, the rest 32 px
    ("all_other_size", "holds 32x32 image pairs"),  # consistent, but not the model's size: --resize to allow
])
def test_audit_data_of_another_size_is_refused(world, tmp_path, capsys, layout, needle):
    root = tmp_path / "data"
    if layout == "test_other_size":
        aligned(root, test=0), write_pairs(root / "test", 16, 64, 32)
    elif layout == "test_other_aspect":
        aligned(root, test=0), write_pairs(root / "test", 16, 64, 16)
    elif layout == "only_first_train_ok":
        aligned(root, train=1), write_pairs(root / "train", 15, 64, 32, start=1)
    else:
        aligned(root, size=32)
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", world["all"], "--data", root, out=out), capsys)
    assert code == 2 and needle in err and not out.exists()


def test_resize_is_explicit_and_recorded(world, tmp_path, capsys):
    root = aligned(tmp_path / "d32", size=32)
    out = tmp_path / "out"
    code, _, _ = cli(audit(world, "--checkpoint", world["all"], "--data", root, "--resize", out=out), capsys)
    record = json.loads((out / "audit.json").read_text())
    assert code == 0 and record["resized"] is True and record["attack_n_members"] == 16


@pytest.mark.parametrize("n", [1, 3])
def test_too_few_members_or_non_members_are_refused(world, tmp_path, capsys, n):
    root = aligned(tmp_path / "small", train=n, test=n)
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", world["all"], "--data", root, out=out), capsys)
    assert code == 2 and f"rest on {n} members" in err and not out.exists()
    with pytest.raises(DataError, match=f"at least {MIN_AUDIT_PER_SIDE}"):
        check_audit_counts(MIN_AUDIT_PER_SIDE, MIN_AUDIT_PER_SIDE - 1, "x")
    check_audit_counts(MIN_AUDIT_PER_SIDE, MIN_AUDIT_PER_SIDE, "x")  # the minimum itself is enough


@pytest.mark.parametrize("fields, needle", [({"n_train": 1}, "rest on 0 members"), ({"n_test": 3}, "rest on 3 test"),
                                            ({"n_val": 2}, "rest on 2 validation"),
                                            ({"attack_n_per_side": 2}, "rest on 2 attack_n_per_side")])
def test_a_synthetic_config_with_too_few_audited_images_is_refused_by_a_dry_run(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        make_config("tiny", fields)


def test_an_official_checkpoint_needs_data(world, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", write_official(tmp_path / "off"), out=out), capsys)
    assert code == 2 and "needs --data" in err and not out.exists()


def test_audit_data_without_val_and_smaller_than_the_checkpoints_n_train_is_audited(world, tmp_path, capsys):
    """The docs say train/ and test/; the checkpoint's own n_train (200) is no limit on --data."""
    ck = write_ckpt(tmp_path / "big", T16.replace(n_train=200, n_test=1000, proxy_pool_size=400, proxy_size=100))
    root = aligned(tmp_path / "noval", val=0, train=6, test=5)
    out = tmp_path / "out"
    code, stdout, err = cli(audit(world, "--checkpoint", ck, "--data", root, out=out), capsys)
    assert code == 0, err
    record = json.loads((out / "audit.json").read_text())
    assert (record["attack_n_members"], record["attack_n_nonmembers"], record["resized"]) == (6, 5, False)
    assert "6 members, 5 non-members" in stdout


def test_audit_data_as_a_file_uri_is_read(world, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", world["all"], "--data", f"file://{world['data']}", out=out), capsys)
    assert code == 0, err
    assert json.loads((out / "audit.json").read_text())["attack_n_members"] == 16


@pytest.mark.parametrize("case, needle", [
    ("twice", "are the same run"), ("target", "is the target itself"), ("style", "'synthetic_style' is 'flat'"),
    ("size", "'image_size'"), ("teacher", "not a 'reference' run"), ("copy", "same weights"),
])
def test_reference_runs_that_cannot_be_references_are_refused(world, tmp_path, capsys, case, needle):
    r0, r1 = world["refs"]
    target, refs = world["t16"], [r0, r1]
    if case == "twice":
        refs = [r0, r0]
    elif case == "target":
        target = r0
    elif case == "style":
        refs = [r0, write_ckpt(tmp_path / "flat", T16.replace(method="reference", seed=10_000, data_seed=0,
                                                              synthetic_style="flat"), seed=5)]
    elif case == "size":
        refs = [r0, write_ckpt(tmp_path / "r32", T32.replace(method="reference", seed=10_000, data_seed=0))]
    elif case == "teacher":
        refs = [r0, world["t16"]]
    else:
        copy = tmp_path / "copy"
        copy.mkdir()
        (copy / "checkpoint.pt").write_bytes((r0 / "checkpoint.pt").read_bytes())
        refs = [r0, copy]
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", target, "--reference-runs", *refs, out=out), capsys)
    assert code == 2 and needle in err and not out.exists()


def test_references_trained_on_the_audited_members_are_refused(world, tmp_path, capsys):
    """A reference run whose own training set (rebuilt from its config and hashed) holds audited images."""
    data = world["data"]
    on_members = every_file(data).replace(method="reference", seed=10_000, data_seed=0, proxy_size=0,
                                          proxy_split="train")
    refs = [write_ckpt(tmp_path / f"r{k}", on_members.replace(seed=10_000 * (k + 1)), seed=20 + k) for k in range(2)]
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", world["all"], "--data", data, "--reference-runs", *refs,
                             out=out), capsys)
    assert code == 2 and "reference run" in err and "training" in err and not out.exists()


def test_good_references_are_accepted(world, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = cli(audit(world, "--checkpoint", world["t16"], "--reference-runs", *world["refs"], out=out), capsys)
    assert code == 0, err
    record = json.loads((out / "audit.json").read_text())
    assert record["n_references"] == 2 and record["references"] == [str(r) for r in world["refs"]]
