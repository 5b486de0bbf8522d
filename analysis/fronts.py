"""Pareto fronts in (leak, NKID), both minimised, and their 2-D hypervolume (Figs 3/4).

``leak`` is the privacy axis centred on chance (:mod:`akdray.attacks.leak`: the AUC of the attack
chosen on held-out images, 0.5 on average for a model that leaked nothing); the ideal point is
(leak 0.5, NKID 0).

A trial is on its method's front if no other trial of the same method and data set (preset) is
at least as good in both objectives and better in one; identical points are all kept. The
hypervolume is the area dominated by the front inside the box bounded by the reference point
(leak 1.0, NKID 1.0), so a point at the ideal has hypervolume 0.5 (more only where a leak, unfolded,
reads below 0.5 by chance - :mod:`akdray.attacks.leak` - which is noise, not privacy): an exact
sweep over the points sorted by leak; points at or beyond the reference in either objective
contribute nothing. Fronts use the ``teacher`` and ``search``
stages only - ``confirm`` rows repeat picked configurations over seeds and are not new points.

Selection never sees the test set: where a sweep has validation measures (``val_leak``,
``val_nkid``: akdray >= 0.2, whose search trials evaluate on the validation set only), fronts,
picks and hypervolumes read those columns (:func:`selection_axes`; ``measured_on = "val"``); older
sweeps are selected on their test values (``measured_on = "test"``). No column is renamed: the
tables read the test columns ``leak``/``nkid`` of the confirmation rows. The axes, their chance
values and the hypervolume reference are defined once, in :mod:`akdray.axes`.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from akdray import axes
from akdray.axes import REFERENCE
from akdray.pareto import pareto_mask  # noqa: F401  (re-exported for the analysis API)
from analysis.load import METHOD_ORDER, normalize_results


def hypervolume(points: Iterable[tuple[float, float]], reference: tuple[float, float] = REFERENCE) -> float:
    """Exact area dominated by ``points`` (minimisation) and bounded by ``reference``."""
    rx, ry = reference
    pts = sorted((float(a), float(b)) for a, b in points if np.isfinite(a) and np.isfinite(b) and a < rx and b < ry)
    area, level = 0.0, ry
    for a, b in pts:  # ascending x: each point adds the strip between its y and the lowest y so far
        if b < level:
            area += (rx - a) * (level - b)
            level = b
    return area


def uses_validation(results: pd.DataFrame) -> bool:
    """Whether the sweep's search rows carry validation measures (then selection uses them)."""
    return "val_leak" in results and "val_nkid" in results and bool(
        pd.to_numeric(results.loc[results["stage"] == "search", "val_leak"], errors="coerce").notna().any())


def selection_axes(rows: pd.DataFrame) -> tuple[str, str]:
    """The (privacy, utility) columns selection reads on ``rows`` of :func:`frontier_rows`
    (``measured_on``), or on results rows (validation columns where the sweep has them)."""
    if "measured_on" in rows and len(rows):
        return axes.columns(str(rows["measured_on"].iloc[0]))
    return axes.columns("val" if uses_validation(rows) else "test")


def frontier_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The ok rows fronts and picks are built from: stages other than ``confirm``, with both selection
    measures present (:func:`selection_axes`: validation values where the sweep has them; ``measured_on``)."""
    rows = normalize_results(results)
    rows = rows[rows["stage"] != "confirm"]
    rows = rows.assign(measured_on="val" if uses_validation(rows) else "test")
    x, y = selection_axes(rows)
    return rows[(rows["status"] == "ok") & rows[x].notna() & rows[y].notna()]


def pareto_front(rows: pd.DataFrame, x: str | None = None, y: str | None = None) -> pd.DataFrame:
    """The non-dominated rows of one group in columns ``x``, ``y`` (default :func:`selection_axes`),
    sorted by ``x``, then ``y``, then ``trial_id``."""
    if x is None or y is None:
        x, y = selection_axes(rows)
    front = rows[pareto_mask(rows[x], rows[y])]
    return front.sort_values([x, y, "trial_id"], kind="mergesort")


def fronts(results: pd.DataFrame) -> pd.DataFrame:
    """Every front point of every (preset, method), with the method's order kept for plotting."""
    rows = frontier_rows(results)
    parts = [pareto_front(group) for _, group in rows.groupby(["preset", "method"], sort=True)]
    return pd.concat(parts, ignore_index=True) if parts else rows.iloc[:0]


def hypervolume_table(results: pd.DataFrame, reference: tuple[float, float] = REFERENCE) -> pd.DataFrame:
    """One row per (preset, method): trials used, front size and hypervolume vs ``reference``."""
    rows = frontier_rows(results)
    x, y = selection_axes(rows)
    records = []
    for preset in sorted(rows["preset"].unique()):
        for method in METHOD_ORDER:
            group = rows[(rows["preset"] == preset) & (rows["method"] == method)]
            if group.empty:
                continue
            front = pareto_front(group)
            records.append(dict(preset=preset, method=method, n_trials=len(group), n_front=len(front),
                                hypervolume=hypervolume(zip(front[x], front[y]), reference)))
    return pd.DataFrame(records, columns=["preset", "method", "n_trials", "n_front", "hypervolume"])
