"""Matched operating points (the paper's "same utility" / "same privacy" DP-SGD rows) and the
configurations of the confirmation stage.

The pick rule, per data set (``preset``), on ok rows of the ``teacher`` and ``search`` stages,
measured on the validation set where the sweep has one (:func:`analysis.fronts.frontier_rows`):

1. **teacher** - the teacher row with the lowest ``seed``, then the lowest ``trial_id`` (the
   Regular model of Tables II-IV). ``teacher_nkid`` is the mean NKID of all ok teacher rows.
   **teacher-groupnorm** - likewise among the teacher-stage rows with ``pick == "teacher-groupnorm"``
   (the teacher with norm=group, DP-SGD's architecture); it is no teacher of the rule below.
The privacy measure is ``leak`` (:mod:`akdray.attacks.leak`; 0.5 = none on average).

2. **akd** - on AKD's Pareto front in (leak, NKID) (:mod:`analysis.fronts`), the point with the
   lowest ``leak`` whose ``nkid <= teacher_nkid * (1 + tol)`` (``tol`` = 0.5 by default: at
   most 50 % worse utility than the undefended model). Ties: lower ``nkid``, then ``trial_id``.
   If no front point qualifies (or there is no teacher), the front point with the lowest
   ``nkid`` (ties: lower ``leak``, then ``trial_id``); the ``rule`` column says which applied.
3. For each baseline ``b`` in (dmp, dpsgd, gauss), over all its ok trials (not only its front):
   **b@utility** - the trial nearest to AKD's pick in NKID (ties: lower ``leak``, then lower
   ``nkid``, then ``trial_id``); **b@privacy** - nearest in ``leak`` (ties: lower ``nkid``, then
   lower ``leak``, then ``trial_id``). Distances are rounded to 12 decimals before comparing
   so floating-point noise cannot break a tie; ``trial_id`` compares as a string.
4. **Tolerance**: a ``@utility`` pick matches only if ``|NKID - NKID_akd| <= utility_tol x NKID_akd``
   (default 10 %: no standard error of the validation NKID is recorded), a ``@privacy`` pick only if
   ``|leak - leak_akd| <= privacy_tol``; by default that tolerance is the standard error of the
   difference of two validation leaks, sqrt(2) x SE(leak_akd), SE from AKD's 95 % CI
   ((hi - lo) / 3.92): closer than that, two trials are not told apart (before issue #27 a fixed 0.02,
   below the ~0.031 standard error of ONE validation leak at AUC 0.70, 100 vs 500). The
   ``tolerance`` column states it per pick.
   Otherwise ``within`` is False and the rule says "no trial within tolerance": the nearest trial is
   still shown, with its ``distance`` (``sweeps/pareto.py --refine-picks`` adds trials around it).

All functions are pure: DataFrame in, DataFrame / list out.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from akdray import axes
from akdray.config import FIELD_TYPES, METHODS_NEEDING_TEACHER, from_dict
from akdray.schema import GROUPNORM_PICK
from analysis.fronts import frontier_rows, pareto_front, selection_axes
from analysis.load import normalize_results

BASELINES = ("dmp", "dpsgd", "gauss")
DEFAULT_TOL = 0.5
DEFAULT_UTILITY_TOL = 0.10  # relative NKID distance to AKD's pick for "matched utility"
# "matched privacy": None = sqrt(2) x the standard error of AKD's selection leak (from its 95 % CI), the standard
# error of a difference of two such measures; a number = that absolute leak distance. Rows without a leak CI
# (before issue #27) fall back to LEGACY_PRIVACY_TOL.
DEFAULT_PRIVACY_TOL: float | None = None
LEGACY_PRIVACY_TOL = 0.02
CONFIRM_SEED_START = 100  # confirmation seeds 100.. are disjoint from every seed a search uses (0..)
DEFAULT_SEEDS = tuple(range(CONFIRM_SEED_START, CONFIRM_SEED_START + 5))
NO_MATCH = "no trial within tolerance"
# ``leak`` and ``nkid`` of a pick are its selection measures (``measured_on``: validation or test values).
PICK_COLUMNS = ["preset", "pick", "method", "match", "trial_id", "seed", "leak", "nkid", "target",
                "distance", "tolerance", "within", "measured_on", "rule"]
TEACHER_PLACEHOLDER = "<teacher of the same seed, filled by the sweep>"


def _first(rows: pd.DataFrame, keys: list[str]) -> pd.Series:
    return rows.sort_values(keys, kind="mergesort").iloc[0]


def _record(preset, pick, row, match="", target=np.nan, distance=np.nan, rule="", tolerance=np.nan,
            within=True) -> dict[str, Any]:
    x, y = axes.columns(row.get("measured_on", "test"))
    return dict(preset=preset, pick=pick, method=row["method"], match=match, trial_id=row["trial_id"],
                seed=int(row["seed"]), leak=float(row[x]), nkid=float(row[y]),
                target=float(target), distance=float(distance), tolerance=float(tolerance), within=bool(within),
                measured_on=row.get("measured_on", "test"), rule=rule)


def _matched(preset: str, method: str, cands: pd.DataFrame, ref: pd.Series, axis: axes.Axis, tol: float) -> dict[str, Any]:
    """The ``<method>@utility`` (the utility axis, relative ``tol``) or ``@privacy`` (privacy, absolute) pick."""
    x, y = selection_axes(cands)
    column, other = (y, x) if axis is axes.UTILITY else (x, y)
    row, dist = nearest(cands, column, ref[column], [other, column])
    allowed = tol * abs(float(ref[column])) if axis is axes.UTILITY else privacy_tolerance(ref, column, tol)
    within = dist <= allowed + 1e-12
    what = {"utility": "NKID", "privacy": "leak"}[axis.name]
    names = {x: "leak", y: "nkid"}  # the rule's words name the measures, not the block they were taken on
    rule = (f"nearest {what} to AKD within {allowed:.4g}; ties: lower {names[other]}, {names[column]}, trial_id"
            if within else f"{NO_MATCH} (|Δ{what}| <= {allowed:.4g}): nearest shown, distance {dist:.4g}")
    return _record(preset, f"{method}@{axis.name}", row, axis.name, ref[column], dist, rule, allowed, within)


def privacy_tolerance(ref: pd.Series, column: str, tol: float | None) -> float:
    """``tol``, or (None) sqrt(2) x the standard error of ``ref``'s leak from its 95 % CI (rule 4)."""
    if tol is not None:
        return float(tol)
    lo, hi = ref.get(f"{column}_lo", np.nan), ref.get(f"{column}_hi", np.nan)
    if not (pd.notna(lo) and pd.notna(hi)):
        return LEGACY_PRIVACY_TOL
    return float(np.sqrt(2.0) * (float(hi) - float(lo)) / (2 * 1.959964))


