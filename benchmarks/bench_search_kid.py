"""How many KID images a search trial needs: the noise of the NKID objective and the search's ranking.

Usage: python benchmarks/bench_search_kid.py SWEEP_DIR [--sizes 25 50 100] [--repeats 5] [--csv FILE]

For every ok search-stage and teacher row of a stored sweep (its checkpoint re-served as the trial served it;
a Gauss row re-draws its noise from its seed), the outputs on *all* validation non-members go
through Inception once. Then, per trial and image count N:

- ``first``: NKID on the first N validation pairs, what a search trial with ``search_kid_images=N``
  computes (N = the sweep's ``kid_max_images`` reproduces the row's ``val_nkid``; printed as a check);
- ``std``: the standard deviation of NKID over ``--repeats`` disjoint draws of N pairs (the noise of
  the objective: the same run, measured again on other images); per pair of trials of one study, the
  standard deviation of their NKID *difference* over the same draws (both trials see the same images,
  as in a sweep, so much of the noise is shared and cancels in the ranking);
- ``all``: NKID on every validation pair, the best estimate the sweep has.

The ranking the search acts on is then compared with the one on all images, within each study (one
defense and seed): Kendall's tau over its trials, and whether its Pareto front on (``val_leak``, NKID)
is the same set of trials. Last, the sweep's matched picks (``analysis.picks.matched_picks``: AKD's pick,
each baseline at AKD's utility and privacy) are made once per N with the search trials' NKID on the
first N pairs (teachers on the sweep's ``kid_max_images``, as a sweep with ``--search-kid-images N``
does), and once with every row on all validation pairs: one column of trial ids each. ``--csv`` keeps
the per-trial table; the figures go to docs/benchmarks.md by hand.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.picks import matched_picks, run_config_dict  # noqa: E402
from akdray.attacks.references import serve_generator  # noqa: E402
from akdray.checkpoint import load_generator  # noqa: E402
from akdray.config import from_dict  # noqa: E402
from akdray.data.splits import load_splits  # noqa: E402
from akdray.metrics.features import features_of_batches  # noqa: E402
from akdray.metrics.kid import KidOptions, kid_from_features, kid_max_from_features  # noqa: E402
from akdray.pareto import pareto_mask  # noqa: E402
from akdray.run import _serve_gauss  # noqa: E402


def _nkid(real: torch.Tensor, fake: torch.Tensor, options: KidOptions) -> float:
    """NKID of feature sets, as akdray.metrics.kid.quality_of_sets computes it (uncached: any subset of pairs)."""
    kid = kid_from_features(real, fake, options)
    kid_max = kid_max_from_features(real, KidOptions(subset_size=kid["kid_subset_size"], subsets=options.subsets,
                                                     seed=options.seed))["kid_mean"]
    return kid["kid_mean"] / kid_max


def _serve(row: pd.Series):
    cfg = from_dict({**run_config_dict(row), "eval_split": "val"})
    if cfg.method == "gauss":
        return cfg, _serve_gauss(load_generator(cfg.teacher_checkpoint).generator, cfg, "cpu")
    return cfg, serve_generator(load_generator(row["checkpoint"]).generator, cfg, "cpu")


def measure(rows: pd.DataFrame, sizes: list[int], repeats: int) -> pd.DataFrame:
    """One line per (trial, N): first-N NKID, std over disjoint draws, NKID on all validation pairs."""
    lines, real_feats = [], {}
    for _, row in rows.iterrows():
        cfg, serve = _serve(row)
        val = load_splits(cfg).val
        key = (cfg.preset, cfg.resolved_data_seed)
        if key not in real_feats:
            (real_feats[key],) = features_of_batches([val.y])
        real = real_feats[key]
        (fake,) = features_of_batches([serve(val.x)])
        options = KidOptions.from_config(cfg)
        order = torch.randperm(len(val), generator=torch.Generator().manual_seed(12345))
        everything = _nkid(real, fake, options)
        for n in sizes:
            draws = [order[i * n:(i + 1) * n] for i in range(repeats) if (i + 1) * n <= len(val)]
            values = [_nkid(real[d], fake[d], options) for d in draws]
            lines.append({"trial_id": row["trial_id"], "study": row["study"] if row["stage"] == "search" else row["trial_id"],
                          "method": row["method"], "n": n,
                          "val_leak": row["val_leak"], "row_val_nkid": row["val_nkid"], "row_n": cfg.kid_max_images,
                          "first": _nkid(real[:n], fake[:n], options), "std": float(np.std(values, ddof=1)),
                          "draws": len(values), "all": everything, "n_all": len(val),
                          **{f"draw{i}": v for i, v in enumerate(values)}})
        print(f"{row['trial_id']} {row['method']}: all {everything:.4f} (row {row['val_nkid']:.4f})", flush=True)
    return pd.DataFrame(lines)


def ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Per study and N: Kendall's tau of first-N vs all-image NKID, pairs ordered alike, same Pareto front."""
    out = []
    for (study, n), g in table.groupby(["study", "n"]):
        pairs = list(itertools.combinations(range(len(g)), 2))
        alike = sum(np.sign(g["first"].iat[i] - g["first"].iat[j]) == np.sign(g["all"].iat[i] - g["all"].iat[j])
                    for i, j in pairs)
        tau = kendalltau(g["first"], g["all"]).statistic if len(g) > 1 else math.nan
        leak = g["val_leak"].to_numpy()
        front_n = pareto_mask(leak, g["first"].to_numpy())
        front_all = pareto_mask(leak, g["all"].to_numpy())
        gaps = [abs(g["all"].iat[i] - g["all"].iat[j]) for i, j in pairs]
        draws = g.filter(regex=r"^draw\d+$").to_numpy()
        pair_std = [float(np.std(draws[i] - draws[j], ddof=1)) for i, j in pairs]  # same images for both trials
        out.append({"study": study, "n": n, "trials": len(g), "pairs_alike": f"{alike}/{len(pairs)}", "tau": tau,
                    "same_front": bool((front_n == front_all).all()), "median_std": g["std"].median(),
                    "median_pair_diff_std": np.median(pair_std) if pairs else math.nan,
                    "pairs_gap_over_2std": f"{sum(gap > 2 * sd for gap, sd in zip(gaps, pair_std))}/{len(pairs)}",
                    "smallest_gap_all": min(gaps) if gaps else math.nan})
    return pd.DataFrame(out)


