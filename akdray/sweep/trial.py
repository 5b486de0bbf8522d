"""Inside one trial: the Ray Tune trial driver and the Ray Train worker (the only ``ray.train`` user).

Layers (Ray Train V2 inside a Tune function trainable)::

    Tuner ──> trial_driver(config)                   Tune trial: 0 CPU, 256 MiB; no torch import (--train-workers 1)
                 └─> DataParallelTrainer(train_worker)  1 worker holding the trial's CPUs / (fractional) GPUs
                        └─> akdray.run.run(cfg, out_dir, teacher_dir=..., reference_dirs=...)

    local mode:  trial_driver(config)                Tune trial holding the run's CPUs / GPUs, reused by the
                                                     next trial of its experiment (torch stays imported)
                   └─> DataParallelTrainer(run_trial, ScalingConfig(num_workers=0))  in this process
                          └─> akdray.run.run(...)

The worker reports the run's **full row** with the run folder as its Ray Train ``Checkpoint``; Train
uploads the folder to ``SWEEP_DIR/runs/<trial_id>/checkpoint_*`` and keeps the row with it. The
driver forwards that row (``Result.metrics``: the metrics of the latest checkpoint) plus the folder's
URI (column ``checkpoint``) to Tune - what Ray's ``TuneReportCallback`` does for each report, but
also correct when Train restored an already finished run, whose worker reports nothing.

Fault tolerance: a worker crash is retried by Train (``train_max_failures``), a driver crash by Tune
(``max_failures``); a retried trial reuses its Train run folder, so a trial whose checkpoint exists
is *not* trained again. Bad input (ConfigError, DataError) can never succeed: it becomes a failed
row at once, without retries.

**Local mode** (``train_workers = 0``, the default of a sweep on the local cluster it starts): the
worker's body (``run_trial``) runs under Ray Train's local mode (``ScalingConfig(num_workers=0)``),
i.e. in the Tune trial's own process, which then holds the run's CPUs/GPUs. No Train controller,
helper actors or worker process start per run. Train does not persist anything in local mode, so
``run_trial`` copies its folder to ``runs/<trial_id>/checkpoint_<time>`` itself and then writes
``runs/<trial_id>/report.json`` (:mod:`akdray.sweep.local_store`); a retried trial that finds that file
reports it instead of training again. A crash is retried by Tune alone. Tune reuses a trial's process
for the next trial of the same experiment (``reuse_actors``), so torch, akdray and the Inception
network are loaded once per slot and stage, not once per trial.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ray import tune
from ray.tune import PlacementGroupFactory
from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

from akdray.config import ConfigError, RunConfig, from_dict, resolve_n_val
from akdray.schema import METRIC_KEYS, ROW_FILE
from akdray.storage import join
from akdray.sweep.local_store import persist_run, remove_incomplete_runs, stored_report
from akdray.sweep.scratch import remove_orphaned_trial_folders, trial_folder_prefix
from akdray.sweep.meta import META_KEY, TrialMeta, split_trial_config
from akdray.sweep.spec import OBJECTIVES, TEST_OBJECTIVES

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


def trial_resources(config: Mapping[str, Any]) -> PlacementGroupFactory:
    """What a Tune trial holds: nothing but a little memory while a Train worker group holds the run's
    CPUs/GPUs; in local mode the trial's process runs it, so the trial holds them."""
    meta = TrialMeta.from_dict(config.get(META_KEY))
    if not meta.local_mode:
        return resource_dict_to_pg_factory(DRIVER_RESOURCES)
    return resource_dict_to_pg_factory({"cpu": float(meta.cpus), "gpu": float(meta.gpus or 0)})


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


def _quiet_report_log() -> None:
    """Ray Train logs every report with its metrics at INFO; with the full row (~150 fields) as the
    metrics that floods the sweep's terminal, so this worker's report log is raised to WARNING."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: keep its logging as it is
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # Ray names that logger by its file


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: the trial's run(s), reported with their folder as the checkpoint (Train uploads it)."""
    import ray.train

    if ray.train.get_checkpoint() is not None:
        return  # this trial already finished and uploaded its folder; Train kept its row(s)
    run_trial(loop_config)


