"""``python -m analysis.report SWEEP_DIR [--out DIR]``: a sweep's Parquet -> the paper's evidence.

``python analysis/report.py ...`` works too: ``analysis`` is installed with akdray (``pip install -e .``).

Writes into ``DIR`` (default ``SWEEP_DIR/report``; ``./report`` for a URI such as ``s3://...``):

* ``report.html`` - self-contained (CSS inline, figures as base64 data URIs);
* ``report.md``   - the Markdown twin, pointing at ``figures/*.png`` next to it;
* ``tables/table2.csv``, ``table3.csv``, ``table4.csv`` (Tables II-IV, numeric mean/std columns),
  ``picks.csv``, ``hypervolume.csv``, ``counts.csv``;
* ``confirm_configs.json`` - :func:`analysis.picks.confirmation_configs` for the sweep's
  confirmation stage, ``[{"pick": label, "config": {...RunConfig fields...}}, ...]``.

Exit status: 0 written; 2 bad input (no ``SWEEP_DIR/results`` dataset, unreadable Parquet, bad option).
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from akdray import axes
from analysis import figures, fronts, picks as picking, tables, verdict
from analysis.load import LEGACY_AXIS, METHOD_ORDER, NoResultsError, load_provenance, load_results, load_rows_for

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.88em}th,td{border:1px solid #bbb;padding:3px 8px;text-align:left}
th{background:#eee}caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:1.2em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.88em;color:#444}"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)) or "_"


def _join(values) -> str:
    items = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v) != ""})
    return ", ".join(items) if items else "—"


def provenance(results: pd.DataFrame, sweep_json: dict) -> pd.DataFrame:
    """Key/value table: ``sweep.json`` first, then what the rows themselves say."""
    items = [(f"sweep.json: {k}", v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in sweep_json.items()]
    col = lambda name: results[name] if name in results else pd.Series(dtype=object)  # noqa: E731
    wall = pd.to_numeric(col("wall_s"), errors="coerce")
    n_ok = int((results["status"] == "ok").sum())
    items += [
        ("sweep_id", _join(col("sweep_id"))), ("presets", _join(results["preset"])),
        ("seeds", ", ".join(str(int(s)) for s in sorted(pd.to_numeric(col("seed"), errors="coerce").dropna().unique()))),
        ("commit (code that ran)", str(sweep_json.get("commit") or _join(col("code_commit")).replace("—", "not recorded"))),
        ("akdray_version", _join(col("akdray_version"))), ("torch_version", _join(col("torch_version"))),
        ("hosts", _join(col("host"))), ("devices", _join(col("device_used"))),
        ("trials", f"{len(results)} ({n_ok} ok, {len(results) - n_ok} failed)"),
        ("summed run wall time", f"{wall.sum():.1f} s ({wall.sum() / 3600:.2f} h) over {int(wall.notna().sum())} runs"),
        ("first run started", _first_last(col("started_at"), min)), ("last run finished", _first_last(col("finished_at"), max)),
    ]
    return pd.DataFrame(items, columns=["key", "value"])


def _first_last(series: pd.Series, pick) -> str:
    values = [str(v) for v in series.dropna() if str(v)]
    return pick(values) if values else "—"


def counts(results: pd.DataFrame) -> pd.DataFrame:
    """Trials per (preset, method, stage): ok and failed."""
    grouped = results.assign(ok=results["status"] == "ok").groupby(["preset", "method", "stage"], sort=False)["ok"]
    out = grouped.agg(ok="sum", total="count").reset_index()
    out["failed"] = out["total"] - out["ok"]
    rank = out["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
    return out.assign(_r=rank).sort_values(["preset", "_r", "stage"]).drop(columns=["_r", "total"]).reset_index(drop=True)


def _find(reps: pd.DataFrame, part: str) -> str | None:
    hit = reps[reps["label"].map(lambda label: part in label.split("+"))]
    return str(hit["trial_id"].iloc[0]) if len(hit) else None


class Doc:
    """Blocks rendered twice: HTML (figures inlined) and Markdown (figures as files)."""

    def __init__(self, out: Path):
        self.out, self.html, self.md = out, [], []

    def heading(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}")

    def text(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(text)

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.html.append(tables.html_table(frame, caption))
        self.md.append((f"**{caption}**\n\n" if caption else "") + tables.markdown_table(frame))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None:
            self.text(f"({caption}: no data in the sweep.)")
            return
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"![{caption}]({path.relative_to(self.out).as_posix()})\n\n*{caption}*")

    def write(self, title: str) -> tuple[Path, Path]:
        page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(self.html) + "\n</body></html>\n")
        (self.out / "report.html").write_text(page, encoding="utf-8")
        (self.out / "report.md").write_text(f"# {title}\n\n" + "\n\n".join(self.md) + "\n", encoding="utf-8")
        return self.out / "report.html", self.out / "report.md"


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(lambda v: f"{v:.4g}" if isinstance(v, float) and np.isfinite(v) else ("—" if isinstance(v, float) else v))


def seeds_text(results: pd.DataFrame) -> str:
    """Which seeds selected the picks (teacher and search stages) and which confirmed them."""
    models = results[results["method"] != "reference"]  # a reference model's seed is 10,000 (k + 1) + s
    seed = pd.to_numeric(models["seed"], errors="coerce")
    confirm = models["stage"] == "confirm"
    fmt = lambda values: ", ".join(str(int(v)) for v in sorted(values.dropna().unique())) or "none"  # noqa: E731
    selected, confirmed = set(seed[~confirm].dropna()), set(seed[confirm].dropna())
    overlap = selected & confirmed
    return (f"Selection seeds (teacher and search stages): {fmt(seed[~confirm])}; confirmation seeds: "
            f"{fmt(seed[confirm])}. " + (f"WARNING: seeds {sorted(int(s) for s in overlap)} both selected and "
                                         "confirmed: the confirmation is not on unseen seeds." if overlap else
                                         "The confirmation runs on seeds no search used."))


def build_report(sweep_dir: str, out: Path, tol: float = picking.DEFAULT_TOL, seeds=picking.DEFAULT_SEEDS,
                 n_images: int = 4, utility_tol: float = picking.DEFAULT_UTILITY_TOL,
                 privacy_tol: float | None = picking.DEFAULT_PRIVACY_TOL) -> tuple[Path, Path]:
    """Everything above; returns (report.html, report.md). Raises NoResultsError without results.

    Order: the answer (verdict, Table II, the Pareto figure), then how it was selected (fronts,
    picks), the other tables and figures, the confirmation configs, and the provenance last."""
    results = load_results(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    trials, front, hv = fronts.frontier_rows(results), fronts.fronts(results), fronts.hypervolume_table(results)
    picks = picking.matched_picks(results, tol, utility_tol=utility_tol, privacy_tol=privacy_tol)
    rows, sources = tables.pick_rows(results, picks)
    reps = figures.representatives(rows)
    scores = load_rows_for(sweep_dir, "scores", reps["trial_id"])
    samples = load_rows_for(sweep_dir, "samples", reps["trial_id"])
    notes = tables.match_notes(picks)
    summaries = {spec.key: tables.summarize(rows, spec, sources) for spec in tables.TABLES}
    diffs = verdict.paired_differences(rows)

    doc = Doc(out)
    doc.heading("Verdict")
    lines = verdict.verdict_lines(diffs, notes)
    doc.text("Each baseline against AKD at its matched point: differences per shared seed (confirmation runs), "
             "95 % paired t-intervals; leak = the AUC of the attack chosen on held-out images (0.5 = none).")
    for line in lines or ["No baseline pick has paired rows with AKD (no confirmation stage, or no AKD pick)."]:
        doc.text(line)
    doc.table(_fmt(diffs), "Paired differences to AKD (pick − AKD per seed): mean [95 % t-interval].")
    legacy = results["leak_axis"].eq(LEGACY_AXIS) & results["leak"].notna() if "leak_axis" in results else None
    if legacy is not None and legacy.any():
        doc.text(f"WARNING: {int(legacy.sum())} row(s) were measured before issue #27: their leak is the largest "
                 "max(AUC, 1 − AUC) over the attacks, biased above 0.5 for a model that leaked nothing "
                 "(docs/attacks.md); compare them only with each other.")
    spec2 = tables.TABLES[0]
    doc.table(tables.display(summaries[spec2.key], spec2, notes), tables.caption(spec2, sources))
    for preset in sorted(results["preset"].unique()):
        doc.figure(figures.pareto_figure(trials[trials["preset"] == preset], front[front["preset"] == preset],
                                         picks[picks["preset"] == preset], out / "figures" / f"pareto_{_slug(preset)}.png",
                                         f"{preset}: trials and Pareto fronts"),
                   f"Fig 3/4 ({preset}): every ok trial, each method's Pareto front, the picks (stars).")

    doc.heading("Pareto fronts and hypervolume (Figs 3/4)")
    doc.text("Both objectives are minimised: leak (the AUC of the attack chosen on the other half of the audited "
             "images, unfolded: 0.5 = no measurable leakage on average) and NKID; the ideal point is "
             f"{axes.IDEAL}. Fronts, hypervolumes and picks use "
             + ("the validation measures (val_leak, val_nkid: validation half of the members vs validation "
                "non-members), never the test set; " if fronts.uses_validation(results) else "the test measures; ")
             + "Tables II-IV use the test measures. Hypervolume: exact 2-D area dominated "
             f"by each method's front inside the box bounded by the reference point {axes.REFERENCE}; larger is "
             "better; 0.5 at the ideal point (a leak below 0.5 is chance: leak is unfolded, so it can read below 0.5 "
             "and add area).")
    doc.table(_fmt(hv), "Hypervolume per method (fronts from teacher and search stages).")

    doc.heading("Matched picks")
    measured = "the validation set (val_leak, val_nkid)" if fronts.uses_validation(results) else "the test set (a sweep without validation columns)"
    privacy_rule = (f"within {privacy_tol:g} of AKD's leak" if privacy_tol is not None else
                    "within the standard error of the leak difference (sqrt 2 x the SE of AKD's leak, from its CI; "
                    "the tolerance column states it per pick)")
    doc.text(f"Picks are selected on {measured}. Rule (tol = {tol}): AKD = the front point with the lowest leak whose "
             "NKID <= teacher mean NKID x (1 + tol), else the lowest-NKID front point; for each baseline, the trial "
             "nearest to AKD in NKID (@utility; ties: lower leak, NKID, trial_id) and in leak (@privacy; ties: lower "
             f"NKID, leak, trial_id). Teacher = lowest seed. A @utility pick matches within {utility_tol:.0%} of AKD's "
             f"NKID, a @privacy pick {privacy_rule}; otherwise it is marked "
             f"'{picking.NO_MATCH}' and the nearest trial is shown with its distance.")
    doc.text(seeds_text(results))
    doc.table(_fmt(picks), "Picks (target: the NKID bound for akd, AKD's value for the baselines).")

    doc.heading("Tables III-IV")
    for spec in tables.TABLES[1:]:
        doc.table(tables.display(summaries[spec.key], spec, notes), tables.caption(spec, sources))
    for spec in tables.TABLES:
        summaries[spec.key].to_csv(out / "tables" / f"{spec.key}.csv", index=False)

    doc.heading("Figures")
    leak_attacks = dict(zip(rows["trial_id"], rows["leak_attack"])) if "leak_attack" in rows else {}
    for preset in sorted(results["preset"].unique()):
        _figures(doc, preset, reps[reps["preset"] == preset], scores, samples, n_images, leak_attacks)

    picks.to_csv(out / "tables" / "picks.csv", index=False)
    hv.to_csv(out / "tables" / "hypervolume.csv", index=False)
    diffs.to_csv(out / "tables" / "paired.csv", index=False)
    doc.heading("Confirmation stage")
    doc.text(_write_confirm(results, picks, seeds, out))

    doc.heading("Provenance")
    doc.table(provenance(results, load_provenance(sweep_dir)))
    count_frame = counts(results)
    count_frame.to_csv(out / "tables" / "counts.csv", index=False)
    doc.table(count_frame, "Trials per data set, method and stage (failed rows are excluded from fronts, picks and tables).")
    failed = results[results["status"] != "ok"]
    if len(failed):
        cols = [c for c in ("preset", "method", "stage", "trial_id", "error") if c in failed]
        doc.table(failed[cols].head(20).fillna("—"), f"Failed trials ({len(failed)}; first 20).")
    return doc.write(f"AKD vs membership inference - sweep report ({Path(str(sweep_dir)).name})")


def _figures(doc: Doc, preset: str, reps, scores, samples, n_images: int, leak_attacks: dict) -> None:
    """The ROC curves, loss histograms and sample grid of one data set (the Pareto figure opens the report)."""
    slug, fig_dir = _slug(preset), doc.out / "figures"
    doc.figure(figures.roc_figure(scores, reps, fig_dir / f"roc_{slug}.png", f"{preset}: attack ROC", leak_attacks),
               f"ROC curves ({preset}) of the picked models (the attack leak chose), log-log; dashed = @privacy picks.")
    panels = [(name, tid) for name, key in (("Regular (teacher)", "teacher"), ("AKD", "akd")) if (tid := _find(reps, key))]
    doc.figure(figures.loss_histograms(scores, panels, fig_dir / f"loss_hist_{slug}.png", f"{preset}: reconstruction loss"),
               f"Fig 7 ({preset}): reconstruction loss of members vs non-members, Regular and AKD.")
    grid = [(name, tid) for key, name in figures.GRID_COLUMNS if (tid := _find(reps, key))]
    doc.figure(figures.sample_grid(samples, grid, fig_dir / f"samples_{slug}.png", f"{preset}: samples", n_images),
               f"Figs 5/6 ({preset}): input, ground truth and outputs (DP-SGD and DMP at AKD's utility); a blank "
               "cell = that model was not sampled on that image (teachers and confirmation runs are sampled on test "
               "images, search trials on validation images).")


def _write_confirm(results: pd.DataFrame, picks: pd.DataFrame, seeds, out: Path) -> str:
    try:
        configs = picking.confirmation_configs(results, seeds, picks=picks)
    except (ValueError, KeyError) as exc:  # e.g. rows without every RunConfig field
        return f"No confirmation configs: {exc}"
    path = out / "confirm_configs.json"
    path.write_text(json.dumps([{"pick": label, "config": cfg} for label, cfg in configs], indent=1) + "\n")
    return (f"{len(configs)} confirmation configs (picks x seeds {list(seeds)}) written to {path.name}; the sweep fills "
            "teacher_checkpoint for akd/dmp/gauss with the teacher run of the same seed and writes stage='confirm' "
            "and the label in a 'pick' column.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analysis/report.py", description="Build the sweep report (HTML + Markdown, "
                                     "tables II-IV, figures, picks) from SWEEP_DIR/{results,scores,samples}.")
    parser.add_argument("sweep_dir", help="sweep folder (or URI) holding results/, scores/, samples/")
    parser.add_argument("--out", help="output folder (default SWEEP_DIR/report)")
    parser.add_argument("--tol", type=float, default=picking.DEFAULT_TOL, help="AKD pick: NKID <= teacher NKID x (1 + tol)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(picking.DEFAULT_SEEDS),
                        help="confirmation seeds (default 100..104: disjoint from the search seeds)")
    parser.add_argument("--utility-tol", type=float, default=picking.DEFAULT_UTILITY_TOL,
                        help="@utility picks match within this relative NKID distance of AKD's pick (default 0.10)")
    parser.add_argument("--privacy-tol", type=float, default=picking.DEFAULT_PRIVACY_TOL,
                        help="@privacy picks match within this leak distance of AKD's pick (default: sqrt 2 x the "
                             "standard error of AKD's validation leak, from its CI)")
    parser.add_argument("--images", type=int, default=4, help="test images in the sample grid")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else (Path("report") if "://" in args.sweep_dir else Path(args.sweep_dir) / "report")
    try:
        html_path, md_path = build_report(args.sweep_dir, out, args.tol, tuple(args.seeds), args.images,
                                          args.utility_tol, args.privacy_tol)
    except NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pa.ArrowInvalid as exc:  # a corrupt or non-Parquet file in the datasets
        print(f"error: cannot read the sweep's Parquet under {args.sweep_dir}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {html_path}\nwrote {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
