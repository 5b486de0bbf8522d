"""Ray Train's local mode without Ray: what a trial holds, how it stores its run and how a retry finds
it, and the temporary run folders a killed trial process leaves (the end-to-end tests with Ray are in
tests/test_sweep_ray.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from akdray.sweep.local_store import REPORT_FILE, persist_run, remove_incomplete_runs, stored_report
from akdray.sweep.scratch import remove_orphaned_trial_folders, trial_folder_prefix
from akdray.sweep.meta import META_KEY
from akdray.sweep.trial import trial_resources


def test_a_trial_holds_the_run_resources_only_in_local_mode():
    def bundle(**meta):
        return trial_resources({META_KEY: {"cpus": 2.0, "gpus": 0.25, **meta}}).bundles

    assert bundle(train_workers=0)[0] == {"CPU": 2.0, "GPU": 0.25}
    assert bundle(train_workers=0, gpus=0.0)[0] == {"CPU": 2.0}
    assert bundle(train_workers=1)[0] == {"memory": 256 * 1024**2}  # the Train worker group holds the CPUs/GPUs


def test_a_local_mode_run_is_stored_before_its_report_and_found_by_a_retry(tmp_path):
    out = tmp_path / "tmp-run"
    (out / "pack1").mkdir(parents=True)
    (out / "row.json").write_text('{"status": "ok"}')
    (out / "checkpoint.pt").write_bytes(b"weights")
    (out / "pack1" / "row.json").write_text("{}")
    trial = f"file://{tmp_path}/runs/trial_1"
    assert stored_report(trial) is None  # nothing stored yet: the trial trains
    folder = persist_run(out, trial, {"status": "ok", "val_leak": 0.25, "pack_rows": [{"seed": 1}]})
    local = Path(folder.removeprefix("file://"))
    assert local.parent == tmp_path / "runs" / "trial_1" and local.name.startswith("checkpoint_")
    assert (local / "checkpoint.pt").read_bytes() == b"weights" and (local / "pack1" / "row.json").is_file()
    report = stored_report(trial)
    assert report == {"status": "ok", "val_leak": 0.25, "pack_rows": [{"seed": 1}], "checkpoint": folder}
    assert json.loads((tmp_path / "runs" / "trial_1" / REPORT_FILE).read_text()) == report


def test_a_retry_without_a_report_deletes_the_folders_of_the_attempt_that_died(tmp_path):
    trial = tmp_path / "runs" / "trial_2"
    (trial / "checkpoint_2026-11-30_03-00-00.000001").mkdir(parents=True)  # copied halfway, then killed
    (trial / "checkpoint_2026-11-30_03-00-00.000001" / "row.json").write_text("{}")
    (trial / "notes").mkdir()
    removed = remove_incomplete_runs(f"file://{trial}")
    assert [Path(r).name for r in removed] == ["checkpoint_2026-11-30_03-00-00.000001"]
    assert sorted(p.name for p in trial.iterdir()) == ["notes"]
    assert remove_incomplete_runs(str(tmp_path / "runs" / "never-ran")) == []


def test_orphaned_trial_folders_of_dead_workers_are_removed_live_ones_kept(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    orphan = tmp_path / f"akdray-trial-{ended.pid}-k2j8"
    (orphan / "run").mkdir(parents=True)
    (orphan / "run" / "generator.pt").write_bytes(b"\0" * 1024)
    live = tmp_path / f"{trial_folder_prefix()}q1w2"  # this process: alive
    live.mkdir()
    unnamed = tmp_path / "akdray-trial-x7"  # an older akdray's folder: no pid, no way to tell
    unnamed.mkdir()
    assert remove_orphaned_trial_folders(tmp_path) == [orphan]
    assert not orphan.exists() and live.is_dir() and unnamed.is_dir()