def run_trial(loop_config: dict[str, Any]) -> dict[str, Any]:
    """The trial's run(s) into a temporary folder; returns the report (the first row, worker times, packed
    rows). Under a Train worker group it is reported to Train with the folder as its checkpoint; in local
    mode (``persist_to``: Ray forbids ``ray.train.report`` inside a Tune trial) it is stored by
    :func:`persist_run` and returned, which Train's local mode hands back as ``Result.return_value``."""
    entered = time.time()
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
        if loop_config.get("persist_to"):
            return {**report, "checkpoint": persist_run(out, loop_config["persist_to"], report)}
        import ray.train

        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(str(out)))
        return report


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


def trial_driver(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: launch one Ray Train run and forward its row to Tune.

    A run is one worker, so it needs no ``torch.distributed`` process group: the plain
    ``DataParallelTrainer`` (Ray Train V2) runs it - GPUs are still assigned by ``ScalingConfig`` -
    and with a worker group this driver process never imports torch (about 0.3 GB less per trial than
    ``TorchTrainer``). In local mode (``train_workers = 0``) it runs the run itself: :func:`_run_locally`.
    """
    started = time.time()
    config, meta, _pick, pack = split_trial_config(config)
    try:
        cfg = from_dict(config)  # the same field names end to end; refuses unknown keys
    except ConfigError as exc:  # e.g. a searched value outside what the config allows: no retries
        tune.report(failed_row(config, f"bad input: {exc}"))
        return
    trial_id = tune.get_context().get_trial_id()
    loop_config = {"cfg": cfg.to_dict(), "pack": pack, "trial_id": trial_id, "driver_started": started}
    report = _run_locally(loop_config, meta) if meta.local_mode else _run_on_worker(loop_config, meta)
    row = {**report, **ray_times(started, report.get(WORKER_TIMES), time.time())}
    # Summary keys first: Tune's progress table shows the first numeric metrics of a result.
    tune.report({**{k: row.get(k) for k in SUMMARY_KEYS}, **row})


def _run_on_worker(loop_config: dict[str, Any], meta: TrialMeta) -> dict[str, Any]:
    """One Ray Train worker runs :func:`train_worker`; returns its report with the stored folder's URI."""
    from ray.train import FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    trial_id = loop_config["trial_id"]
    gpus, cpus = float(meta.gpus), float(meta.cpus)
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = DataParallelTrainer(
        train_worker, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=RayRunConfig(name=trial_id, storage_path=meta.runs_uri,
                                failure_config=FailureConfig(max_failures=int(meta.train_max_failures))),
    )
    result = trainer.fit()
    if result.checkpoint is None or not result.metrics:
        raise RuntimeError(f"Ray Train run {trial_id} finished without a checkpoint and its row")
    return {**dict(result.metrics), "checkpoint": meta.storage_uri(result.checkpoint.path)}


def _run_locally(loop_config: dict[str, Any], meta: TrialMeta) -> dict[str, Any]:
    """Ray Train's local mode: :func:`run_trial` in this process (see the module doc); returns its report,
    or the stored one of an earlier attempt of this trial (not trained again)."""
    from ray.train import RunConfig as RayRunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    trial_id = loop_config["trial_id"]
    trial_uri = join(meta.runs_uri, trial_id)
    report = stored_report(trial_uri)  # a retry of a trial that stored its run: report it, do not retrain
    if report is None:
        remove_incomplete_runs(trial_uri)  # an earlier attempt that died while storing its folder
        trainer = DataParallelTrainer(run_trial, train_loop_config={**loop_config, "persist_to": trial_uri},
                                      scaling_config=ScalingConfig(num_workers=0), run_config=RayRunConfig(name=trial_id))
        report = dict(trainer.fit().return_value or {})
    if not report.get("checkpoint"):
        raise RuntimeError(f"local Ray Train run {trial_id} finished without storing its run folder")
    return report


trial_driver._progress_metrics = SUMMARY_KEYS  # what Tune prints when a trial finishes
