"""Bad input is refused before any work (exit 2, the problem named, nothing written); storage faults are real.

None of these tests trains a model: each refusal must come before training starts.
"""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from akdray.cli import main as akdray_main
from akdray.config import ConfigError, make_config
from akdray.storage import create_exclusive, fetch_folder, write_bytes
from akdray.testing import png_header_only, write_aligned_folder
from akdray.sweep import cli as pareto
from akdray.sweep.sink import SINK_FAILURES, ParquetSink
from akdray.sweep.spec import SweepSpec
from akdray.sweep.stages import init_sweep
from akdray.testing import TINY

ROOT = Path(__file__).resolve().parents[1]

TINY_SET = [x for k, v in TINY.items() if k != "device" for x in ("--set", f"{k}={v}")]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = akdray_main(args)
    return code, capsys.readouterr().err


def sweep_exit(argv: list[str]) -> int:
    try:
        return pareto.main(argv)
    except SystemExit as exc:
        return int(exc.code)


# ------------------------------------------------------------------------------------------------
# akdray run
# ------------------------------------------------------------------------------------------------
def test_data_root_alone_means_aligned_and_synthetic_with_a_folder_is_refused(tmp_path, capsys):
    assert make_config("cpu-small", {"data_root": str(tmp_path)}).data_source == "aligned"
    with pytest.raises(ConfigError, match="data_source is 'synthetic'"):
        make_config("cpu-small", {"data_root": str(tmp_path), "data_source": "synthetic"})
    code, err = run_cli(["run", "--method", "teacher", "--set", f"data_root={tmp_path / 'none'}",
                         "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "data_root" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, needle", [
    ("seed=-1", "field 'seed' must be in 0..2147483647"),
    ("seed=3000000000", "field 'seed'"),
    ("data_seed=-2", "field 'data_seed'"),
    ("device=cudaXYZ", "field 'device': 'cudaXYZ'"),
    ("device=cuda:", "field 'device'"),
])
def test_bad_seed_or_device_exits_2(tmp_path, capsys, setting, needle):
    code, err = run_cli(["run", "--method", "teacher", "--set", setting, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and needle in err and not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_gpu_on_a_machine_without_one_exits_2_before_training(tmp_path, capsys, device):
    t0 = time.perf_counter()
    code, err = run_cli(["run", "--method", "teacher", *TINY_SET, "--set", f"device={device}",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no CUDA device" in err and not any(tmp_path.iterdir())
    assert time.perf_counter() - t0 < 60  # refused, not trained (a tiny run would still take seconds)


def test_out_that_cannot_be_written_is_refused_up_front(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, needle in ((a_file / "run", "is a file"), ("/proc/akdray-run", "cannot be written")):
        code, err = run_cli(["run", "--method", "teacher", *TINY_SET, "--out", str(out)], capsys)
        assert code == 2 and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("width, height", [(9_000, 9_000), (20_000, 20_000)])
def test_decompression_bomb_is_named_and_refused(tmp_path, capsys, width, height):
    root = tmp_path / "data"
    write_aligned_folder(root, {"train": 4, "val": 4, "test": 4}, size=16)
    png_header_only(root / "train" / "bomb.png", width, height)
    every_file = ["--set", "n_train=0", "--set", "proxy_pool_size=0", "--set", "proxy_size=2", "--set", "n_test=0"]
    code, err = run_cli(["run", "--method", "teacher", *TINY_SET, *every_file, "--set", f"data_root={root}",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "bomb.png" in err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# sweeps/pareto.py
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--max-failures", "-5"], "--max-failures must be >= 0"),
    (["--preset", "facades"], "data_root"),  # the preset's data is not there: caught by --dry-run too
    (["--set", "data_root=relative/none"], "data_root"),
])
def test_sweep_refusals_before_ray(tmp_path, capsys, argv, needle):
    for extra in (["--dry-run"], []):
        assert sweep_exit([*argv, *extra, "--storage", str(tmp_path)]) == 2
        assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_relative_data_root_is_made_absolute_on_the_driver(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_aligned_folder(root, {"train": 4, "val": 4, "test": 4}, size=16)
    monkeypatch.chdir(tmp_path)
    args = pareto.build_parser().parse_args(["--set", "data_root=data", "--set", "image_size=16"])
    spec = pareto.spec_from_args(args)
    assert spec.overrides["data_root"] == str(root)


def test_unreachable_address_fails_within_seconds(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "sweeps" / "pareto.py"), "--address", "127.0.0.1:1",
                           "--smoke-test", "--storage", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no Ray cluster answers" in proc.stderr, proc.stderr[-2000:]
    assert time.perf_counter() - t0 < 60
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("storage", ["/proc/akdray-sweeps", "FILE/under"])
def test_unwritable_storage_exits_2(tmp_path, capsys, storage):
    (tmp_path / "FILE").write_text("x")
    storage = storage.replace("FILE", str(tmp_path / "FILE"))
    assert sweep_exit(["--smoke-test", "--storage", storage]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_stored_sweep_with_an_unknown_key_exits_2(tmp_path, capsys):
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "storage": str(tmp_path), "gpu_count": 4}))
    for argv in (["--resume", "--name", "s", "--storage", str(tmp_path)], ["--confirm", str(sweep)]):
        assert sweep_exit(argv) == 2
        err = capsys.readouterr().err
        assert "sweep.json" in err and "'gpu_count'" in err
    assert sweep_exit(["--resume", "--dry-run", "--name", "missing", "--storage", str(tmp_path)]) == 2


def _start_sweep(storage: str, barrier, results) -> None:
    barrier.wait()
    try:
        init_sweep(SweepSpec(name="same", storage=storage, preset="tiny"), resume=False)
        results.put("created")
    except ConfigError as exc:
        results.put("refused" if "already exists" in str(exc) else str(exc))


def test_two_sweeps_started_at_the_same_moment_cannot_both_create_it(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for attempt in range(10):
        storage = str(tmp_path / f"try{attempt}")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_start_sweep, args=(storage, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sorted(results.get(timeout=5) for _ in procs) == ["created", "refused"]


def test_a_sweep_stored_with_the_removed_fault_hooks_still_loads():
    """akdray <= 0.1.0 wrote ``"hooks": {}`` (test-only fault hooks, since removed) into sweep.json: such a
    sweep resumes, and writing it back drops the key; hooks that were set are refused, not ignored."""
    stored = json.loads(SweepSpec(name="x", storage="/tmp", seeds=2).to_json())
    old = SweepSpec.from_json(json.dumps({**stored, "hooks": {}}))
    assert old == SweepSpec(name="x", storage="/tmp", seeds=2) and "hooks" not in json.loads(old.to_json())
    with pytest.raises(ConfigError, match="unknown key.*'hooks'"):
        SweepSpec.from_json(json.dumps({**stored, "hooks": {"kill_after_s": 3}}), source="s/sweep.json")


# ------------------------------------------------------------------------------------------------
# Storage faults: a real full file system (a 64 KiB tmpfs), or a real file-size limit where mounting is not allowed
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def full_dir(tmp_path):
    """A folder on a real, full file system: a 64 KiB tmpfs filled up (needs root, as CI runs)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_write_on_a_full_disk_raises_and_leaves_no_temp_file(full_dir):
    with pytest.raises(OSError) as info:
        write_bytes(str(full_dir / "sub" / "row.parquet"), b"x" * 200_000)
    assert info.value.errno == errno.ENOSPC or "No space" in str(info.value)
    with pytest.raises(OSError):
        create_exclusive(str(full_dir / "sweep.json"), b"y" * 200_000)
    assert sorted(p.name for p in full_dir.rglob("*") if p.is_file()) == ["filler"]


def test_a_local_mode_run_that_cannot_be_stored_leaves_no_report_and_its_retry_trains_afresh(full_dir, tmp_path):
    """The report is written only after the whole folder: a copy that fails (disk full) leaves none, so a
    retry does not trust the half-copied folder; it deletes it and trains."""
    from akdray.sweep.local_store import persist_run, remove_incomplete_runs, stored_report

    out = tmp_path / "run"
    out.mkdir()
    (out / "row.json").write_text("{}")
    (out / "checkpoint.pt").write_bytes(b"\1" * 300_000)  # more than the full disk takes
    trial = str(full_dir / "runs" / "trial_1")
    with pytest.raises(OSError):
        persist_run(out, trial, {"status": "ok"})
    assert stored_report(trial) is None
    assert [Path(p).name.startswith("checkpoint_") for p in remove_incomplete_runs(trial)] == [True]
    assert sorted(p.name for p in full_dir.rglob("*") if p.is_file()) == ["filler"]


def test_sink_records_a_storage_failure_instead_of_swallowing_it(full_dir):
    trial = SimpleNamespace(config={"method": "gauss", "seed": 0}, trial_id="t1", num_failures=0,
                            last_result={"status": "ok", "mia_auc": 0.5, "nkid": 0.2, "time_total_s": 1.0})
    SINK_FAILURES.pop("exp", None)
    ParquetSink(str(full_dir / "sweep"), "exp").on_trial_complete(0, [trial], trial)
    failures = SINK_FAILURES.pop("exp")
    assert len(failures) == 1 and "t1" in failures[0]
    assert sorted(p.name for p in full_dir.rglob("*") if p.is_file()) == ["filler"]


# ------------------------------------------------------------------------------------------------
# Data from a URI: the same pyarrow.fs code as s3://, against the local file system (file://)
# ------------------------------------------------------------------------------------------------
def test_data_root_uri_is_fetched_once_into_a_cache_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("AKDRAY_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "remote"
    write_aligned_folder(root, {"train": 4, "val": 4, "test": 4}, size=16)
    first = fetch_folder(f"file://{root}")
    assert sorted(p.name for p in (first / "train").iterdir()) == sorted(p.name for p in (root / "train").iterdir())
    assert fetch_folder(f"file://{root}") == first  # cached
    write_aligned_folder(root, {"test": 5}, size=16)  # the data changed: a new entry, never a mix
    second = fetch_folder(f"file://{root}")
    assert second != first and len(list((second / "test").iterdir())) == 5
    with pytest.raises(FileNotFoundError):
        fetch_folder(f"file://{tmp_path / 'missing'}")


@pytest.mark.slow
def test_run_trains_on_data_from_a_uri(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AKDRAY_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "remote"
    write_aligned_folder(root, {"train": 16, "val": 20, "test": 16}, size=16)  # val: proxy pool + n_val carved
    code, err = run_cli(["run", "--method", "teacher", *TINY_SET, "--set", f"data_root=file://{root}",
                         "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    row = json.loads((tmp_path / "o" / "row.json").read_text())
    assert row["data_source"] == "aligned" and row["data_root"] == f"file://{root}" and row["status"] == "ok"
    assert os.path.isdir(tmp_path / "cache" / "data")


# ------------------------------------------------------------------------------------------------
# A real divergence (an absurd learning rate), not NaN written over a good result
# ------------------------------------------------------------------------------------------------
@pytest.mark.train
def test_diverging_run_exits_1_with_a_failed_row(tmp_path, capsys):
    code = akdray_main(["run", "--method", "teacher", *TINY_SET, "--set", "lr=1e30", "--out", str(tmp_path / "o")])
    assert code == 1
    row = json.loads((tmp_path / "o" / "row.json").read_text())
    assert row["status"] == "failed" and row["error"].startswith("diverged: non-finite loss")
    assert row["loss_auc"] is None and row["leak"] is None and row["nkid"] is None


# ------------------------------------------------------------------------------------------------
# akdray kid
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, needle", [
    (["--seed", "-1"], "--seed must be in"), (["--subsets", "0"], "--subsets must be in"),
    (["--batch-size", "0"], "--batch-size"), (["--device", "cudaXYZ"], "field 'device'"),
    (["--bomb"], "bomb.png"),
])
def test_kid_refuses_bad_flags_and_bombs(tmp_path, capsys, flags, needle):
    for name in ("real", "fake"):
        write_aligned_folder(tmp_path, {name: 3}, size=16)
    if flags == ["--bomb"]:
        png_header_only(tmp_path / "fake" / "bomb.png", 9_000, 9_000)
        flags = []
    code, err = run_cli(["kid", str(tmp_path / "real"), str(tmp_path / "fake"), *flags], capsys)
    assert code == 2 and needle in err, err


def test_inception_weights_with_another_sha1_are_not_loaded(tmp_path, monkeypatch):
    from akdray.metrics.inception import _load_torchscript, find_inception_weights

    tampered = tmp_path / "default_1.pt"
    data = bytearray(find_inception_weights().read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    tampered.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing to load"):
        _load_torchscript(tampered)
