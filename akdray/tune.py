"""Ray sweeps: every run is a Ray Train ``TorchTrainer`` launched from a Ray Tune function trainable.

Layers (Ray Train V2 + Tune pattern)::

    Tuner ──> trial_driver(config)          Tune function trial: 0 CPU, 256 MiB; rebuilds RunConfig
                 └─> TorchTrainer(train_worker)  1 worker holding the trial's CPUs / (fractional) GPUs
                        └─> akdray.run.run(cfg, out_dir)   the same function as ``akdray run``

The worker reports the run's flat row with the run folder as a Ray Train ``Checkpoint``; Train
uploads it to ``SWEEP_DIR/runs/<trial_id>/checkpoint_*`` (local or s3://). The driver forwards the
row plus the checkpoint URI (column ``checkpoint``) to Tune, where :class:`ParquetSink` writes the
Parquet rows and :class:`FailureAwareOptunaSearch` feeds the objectives to Optuna.

Fault tolerance: a worker crash is retried by Train (``train_max_failures``), a driver crash by Tune
(``max_failures``); a retried trial reuses its Train run folder, so a trial whose checkpoint already
exists is *not* trained again (Train restores it and its metrics are re-reported). A resumed sweep
(``resume=True``) skips stages marked done, restores unfinished Tune experiments with
``Tuner.restore(..., resume_errored=True)`` and re-reads the teachers from the results dataset.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import optuna
import pandas as pd
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from akdray.config import METHODS_NEEDING_TEACHER, ConfigError, RunConfig, from_dict, make_config, resolve_n_val
from akdray.data.aligned import DataError, list_images
from akdray.data.splits import check_carve
from akdray.pareto import pareto_mask
from akdray.parquet_sink import (
    CONFIRM_KEY, META_KEY, RESULTS, SINK_FAILURES, ParquetSink, read_dataset, split_trial_config,
)
from akdray.schema import CONFIG_FILE, METRIC_KEYS, ROW_FILE
from akdray.storage import StorageError, cache_root, create_exclusive, exists, join, read_bytes, resolve, write_bytes
from akdray.sweep_references import (
    DEFAULT_REFERENCES, found_references, localize_references, reference_items, reference_space,
)

DEFENSES = ("akd", "dmp", "dpsgd", "gauss")
# Both minimised, both measured on the validation set (validation half of the members vs the validation
# non-members; akdray.evaluate): leakage centred on chance (0.5 = none), better images. The test
# non-members are never loaded by a search trial (eval_split="val"); the report's tables use them.
OBJECTIVES = ("val_leak", "val_nkid")
TEST_OBJECTIVES = ("leak", "nkid")  # the same measures on the test half of the members vs the test non-members
MODES = ("min", "min")
DEFAULT_SAMPLES = {"akd": 3, "dmp": 3, "dpsgd": 3, "gauss": 3}  # equal budgets; cpu-small: about 15 min on 2 cores
GROUPNORM_PICK = "teacher-groupnorm"  # the non-private teacher with DP-SGD's architecture (norm=group)
DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 1024**2}  # the Tune trial only waits on its Train run
# --smoke-test: the smallest sweep that still runs every stage and every defense.
SMOKE_OVERRIDES: dict[str, Any] = dict(
    image_size=16, ngf=8, ndf=8, d_layers=2, n_train=16, proxy_pool_size=12, proxy_size=8, n_test=16,
    epochs=2, distill_epochs=2, batch_size=4, kid_subset_size=8, kid_subsets=10, kid_max_images=8,
    n_sample_images=2, n_val=8,
)
SMOKE_SAMPLES = {"akd": 1, "dmp": 1, "dpsgd": 1, "gauss": 1}
SWEEP_FILE, STAGES_DIR, RUNS_DIR, OPTUNA_DB = "sweep.json", "stages", "runs", "optuna.db"
SUMMARY_KEYS = ("val_leak", "val_nkid", "leak", "nkid", "loss_auc", "lira_auc", "wall_s", "status", "error")


# ------------------------------------------------------------------------------------------------
# Search spaces
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched RunConfig field: ``[low, high]`` (inclusive), log scale and/or integer."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def domain(self):
        if self.integer:
            lo, hi = int(self.low), int(self.high) + 1  # Tune's integer upper bound is exclusive
            return tune.lograndint(lo, hi) if self.log else tune.randint(lo, hi)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    def describe(self) -> str:
        kind = ("int " if self.integer else "") + ("log" if self.log else "uniform")
        return f"{self.name} in [{self.low:g}, {self.high:g}] ({kind})"


def search_space(defense: str, base: RunConfig) -> list[Param]:
    """The searched fields of a defense, scaled to the preset (proxy pool, distillation epochs).

    DMP searches the distillation parameters of AKD that apply to it (proxy size, distillation
    epochs). DP-SGD's noise multiplier spans [0.1, 4] (log) so its epsilon brackets AKD's privacy
    level: on cpu-small (N=200, batch 4: q=0.02, 2,000 steps, delta=1/(10N)) sigma 0.1 gives
    epsilon ~1.3e5 and sigma 4 ~1.0 (sigma 0.2: ~3.6e3; 1.0: ~11); on facades (q=0.0025, 80,000
    steps) 3.5e6 down to 0.83 (tests/test_fair.py checks the bracket).
    """
    pool = base.proxy_pool_size or base.proxy_size
    proxy = Param("proxy_size", max(2, pool // 16), pool, log=True, integer=True)
    epochs = max(1, base.distill_epochs)
    distill_epochs = Param("distill_epochs", max(1, epochs // 6), epochs, integer=True)
    spaces = {
        "akd": [Param("distill_lambda", 1.0, 1000.0, log=True), proxy, distill_epochs],
        "dmp": [proxy, distill_epochs],
        "dpsgd": [Param("dp_noise_multiplier", 0.1, 4.0, log=True), Param("dp_max_grad_norm", 0.1, 10.0, log=True)],
        "gauss": [Param("gauss_sigma", 0.01, 1.0, log=True)],
    }
    return spaces[defense]


# ------------------------------------------------------------------------------------------------
# The sweep specification
# ------------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """Everything a sweep needs; stored as ``SWEEP_DIR/sweep.json`` so ``--resume`` replays it."""

    name: str
    storage: str
    preset: str = "cpu-small"
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig overrides for every trial
    fixed: tuple[str, ...] = ()  # overridden fields taken out of the searches (the CLI's --set fields)
    seeds: int = 1
    defenses: tuple[str, ...] = DEFENSES
    num_samples: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SAMPLES))
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 if the cluster has GPUs when the sweep starts, else 0
    max_concurrent: int | None = None  # None: as many trials as the cluster's CPUs (or GPUs) hold
    max_failures: int = 1  # Tune retries of a trial whose driver failed
    train_max_failures: int = 2  # Train retries of a crashed worker
    search_seed: int = 0
    references: int = DEFAULT_REFERENCES  # reference models per (data set, seed): cal and lira attacks
    refine_trials: int = 0  # --refine-picks: extra trials per unmatched baseline pick and round (0 = off)
    refine_rounds: int = 2  # at most this many refinement rounds (akdray.sweep_refine)
    verbose: int = 1
    sweep_id: str = ""

    @property
    def sweep_uri(self) -> str:
        root = self.storage if "://" in self.storage else os.path.abspath(os.path.expanduser(self.storage))
        return join(root, self.name)

    @property
    def seed_list(self) -> list[int]:
        first = int(self.overrides.get("seed", 0))
        return [first + i for i in range(self.seeds)]

    def to_json(self) -> str:
        data = {**asdict(self), "defenses": list(self.defenses), "fixed": list(self.fixed)}
        return json.dumps(data, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str, source: str = SWEEP_FILE) -> "SweepSpec":
        """Read a stored sweep; a malformed file or an unknown key is a ConfigError naming ``source``."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and data.get("hooks") == {}:
            del data["hooks"]  # written by akdray <= 0.1.0 (test-only fault hooks, since removed)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else []
        if not isinstance(data, dict) or unknown or not {"name", "storage"} <= set(data):
            raise ConfigError(f"{source} is not an akdray sweep: "
                              + (f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else
                                 "expected an object with at least 'name' and 'storage'"))
        data["defenses"], data["fixed"] = tuple(data.get("defenses", DEFENSES)), tuple(data.get("fixed", ()))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class Study:
    """One stage-2 search: a defense on one seed's teacher."""

    defense: str
    seed: int
    space: tuple[Param, ...]
    num_samples: int
    tag: str = ""  # e.g. "refine1-utility" for the narrowed studies of --refine-picks

    @property
    def name(self) -> str:  # Optuna study name and Tune experiment suffix
        return f"{self.defense}-seed{self.seed}" + (f"-{self.tag}" if self.tag else "")


