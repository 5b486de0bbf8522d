"""The confirmation stage (``sweeps/pareto.py --confirm SWEEP_DIR``): the matched picks on unseen seeds.

``analysis.picks.confirmation_configs`` turns a finished sweep's picks into (label, config) pairs,
one per confirmation seed (default 100-104, disjoint from every seed the search used). Three grid
experiments, each waiting for the one before: ``confirm-reference`` (the reference models of every
(preset, seed) draw), ``confirm-teacher`` (the teachers, audited with them) and ``confirm-picks``
(every other pick against the confirmation teacher of its own preset and seed). Rows have
``stage == "confirm"`` and ``pick`` = the label; the report's tables use them.
"""
from __future__ import annotations

import time

import pandas as pd

from akdray.config import METHODS_NEEDING_TEACHER, from_dict
from akdray.sweep.references import found_references, item_runs, reference_items
from akdray.sweep.spec import SweepSpec, grid_space
from akdray.sweep.stages import auto_resources, run_experiment, sweep_rows, trial_meta


def _run_grid(spec: SweepSpec, experiment: str, items: list[tuple[str, dict]], resume: bool) -> None:
    if items:
        space = grid_space(trial_meta(spec, "confirm", "confirm"), [{"pick": label, "cfg": cfg} for label, cfg in items])
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
        meta = trial_meta(spec, "confirm-reference", "reference")
        run_experiment(spec, "confirm-reference", grid_space(meta, items), 1, None, resume, expected=item_runs(items))
    refs = found_references(spec.sweep_uri, spec.sweep_id, "confirm-reference")
    configs = [(label, {**c, "reference_checkpoints": ",".join(refs.get((p.preset, p.resolved_data_seed), []))})
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
    _run_grid(spec, "confirm-picks", rest, resume)
    print(f"akdray confirm: done in {time.perf_counter() - t0:.0f} s -> {spec.sweep_uri}")
    return sweep_rows(spec, stage="confirm")
