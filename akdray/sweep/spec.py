"""What a sweep is: its search spaces, the stored specification, validation and the printed plan.

Runs in the driver only (no Ray Train, no torch). A sweep is stored as ``SWEEP_DIR/sweep.json``
(:class:`SweepSpec`): the experiment settings a ``--resume`` replays, beside this call's resources
(CPUs/GPUs per trial, concurrency), which a resume takes from its own command line.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ray import tune

from akdray.axes import MODES, REPORTED, SELECTION  # noqa: F401  (MODES: re-exported for akdray.sweep.search)
from akdray.config import ConfigError, RunConfig, make_config
from akdray.results import RESULTS, SWEEP_FILE
from akdray.schema import GROUPNORM_PICK
from akdray.storage import cache_root, join

DEFENSES = ("akd", "dmp", "dpsgd", "gauss")
# The search objectives are the selection axes of akdray.axes (val_leak, val_nkid; both minimised),
# measured on the validation block (akdray.evaluate). The test non-members are never loaded by a
# search trial (eval_split="val"); the report's tables use them (the reported axes leak, nkid).
OBJECTIVES, TEST_OBJECTIVES = SELECTION, REPORTED
DEFAULT_SAMPLES = {"akd": 3, "dmp": 3, "dpsgd": 3, "gauss": 3}  # equal budgets; cpu-small: about 15 min on 2 cores
SEARCH_KID_IMAGES = 50  # docs/sweeps.md "KID images while searching": NKID noise and ranking by image count
DEFAULT_REFERENCES = 2  # reference models per seed; each costs about one teacher training (no KID; docs/sweeps.md)
SMOKE_SAMPLES = {"akd": 1, "dmp": 1, "dpsgd": 1, "gauss": 1}  # --smoke-test: the ``tiny`` preset, one trial each
STAGES_DIR, RUNS_DIR, OPTUNA_DB = "stages", "runs", "optuna.db"


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
    # Ray Train workers per run: 1 = a worker group per run (Train restarts a crashed worker); 0 = Ray
    # Train's local mode, the run inside the Tune trial's own process (no Train controller, helper actors
    # or worker process per run; Tune retries a crashed trial). The CLI picks 0 for a local cluster it
    # starts itself, 1 with --address.
    train_workers: int = 1
    search_seed: int = 0
    references: int = DEFAULT_REFERENCES  # reference models per (data set, seed): lira and rmia attacks
    references_per_trial: int = 1  # reference models trained one after another by one Train worker
    # KID images per set of a search trial (its val_nkid objective), at most kid_max_images; 0 = kid_max_images,
    # which teacher and confirmation runs use.
    search_kid_images: int = SEARCH_KID_IMAGES
    refine_trials: int = 0  # --refine-picks: extra trials per unmatched baseline pick and round (0 = off)
    refine_rounds: int = 2  # at most this many refinement rounds (akdray.sweep.refine)
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
        data.setdefault("search_kid_images", 0)  # stored before the field: its search trials used kid_max_images
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


def study_space(spec: SweepSpec, defense: str, base: RunConfig | None = None) -> tuple[Param, ...]:
    """What a study of ``defense`` in ``spec`` searches: :func:`search_space` scaled to ``base`` (by default
    the sweep's own config of its first seed: its preset and ``--set`` values), less the fields
    ``--set`` fixed (``spec.fixed``). Stage 2, ``--refine-picks`` and the printed fronts use it."""
    base = base or base_config(spec, defense, spec.seed_list[0], teacher="(stage 1)")
    return tuple(p for p in search_space(defense, base) if p.name not in spec.fixed)


def search_config(spec: SweepSpec, base: RunConfig) -> RunConfig:
    """A search trial's fixed config: validation set only, KID on ``spec.search_kid_images`` pairs per set
    (never more than ``kid_max_images``, the count of every other trial; 0 in either means all)."""
    search, everywhere = spec.search_kid_images, base.kid_max_images
    images = min(search, everywhere) if search and everywhere else search or everywhere
    return base.replace(eval_split="val", kid_max_images=images)


def studies(spec: SweepSpec) -> list[Study]:
    """Stage-2 searches; a field in ``spec.fixed`` (set with ``--set``) is taken out of the search."""
    out = []
    for defense in spec.defenses:
        base = base_config(spec, defense, spec.seed_list[0], teacher="(stage 1)")
        space = study_space(spec, defense, base)
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
    if spec.train_workers not in (0, 1):
        raise ConfigError(f"--train-workers must be 0 (Ray Train's local mode) or 1, got {spec.train_workers}")
    if spec.max_failures < 0 or spec.train_max_failures < 0:  # Ray reads -1 as "retry forever"
        raise ConfigError(f"--max-failures must be >= 0, got {min(spec.max_failures, spec.train_max_failures)}")
    if {"method", "teacher_checkpoint", "reference_checkpoints", "eval_split"} & set(spec.overrides):
        raise ConfigError("--set method=/teacher_checkpoint=/reference_checkpoints=/eval_split= is not allowed in a "
                          "sweep (the stages set them)")
    if spec.refine_trials < 0 or spec.refine_rounds < 1:
        raise ConfigError("--refine-trials must be >= 0 and --refine-rounds >= 1")
    if spec.search_kid_images < 0 or spec.search_kid_images == 1:
        raise ConfigError(f"--search-kid-images must be 0 (kid_max_images) or at least 2, got {spec.search_kid_images}")
    if spec.references_per_trial < 1:
        raise ConfigError(f"--references-per-trial must be at least 1, got {spec.references_per_trial}")
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
        return  # URIs (s3://, file://) are fetched by each worker into its cache (akdray.storage.fetch_folder)
    from akdray.data.aligned import DataError, list_images  # torch: not in the trial driver's imports
    from akdray.data.splits import check_carve

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


def optuna_url(spec: SweepSpec) -> str:
    """SQLAlchemy URL of the sweep's Optuna database (``optuna-dashboard <url>``)."""
    return f"sqlite:///{optuna_db_path(spec)}"


def optuna_db_path(spec: SweepSpec) -> str:
    """The Optuna database: in the sweep folder, or for s3:// sweeps a local copy synced there after a stage."""
    if "://" not in spec.sweep_uri:
        return join(spec.sweep_uri, OPTUNA_DB)
    return os.path.join(cache_root(), "sweeps", spec.sweep_id or spec.name, OPTUNA_DB)


def _pairs(kid_images: int, n_val: int) -> str:
    return f"the first {kid_images}" if 0 < kid_images < n_val else f"all {n_val}"


def describe(spec: SweepSpec, plan: list[Study]) -> str:
    """The human-readable plan (``--dry-run``)."""
    gpus = "auto (1 if the cluster has GPUs, else 0)" if spec.gpus_per_trial is None else f"{spec.gpus_per_trial:g}"
    teacher = base_config(spec, "teacher", spec.seed_list[0])
    lines = [
        f"sweep {spec.name!r} -> {spec.sweep_uri}",
        f"  preset {spec.preset}; overrides {spec.overrides or '{}'}",
        f"  per trial: {'the run in the trial process (Ray Train local mode)' if spec.train_workers == 0 else '1 Ray Train worker'} "
        f"with {spec.cpus_per_trial:g} CPU, GPU {gpus}; "
        f"max concurrent trials: {spec.max_concurrent or 'auto (cluster CPUs or GPUs / per-trial)'}",
        (f"  retries: {spec.max_failures} by Tune (trial crash)" if spec.train_workers == 0 else
         f"  retries: {spec.train_max_failures} by Ray Train (worker crash), {spec.max_failures} by Tune (trial crash)"),
        f"stage 0 'reference': {spec.references} reference model(s) per seed (teacher recipe, no KID), "
        f"{-(-spec.references // spec.references_per_trial) * spec.seeds} trial(s) "
        f"({spec.references_per_trial} per trial); every later trial runs the loss, lira and rmia attacks",
        f"stage 1 'teacher': {spec.seeds} trial(s), seeds {spec.seed_list} "
        f"(epochs={teacher.epochs}+{teacher.epochs_decay}, image_size={teacher.image_size}, n_train={teacher.n_train}; "
        f"without GPUs idle trial slots go to the teachers)",
        f"  + {spec.seeds} '{GROUPNORM_PICK}' trial(s): the teacher with norm=group (DP-SGD's architecture), Table II",
        f"stage 2 'search': OptunaSearch (multi-objective TPE), minimise {' & '.join(OBJECTIVES)} on the validation set "
        f"({teacher.resolved_n_val} validation non-members vs half of the members; search trials never load the test images); "
        f"studies side by side in one Tune experiment (each trial routed to its own Optuna study) in {optuna_url(spec)}",
        f"  val_nkid of a search trial on {_pairs(search_config(spec, teacher).kid_max_images, teacher.resolved_n_val)} "
        f"validation pairs (--search-kid-images); teachers and confirmation runs on "
        f"{_pairs(teacher.kid_max_images, teacher.resolved_n_val)} (kid_max_images)",
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
    total = spec.seeds * (2 + -(-spec.references // spec.references_per_trial)) + sum(s.num_samples for s in plan)
    lines.append(f"total: {total} trials; results -> {join(spec.sweep_uri, RESULTS)} (Parquet, method=...)")
    return "\n".join(lines)