def picks_by_count(results: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The sweep's matched picks with search NKID on the first N pairs, per N, and with all pairs everywhere."""
    out = {}
    search = results["stage"].eq("search")
    everything = table.drop_duplicates("trial_id").set_index("trial_id")["all"]
    for n, g in table.groupby("n"):
        first = g.set_index("trial_id")["first"]
        searched = results.assign(val_nkid=results["val_nkid"].where(~search, results["trial_id"].map(first)))
        out[f"search on first {n}"] = matched_picks(searched).set_index("pick")["trial_id"]
    out["all pairs"] = matched_picks(results.assign(val_nkid=results["trial_id"].map(everything))).set_index("pick")["trial_id"]
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir")
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--csv", default=None, help="write the per-trial table here")
    args = ap.parse_args(argv)
    results = pd.read_parquet(Path(args.sweep_dir) / "results")
    results = results[results["stage"].isin(["search", "teacher"]) & results["status"].eq("ok")].sort_values("trial_id")
    table = measure(results, args.sizes, args.repeats)
    if args.csv:
        table.to_csv(args.csv, index=False)
    pd.set_option("display.width", 200)
    print("\nper trial (NKID on the first N validation pairs, std over disjoint draws of N, NKID on all):")
    print(table.round(4).to_string(index=False))
    print("\nper N over all trials: median std, median |first - all|")
    print(table.assign(err=(table["first"] - table["all"]).abs()).groupby("n")[["std", "err"]].median().round(4))
    print("\nranking within each study (first N vs all validation pairs):")
    print(ranking(table[table["method"] != "teacher"]).round(4).to_string(index=False))
    print("\nmatched picks (trial ids) with the search trials' NKID on the first N pairs, and with all pairs:")
    print(picks_by_count(results, table).to_string())


if __name__ == "__main__":
    main()
