"""Inside one trial: the Ray Tune trial driver and the Ray Train worker (the only ``ray.train`` user).

Layers (Ray Train V2 inside a Tune function trainable)::

    Tuner ──> trial_driver(config)                   Tune trial: 0 CPU, 256 MiB; no torch import
                 └─> DataParallelTrainer(train_worker)  1 worker holding the trial's CPUs / (fractional) GPUs
                        └─> akdray.run.run(cfg, out_dir, teacher_dir=..., reference_dirs=...)

The worker reports the run's **full row** with the run folder as its Ray Train ``Checkpoint``; Train
uploads the folder to ``SWEEP_DIR/runs/<trial_id>/checkpoint_*`` and keeps the row with it. The
driver forwards that row (``Result.metrics``: the metrics of the latest checkpoint) plus the folder's
URI (column ``checkpoint``) to Tune - what Ray's ``TuneReportCallback`` does for each report, but
also correct when Train restored an already finished run, whose worker reports nothing.

Fault tolerance: a worker crash is retried by Train (``train_max_failures``), a driver crash by Tune
(``max_failures``); a retried trial reuses its Train run folder, so a trial whose checkpoint exists
is *not* trained again. Bad input (ConfigError, DataError) can never succeed: it becomes a failed
row at once, without retries.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ray import tune

from akdray.config import ConfigError, RunConfig, from_dict, resolve_n_val
from akdray.schema import METRIC_KEYS, ROW_FILE
from akdray.sweep.spec import OBJECTIVES, TEST_OBJECTIVES, split_trial_config

DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 1024**2}  # the Tune trial only waits on its Train run
# What Tune's progress table shows (the first keys of a result): the objectives, then the run.
PACK_ROWS = "pack_rows"  # a packed trial's result: the rows of its runs after the first
WORKER_TIMES = "worker_times"  # the Train worker's epoch seconds (entered, runs started, runs finished) + its driver's token
SUMMARY_KEYS = ("val_leak", "val_nkid", "leak", "nkid", "loss_auc", "lira_auc", "wall_s", "status", "error")


def finalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf objectives are failures: status 'failed', objective null (never a fake number)."""
    row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
    split = row.get("eval_split", "both")
    has_val = resolve_n_val(int(row.get("n_val") or 0), str(row.get("data_source", "synthetic"))) > 0
    needed = (OBJECTIVES if split != "test" and has_val else ()) + (TEST_OBJECTIVES if split != "val" else ())
    if row.get("method") == "reference":
        needed = ("leak",)  # a reference run has no KID and no validation audit
    bad = [k for k in needed if not (isinstance(row.get(k), (int, float)) and math.isfinite(row[k]))]
    for key in bad:
        row[key] = None
    if bad and row.get("status") == "ok":
        row.update(status="failed", error=f"non-finite objective(s): {', '.join(bad)}")
    return row


def failed_row(config: Mapping[str, Any], error: str) -> dict[str, Any]:
    """The row of a trial that cannot run: its config, null metrics, status 'failed' and why."""
    return {**config, **{k: None for k in METRIC_KEYS}, "status": "failed", "error": error}


def fetch_inputs(cfg: RunConfig, tmp: str) -> tuple[str | None, list[str] | None]:
    """Local copies of a teacher / reference models given as URIs (s3://, file://); None = use as named."""
    import ray.train

    def fetch(uri: str, name: str) -> str:
        return ray.train.Checkpoint(uri).to_directory(os.path.join(tmp, name)) if "://" in uri else uri

    teacher = fetch(cfg.teacher_checkpoint, "teacher") if "://" in cfg.teacher_checkpoint else None
    references = None
    if "://" in cfg.reference_checkpoints:
        references = [fetch(uri, f"reference{i}") for i, uri in enumerate(cfg.reference_list)]
    return teacher, references


def pack_name(index: int) -> str:
    """The sub-folder of packed run ``index`` (>= 1) inside its trial's folder (run 0 is the folder itself)."""
    return f"pack{index}"


def pack_folder(out: Path, index: int) -> Path:
    return out if index == 0 else out / pack_name(index)


def run_pack(configs: list[RunConfig], out: Path, tmp: str) -> list[dict[str, Any]]:
    """``run`` each config one after another (each seeds itself, so each equals its own separate run);
    returns the finalized rows; bad input becomes a failed row at once (it can never succeed)."""
    from akdray.data.aligned import DataError
    from akdray.run import run

    rows = []
    for index, cfg in enumerate(configs):
        folder = pack_folder(out, index)
        try:
            teacher_dir, reference_dirs = fetch_inputs(cfg, tmp)
            row = run(cfg, folder, teacher_dir=teacher_dir, reference_dirs=reference_dirs)
        except (ConfigError, DataError) as exc:
            folder.mkdir(parents=True, exist_ok=True)
            row = failed_row(cfg.to_dict(), f"bad input: {exc}")
        row = finalize_row(row)
        (folder / ROW_FILE).write_text(json.dumps(row, indent=2) + "\n")
        rows.append(row)
    return rows


TRIAL_FOLDER_PREFIX = "akdray-trial-"  # + the worker's pid + "-": a SIGKILLed worker's folder stays behind


