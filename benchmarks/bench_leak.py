"""The leak axis and the attack statistics on simulated audits (no training): why ``leak`` changed, and what it costs.

    python benchmarks/bench_leak.py [--draws 200] [--coverage-draws 2000]

1. **No-leak audits.** A target that never saw its "members": per image one difficulty, the target's
   and K = 2 reference models' losses are that difficulty times independent log-normal noise, so
   members and non-members are exchangeable. Per audit size (100 vs 1,000: Table II's test block
   before issue #27; 200 vs 1,000: the test block now; 100 vs 500: the validation block; 200 vs 20:
   the facades preset's validation block) and ``--draws`` draws: the new ``leak`` (attack chosen on
   the other half, unfolded), the maximum ``leak_max`` over loss, lira and rmia and its permutation
   null mean, how often ``leak_p`` > 0.05, and the ``leak`` of akdray before issue #27 (max over loss,
   cal and lira) on the same draws.
2. **AUC interval coverage** on binormal scores (members N(d, 1), non-members N(0, 1), AUC = Phi(d / sqrt 2)):
   the logit-DeLong interval with its variance floor against the plain DeLong and percentile-bootstrap
   intervals, at 100 vs 1,000 and 100 vs 500.
3. **Cost** of the attack suite per audited block (CPU seconds, this machine, 1 thread): the attacks and
   their columns, and the 1,000 permutations of ``leak_p``, at K = 1, 2, 4, 8 reference models.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import norm, rankdata

from akdray.attacks.leak import permutation_null
from akdray.attacks.metrics import auc_interval, delong
from akdray.attacks.scores import lira_score
from akdray.attacks.suite import run_attacks


def no_leak_losses(rng, n_in: int, n_out: int, k: int = 2):
    difficulty = rng.gamma(4, 0.05, n_in + n_out)
    target = difficulty * rng.lognormal(0, 0.15, n_in + n_out)
    refs = difficulty * rng.lognormal(0, 0.15, (k, n_in + n_out))
    return target[:n_in], target[n_in:], refs[:, :n_in], refs[:, n_in:]


def old_leak(member, nonmember, ref_in, ref_out) -> float:
    """akdray's leak before issue #27: max over loss, cal and lira of max(AUC, 1 - AUC)."""
    labels = np.r_[np.ones(len(member), bool), np.zeros(len(nonmember), bool)]
    target, refs = np.r_[member, nonmember], np.c_[ref_in, ref_out]
    aucs = [delong(labels, s)[0] for s in (-target, refs.mean(axis=0) - target, lira_score(target, refs))]
    return max(max(a, 1 - a) for a in aucs)


def no_leak_table(draws: int) -> None:
    print("| members vs non-members | leak: mean [5 %, 95 %] | leak_max: mean [5 %, 95 %] | leak_max's null mean "
          "| leak_p > 0.05 | old leak (loss, cal, lira): mean [5 %, 95 %] |\n|---|---|---|---|---|---|")
    for n_in, n_out in ((100, 1000), (200, 1000), (100, 500), (200, 20)):
        rng = np.random.default_rng(n_in * 7 + n_out)
        audits = [no_leak_losses(rng, n_in, n_out) for _ in range(draws)]
        rows = [run_attacks(*losses, seed=i)[0] for i, losses in enumerate(audits)]
        leak, new_max = np.array([r["leak"] for r in rows]), np.array([r["leak_max"] for r in rows])
        null, p = np.array([r["leak_null_mean"] for r in rows]), np.array([r["leak_p"] for r in rows])
        old = np.array([old_leak(*losses) for losses in audits])
        q = lambda v: f"{v.mean():.3f} [{np.percentile(v, 5):.3f}, {np.percentile(v, 95):.3f}]"  # noqa: E731
        print(f"| {n_in} vs {n_out} | {q(leak)} | {q(new_max)} | {null.mean():.3f} | {np.mean(p > 0.05):.2f} | "
              f"{q(old)} |", flush=True)


def _bootstrap(pos, neg, rng, n_boot=1000):
    """The stratified percentile bootstrap akdray used before issue #27 (rank sums, vectorised)."""
    sample = np.concatenate([pos[rng.integers(0, len(pos), (n_boot, len(pos)))],
                             neg[rng.integers(0, len(neg), (n_boot, len(neg)))]], axis=1)
    ranks = rankdata(sample, axis=1)
    a = (ranks[:, :len(pos)].sum(axis=1) - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    return np.percentile(a, [2.5, 97.5])


def coverage_table(draws: int, bootstrap_share: int = 5) -> None:
    print("\n| members vs non-members | true AUC | logit-DeLong + floor | plain DeLong | percentile bootstrap* |"
          "\n|---|---|---|---|---|")
    rng = np.random.default_rng(11)
    for n_in, n_out in ((100, 1000), (100, 500)):
        labels = np.r_[np.ones(n_in, bool), np.zeros(n_out, bool)]
        for true in (0.5, 0.7, 0.9, 0.95, 0.99, 0.997):
            d = np.sqrt(2) * norm.ppf(true)
            hit = np.zeros(3)
            boot_draws = draws // bootstrap_share if bootstrap_share else 0
            for i in range(draws):
                pos, neg = rng.normal(d, 1, n_in), rng.normal(0, 1, n_out)
                a, var = delong(labels, np.r_[pos, neg])
                lo, hi = auc_interval(a, var, n_in, n_out)
                half = 1.959964 * np.sqrt(var)
                hit[0] += lo <= true <= hi
                hit[1] += a - half <= true <= a + half
                if i < boot_draws:
                    blo, bhi = _bootstrap(pos, neg, rng)
                    hit[2] += blo <= true <= bhi
            boot = f"{hit[2] / boot_draws:.3f}" if boot_draws else "not run"
            print(f"| {n_in} vs {n_out} | {true} | {hit[0] / draws:.3f} | {hit[1] / draws:.3f} | {boot} |", flush=True)
    if bootstrap_share:
        print(f"\n* the bootstrap on 1 in {bootstrap_share} draws ({draws // bootstrap_share}; 1,000 resamples each)")


def cost_table() -> None:
    print("\n| K | attacks + columns [s] | 1,000 permutations [s] | per audited block [s] |\n|---|---|---|---|")
    rng = np.random.default_rng(3)
    for k in (1, 2, 4, 8):
        losses = no_leak_losses(rng, 200, 1000, k)
        t0 = time.process_time()
        for _ in range(5):
            row, scores = run_attacks(*losses, seed=0)
        total = (time.process_time() - t0) / 5
        labels = np.r_[np.ones(200, bool), np.zeros(1000, bool)]
        t0 = time.process_time()
        for _ in range(5):
            permutation_null(labels, scores, 1000, 0)
        perm = (time.process_time() - t0) / 5
        print(f"| {k} | {total - perm:.3f} | {perm:.3f} | {total:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--coverage-draws", type=int, default=2000)
    ap.add_argument("--only", choices=("leak", "coverage", "cost"))
    ap.add_argument("--bootstrap-share", type=int, default=5, help="bootstrap 1 in N coverage draws (0: none)")
    args = ap.parse_args()
    if args.only in (None, "leak"):
        no_leak_table(args.draws)
    if args.only in (None, "coverage"):
        coverage_table(args.coverage_draws, args.bootstrap_share)
    if args.only in (None, "cost"):
        cost_table()


if __name__ == "__main__":
    main()
