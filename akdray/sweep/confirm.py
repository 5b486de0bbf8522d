"""The confirmation stage (``sweeps/pareto.py --confirm SWEEP_DIR``): the matched picks on unseen seeds.

``analysis.picks.confirmation_configs`` turns a finished sweep's picks into (label, config) pairs,
one per confirmation seed (default 100-104, disjoint from every seed the search used). Three grid
experiments, each waiting for the one before: ``confirm-reference`` (the reference models of every
(preset, seed) draw), ``confirm-teacher`` (the teachers, audited with them) and ``confirm-picks``
(every other pick against the confirmation teacher of its own preset and seed). Rows have
``stage == "confirm"`` and ``pick`` = the label; the report's tables use them.

A (pick, seed) whose recipe (:mod:`akdray.recipe`) already has an ok confirmation run is not run
again: after ``--refine-picks`` changed a pick, ``--confirm`` runs only the new recipe's seeds, in an
experiment of its own (``confirm-picks-<digest>``).
"""
from __future__ import annotations

import hashlib
import time

import pandas as pd

from akdray.config import METHODS_NEEDING_TEACHER, from_dict
from akdray.recipe import recipe_key
from akdray.reference_recipe import draw_key
from akdray.storage import exists, join
from akdray.sweep.references import found_references, item_runs, reference_items
from akdray.sweep.meta import TrialMeta, grid_space
from akdray.sweep.spec import SweepSpec
from akdray.sweep.stages import auto_resources, done_marker, run_experiment, sweep_rows

PICKS_EXPERIMENT = "confirm-picks"


def _run_grid(spec: SweepSpec, experiment: str, items: list[tuple[str, dict]], resume: bool) -> None:
    if items:
        space = grid_space(TrialMeta.of(spec, "confirm", "confirm"), [{"pick": label, "cfg": cfg} for label, cfg in items])
        run_experiment(spec, experiment, space, 1, None, resume, expected=len(items))


def confirm_teachers(spec: SweepSpec) -> dict[tuple[str, int], str]:
    """Checkpoint URI of each confirmation teacher, by (preset, seed)."""
    ok = sweep_rows(spec, stage="confirm", pick="teacher", status="ok")
    return {(str(r.preset), int(r.seed)): str(r.checkpoint) for r in ok.itertuples() if isinstance(r.checkpoint, str)}


def run_confirm_stage(spec: SweepSpec, configs: list[tuple[str, dict]], resume: bool = False) -> pd.DataFrame:
    """Re-run picked configurations with their confirmation seeds; returns the confirmation rows."""
    spec = auto_resources(spec)
    t0 = time.perf_counter()
    plain = [from_dict({**c, "method": "teacher", "teacher_checkpoint": "", "reference_checkpoints": ""}) for _, c in configs]
    items = reference_items(plain, spec.references, spec.references_per_trial)
    if items:
        meta = TrialMeta.of(spec, "confirm-reference", "reference")
        run_experiment(spec, "confirm-reference", grid_space(meta, items), 1, None, resume, expected=item_runs(items))
    refs = found_references(spec.sweep_uri, spec.sweep_id, "confirm-reference")
    configs = [(label, {**c, "reference_checkpoints": ",".join(refs.get(draw_key(p), []))})
               for (label, c), p in zip(configs, plain)]
    _run_grid(spec, "confirm-teacher", [(label, c) for label, c in configs if c["method"] == "teacher"], resume)
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
    todo = unconfirmed(spec, rest)
    if len(todo) < len(rest):
        print(f"akdray confirm: {len(rest) - len(todo)} of {len(rest)} pick runs already confirmed with their recipe")
    name = picks_experiment(spec, todo)
    restoring = name == PICKS_EXPERIMENT and resume and exists(join(spec.sweep_uri, name))
    _run_grid(spec, name, rest if restoring else todo, resume)  # a restored grid counts all its trials
    if restoring:  # it ran its own stored grid: the picks may have changed since (--refine-picks)
        todo = unconfirmed(spec, rest)
        _run_grid(spec, picks_experiment(spec, todo), todo, resume)
    print(f"akdray confirm: done in {time.perf_counter() - t0:.0f} s -> {spec.sweep_uri}")
    return sweep_rows(spec, stage="confirm")


def unconfirmed(spec: SweepSpec, items: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The (label, config) items with no ok confirmation row of the same seed and recipe (whatever its
    label: picks that share a trial may be labelled together or apart)."""
    ok = sweep_rows(spec, stage="confirm", status="ok")
    done = set() if ok.empty else {(int(r["seed"]), recipe_key(r)) for _, r in ok.iterrows()}
    return [(label, cfg) for label, cfg in items if (int(cfg["seed"]), recipe_key(cfg)) not in done]


def picks_experiment(spec: SweepSpec, items: list[tuple[str, dict]]) -> str:
    """``confirm-picks`` the first time (and to resume it); once that one is done,
    ``confirm-picks-<digest of items>``."""
    if not exists(done_marker(spec.sweep_uri, PICKS_EXPERIMENT)):
        return PICKS_EXPERIMENT
    digest = hashlib.sha256(repr(sorted((label, int(c["seed"]), recipe_key(c)) for label, c in items)).encode())
    return f"{PICKS_EXPERIMENT}-{digest.hexdigest()[:8]}"