def trial_folder_prefix() -> str:
    """Prefix of this worker's temporary run folder: it names the pid, so a later worker can tell an orphan."""
    return f"{TRIAL_FOLDER_PREFIX}{os.getpid()}-"


def remove_orphaned_trial_folders(scratch: str | Path | None = None) -> list[Path]:
    """Delete the temporary run folders of workers that no longer run on this machine (a SIGKILL skips
    ``TemporaryDirectory``'s clean-up); returns what was deleted. A folder whose pid lives is kept, even
    if the pid was reused: better a leftover than a live run's files deleted."""
    removed = []
    for folder in Path(scratch or tempfile.gettempdir()).glob(f"{TRIAL_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(TRIAL_FOLDER_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _quiet_report_log() -> None:
    """Ray Train logs every report with its metrics at INFO; with the full row (~150 fields) as the
    metrics that floods the sweep's terminal, so this worker's report log is raised to WARNING."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: keep its logging as it is
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # Ray names that logger by its file


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: the trial's run(s) into a temporary folder, reported with the rows as its checkpoint."""
    import ray.train

    entered = time.time()
    if ray.train.get_checkpoint() is not None:
        return  # this trial already finished and uploaded its folder; Train kept its row(s)
    _quiet_report_log()
    import akdray.run  # noqa: F401 - torch and the models: imported here so worker_setup_s counts them
    configs = [from_dict(c) for c in (loop_config["cfg"], *loop_config.get("pack", []))]
    remove_orphaned_trial_folders()
    with tempfile.TemporaryDirectory(prefix=trial_folder_prefix()) as tmp:
        out = Path(tmp) / "run"
        started = time.time()
        first, *packed = run_pack(configs, out, tmp)
        times = [entered, started, time.time(), loop_config.get("driver_started")]
        report = {**first, WORKER_TIMES: times, **({PACK_ROWS: packed} if packed else {})}
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(str(out)))


def ray_times(driver_started: float, worker: list[float] | None, driver_finished: float) -> dict[str, float | None]:
    """Where a trial's time outside ``run`` goes (epoch seconds of one machine or a clock-synchronised cluster):

    ``ray_start_s``     trial driver started -> Train worker entered its function (Train controller,
                        its helper actors, placement group, worker process start)
    ``worker_setup_s``  worker entered -> its runs start (imports of torch and akdray)
    ``ray_end_s``       last run finished -> the driver holds Train's result (report, checkpoint
                        upload, worker group and controller shut down)
    ``worker`` = (entered, runs started, runs finished, the ``driver_started`` its driver passed).
    All None unless that last one is this driver's: a trial Train restored from its stored
    checkpoint reports the times of an earlier attempt (its worker ran nothing this time).
    """
    if (not worker or len(worker) != 4 or worker[3] != driver_started
            or not all(isinstance(t, (int, float)) and math.isfinite(t) for t in worker)):
        return {"ray_start_s": None, "worker_setup_s": None, "ray_end_s": None}
    entered, runs_started, runs_finished, _ = worker
    return {"ray_start_s": entered - driver_started, "worker_setup_s": runs_started - entered,
            "ray_end_s": driver_finished - runs_finished}


def _storage_uri(path: str, meta: Mapping[str, Any]) -> str:
    """A Ray filesystem path -> a URI usable anywhere (local path or scheme://bucket/key)."""
    scheme = meta.get("scheme")
    return path if not scheme or "://" in path else f"{scheme}://{path}"


def trial_driver(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: launch one Ray Train run and forward its row to Tune.

    A run is one worker, so it needs no ``torch.distributed`` process group: the plain
    ``DataParallelTrainer`` (Ray Train V2) runs it - GPUs are still assigned by ``ScalingConfig`` -
    and this driver process never imports torch (about 0.3 GB less per trial than ``TorchTrainer``).
    """
    from ray.train import FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    started = time.time()
    config, meta, _pick, pack = split_trial_config(config)
    try:
        cfg = from_dict(config)  # the same field names end to end; refuses unknown keys
    except ConfigError as exc:  # e.g. a searched value outside what the config allows: no retries
        tune.report(failed_row(config, f"bad input: {exc}"))
        return
    trial_id = tune.get_context().get_trial_id()
    gpus, cpus = float(meta["gpus"]), float(meta["cpus"])
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = DataParallelTrainer(
        train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "pack": pack, "trial_id": trial_id, "driver_started": started},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=RayRunConfig(name=trial_id, storage_path=meta["runs_uri"],
                                failure_config=FailureConfig(max_failures=int(meta["train_max_failures"]))),
    )
    result = trainer.fit()
    if result.checkpoint is None or not result.metrics:
        raise RuntimeError(f"Ray Train run {trial_id} finished without a checkpoint and its row")
    row = {**dict(result.metrics), **ray_times(started, result.metrics.get(WORKER_TIMES), time.time())}
    # Summary keys first: Tune's progress table shows the first numeric metrics of a result.
    tune.report({**{k: row.get(k) for k in SUMMARY_KEYS}, **row, "checkpoint": _storage_uri(result.checkpoint.path, meta)})


trial_driver._progress_metrics = SUMMARY_KEYS  # what Tune prints when a trial finishes