def base_config(spec: SweepSpec, method: str, seed: int, teacher: str = "", references: str = "") -> RunConfig:
    """The fixed part of a trial's config (raises ConfigError naming a bad field)."""
    values = {**spec.overrides, "method": method, "seed": seed}
    if teacher:
        values["teacher_checkpoint"] = teacher
    if references:
        values["reference_checkpoints"] = references
    return make_config(spec.preset, values)


def studies(spec: SweepSpec) -> list[Study]:
    """Stage-2 searches; a field in ``spec.fixed`` (set with ``--set``) is taken out of the search."""
    out = []
    for defense in spec.defenses:
        base = base_config(spec, defense, spec.seed_list[0], teacher="(stage 1)")
        space = tuple(p for p in search_space(defense, base) if p.name not in spec.fixed)
        if not space:
            raise ConfigError(f"defense {defense!r}: every searched field is fixed by --set; nothing to search")
        for p in space:  # every corner of the space must be a valid config
            for value in (p.low, p.high):
                base.replace(**{p.name: int(value) if p.integer else float(value)})
        out += [Study(defense, seed, space, spec.num_samples[defense]) for seed in spec.seed_list]
    return out


def validate(spec: SweepSpec) -> list[Study]:
    """Check the whole sweep before anything is written or started (ConfigError on any problem)."""
    unknown = [d for d in spec.defenses if d not in DEFENSES]
    if unknown:
        raise ConfigError(f"unknown defense(s) {unknown}; choose from {', '.join(DEFENSES)}")
    if spec.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    if any(spec.num_samples.get(d, 0) < 1 for d in spec.defenses):
        raise ConfigError("--num-samples must be at least 1")
    if spec.cpus_per_trial <= 0 or (spec.gpus_per_trial or 0) < 0:
        raise ConfigError("--cpus-per-trial must be positive and --gpus-per-trial non-negative")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise ConfigError("--max-concurrent must be at least 1")
    if spec.max_failures < 0 or spec.train_max_failures < 0:  # Ray reads -1 as "retry forever"
        raise ConfigError(f"--max-failures must be >= 0, got {min(spec.max_failures, spec.train_max_failures)}")
    if {"method", "teacher_checkpoint", "reference_checkpoints", "eval_split"} & set(spec.overrides):
        raise ConfigError("--set method=/teacher_checkpoint=/reference_checkpoints=/eval_split= is not allowed in a "
                          "sweep (the stages set them)")
    if spec.refine_trials < 0 or spec.refine_rounds < 1:
        raise ConfigError("--refine-trials must be >= 0 and --refine-rounds >= 1")
    if spec.references == 1 or spec.references < 0:
        raise ConfigError("--references must be 0 (loss attack only) or at least 2 (LiRA needs 2)")
    for seed in spec.seed_list:
        base_config(spec, "teacher", seed)
    check_sweep_data(base_config(spec, "teacher", spec.seed_list[0]))
    if base_config(spec, "teacher", spec.seed_list[0]).resolved_n_val == 0:
        raise ConfigError("field 'n_val' is 0 (the default for an aligned folder): a sweep selects on a validation set "
                          "(val_leak, val_nkid) and keeps the test non-members for the tables; --set n_val=N (N > 0 "
                          "files carved from the end of proxy_split)")
    return studies(spec)


