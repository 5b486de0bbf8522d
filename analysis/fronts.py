"""Pareto fronts in (leak, NKID), both minimised, and their 2-D hypervolume (Figs 3/4).

``leak`` is the privacy axis centred on chance: the largest max(AUC, 1 - AUC) over the row's attacks
(loss, cal, lira), 0.5 = no measurable leakage; the ideal point is (leak 0.5, NKID 0).

A trial is on its method's front if no other trial of the same method and data set (preset) is
at least as good in both objectives and better in one; identical points are all kept. The
hypervolume is the area dominated by the front inside the box bounded by the reference point
(leak 1.0, NKID 1.0), so the largest possible hypervolume is 0.5 (a point at the ideal): an exact
sweep over the points sorted by leak; points at or beyond the reference in either objective
contribute nothing. Fronts use the ``teacher`` and ``search``
stages only - ``confirm`` rows repeat picked configurations over seeds and are not new points.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from akdray.pareto import pareto_mask  # noqa: F401  (re-exported for the analysis API)
from analysis.load import METHOD_ORDER, normalize_results, ok_rows

OBJECTIVES = ("leak", "nkid")
IDEAL = (0.5, 0.0)
REFERENCE = (1.0, 1.0)


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


def frontier_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The ok rows fronts are built from: stages other than ``confirm``."""
    rows = ok_rows(normalize_results(results))
    return rows[rows["stage"] != "confirm"]


def pareto_front(rows: pd.DataFrame, x: str = OBJECTIVES[0], y: str = OBJECTIVES[1]) -> pd.DataFrame:
    """The non-dominated rows of one group, sorted by ``x``, then ``y``, then ``trial_id``."""
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
    records = []
    for preset in sorted(rows["preset"].unique()):
        for method in METHOD_ORDER:
            group = rows[(rows["preset"] == preset) & (rows["method"] == method)]
            if group.empty:
                continue
            front = pareto_front(group)
            records.append(dict(preset=preset, method=method, n_trials=len(group), n_front=len(front),
                                hypervolume=hypervolume(zip(front["leak"], front["nkid"]), reference)))
    return pd.DataFrame(records, columns=["preset", "method", "n_trials", "n_front", "hypervolume"])