def pick_akd(akd_rows: pd.DataFrame, teacher_nkid: float, tol: float = DEFAULT_TOL) -> tuple[pd.Series, str]:
    """AKD's operating point by the rule of step 2; returns (row, rule that applied)."""
    x, y = selection_axes(akd_rows)
    front = pareto_front(akd_rows, x, y)
    bound = teacher_nkid * (1.0 + tol)
    qualifying = front[front[y] <= bound] if np.isfinite(bound) else front.iloc[:0]
    if len(qualifying):
        return _first(qualifying, [x, y, "trial_id"]), f"lowest leak on front with NKID <= {bound:.4g}"
    why = "no teacher" if not np.isfinite(bound) else f"no front point with NKID <= {bound:.4g}"
    return _first(front, [y, x, "trial_id"]), f"{why}: lowest NKID on front"


def nearest(rows: pd.DataFrame, column: str, target: float, ties: list[str]) -> tuple[pd.Series, float]:
    """Row whose ``column`` is nearest ``target``; ties broken by ``ties`` then ``trial_id``."""
    ranked = rows.assign(_distance=(rows[column] - target).abs().round(12))
    row = _first(ranked, ["_distance", *ties, "trial_id"])
    return row, float(row["_distance"])


def matched_picks(results: pd.DataFrame, tol: float = DEFAULT_TOL, baselines: Iterable[str] = BASELINES, *,
                  utility_tol: float = DEFAULT_UTILITY_TOL, privacy_tol: float | None = DEFAULT_PRIVACY_TOL) -> pd.DataFrame:
    """The picks of every data set: teacher (and teacher-groupnorm), akd, then ``b@utility`` and
    ``b@privacy`` per baseline, each with ``within`` its tolerance or not (rule 4)."""
    rows = frontier_rows(results)
    _, y = selection_axes(rows)
    records = []
    for preset in sorted(rows["preset"].unique()):
        here = rows[rows["preset"] == preset]
        groupnorm = here["pick"].fillna("").eq(GROUPNORM_PICK) & here["method"].eq("teacher")
        teachers, akd = here[(here["method"] == "teacher") & ~groupnorm], here[here["method"] == "akd"]
        if groupnorm.any():
            records.append(_record(preset, GROUPNORM_PICK, _first(here[groupnorm], ["seed", "trial_id"]),
                                   rule="teacher with norm=group (DP-SGD's architecture); lowest seed, then trial_id"))
        teacher_nkid = float(teachers[y].mean()) if len(teachers) else np.nan
        if len(teachers):
            rule = f"lowest seed, then trial_id; teacher mean NKID {teacher_nkid:.4g} over {len(teachers)} rows"
            records.append(_record(preset, "teacher", _first(teachers, ["seed", "trial_id"]), rule=rule))
        if akd.empty:
            continue
        ref, rule = pick_akd(akd, teacher_nkid, tol)
        records.append(_record(preset, "akd", ref, target=teacher_nkid * (1.0 + tol), rule=rule))
        for method in baselines:
            cands = here[here["method"] == method]
            if cands.empty:
                continue
            records.append(_matched(preset, method, cands, ref, axes.UTILITY, utility_tol))
            records.append(_matched(preset, method, cands, ref, axes.PRIVACY, privacy_tol))
    return pd.DataFrame(records, columns=PICK_COLUMNS)