def check_sweep_data(cfg: RunConfig) -> None:
    """Aligned data must be reachable by every trial: an absolute local path with its split folders, or a URI.

    Ray Train runs each worker in a session folder of its own, so a relative path would resolve
    differently there (the CLI makes ``--set data_root`` absolute before it gets here).
    """
    if cfg.data_source != "aligned" or "://" in cfg.data_root:
        return  # URIs (s3://, file://) are fetched by each worker into its cache (akdray.data.remote)
    if not os.path.isabs(cfg.data_root):
        raise ConfigError(f"field 'data_root' {cfg.data_root!r} must be an absolute path in a sweep "
                          "(trials run in other folders and on other nodes)")
    for split in dict.fromkeys((cfg.train_split, cfg.proxy_split, cfg.test_split)):
        try:
            list_images(Path(cfg.data_root) / split)
        except DataError as exc:
            raise ConfigError(f"field 'data_root': {exc}; on a cluster, put the data on shared storage "
                              "(data_root=s3://bucket/prefix) or on every node at this path") from None
    if cfg.resolved_n_val:  # the validation non-members are carved from the proxy folder: enough files?
        n_pool = len(list_images(Path(cfg.data_root) / cfg.proxy_split))
        try:
            check_carve(n_pool // 2 if cfg.proxy_split == cfg.test_split else n_pool, cfg.resolved_n_val,
                        cfg.proxy_size, cfg.proxy_split)
        except DataError as exc:
            raise ConfigError(str(exc)) from None


