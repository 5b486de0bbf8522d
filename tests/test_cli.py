"""The command line: a tiny end-to-end run, and bad input refused before any work."""
import json

import numpy as np
import pytest
from PIL import Image

from akdray.cli import main
from akdray.testing import TINY

TINY_SETS = [f"--set={k}={v}" for k, v in TINY.items()]
REQUIRED_KEYS = {"loss_auc", "loss_tpr_at_1pct_fpr", "loss_tpr_at_0p1pct_fpr", "kid", "nkid", "gen_gap", "status", "wall_s"}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["run", "--method", "teacher", *TINY_SETS, "--out", str(out)]) == 0
    return out


@pytest.mark.train
def test_teacher_run_writes_row_checkpoint_and_scores(teacher_dir, capsys):
    row = json.loads((teacher_dir / "row.json").read_text())
    assert REQUIRED_KEYS <= set(row) and row["status"] == "ok" and row["inference_mode"] == "eval"
    assert 0.0 <= row["loss_auc"] <= 1.0 and row["kid_subset_size_used"] <= 8
    assert {"checkpoint.pt", "config.json", "scores.parquet", "samples.parquet"} <= {p.name for p in teacher_dir.iterdir()}
    assert not [p for p in teacher_dir.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.train
def test_refuses_to_overwrite_a_result(teacher_dir, capsys):
    before = (teacher_dir / "row.json").read_text()
    assert main(["run", "--method", "teacher", *TINY_SETS, "--out", str(teacher_dir)]) == 2
    assert "not empty" in capsys.readouterr().err and (teacher_dir / "row.json").read_text() == before


def write_aligned(root, width=32, n=4):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, width, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
    return root


def _aligned_sets(root):
    return ["--set=data_source=aligned", f"--set=data_root={root}", "--set=image_size=16", "--set=d_layers=2",
            "--set=n_train=0", "--set=proxy_pool_size=0", "--set=proxy_size=2", "--set=n_test=0"]


def break_odd_width(root):
    Image.new("RGB", (31, 16)).save(root / "train" / "odd.png")
    return "odd.png"


def break_corrupt(root):
    (root / "test" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return "9.png"


def break_overlap(root):
    (root / "val" / "0.png").write_bytes((root / "train" / "1.png").read_bytes())
    return "overlap"


def break_missing(root):
    import shutil
    shutil.rmtree(root / "val")
    return "val"


@pytest.mark.parametrize("breaker", [break_odd_width, break_corrupt, break_overlap, break_missing])
def test_bad_data_is_named_and_nothing_is_written(tmp_path, capsys, breaker):
    root = write_aligned(tmp_path / "data")
    needle = breaker(root)
    out = tmp_path / "out"
    assert main(["run", "--method", "teacher", *_aligned_sets(root), "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("args, needle", [
    (["--preset", "nope"], "nope"),
    (["--set", "bogus=1"], "bogus"),
    (["--set", "epochs=many"], "epochs"),
    (["--set", "data_source=aligned", "--set", "data_root=/no/such/dir"], "/no/such/dir"),
])
def test_bad_preset_field_or_folder(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert main(["run", "--method", "teacher", *args, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("method, args, needle", [
    ("akd", [], "teacher_checkpoint"),
    ("akd", ["--teacher", "/no/such/run"], "/no/such/run"),
    ("akd", ["--set", "image_size=32", "--set", "d_layers=3"], "image_size"),
    ("dmp", ["--set", "proxy_size=13"], "proxy_size"),
    ("gauss", ["--set", "gauss_sigma=-0.5"], "gauss_sigma"),
    ("dpsgd", ["--set", "dp_noise_multiplier=-1"], "dp_noise_multiplier"),
])
@pytest.mark.train
def test_bad_defense_input_is_refused_before_training(teacher_dir, tmp_path, capsys, method, args, needle):
    teacher = [] if args[:1] == ["--teacher"] or (method == "akd" and not args) else ["--teacher", str(teacher_dir)]
    out = tmp_path / "out"
    assert main(["run", "--method", method, *TINY_SETS, *teacher, *args, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_dry_run_prints_resolved_config(capsys):
    assert main(["run", "--method", "teacher", "--preset", "facades", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["image_size"] == 256 and cfg["epochs_decay"] == 100 and cfg["method"] == "teacher"


def test_kid_command_prints_json(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for folder, n in (("real", 5), ("fake", 4)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    assert main(["kid", str(tmp_path / "real"), str(tmp_path / "fake"), "--subset-size", "50", "--subsets", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kid_subset_size"] == 4 and set(result) == {"kid_mean", "kid_std", "kid_subset_size"}
    assert main(["kid", str(tmp_path / "missing"), str(tmp_path / "fake")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.train
def test_dpsgd_run_reports_privacy_and_the_norm_it_trained(tmp_path):
    out = tmp_path / "dp"
    assert main(["run", "--method", "dpsgd", *TINY_SETS, "--set", "epochs=1", "--out", str(out)]) == 0
    row = json.loads((out / "row.json").read_text())
    assert row["norm"] == "group" and row["dp_epsilon"] > 0 and row["dp_delta"] == pytest.approx(1 / 160)
    assert row["dp_steps"] == 4 and row["dp_sample_rate"] == 0.25


@pytest.mark.train
def test_gauss_run_needs_no_training_and_reports_the_noise(teacher_dir, tmp_path):
    out = tmp_path / "gauss"
    assert main(["run", "--method", "gauss", *TINY_SETS, "--teacher", str(teacher_dir), "--set", "gauss_sigma=0.3",
                 "--out", str(out)]) == 0
    row = json.loads((out / "row.json").read_text())
    teacher = json.loads((teacher_dir / "row.json").read_text())
    assert row["gauss_sigma"] == 0.3 and not (out / "checkpoint.pt").exists()
    assert row["test_l1"] > teacher["test_l1"]  # noisy outputs are further from the truth


# --- akdray audit ------------------------------------------------------------------------------
@pytest.mark.train
def test_audit_of_a_run_folder_writes_json_scores_and_roc(teacher_dir, tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "--checkpoint", str(teacher_dir), "--references", "2", "--out", str(out)]) == 0
    assert {"audit.json", "scores.parquet", "roc.png"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "audit.json").read_text())
    for attack in ("loss", "lira", "rmia"):
        assert record[f"{attack}_auc_lo"] <= record[f"{attack}_auc"] <= record[f"{attack}_auc_hi"]
        assert record[f"{attack}_tpr_at_0p1pct_fpr"] is None  # 16 non-members: not measurable
    assert record["n_references"] == 2 and record["leak_source"] == "loss,lira,rmia"
    import pandas as pd
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores.groupby("attack").size().to_dict() == {"lira": 32, "loss": 32, "rmia": 32}
    assert "lira" in capsys.readouterr().out
    # the reference runs it trained are reusable: a second audit against them gives the same numbers
    again = tmp_path / "again"
    refs = [str(p) for p in sorted((out / "references").iterdir())]
    assert main(["audit", "--checkpoint", str(teacher_dir / "checkpoint.pt"), "--reference-runs", *refs,
                 "--out", str(again)]) == 0
    assert json.loads((again / "audit.json").read_text())["lira_auc"] == record["lira_auc"]


@pytest.mark.parametrize("case", ["missing", "image_size", "one_reference", "not_a_reference"])
@pytest.mark.train
def test_audit_refuses_bad_input_with_exit_2(teacher_dir, tmp_path, capsys, case):
    args = ["--checkpoint", str(teacher_dir)]
    needle = {"missing": "/no/such/run", "image_size": "32x16", "one_reference": "at least 2",
              "not_a_reference": "not a 'reference' run"}[case]
    if case == "missing":
        args = ["--checkpoint", "/no/such/run"]
    elif case == "image_size":
        args += ["--data", str(write_aligned(tmp_path / "data", width=64))]
    elif case == "one_reference":
        args += ["--references", "1"]
    else:
        args += ["--reference-runs", str(teacher_dir), str(teacher_dir)]
    out = tmp_path / "out"
    assert main(["audit", *args, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()
