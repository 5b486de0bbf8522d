"""What a Tune trial config carries beside its RunConfig fields, typed on both sides of Tune.

The driver (:mod:`akdray.sweep.stages`) builds a :class:`TrialMeta` per experiment; it becomes a dict
only where it enters Tune (:func:`grid_space`, :func:`search_trial`), because Tune stores trial
configs and the searcher's state with the experiment. The trial (:mod:`akdray.sweep.trial`) and the
Parquet sink (:mod:`akdray.sweep.sink`) read a config back with :func:`split_trial_config` into a
:class:`TrialConfig` (a named tuple) whose ``meta`` is a :class:`TrialMeta` again. Metadata stored by
earlier sweeps (without ``train_workers``; with the removed ``hooks`` of akdray <= 0.1.0) still loads,
so those sweeps resume.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, NamedTuple

from ray import tune

from akdray.storage import join
from akdray.sweep.spec import RUNS_DIR, SweepSpec

META_KEY = "_akdray"  # trial-config key holding the sweep metadata (never a RunConfig field)
CONFIRM_KEY = "_confirm"  # grid trials (reference, teacher, confirm): {"pick": label, "cfg": flat RunConfig dict}


@dataclass(frozen=True)
class TrialMeta:
    """The sweep metadata of every trial of one experiment: where its rows and runs go, what it holds."""

    sweep_id: str | None = None
    stage: str | None = None  # reference | teacher | search | confirm | confirm-reference
    study: str | None = None  # the defense of a search trial; the stage's kind for grid trials
    runs_uri: str = ""  # SWEEP_DIR/runs: Ray Train's storage of the trials' run folders
    scheme: str = ""  # the sweep storage's URI scheme ("" for a local path): Ray hands back bare paths
    cpus: float = 1.0  # of the trial's run (the Train worker's, or in local mode the trial's own)
    gpus: float = 0.0
    train_max_failures: int = 2  # Train retries of a crashed worker
    train_workers: int = 1  # 0: Ray Train's local mode, the run in the Tune trial's own process

    @classmethod
    def of(cls, spec: SweepSpec, stage: str, study: str) -> "TrialMeta":
        """The metadata of a trial of ``spec`` in ``stage``."""
        uri = spec.sweep_uri
        return cls(sweep_id=spec.sweep_id, stage=stage, study=study, runs_uri=join(uri, RUNS_DIR),
                   scheme=uri.split("://")[0] if "://" in uri else "", cpus=float(spec.cpus_per_trial),
                   gpus=float(spec.gpus_per_trial or 0.0), train_max_failures=spec.train_max_failures,
                   train_workers=spec.train_workers)

    def with_cpus(self, cpus: float) -> "TrialMeta":
        return replace(self, cpus=float(cpus))

    @property
    def local_mode(self) -> bool:
        """Ray Train's local mode: the run in the Tune trial's own process (``train_workers = 0``)."""
        return int(self.train_workers) == 0

    def storage_uri(self, path: str) -> str:
        """A Ray filesystem path -> a URI usable anywhere (local path or scheme://bucket/key)."""
        return path if not self.scheme or "://" in path else f"{self.scheme}://{path}"

    def to_dict(self) -> dict[str, Any]:
        """The form Tune stores (plain JSON-like values)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "TrialMeta":
        """The metadata of a stored trial config; keys it no longer has (``hooks``) are ignored and keys
        added since (``train_workers``) take their default, so a stored sweep resumes."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


class TrialConfig(NamedTuple):
    """A Tune trial config taken apart (:func:`split_trial_config`)."""

    config: dict[str, Any]  # the flat RunConfig dict
    meta: TrialMeta
    pick: str | None  # a grid trial's label (e.g. "teacher-groupnorm", a confirmation pick), else None
    pack: list[dict[str, Any]]  # configs a packed trial runs after ``config`` (--references-per-trial)


def split_trial_config(config: Mapping[str, Any]) -> TrialConfig:
    """A Tune trial config -> (flat RunConfig dict, sweep metadata, grid pick label or None, packed configs).

    A packed trial (``--references-per-trial N``) trains ``cfg`` and then each config of ``pack``
    in the same Train worker; every one of them becomes a results row of its own.
    """
    config = dict(config)
    meta = TrialMeta.from_dict(config.pop(META_KEY, None))
    choice = config.pop(CONFIRM_KEY, None)
    if not choice:
        return TrialConfig(config, meta, None, [])
    config.update(choice["cfg"])
    return TrialConfig(config, meta, choice["pick"], list(choice.get("pack", [])))


def grid_space(meta: TrialMeta, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A grid experiment (references, teachers, confirmation): one trial per
    ``{"pick": label or None, "cfg": flat RunConfig dict}``, every trial carrying ``meta``."""
    return {META_KEY: meta.to_dict(), CONFIRM_KEY: tune.grid_search(items)}


def search_trial(fixed: Mapping[str, Any], meta: TrialMeta) -> dict[str, Any]:
    """The fixed part of a search trial's config: its RunConfig fields and ``meta``."""
    return {**fixed, META_KEY: meta.to_dict()}