def describe(spec: SweepSpec, plan: list[Study]) -> str:
    """The human-readable plan (``--dry-run``)."""
    gpus = "auto (1 if the cluster has GPUs, else 0)" if spec.gpus_per_trial is None else f"{spec.gpus_per_trial:g}"
    teacher = base_config(spec, "teacher", spec.seed_list[0])
    lines = [
        f"sweep {spec.name!r} -> {spec.sweep_uri}",
        f"  preset {spec.preset}; overrides {spec.overrides or '{}'}",
        f"  per trial: 1 Ray Train worker with {spec.cpus_per_trial:g} CPU, GPU {gpus}; "
        f"max concurrent trials: {spec.max_concurrent or 'auto (cluster CPUs or GPUs / per-trial)'}",
        f"  retries: {spec.train_max_failures} by Ray Train (worker crash), {spec.max_failures} by Tune (trial crash)",
        f"stage 0 'reference': {spec.references} reference model(s) per seed (teacher recipe, no KID), "
        f"{spec.references * spec.seeds} trial(s); every later trial runs the loss, cal and lira attacks",
        f"stage 1 'teacher': {spec.seeds} trial(s), seeds {spec.seed_list} "
        f"(epochs={teacher.epochs}+{teacher.epochs_decay}, image_size={teacher.image_size}, n_train={teacher.n_train}; "
        f"without GPUs idle trial slots go to the teachers)",
        f"  + {spec.seeds} '{GROUPNORM_PICK}' trial(s): the teacher with norm=group (DP-SGD's architecture), Table II",
        f"stage 2 'search': OptunaSearch (multi-objective TPE), minimise {' & '.join(OBJECTIVES)} on the validation set "
        f"({teacher.resolved_n_val} validation non-members vs half of the members; search trials never load the test images); "
        f"studies in {optuna_url(spec)}",
        "  budget per defense and seed: " + ", ".join(f"{d}={spec.num_samples[d]}" for d in spec.defenses)
        + (" (equal)" if len({spec.num_samples[d] for d in spec.defenses}) == 1 else " (UNEQUAL: not a fair comparison)"),
    ]
    for s in plan:
        lines.append(f"  {s.name}: {s.num_samples} trial(s); " + "; ".join(p.describe() for p in s.space))
    if spec.refine_trials:
        lines.append(f"refine (--refine-picks): for each baseline pick with no trial within tolerance of AKD's pick, "
                     f"{spec.refine_trials} more trial(s) in a narrowed space, up to {spec.refine_rounds} round(s) "
                     f"(at most {spec.refine_trials * spec.refine_rounds * 2 * (len(spec.defenses) - ('akd' in spec.defenses))} "
                     "extra per seed, not in the total)")
    total = spec.seeds * (2 + spec.references) + sum(s.num_samples for s in plan)
    lines.append(f"total: {total} trials; results -> {join(spec.sweep_uri, RESULTS)} (Parquet, method=...)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Inside a trial: the Tune driver and the Train worker
# ------------------------------------------------------------------------------------------------
def _finalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf objectives are failures: status 'failed', objective null (never a fake number)."""
    row = dict(row)
    for key, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            row[key] = None
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


def _rewrite_teacher(out: Path, cfg: RunConfig) -> None:
    """The run's config.json names teacher and references by their sweep URIs, not the worker's copies."""
    path = out / CONFIG_FILE
    if path.is_file():
        data = json.loads(path.read_text())
        data.update(teacher_checkpoint=cfg.teacher_checkpoint, reference_checkpoints=cfg.reference_checkpoints)
        path.write_text(json.dumps(data, indent=2) + "\n")


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: ``run(cfg)`` into a temporary folder, reported as the run's checkpoint."""
    import ray.train

    if ray.train.get_checkpoint() is not None:
        return  # this run already finished and uploaded its folder: Train re-reports its metrics
    from akdray.run import run

    cfg = from_dict(loop_config["cfg"])
    with tempfile.TemporaryDirectory(prefix="akdray-trial-") as tmp:
        local = cfg
        if cfg.teacher_checkpoint and "://" in cfg.teacher_checkpoint:  # fetch it from the shared storage
            teacher_dir = ray.train.Checkpoint(cfg.teacher_checkpoint).to_directory(os.path.join(tmp, "teacher"))
            local = cfg.replace(teacher_checkpoint=teacher_dir)
        local = localize_references(local, tmp)
        out = Path(tmp) / "run"
        try:
            row = run(local, out)
        except (ConfigError, DataError) as exc:  # can never succeed: a failed row now, no retries
            out.mkdir()
            row = failed_row(cfg.to_dict(), f"bad input: {exc}")
        row.update(teacher_checkpoint=cfg.teacher_checkpoint, reference_checkpoints=cfg.reference_checkpoints)
        _rewrite_teacher(out, cfg)
        row = _finalize_row(row)
        (out / ROW_FILE).write_text(json.dumps(row, indent=2) + "\n")
        # Train gets a short summary; the full row travels in the checkpoint (row.json).
        summary = {k: row.get(k) for k in SUMMARY_KEYS}
        ray.train.report(summary, checkpoint=ray.train.Checkpoint.from_directory(str(out)))


def _storage_uri(path: str, meta: Mapping[str, Any]) -> str:
    """A Ray filesystem path -> a URI usable anywhere (local path or scheme://bucket/key)."""
    scheme = meta.get("scheme")
    return path if not scheme or "://" in path else f"{scheme}://{path}"


def trial_driver(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: launch one Ray Train run and forward its row to Tune."""
    from ray.train import FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config, meta, _pick = split_trial_config(config)
    try:
        cfg = from_dict(config)  # the same field names end to end; refuses unknown keys
    except ConfigError as exc:  # e.g. a searched value outside what the config allows: no retries
        tune.report(failed_row(config, f"bad input: {exc}"))
        return
    trial_id = tune.get_context().get_trial_id()
    gpus, cpus = float(meta["gpus"]), float(meta["cpus"])
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "meta": meta, "trial_id": trial_id},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=gpus > 0, resources_per_worker=resources),
        run_config=RayRunConfig(name=trial_id, storage_path=meta["runs_uri"],
                                failure_config=FailureConfig(max_failures=int(meta["train_max_failures"]))),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {trial_id} finished without a checkpoint")
    uri = _storage_uri(result.checkpoint.path, meta)
    row = json.loads(read_bytes(join(uri, ROW_FILE)))
    # Summary keys first: Tune's progress table shows the first numeric metrics of a result.
    tune.report({**{k: row.get(k) for k in SUMMARY_KEYS}, **row, "checkpoint": uri})


trial_driver._progress_metrics = SUMMARY_KEYS  # what Tune prints when a trial finishes


# ------------------------------------------------------------------------------------------------
# Optuna
# ------------------------------------------------------------------------------------------------
def _objectives_ok(result: Mapping[str, Any], metrics) -> bool:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    values = [result.get(m) for m in names]
    return result.get("status") == "ok" and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


class FailureAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna ``FAIL`` for failed or non-finite runs.

    Ray 2.60's OptunaSearch would call ``study.tell(trial, [None, None])`` for a multi-objective
    result with missing values (Optuna refuses, Ray only logs a warning, and the trial stays RUNNING
    forever) or tell NaN. Here such a trial is told ``TrialState.FAIL`` with no values: it is left out
    of the Pareto front and of TPE's model, and optuna-dashboard shows it as failed. The Tune trial
    id (and the error text of a failed run) are stored as Optuna user attributes.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        failed = error or result is None or not _objectives_ok(result, self.metric)
        if ot_trial is not None and trial_id not in self._completed_trials:
            try:
                ot_trial.set_user_attr("tune_trial_id", trial_id)
                if failed and result:
                    ot_trial.set_user_attr("akdray_error", str(result.get("error"))[:500])
            except Exception:  # noqa: BLE001 - user attributes are best effort
                pass
        if failed:
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


def _optuna_db_path(spec: SweepSpec) -> str:
    if "://" not in spec.sweep_uri:
        return join(spec.sweep_uri, OPTUNA_DB)
    return os.path.join(cache_root(), "sweeps", spec.sweep_id or spec.name, OPTUNA_DB)


def optuna_url(spec: SweepSpec) -> str:
    """SQLAlchemy URL of the sweep's Optuna database (``optuna-dashboard <url>``)."""
    return f"sqlite:///{_optuna_db_path(spec)}"


def optuna_storage(spec: SweepSpec):
    """The RDB storage of every study of the sweep; for s3:// sweeps a local copy synced to SWEEP_DIR."""
    path = _optuna_db_path(spec)
    remote = join(spec.sweep_uri, OPTUNA_DB)
    if "://" in spec.sweep_uri and not os.path.exists(path) and exists(remote):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(read_bytes(remote))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})


