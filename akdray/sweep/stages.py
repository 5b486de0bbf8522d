"""The sweep's stages, in the driver: references, teachers, then every search side by side; resume.

    stage 0 'reference'  K reference models per seed (grid; :mod:`akdray.sweep.references`)
    stage 1 'teacher'    the teacher of every seed + the ``teacher-groupnorm`` baseline (grid)
    stage 2 'search'     ONE Tune experiment for every (defense, seed) study: :class:`StudyRouter`
                         gives each trial to one Optuna study, so the studies share the slots
    (refine)             ``--refine-picks`` rounds, each one experiment (:mod:`akdray.sweep.refine`)
    confirm              ``--confirm``: :mod:`akdray.sweep.confirm`

Each stage is one Tune experiment under ``SWEEP_DIR/<experiment>``; it is marked done
(``SWEEP_DIR/stages/<experiment>.done.json``) once every trial has its results row. A resumed sweep
skips stages marked done, restores unfinished experiments with ``Tuner.restore(...,
resume_errored=True)`` and re-reads teachers and references from the results dataset.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
from ray import tune

from akdray.config import ConfigError
from akdray.results import RESULTS, SWEEP_FILE, read_dataset
from akdray.storage import StorageError, create_exclusive, exists, join, read_bytes, resolve, write_bytes
from akdray.reference_recipe import draw_key
from akdray.sweep.meta import TrialMeta, grid_space
from akdray.sweep.references import found_references, item_runs, reference_items
from akdray.sweep.search import close_studies, study_router
from akdray.sweep.sink import SINK_FAILURES, ParquetSink
from akdray.sweep.spec import (
    GROUPNORM_PICK, STAGES_DIR, Study, SweepSpec, base_config, search_config, validate,
)
from akdray.sweep.trial import SUMMARY_KEYS, trial_driver, trial_resources


class SweepInterrupted(RuntimeError):
    """A stage stopped before all its trials finished (Ctrl-C): the sweep can be resumed."""


def trial_dirname(trial) -> str:
    return trial.trial_id


def done_marker(sweep_uri: str, experiment: str) -> str:
    """The file that marks an experiment of the sweep finished (every trial has its results row)."""
    return join(sweep_uri, STAGES_DIR, f"{experiment}.done.json")


AUTO_LOGGERS_ENV_VAR = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"


def experiment_callbacks(spec: SweepSpec, experiment: str) -> list:
    """The Tune callbacks of an experiment: the Parquet sink and Tune's CSV and JSON loggers, given
    explicitly. Tune would add its TensorBoardX logger too, whose import loads torch into the driver
    (about 300 MiB more for the whole sweep, for one result per trial), so Tune's automatic loggers are
    turned off for this process (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0`` in the environment keeps them)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    os.environ.setdefault(AUTO_LOGGERS_ENV_VAR, "1")
    return [ParquetSink(spec.sweep_uri, experiment), CSVLoggerCallback(), JsonLoggerCallback()]


def run_experiment(spec: SweepSpec, experiment: str, param_space: dict, num_samples: int, search_alg,
                   resume: bool, expected: int) -> None:
    """Fit (or restore and finish) one Tune experiment; mark it done once all its trials finished."""
    marker = done_marker(spec.sweep_uri, experiment)
    if exists(marker):
        print(f"akdray sweep: {experiment} already complete, skipped")
        return
    trainable = tune.with_resources(trial_driver, trial_resources)
    trainable._progress_metrics = SUMMARY_KEYS
    path = join(spec.sweep_uri, experiment)
    if resume and tune.Tuner.can_restore(path):
        print(f"akdray sweep: resuming {experiment} from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=num_samples,
                                        max_concurrent_trials=spec.max_concurrent, trial_dirname_creator=trial_dirname,
                                        # local mode: a trial's process (torch, Inception loaded) runs the next trial
                                        reuse_actors=spec.train_workers == 0),
            run_config=tune.RunConfig(
                name=experiment, storage_path=spec.sweep_uri, verbose=spec.verbose,
                callbacks=experiment_callbacks(spec, experiment),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
        )
    SINK_FAILURES.pop(experiment, None)
    grid = tuner.fit()
    failures = SINK_FAILURES.pop(experiment, [])
    if failures:  # rows that could not be stored: say so, rather than "continue with --resume"
        raise StorageError(f"{experiment}: the results of {len(failures)} trial(s) could not be written to "
                           f"{spec.sweep_uri} ({failures[0]}); free the storage, then --resume")
    # After Ctrl-C Tune returns normally (its trial statuses are not reliable then): the stage is
    # done when every expected trial has its results row.
    finished = recorded_trials(spec, experiment)
    if finished < expected:
        raise SweepInterrupted(f"{experiment}: {finished} of {expected} trials recorded; "
                               f"continue with --resume (--name {spec.name} --storage {spec.storage})")
    summary = {"experiment": experiment, "trials": len(grid), "errors": grid.num_errors,
               "finished_at": datetime.now(timezone.utc).isoformat()}
    write_bytes(marker, json.dumps(summary).encode())


