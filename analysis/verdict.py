"""The answer first: each baseline against AKD at its matched point, as paired intervals over seeds.

A method-level claim ("AKD leaks less than DMP at the same utility") is a claim about the
*difference* of two methods trained on the same seeds: the confirmation runs of a baseline pick
and of AKD share their seeds (the same data draw, teacher and reference models per seed), so the
difference is taken per seed and its 95 % interval is the paired t-interval
mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n) over the n seeds both have an ok row for - not the
difference of two averaged endpoints. A difference whose interval excludes 0 is reported as a
difference; otherwise as "no difference measured". Rows come from :func:`analysis.tables.pick_rows`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from akdray import axes

MEASURES = (axes.PRIVACY.column, axes.UTILITY.column)  # leak, nkid: the reported axes
REFERENCE_PICK = "akd"
COLUMNS = ["preset", "pick", "n_pairs", *(f"{m}_{s}" for m in MEASURES for s in ("diff", "lo", "hi"))]


def paired_interval(differences: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of the paired t-interval; lo = hi = NaN with fewer than two pairs."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return np.nan, np.nan, np.nan
    mean = float(d.mean())
    if len(d) < 2:
        return mean, np.nan, np.nan
    half = float(student_t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half


def paired_differences(rows: pd.DataFrame, reference: str = REFERENCE_PICK) -> pd.DataFrame:
    """Per (preset, pick other than ``reference``): pick - reference per shared seed, for each measure."""
    ok = rows[(rows["status"] == "ok")]
    records = []
    for (preset, label), group in ok.groupby(["preset", "label"], sort=False):
        if label == reference or "teacher" in str(label).split("+")[0]:
            continue
        ref = ok[(ok["preset"] == preset) & (ok["label"] == reference)]
        paired = group.merge(ref, on="seed", suffixes=("", "_ref"))
        record = dict(preset=preset, pick=label, n_pairs=len(paired))
        for m in MEASURES:
            diff = pd.to_numeric(paired[m], errors="coerce") - pd.to_numeric(paired[f"{m}_ref"], errors="coerce")
            record[f"{m}_diff"], record[f"{m}_lo"], record[f"{m}_hi"] = paired_interval(diff.to_numpy())
        records.append(record)
    return pd.DataFrame(records, columns=COLUMNS)


def _word(lo: float, hi: float, more: str, less: str) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not measured (fewer than 2 paired seeds)"
    return more if lo > 0 else less if hi < 0 else "no difference measured"


def verdict_lines(diffs: pd.DataFrame, notes: dict[tuple[str, str], str]) -> list[str]:
    """One sentence per baseline pick: what the paired intervals say, and how close the match is."""
    lines = []
    for r in diffs.itertuples():
        leak = _word(r.leak_lo, r.leak_hi, "leaks MORE than AKD", "leaks LESS than AKD")
        nkid = _word(r.nkid_lo, r.nkid_hi, "worse images than AKD", "better images than AKD")
        match = notes.get((r.preset, r.pick), "") or "no match requested"
        lines.append(f"{r.preset}, {r.pick}: {leak} (leak − AKD {_interval(r.leak_diff, r.leak_lo, r.leak_hi)}); "
                     f"{nkid} (NKID − AKD {_interval(r.nkid_diff, r.nkid_lo, r.nkid_hi)}); paired over "
                     f"{r.n_pairs} seed(s); match: {match}.")
    return lines


def _interval(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else "")
