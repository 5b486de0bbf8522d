"""Tables II, III and IV of the paper: mean +- std over seeds per data set and pick.

* **Table II** - privacy and utility: ``leak`` (:mod:`akdray.attacks.leak`; 0.5 = none on
  average) with its CI, ``leak_max`` beside its permutation p-value ``leak_p``, the AUC of each
  attack of the registry with the per-run 95 % CI averaged over seeds in brackets, NKID (``nkid``)
  and the DP-SGD budget ``dp_epsilon`` where there is one. Method-level differences to AKD are in
  :mod:`analysis.verdict` (paired t-intervals over seeds).
* **Table III** - every attack's TPR at 1 % and 0.1 % FPR with its Clopper-Pearson CI (null - shown
  "—" - where a run had fewer than 10 / FPR non-members).
* **Table IV** - generalization gap: ``nkid_train``, ``nkid`` (test) and ``gen_gap`` =
  NKID(test) - NKID(train), positive when the model overfits (the paper's sign).

Rows come from the ``confirm`` stage, grouped by the pick whose recipe they ran (rows of a recipe no
longer picked are left out); a pick with no confirm rows
is shown from the search row of its trial (one run, so no std; a search trial of akdray >= 0.2 was
evaluated on the validation set only, so its test columns are "—").
The ``Match`` column (:func:`match_notes`) says whether a baseline pick lies within the tolerance of
AKD's pick, else "no trial within tolerance" with the nearest trial's distance. The ``Source`` column and the
caption say which. Means and sample standard deviations (ddof = 1) use ok rows only; ``n_failed``
counts the failed ones.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from akdray.attacks.registry import ATTACKS
from akdray.recipe import recipe_key
from analysis.load import METHOD_ORDER, normalize_results
from analysis.picks import pick_labels


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    caption: str
    metrics: tuple[tuple[str, str], ...]  # (column, header)


TABLES = (
    TableSpec("table2", "Table II", "Privacy: leak = the AUC of the attack chosen on the other half of the audited "
              "images, unfolded (0.5 = no measurable leakage on average; akdray.attacks.leak), [its 95 % CI, averaged "
              "over the runs]; leak_max = the largest max(AUC, 1 − AUC) over the attacks (biased: read it against its "
              "permutation null, leak_p); each attack's AUCROC (loss = Eq. 3; lira, rmia = calibrated with reference "
              "models) [logit-DeLong 95 % CI, averaged]; utility: NKID (lower is better). Mean ± std over seeds.",
              (("leak", "leak"), ("leak_max", "leak_max"), ("leak_p", "leak_p"),
               *((f"{a}_auc", f"AUC {a}") for a in ATTACKS), ("nkid", "NKID"), ("dp_epsilon", "DP ε"))),
    TableSpec("table3", "Table III", "Attack TPR at low FPR (threshold set by the non-members), [95 % Clopper–Pearson "
              "CI, averaged]; — = not measurable (fewer than 10 / FPR non-members) or the attack did not run.",
              tuple((f"{a}_tpr_at_{point}_fpr", f"{a} TPR @ {text} FPR") for point, text in (("1pct", "1%"), ("0p1pct", "0.1%"))
                    for a in ATTACKS)),
    TableSpec("table4", "Table IV", "Generalization gap: NKID(test) − NKID(train) (positive = overfit).",
              (("nkid_train", "NKID train"), ("nkid", "NKID test"), ("gen_gap", "gap"))),
)


def _label_key(label: str, method: str) -> tuple:
    first = label.split("+")[0]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, 0 if first.endswith("@utility") else 1, label


def current_confirm_rows(results: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The confirmation rows of the picks' current recipes (:mod:`akdray.recipe`), ``pick`` set to the
    current label: a row confirming a recipe that is no longer picked (``--refine-picks`` found a
    closer trial after the confirmation ran) is left out rather than shown under the new pick."""
    confirmed = results[(results["stage"] == "confirm") & results["pick"].notna()]
    searched = results[results["stage"] != "confirm"].drop_duplicates("trial_id").set_index("trial_id")
    current = {(str(p.preset), recipe_key(searched.loc[p.trial_id])): p.label
               for p in labels.itertuples() if p.trial_id in searched.index}
    label = [current.get((str(r["preset"]), recipe_key(r))) for _, r in confirmed.iterrows()]
    return confirmed.assign(pick=label).loc[np.array([lab is not None for lab in label], dtype=bool)]