def sweep_rows(spec: SweepSpec, **equal: Any) -> pd.DataFrame:
    """This sweep's results rows whose columns equal the given values (empty frame if none)."""
    df = read_dataset(spec.sweep_uri, RESULTS)
    if df.empty:
        return df
    keep = df["sweep_id"] == spec.sweep_id
    for column, value in equal.items():
        keep &= df[column] == value
    return df[keep]


def recorded_trials(spec: SweepSpec, experiment: str) -> int:
    """Trials of an experiment that have a results row (ok or failed)."""
    rows = sweep_rows(spec, experiment=experiment)
    return 0 if rows.empty else int(rows["trial_id"].nunique())


def teachers(spec: SweepSpec) -> dict[int, str]:
    """Teacher checkpoint URI per seed, from the results dataset (status ok only)."""
    ok = sweep_rows(spec, stage="teacher", status="ok")
    if ok.empty:
        return {}
    ok = ok[ok["pick"].fillna("") != GROUPNORM_PICK].sort_values("recorded_at")  # groupnorm teaches no student
    return {int(r.seed): str(r.checkpoint) for r in ok.itertuples() if isinstance(r.checkpoint, str)}


def teacher_cpus(spec: SweepSpec) -> float:
    """CPU-only sweeps with fewer teacher trials than slots give each teacher the idle slots (up to 8 CPUs)."""
    if spec.gpus_per_trial or not spec.max_concurrent:
        return spec.cpus_per_trial
    slots = max(1, spec.max_concurrent // (2 * spec.seeds))  # the teacher and its groupnorm twin per seed
    return max(spec.cpus_per_trial, min(8.0, spec.cpus_per_trial * slots))


def seed_references(spec: SweepSpec, seed: int, found: dict[tuple[str, int], list[str]]) -> str:
    """The reference checkpoints of one seed's data draw, comma-separated ("" without references)."""
    return ",".join(found.get(draw_key(base_config(spec, "teacher", seed)), []))


def run_reference_stage(spec: SweepSpec, resume: bool) -> dict[tuple[str, int], list[str]]:
    """Stage 0: ``spec.references`` reference models per seed (see :mod:`akdray.sweep.references`)."""
    items = reference_items([base_config(spec, "teacher", s) for s in spec.seed_list], spec.references,
                            spec.references_per_trial)
    if items:
        run_experiment(spec, "reference", grid_space(TrialMeta.of(spec, "reference", "reference"), items), 1,
                       None, resume, expected=item_runs(items))
    return found_references(spec.sweep_uri, spec.sweep_id, "reference")


def run_teacher_stage(spec: SweepSpec, resume: bool, refs: dict[tuple[str, int], list[str]]) -> dict[int, str]:
    """Stage 1: the teacher of every seed, and beside it the ``teacher-groupnorm`` baseline (norm=group,
    the architecture DP-SGD trains; a row of Table II, never distilled from)."""
    items = []
    for s in spec.seed_list:
        cfg = base_config(spec, "teacher", s, references=seed_references(spec, s, refs))
        items += [{"pick": None, "cfg": cfg.to_dict()}, {"pick": GROUPNORM_PICK, "cfg": cfg.replace(norm="group").to_dict()}]
    meta = TrialMeta.of(spec, "teacher", "teacher").with_cpus(teacher_cpus(spec))
    run_experiment(spec, "teacher", grid_space(meta, items), 1, None, resume, expected=len(items))
    return teachers(spec)


def run_search_stage(spec: SweepSpec, experiment: str, planned: list[tuple[Study, str, str]], resume: bool) -> None:
    """Every study of ``planned`` = (study, teacher URI, reference URIs) in ONE Tune experiment.

    A trial's objectives are measured on the validation set only (``eval_split="val"``): search
    trials never load the test images. Their KID sets hold ``spec.search_kid_images`` pairs.
    """
    if not planned:
        return
    routed = []
    for study, teacher, references in planned:
        base = base_config(spec, study.defense, study.seed, teacher=teacher, references=references)
        routed.append((study, search_config(spec, base).to_dict(), TrialMeta.of(spec, "search", study.defense)))
    total = sum(s.num_samples for s, _, _ in planned)
    run_experiment(spec, experiment, {}, total, study_router(spec, routed), resume, expected=total)
    close_studies(spec, [s for s, _, _ in planned])


def auto_resources(spec: SweepSpec) -> SweepSpec:
    """Fill ``gpus_per_trial`` / ``max_concurrent`` from the connected cluster when left to auto."""
    import ray

    total = ray.cluster_resources()
    gpus = spec.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if total.get("GPU", 0) > 0 else 0.0
    concurrent = spec.max_concurrent
    if concurrent is None:
        if gpus > 0:
            concurrent = int(total.get("GPU", 0) // gpus) or 4  # autoscaling: GPU nodes appear on demand
        else:
            concurrent = max(1, int(total.get("CPU", 1) // spec.cpus_per_trial))
    return replace(spec, gpus_per_trial=gpus, max_concurrent=concurrent)


def init_sweep(spec: SweepSpec, resume: bool) -> SweepSpec:
    """New sweep: write sweep.json (refusing an existing one). Resume: load it back."""
    path = join(spec.sweep_uri, SWEEP_FILE)
    try:
        if resume:
            if not exists(path):
                raise ConfigError(f"--resume: no sweep at {spec.sweep_uri} ({SWEEP_FILE} missing)")
            stored = SweepSpec.from_json(read_bytes(path).decode(), source=path)
            probe_writable(spec.sweep_uri)
            # Experiment settings come from the stored sweep; where it is and how to run it (resources)
            # from this call (a sweep folder copied elsewhere resumes there, not at its old place),
            # and --refine-picks given now adds refinement rounds to a sweep that ran without them.
            refine = {"refine_trials": spec.refine_trials, "refine_rounds": spec.refine_rounds} if spec.refine_trials else {}
            if stored.sweep_uri != spec.sweep_uri:  # a copied or moved sweep: from now on it lives here
                refuse_moved_unfinished(stored, spec.sweep_uri)
                write_bytes(path, replace(stored, storage=spec.storage, name=spec.name).to_json().encode())
            return replace(stored, storage=spec.storage, name=spec.name, cpus_per_trial=spec.cpus_per_trial,
                           gpus_per_trial=spec.gpus_per_trial, max_concurrent=spec.max_concurrent,
                           train_workers=spec.train_workers, verbose=spec.verbose, **refine)
        validate(spec)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        spec = replace(spec, sweep_id=spec.sweep_id or f"{spec.name}-{stamp}-{uuid.uuid4().hex[:6]}")
        create_exclusive(path, spec.to_json().encode())
        return spec
    except FileExistsError:
        raise ConfigError(f"sweep {spec.sweep_uri} already exists; use --resume or another --name") from None
    except OSError as exc:
        raise StorageError(f"sweep storage {spec.sweep_uri} cannot be written: {exc}") from None


def refuse_moved_unfinished(stored: SweepSpec, uri: str) -> None:
    """A sweep folder copied or moved away from where it ran cannot resume an unfinished Tune
    experiment: Tune's restored state (result sink, trial configs) points at the old place and would
    write there. Finished stages are fine (their rows are read from ``uri``)."""
    if stored.sweep_uri == uri:
        return
    fs, path = resolve(uri)
    folders = [info.base_name for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
               if info.type == pafs.FileType.Directory]
    unfinished = sorted(n for n in folders if tune.Tuner.can_restore(join(uri, n)) and not exists(done_marker(uri, n)))
    if unfinished:
        raise ConfigError(f"{uri} ran at {stored.sweep_uri}; its unfinished experiment(s) {', '.join(unfinished)} "
                          "would resume into that old place: resume the sweep where it ran")


def probe_writable(uri: str) -> None:
    """Write and delete a small file under ``uri`` (OSError if the storage refuses)."""
    probe = join(uri, f".write-probe-{uuid.uuid4().hex[:8]}")
    write_bytes(probe, b"probe\n")
    fs, path = resolve(probe)
    fs.delete_file(path)


def run_sweep(spec: SweepSpec, resume: bool = False, pick_fn=None, rows_fn=None) -> pd.DataFrame:
    """Stage 0 (references), stage 1 (teachers), stage 2 (all searches at once); returns the results.

    With ``spec.refine_trials``, a ``pick_fn`` (``analysis.picks.matched_picks``) and a ``rows_fn``
    (``analysis.fronts.frontier_rows``), unmatched baseline picks then get refinement trials
    (:func:`akdray.sweep.refine.refine_picks`).
    ``spec`` may come from :func:`init_sweep` already (it then has a ``sweep_id``), as the CLI does
    to refuse bad storage before Ray starts.
    """
    spec = auto_resources(spec if spec.sweep_id else init_sweep(spec, resume))
    plan = validate(spec)
    t0 = time.perf_counter()
    refs = run_reference_stage(spec, resume)
    found = run_teacher_stage(spec, resume, refs)
    planned = []
    for study in plan:
        if study.seed not in found:
            print(f"akdray sweep: no successful teacher for seed {study.seed}; skipping {study.name}")
            continue
        planned.append((study, found[study.seed], seed_references(spec, study.seed, refs)))
    run_search_stage(spec, "search", planned, resume)
    if spec.refine_trials and pick_fn is not None and rows_fn is not None:
        from akdray.sweep.refine import refine_picks

        refine_picks(spec, pick_fn, rows_fn, resume)
    print(f"akdray sweep: done in {time.perf_counter() - t0:.0f} s -> {spec.sweep_uri}")
    return sweep_rows(spec)
