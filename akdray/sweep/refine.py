"""``--refine-picks``: extra Optuna trials around the target of every unmatched baseline pick.

After the searches, the matched picks (``analysis.picks.matched_picks``, handed in as ``pick_fn`` so
this package does not import the analysis) say which baseline picks found no trial within tolerance
of AKD's pick ("no trial within tolerance"). For each such pick a small multi-objective Optuna study
(``<defense>-seed<S>-refine<R>-<utility|privacy>``, stage ``search``; a round's studies share one
Tune experiment ``refine<R>``) runs ``refine_trials`` more trials of that defense on that seed, in a search space narrowed around the matching region
(:func:`narrowed_space`). Rounds repeat until every pick matches or ``refine_rounds`` rounds are
spent; the picks are then recomputed by the analysis from all search rows, refined ones included.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Sequence

import pandas as pd

from akdray import axes

REFINE_PAD = 0.25  # each narrowed range is padded by this fraction of the original span (log span for log params)


def _scale(p, value: float) -> float:
    return math.log(value) if p.log else value


def _unscale(p, value: float) -> float:
    return math.exp(value) if p.log else value


def _trend(rows: pd.DataFrame, name: str, axis: str) -> float:
    """Spearman rank correlation of parameter ``name`` with ``axis`` over ``rows`` (0 if undefined)."""
    if name not in rows or rows[name].nunique() < 2 or len(rows) < 3:
        return 0.0
    corr = rows[name].astype(float).corr(rows[axis].astype(float), method="spearman")
    return 0.0 if pd.isna(corr) else float(corr)


def narrowed_space(space: Sequence, rows: pd.DataFrame, axis: str, target: float, pad: float = REFINE_PAD) -> tuple:
    """The search space of ``space`` (``akdray.sweep.spec.Param``) narrowed around ``target`` on ``axis``.

    The anchors are the trial nearest to ``target`` from below and the one nearest from above on
    ``axis``. Each parameter's new range is the hull of the anchors' values, padded by ``pad`` of the
    original span on each side (in log space for log parameters) and clipped to the original bounds.
    When all trials lie on one side of the target, only the nearest one anchors, and a parameter
    whose values go with ``axis`` (|Spearman rank correlation| >= 0.5 over >= 3 trials) gets the
    range from the anchor (less ``pad``) to the bound the trend points to: the target lies beyond
    every trial, so the refinement steps out, not around. ``rows``: ok trials with the parameters as
    columns and ``axis`` the selection measure.
    """
    rows = rows.dropna(subset=[axis])
    if rows.empty:
        return tuple(space)
    below, above = rows[rows[axis] <= target], rows[rows[axis] >= target]
    anchors = [frame.loc[(frame[axis] - target).abs().idxmin()] for frame in (below, above) if len(frame)]
    step = 0 if len(anchors) == 2 else (1 if above.empty else -1)  # the axis must go up (1) or down (-1)
    out = []
    for p in space:
        lo, hi = _scale(p, p.low), _scale(p, p.high)
        values = [_scale(p, min(max(float(a[p.name]), p.low), p.high)) for a in anchors if p.name in a]
        if not values:
            out.append(p)
            continue
        margin = pad * (hi - lo)
        new_lo, new_hi = max(lo, min(values) - margin), min(hi, max(values) + margin)
        trend = _trend(rows, p.name, axis) if step else 0.0
        if trend * step >= 0.5:  # raising the parameter moves the axis toward the target
            new_hi = hi
        elif trend * step <= -0.5:
            new_lo = lo
        low, high = _unscale(p, new_lo), _unscale(p, new_hi)
        if p.integer:
            low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        out.append(replace(p, low=max(p.low, low), high=min(p.high, max(high, low))))
    return tuple(out)


def unmatched(picks: pd.DataFrame) -> pd.DataFrame:
    """Baseline picks (``match`` utility or privacy) that are not within tolerance."""
    if picks.empty or "within" not in picks:
        return picks.iloc[:0]
    return picks[picks["match"].isin(["utility", "privacy"]) & ~picks["within"].astype(bool)]


def refine_picks(spec, pick_fn: Callable[[pd.DataFrame], pd.DataFrame],
                 rows_fn: Callable[[pd.DataFrame], pd.DataFrame], resume: bool = False) -> pd.DataFrame:
    """Run the refinement rounds of a finished sweep; returns the final picks (``pick_fn`` of the results).

    ``pick_fn``: ``analysis.picks.matched_picks``; ``rows_fn``: ``analysis.fronts.frontier_rows`` (the
    ok rows with both selection measures: :func:`akdray.axes.columns` of the picks' ``measured_on``).
    ``spec.refine_trials`` trials per unmatched pick and round, at most ``spec.refine_rounds`` rounds; each round's studies run side by side.
    """
    from akdray.sweep import stages  # imports Ray
    from akdray.sweep.references import found_references
    from akdray.sweep.spec import Study, base_config, study_space

    refs = found_references(spec.sweep_uri, spec.sweep_id, "reference")
    teacher_of = stages.teachers(spec)
    picks = pick_fn(stages.sweep_rows(spec))
    for round_no in range(1, spec.refine_rounds + 1):
        todo = unmatched(picks)
        if todo.empty or spec.refine_trials < 1:
            break
        selection = rows_fn(stages.sweep_rows(spec))
        planned = []
        for pick in todo.itertuples():
            privacy, utility = axes.columns(str(pick.measured_on))  # the selection measures the picks were made on
            defense, seed, axis = str(pick.method), int(pick.seed), utility if pick.match == "utility" else privacy
            if seed not in teacher_of:
                print(f"akdray refine: no teacher for seed {seed}; {pick.pick} left unmatched")
                continue
            space = study_space(spec, defense, base_config(spec, defense, seed, teacher="(stage 1)"))
            mine = selection[(selection["stage"] == "search") & (selection["method"] == defense)
                             & (selection["seed"] == seed)]
            narrowed = narrowed_space(space, mine, axis, float(pick.target))
            study = Study(defense, seed, narrowed, spec.refine_trials, tag=f"refine{round_no}-{pick.match}")
            print(f"akdray refine: round {round_no}, {pick.pick} (nearest at distance {pick.distance:.4g}): "
                  f"{spec.refine_trials} trial(s) in " + "; ".join(p.describe() for p in narrowed))
            planned.append((study, teacher_of[seed], stages.seed_references(spec, seed, refs)))
        stages.run_search_stage(spec, f"refine{round_no}", planned, resume)
        picks = pick_fn(stages.sweep_rows(spec))
    left = unmatched(picks)
    if len(left):
        print(f"akdray refine: still no trial within tolerance for {', '.join(left['pick'])} (budget spent)")
    return picks