def pick_rows(results: pd.DataFrame, picks: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows behind the tables, with ``label`` and ``source`` columns, and each preset's source.

    Per data set: every ``confirm`` row with a ``pick`` (``source = "confirm"``), plus - for each
    current pick none of whose ``+``-parts was confirmed - the search row of the picked trial
    (``source = "search"``). A preset's source is ``confirm``, ``search`` or ``mixed``.
    """
    results = normalize_results(results)
    labels = pick_labels(picks)
    confirmed = current_confirm_rows(results, labels)
    parts, sources = [], {}
    for preset in sorted(set(labels["preset"]) | set(confirmed["preset"])):
        confirm = confirmed[confirmed["preset"] == preset]
        done = {part for label in confirm["pick"].astype(str) for part in label.split("+")}
        unconfirmed = np.array([not done & set(label.split("+")) for label in labels["label"]], dtype=bool)
        mine = labels[(labels["preset"] == preset) & unconfirmed]
        searched = results[results["trial_id"].isin(mine["trial_id"]) & (results["stage"] != "confirm")]
        searched = searched.merge(mine[["trial_id", "label"]], on="trial_id").assign(source="search")
        parts += [confirm.assign(label=confirm["pick"].astype(str), source="confirm"), searched]
        kinds = {kind for kind, frame in (("confirm", confirm), ("search", searched)) if len(frame)}
        sources[preset] = kinds.pop() if len(kinds) == 1 else "mixed"
    parts = [p for p in parts if len(p)]
    rows = pd.concat(parts, ignore_index=True) if parts else results.iloc[:0].assign(label="", source="")
    return rows, sources


def summarize(rows: pd.DataFrame, spec: TableSpec, sources: dict[str, str] | None = None) -> pd.DataFrame:
    """Numeric table: preset, pick, method, source, n, n_failed, seeds, then ``<metric>_mean/_std``."""
    records = []
    for (preset, label), group in rows.groupby(["preset", "label"], sort=False):
        ok = group[group["status"] == "ok"]
        record = dict(preset=preset, pick=label, method=group["method"].iloc[0],
                      source="+".join(sorted(set(group["source"]))) if "source" in group else (sources or {}).get(preset, ""),
                      n=len(ok), n_failed=len(group) - len(ok),
                      seeds=" ".join(str(int(s)) for s in sorted(ok["seed"].unique())))
        for column, _ in spec.metrics:
            values = pd.to_numeric(ok[column], errors="coerce") if column in ok else pd.Series(dtype=float)
            record[f"{column}_mean"] = float(values.mean()) if values.notna().any() else np.nan
            record[f"{column}_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else np.nan
            for bound in ("lo", "hi"):  # a measure's per-run 95 % CI, averaged over the runs
                if f"{column}_{bound}" in ok:
                    record[f"{column}_{bound}_mean"] = float(pd.to_numeric(ok[f"{column}_{bound}"], errors="coerce").mean())
        records.append(record)
    columns = ["preset", "pick", "method", "source", "n", "n_failed", "seeds"]
    columns += [f"{c}_{s}" for c, _ in spec.metrics for s in ("mean", "std")]
    columns += sorted({k for r in records for k in r if k.endswith(("_lo_mean", "_hi_mean"))})
    out = pd.DataFrame(records, columns=columns)
    if out.empty:
        return out
    order = sorted(range(len(out)), key=lambda i: (out["preset"][i], _label_key(out["pick"][i], out["method"][i])))
    return out.iloc[order].reset_index(drop=True)


def _number(value: float) -> str:
    return "—" if not np.isfinite(value) else (f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}")


def mean_std(mean: float, std: float) -> str:
    return _number(mean) if not np.isfinite(std) or not np.isfinite(mean) else f"{_number(mean)} ± {_number(std)}"


def match_notes(picks: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``(preset, label) -> text`` for every pick label (``+``-joined as :func:`pick_labels`): "within
    tolerance (d = ...)" or "no trial within tolerance: nearest, d = ..." per matched part; "" otherwise."""
    labels = pick_labels(picks)
    notes = {}
    for preset, label in zip(labels["preset"], labels["label"]):
        parts = []
        for part in label.split("+"):
            hit = picks[(picks["preset"] == preset) & (picks["pick"] == part)]
            if hit.empty or not hit["match"].iloc[0]:
                continue
            r = hit.iloc[0]
            within = bool(r["within"]) if "within" in r and pd.notna(r["within"]) else True
            text = "within tolerance" if within else "no trial within tolerance: nearest"
            parts.append(f"{r['match']}: {text}, d = {_number(float(r['distance']))}")
        notes[(preset, label)] = "; ".join(parts)
    return notes


def display(summary: pd.DataFrame, spec: TableSpec, notes: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Strings for Markdown/HTML: one ``mean ± std`` cell per metric (and ``Match`` when ``notes``)."""
    out = pd.DataFrame({"Data set": summary["preset"], "Pick": summary["pick"], "Method": summary["method"],
                        "Source": summary["source"],
                        "n": [f"{n}" + (f" (+{f} failed)" if f else "") for n, f in zip(summary["n"], summary["n_failed"])]})
    if notes is not None:
        out["Match"] = [notes.get((p, label), "") or "—" for p, label in zip(summary["preset"], summary["pick"])]
    for column, header in spec.metrics:
        out[header] = [mean_std(m, s) for m, s in zip(summary[f"{column}_mean"], summary[f"{column}_std"])]
        if f"{column}_lo_mean" in summary:
            out[header] = [cell + (f" [{_number(lo)}, {_number(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "")
                           for cell, lo, hi in zip(out[header], summary[f"{column}_lo_mean"], summary[f"{column}_hi_mean"])]
    return out


SOURCE_TEXT = {"confirm": "confirmation stage, mean ± std over seeds",
               "search": "no confirmation rows - the search rows of the picks (one run each, no std)",
               "mixed": "confirmation stage where a pick has confirm rows, else its search row (Source column)"}


def caption(spec: TableSpec, sources: dict[str, str]) -> str:
    parts = [f"{preset}: {SOURCE_TEXT[source]}" for preset, source in sorted(sources.items())]
    return f"{spec.title}. {spec.caption} Source - " + ("; ".join(parts) if parts else "no picks") + "."


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a string-able frame (``|`` escaped)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, caption_text: str = "") -> str:
    """An HTML ``<table>`` with an optional ``<caption>``; every value escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    cap = f"<caption>{html.escape(caption_text)}</caption>" if caption_text else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