def _close_study(spec: SweepSpec, study: Study) -> None:
    """After a search: leftover RUNNING Optuna trials (driver died between ask and tell) -> FAIL."""
    storage = optuna_storage(spec)
    ot_study = optuna.load_study(study_name=study.name, storage=storage)
    for t in ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        ot_study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if "://" in spec.sweep_uri:
        write_bytes(join(spec.sweep_uri, OPTUNA_DB), Path(_optuna_db_path(spec)).read_bytes())


# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------
def trial_dirname(trial) -> str:
    return trial.trial_id


def _meta(spec: SweepSpec, stage: str, study: str) -> dict[str, Any]:
    return {
        "sweep_id": spec.sweep_id, "stage": stage, "study": study, "runs_uri": join(spec.sweep_uri, RUNS_DIR),
        "scheme": spec.sweep_uri.split("://")[0] if "://" in spec.sweep_uri else "",
        "cpus": spec.cpus_per_trial, "gpus": spec.gpus_per_trial or 0.0,
        "train_max_failures": spec.train_max_failures,
    }


def _stage_marker(spec: SweepSpec, experiment: str) -> str:
    return join(spec.sweep_uri, STAGES_DIR, f"{experiment}.done.json")


class SweepInterrupted(RuntimeError):
    """A stage stopped before all its trials finished (Ctrl-C): the sweep can be resumed."""