def pick_labels(picks: pd.DataFrame) -> pd.DataFrame:
    """One row per picked trial: picks that chose the same trial share it, labels joined by ``+``
    in pick order (e.g. ``dpsgd@utility+dpsgd@privacy``). Columns preset, label, method, trial_id."""
    records = []
    for (preset, trial_id), group in picks.groupby(["preset", "trial_id"], sort=False):
        records.append(dict(preset=preset, label="+".join(group["pick"]), method=group["method"].iloc[0],
                            trial_id=trial_id, order=int(group.index.min())))
    out = pd.DataFrame(records, columns=["preset", "label", "method", "trial_id", "order"])
    return out.sort_values("order", kind="mergesort").drop(columns="order").reset_index(drop=True)


def run_config_dict(row: pd.Series) -> dict[str, Any]:
    """The RunConfig fields of a results row, as plain Python values of the field's type."""
    missing = [name for name in FIELD_TYPES if name not in row.index]
    if missing:
        raise ValueError(f"results row {row.get('trial_id')!r} lacks RunConfig field(s) {', '.join(missing)}")
    cfg = {}
    for name, typ in FIELD_TYPES.items():
        value = row[name]
        cfg[name] = value.item() if hasattr(value, "item") else value
        cfg[name] = typ(cfg[name]) if typ is not bool else bool(cfg[name])
    return cfg


def confirmation_configs(results: pd.DataFrame, seeds: Iterable[int] = DEFAULT_SEEDS, *, tol: float = DEFAULT_TOL,
                         baselines: Iterable[str] = BASELINES, picks: pd.DataFrame | None = None,
                         ) -> list[tuple[str, dict[str, Any]]]:
    """The confirmation stage: every picked configuration re-run with each of ``seeds``.

    Returns ``[(label, cfg), ...]``: ``cfg`` is a flat dict of exactly the ``RunConfig`` fields
    (``akdray.config.from_dict(cfg)`` accepts it once ``teacher_checkpoint`` is filled), copied
    from the picked row with ``seed`` replaced and ``kid_max_images`` that of the preset's teacher
    rows (a search trial measures NKID on fewer images: ``--search-kid-images``); ``label`` is the pick (``"teacher"``, ``"akd"``,
    ``"dmp@utility"``, ``"dpsgd@privacy"``, ...; picks of the same trial share one config with
    labels joined by ``+``, so nothing runs twice). Order: all teacher configs first, then the
    rest in pick order, seeds ascending within a pick. A sweep with several presets yields one
    set per preset (``cfg["preset"]`` tells them apart); ``(preset, label, seed)`` is unique.

    Contract with the sweep (``sweeps/pareto.py``):

    * For ``method`` in akd, dmp, gauss, ``cfg["teacher_checkpoint"]`` is ``""``: the sweep must
      set it to the checkpoint of the ``"teacher"`` confirmation run with the SAME ``preset`` and
      ``seed`` (so run the teacher configs first). Other methods keep ``""``.
    * Every row written for these runs has ``stage == "confirm"`` and a string column ``pick``
      holding ``label`` verbatim; :mod:`analysis.tables` groups Tables II-IV by it.

    Each config is validated with ``akdray.config.from_dict`` (a placeholder teacher for the
    methods that need one), so a bad row fails here rather than on the cluster.
    """
    results = normalize_results(results)
    picks = matched_picks(results, tol, baselines) if picks is None else picks
    labels = pick_labels(picks)
    searched = results[results["stage"] != "confirm"]  # picks are search/teacher trials
    by_trial = dict(zip(searched["trial_id"], searched.to_dict("records")))
    teachers = searched[searched["method"] == "teacher"]
    kid_images = dict(zip(teachers["preset"], teachers["kid_max_images"].astype(int)))  # a RunConfig field: always there
    first = labels["method"].eq("teacher").map({True: 0, False: 1})
    out = []
    for _, pick in labels.assign(_first=first).sort_values("_first", kind="mergesort").iterrows():
        base = run_config_dict(pd.Series(by_trial[str(pick["trial_id"])]))
        for seed in sorted(int(s) for s in seeds):
            cfg = {**base, "seed": seed, "eval_split": "both",  # test columns for the tables, val ones beside
                   "kid_max_images": kid_images.get(base["preset"], base["kid_max_images"])}
            if cfg["method"] in METHODS_NEEDING_TEACHER:
                cfg["teacher_checkpoint"] = ""
                from_dict({**cfg, "teacher_checkpoint": TEACHER_PLACEHOLDER})
            else:
                from_dict(cfg)
            out.append((pick["label"], cfg))
    return out
