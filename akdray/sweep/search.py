"""The searchers: one multi-objective Optuna study per (defense, seed), all of a stage side by side.

:class:`StudyRouter` is the Tune searcher of a search stage: it holds one
:class:`FailureAwareOptunaSearch` per study and hands each new trial to the study that has used the
smallest share of its budget, so every study has trials in flight together and a trial slot is idle
only when no study has a trial left to suggest. Among studies with equal shares, the defense whose
trials run longest goes first (:data:`LONGEST_FIRST`). Each trial's result goes back to its own study.
Studies live in the sweep's SQLite database (``optuna-dashboard sqlite:///SWEEP_DIR/optuna.db``).
"""
from __future__ import annotations

import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, Mapping

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from akdray import seeds
from akdray.storage import exists, join, read_bytes, write_bytes
from akdray.sweep.meta import TrialMeta, search_trial
from akdray.sweep.spec import DEFENSES, MODES, OBJECTIVES, OPTUNA_DB, Study, SweepSpec, optuna_db_path

# Defenses by the run time of one search trial, longest first: DP-SGD trains the teacher's recipe
# with per-sample gradients (about 4x a plain step), AKD a GAN student, DMP the same student without
# a discriminator, Gauss nothing. Issuing each round's longest trials first (longest-processing-time-
# first scheduling) keeps the last round from ending with one slot running a DP-SGD trial while the
# others idle. Mean run seconds of the default sweep's search trials (cpu-small, 2 cores, 2026-11-30):
# dpsgd 227, akd 71, dmp 63, gauss 29 (docs/sweeps.md, "How a sweep runs").
LONGEST_FIRST = ("dpsgd", "akd", "dmp", "gauss")
assert sorted(LONGEST_FIRST) == sorted(DEFENSES), "every defense needs its place in LONGEST_FIRST"


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


class StudyRouter(Searcher):
    """One Tune searcher over several Optuna studies; each trial belongs to exactly one study.

    ``routes``: per study, its name, the fixed part of its trial config (RunConfig fields and the
    sweep metadata), its :class:`FailureAwareOptunaSearch` (holding the searched space) and its budget.
    """

    def __init__(self, routes: list[tuple[str, dict[str, Any], FailureAwareOptunaSearch, int]]):
        super().__init__(metric=list(OBJECTIVES), mode=list(MODES))
        self.routes = {name: (base, searcher, budget) for name, base, searcher, budget in routes}
        self.issued = {name: 0 for name in self.routes}
        self.owner: dict[str, str] = {}  # Tune trial id -> study name

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # every study brings its own space; the Tuner's param_space is empty

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id in self.owner:  # a restored trial asks again: same study, same Optuna trial
            name = self.owner[trial_id]
        else:
            open_studies = [n for n, (_, _, budget) in self.routes.items() if self.issued[n] < budget]
            if not open_studies:
                return Searcher.FINISHED
            name = min(open_studies, key=lambda n: (self.issued[n] / self.routes[n][2], self._duration_rank(n), n))
            self.issued[name] += 1
            self.owner[trial_id] = name
        base, searcher, _ = self.routes[name]
        return {**base, **searcher.suggest(trial_id)}

    def _duration_rank(self, name: str) -> int:
        return LONGEST_FIRST.index(self.routes[name][0]["method"])  # validate() admits only DEFENSES

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.owner.get(trial_id)
        if name is not None:
            self.routes[name][1].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__.copy(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))


def optuna_storage(spec: SweepSpec):
    """The RDB storage of every study of the sweep; for s3:// sweeps a local copy synced to SWEEP_DIR."""
    path = optuna_db_path(spec)
    remote = join(spec.sweep_uri, OPTUNA_DB)
    if "://" in spec.sweep_uri and not os.path.exists(path) and exists(remote):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(read_bytes(remote))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})


def study_searcher(spec: SweepSpec, study: Study, storage) -> FailureAwareOptunaSearch:
    """The Optuna searcher of one study: multi-objective TPE over the study's space, seeded per study."""
    startup = min(10, max(2, study.num_samples // 2))
    seed = (spec.search_seed + seeds.STUDY_SAMPLER.seed(study.seed) + DEFENSES.index(study.defense)
            + zlib.crc32(study.tag.encode()) % 100_003)
    return FailureAwareOptunaSearch(
        space={p.name: p.domain() for p in study.space}, metric=list(OBJECTIVES), mode=list(MODES),
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
        study_name=study.name, storage=storage)


def study_router(spec: SweepSpec, planned: list[tuple[Study, dict[str, Any], TrialMeta]]) -> StudyRouter:
    """The searcher of one search stage: ``planned`` = (study, fixed RunConfig fields, sweep metadata)."""
    storage = optuna_storage(spec)
    return StudyRouter([(s.name, search_trial(fixed, meta), study_searcher(spec, s, storage), s.num_samples)
                        for s, fixed, meta in planned])


def close_studies(spec: SweepSpec, studies: list[Study]) -> None:
    """After a stage: leftover RUNNING Optuna trials (driver died between ask and tell) -> FAIL;
    an s3:// sweep's local database is copied back to SWEEP_DIR."""
    storage = optuna_storage(spec)
    for study in studies:
        ot_study = optuna.load_study(study_name=study.name, storage=storage)
        for t in ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            ot_study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if "://" in spec.sweep_uri:
        write_bytes(join(spec.sweep_uri, OPTUNA_DB), Path(optuna_db_path(spec)).read_bytes())