def _run_experiment(spec: SweepSpec, experiment: str, param_space: dict, num_samples: int, search_alg,
                    resume: bool, expected: int) -> None:
    """Fit (or restore and finish) one Tune experiment; mark it done once all its trials finished."""
    marker = _stage_marker(spec, experiment)
    if exists(marker):
        print(f"akdray sweep: {experiment} already complete, skipped")
        return
    trainable = tune.with_resources(trial_driver, DRIVER_RESOURCES)
    trainable._progress_metrics = SUMMARY_KEYS
    path = join(spec.sweep_uri, experiment)
    if resume and tune.Tuner.can_restore(path):
        print(f"akdray sweep: resuming {experiment} from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=num_samples,
                                        max_concurrent_trials=spec.max_concurrent, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=experiment, storage_path=spec.sweep_uri, verbose=spec.verbose,
                callbacks=[ParquetSink(spec.sweep_uri, experiment)],
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


def recorded_trials(spec: SweepSpec, experiment: str) -> int:
    """Trials of an experiment that have a results row (ok or failed)."""
    df = read_dataset(spec.sweep_uri, RESULTS)
    if df.empty:
        return 0
    return int(df.loc[(df["experiment"] == experiment) & (df["sweep_id"] == spec.sweep_id), "trial_id"].nunique())


def teachers(spec: SweepSpec) -> dict[int, str]:
    """Teacher checkpoint URI per seed, from the results dataset (status ok only)."""
    df = read_dataset(spec.sweep_uri, RESULTS)
    if df.empty:
        return {}
    ok = df[(df["stage"] == "teacher") & (df["status"] == "ok") & (df["sweep_id"] == spec.sweep_id)]
    if "pick" in ok:
        ok = ok[ok["pick"].fillna("") != GROUPNORM_PICK]  # the groupnorm baseline teaches no student
    ok = ok.sort_values("recorded_at")
    return {int(r.seed): str(r.checkpoint) for r in ok.itertuples() if isinstance(r.checkpoint, str)}


def teacher_cpus(spec: SweepSpec) -> float:
    """CPU-only sweeps with fewer seeds than trial slots give each teacher the idle slots (up to 8 CPUs)."""
    if spec.gpus_per_trial or not spec.max_concurrent:
        return spec.cpus_per_trial
    slots = max(1, spec.max_concurrent // spec.seeds)
    return max(spec.cpus_per_trial, min(8.0, spec.cpus_per_trial * slots))


def seed_references(spec: SweepSpec, seed: int, found: dict[tuple[str, int], list[str]]) -> str:
    """The reference checkpoints of one seed's data draw, comma-separated ("" without references)."""
    cfg = base_config(spec, "teacher", seed)
    return ",".join(found.get((cfg.preset, cfg.resolved_data_seed), []))


def run_reference_stage(spec: SweepSpec, resume: bool) -> dict[tuple[str, int], list[str]]:
    """Stage 0: ``spec.references`` reference models per seed (see :mod:`akdray.sweep_references`)."""
    items = reference_items([base_config(spec, "teacher", s) for s in spec.seed_list], spec.references)
    if items:
        _run_experiment(spec, "reference", reference_space(items, _meta(spec, "reference", "reference")), 1, None,
                        resume, expected=len(items))
    return found_references(spec.sweep_uri, spec.sweep_id, "reference")


def run_teacher_stage(spec: SweepSpec, resume: bool, refs: dict[tuple[str, int], list[str]] | None = None) -> dict[int, str]:
    """Stage 1: the teacher of every seed, and beside it the ``teacher-groupnorm`` baseline (norm=group,
    the architecture DP-SGD trains; a row of Table II, never distilled from)."""
    items = []
    for s in spec.seed_list:
        cfg = base_config(spec, "teacher", s, references=seed_references(spec, s, refs or {}))
        items += [{"pick": None, "cfg": cfg.to_dict()}, {"pick": GROUPNORM_PICK, "cfg": cfg.replace(norm="group").to_dict()}]
    space = {META_KEY: {**_meta(spec, "teacher", "teacher"), "cpus": teacher_cpus(spec)},
             CONFIRM_KEY: tune.grid_search(items)}
    _run_experiment(spec, "teacher", space, 1, None, resume, expected=len(items))
    return teachers(spec)


def run_search_stage(spec: SweepSpec, study: Study, teacher_uri: str, resume: bool, references: str = "") -> None:
    """One multi-objective Optuna search of a defense against one teacher."""

    base = base_config(spec, study.defense, study.seed, teacher=teacher_uri, references=references)
    base = base.replace(eval_split="val")  # the objectives: validation set only; test images never loaded
    space = base.to_dict()
    space.update({p.name: p.domain() for p in study.space})
    space[META_KEY] = _meta(spec, "search", study.defense)
    startup = min(10, max(2, study.num_samples // 2))
    sampler = optuna.samplers.TPESampler(seed=spec.search_seed + study.seed * 101 + DEFENSES.index(study.defense)
                                         + zlib.crc32(study.tag.encode()) % 100_003,
                                         n_startup_trials=startup)
    searcher = FailureAwareOptunaSearch(metric=list(OBJECTIVES), mode=list(MODES), sampler=sampler,
                                    study_name=study.name, storage=optuna_storage(spec))
    _run_experiment(spec, f"search-{study.name}", space, study.num_samples, searcher, resume,
                    expected=study.num_samples)
    _close_study(spec, study)


def _run_confirm_experiment(spec: SweepSpec, experiment: str, items: list[tuple[str, dict]], resume: bool) -> None:
    if not items:
        return
    space = {META_KEY: _meta(spec, "confirm", "confirm"),
             CONFIRM_KEY: tune.grid_search([{"pick": label, "cfg": cfg} for label, cfg in items])}
    _run_experiment(spec, experiment, space, 1, None, resume, expected=len(items))


def confirm_teachers(spec: SweepSpec) -> dict[tuple[str, int], str]:
    """Checkpoint URI of each confirmation teacher, by (preset, seed)."""
    df = read_dataset(spec.sweep_uri, RESULTS)
    if df.empty or "pick" not in df:
        return {}
    ok = df[(df["stage"] == "confirm") & (df["pick"] == "teacher") & (df["status"] == "ok")
            & (df["sweep_id"] == spec.sweep_id)]
    return {(str(r.preset), int(r.seed)): str(r.checkpoint) for r in ok.itertuples() if isinstance(r.checkpoint, str)}


def run_confirm_stage(spec: SweepSpec, configs: list[tuple[str, dict]], resume: bool = False) -> pd.DataFrame:
    """Re-run picked configurations (``analysis.picks.confirmation_configs``) with several seeds.

    Reference models of every (preset, seed) first (``confirm-reference``, ``spec.references`` each),
    then the teachers (experiment ``confirm-teacher``); then every other pick against the confirmation
    teacher of its own preset and seed (``confirm-picks``). Rows: ``stage == "confirm"``, ``pick``.
    """
    spec = auto_resources(spec)
    t0 = time.perf_counter()
    plain = [from_dict({**c, "method": "teacher", "teacher_checkpoint": "", "reference_checkpoints": ""}) for _, c in configs]
    items = reference_items(plain, spec.references)
    if items:
        _run_experiment(spec, "confirm-reference", reference_space(items, _meta(spec, "confirm-reference", "reference")),
                        1, None, resume, expected=len(items))
    refs = found_references(spec.sweep_uri, spec.sweep_id, "confirm-reference")
    configs = [(label, {**c, "reference_checkpoints": ",".join(refs.get((p.preset, p.resolved_data_seed), []))})
               for (label, c), p in zip(configs, plain)]
    _run_confirm_experiment(spec, "confirm-teacher", [(l, c) for l, c in configs if c["method"] == "teacher"], resume)
    found = confirm_teachers(spec)
    rest = []
    for label, cfg in configs:
        if cfg["method"] == "teacher":
            continue
        if cfg["method"] in METHODS_NEEDING_TEACHER:
            uri = found.get((cfg["preset"], int(cfg["seed"])))
            if uri is None:
                print(f"akdray confirm: no confirmation teacher for {cfg['preset']} seed {cfg['seed']}; skipping {label}")
                continue
            cfg = {**cfg, "teacher_checkpoint": uri}
        rest.append((label, cfg))
    _run_confirm_experiment(spec, "confirm-picks", rest, resume)
    print(f"akdray confirm: done in {time.perf_counter() - t0:.0f} s -> {spec.sweep_uri}")
    df = read_dataset(spec.sweep_uri, RESULTS)
    return df[(df["sweep_id"] == spec.sweep_id) & (df["stage"] == "confirm")] if not df.empty else df


# ------------------------------------------------------------------------------------------------
# The whole sweep
# ------------------------------------------------------------------------------------------------
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
            # Experiment settings come from the stored sweep; how to run it (resources) from this call.
            return replace(stored, cpus_per_trial=spec.cpus_per_trial, gpus_per_trial=spec.gpus_per_trial,
                           max_concurrent=spec.max_concurrent, verbose=spec.verbose)
        validate(spec)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        spec = replace(spec, sweep_id=spec.sweep_id or f"{spec.name}-{stamp}-{uuid.uuid4().hex[:6]}")
        create_exclusive(path, spec.to_json().encode())
        return spec
    except FileExistsError:
        raise ConfigError(f"sweep {spec.sweep_uri} already exists; use --resume or another --name") from None
    except OSError as exc:
        raise StorageError(f"sweep storage {spec.sweep_uri} cannot be written: {exc}") from None


def probe_writable(uri: str) -> None:
    """Write and delete a small file under ``uri`` (OSError if the storage refuses)."""
    probe = join(uri, f".write-probe-{uuid.uuid4().hex[:8]}")
    write_bytes(probe, b"probe\n")
    fs, path = resolve(probe)
    fs.delete_file(path)


def run_sweep(spec: SweepSpec, resume: bool = False, pick_fn=None) -> pd.DataFrame:
    """Stage 1 (teachers) then stage 2 (one Optuna search per defense and seed); returns the results.

    With ``spec.refine_trials`` and a ``pick_fn`` (``analysis.picks.matched_picks``), unmatched
    baseline picks then get refinement trials (:func:`akdray.sweep_refine.refine_picks`).

    ``spec`` may come from :func:`init_sweep` already (it then has a ``sweep_id``), as the CLI does
    to refuse bad storage before Ray starts.
    """
    spec = auto_resources(spec if spec.sweep_id else init_sweep(spec, resume))
    plan = validate(spec)
    t0 = time.perf_counter()
    refs = run_reference_stage(spec, resume)
    found = run_teacher_stage(spec, resume, refs)
    for study in plan:
        teacher = found.get(study.seed)
        if teacher is None:
            print(f"akdray sweep: no successful teacher for seed {study.seed}; skipping {study.name}")
            continue
        run_search_stage(spec, study, teacher, resume, seed_references(spec, study.seed, refs))
    if spec.refine_trials and pick_fn is not None:
        from akdray.sweep_refine import refine_picks

        refine_picks(spec, pick_fn, resume)
    print(f"akdray sweep: done in {time.perf_counter() - t0:.0f} s -> {spec.sweep_uri}")
    df = read_dataset(spec.sweep_uri, RESULTS)
    return df[df["sweep_id"] == spec.sweep_id] if not df.empty else df


def pareto_front(df: pd.DataFrame, x: str = OBJECTIVES[0], y: str = OBJECTIVES[1]) -> pd.DataFrame:
    """Successful rows not dominated in (x, y), both minimised; sorted by x."""
    ok = df[df["status"] == "ok"]
    return ok[pareto_mask(ok[x], ok[y])].sort_values([x, y])


def _privacy(r, prefix: str = "val_") -> str:
    """(val_)leak, then each attack's AUC (loss / cal / lira; "-" where not run), and (val_)nkid."""
    aucs = " ".join(f"{a}={v:.3f}" if isinstance(v := getattr(r, f"{prefix}{a}_auc", None), float) and math.isfinite(v)
                    else f"{a}=-" for a in ("loss", "cal", "lira"))
    return f"{prefix}leak={getattr(r, prefix + 'leak'):.4f} (AUC {aucs}) {prefix}nkid={getattr(r, prefix + 'nkid'):.4f}"


def format_front(df: pd.DataFrame) -> str:
    """Per study: the teachers and the non-dominated points with their searched fields (validation set)."""
    if df.empty:
        return "no results"
    lines = []
    teacher = df[(df["stage"] == "teacher") & (df["status"] == "ok")]
    for r in teacher.itertuples():
        label = getattr(r, "pick", None) if isinstance(getattr(r, "pick", None), str) else "teacher"
        lines.append(f"{label} seed {r.seed}: {_privacy(r)}")
    for (defense, seed), group in df[df["stage"] == "search"].groupby(["study", "seed"], observed=True):
        params = [p.name for p in search_space(str(defense), RunConfig())]
        failed = int((group["status"] != "ok").sum())
        lines.append(f"{defense} seed {seed}: {len(group)} trial(s), {failed} failed; Pareto front:")
        for r in pareto_front(group).itertuples():
            values = ", ".join(f"{p}={getattr(r, p):.4g}" for p in params)
            lines.append(f"  {_privacy(r)}  ({values})")
    return "\n".join(lines)

