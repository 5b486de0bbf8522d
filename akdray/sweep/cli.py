"""Pareto sweep: reference models and teachers, then one multi-objective Optuna search per defense (AKD, DMP, DP-SGD, Gauss).

    python sweeps/pareto.py                          # cpu-small end to end on this machine
    python sweeps/pareto.py --dry-run                # print the plan, start nothing
    python sweeps/pareto.py --smoke-test             # tiny configs, every stage and defense
    python sweeps/pareto.py --address auto --storage s3://BUCKET/akdray --gpus-per-trial 0.25 --preset facades
    python sweeps/pareto.py --name NAME --resume     # finish a sweep whose driver died
    python sweeps/pareto.py --confirm SWEEP_DIR      # re-run the matched picks with 5 unseen seeds (100..104)
    python sweeps/pareto.py --refine-picks           # then add trials around unmatched baseline picks

Fair comparison (issue #9): every defense gets the same trials per seed (``--num-samples N``: N each);
the search objectives are measured on a validation set (``val_leak``, ``val_nkid``) and search trials
never load the test images; the confirmation stage runs on seeds no search used.

Each trial is a Ray Train run (DataParallelTrainer) launched from a Ray Tune trial (akdray/sweep/); results
stream into Parquet: ``pd.read_parquet("SWEEP_DIR/results")`` (SWEEP_DIR = STORAGE/NAME).
Exit codes: 0 done, 1 no teacher trained (nothing to search), 2 bad flags, fields, data, storage or no
Ray cluster (refused before Ray starts; nothing written), 3 results could not be stored mid-sweep (disk
full, permissions; nothing is marked done: free the storage, then --resume), 130 interrupted (Ctrl-C;
finish with --resume).
"""
from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from dataclasses import replace
from typing import Callable, Sequence

import pandas as pd

from akdray.attacks.registry import ATTACKS
from akdray.config import PRESETS, ConfigError, parse_overrides
from akdray.results import RESULTS, SWEEP_FILE
from akdray.storage import StorageError, exists, join, read_bytes
from akdray.sweep.spec import (
    DEFAULT_REFERENCES, DEFAULT_SAMPLES, DEFENSES, SEARCH_KID_IMAGES, SMOKE_SAMPLES, SweepSpec, base_config, describe,
    optuna_url,
    study_space, validate,
)
from analysis.picks import CONFIRM_SEED_START

DEFAULT_STORAGE = "~/akdray_sweeps"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweeps/pareto.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="training recipe (default cpu-small; tiny with --smoke-test)")
    p.add_argument("--num-samples", default=None, metavar="N|DEFENSE=N,...",
                   help=f"Optuna trials per defense and seed: one number N (N for each: equal budgets), or e.g. "
                        f"akd=6,gauss=2 (unequal; the plan says so) "
                        f"(default {','.join(f'{k}={v}' for k, v in DEFAULT_SAMPLES.items())})")
    p.add_argument("--seeds", type=int, default=1, help="teacher seeds (one search per defense and seed); default 1")
    p.add_argument("--references", type=int, default=None,
                   help=f"reference models per seed for the calibrated attacks lira and rmia: 0 (loss attack only) "
                        f"or >= 2 (default {DEFAULT_REFERENCES})")
    p.add_argument("--references-per-trial", type=int, default=1, metavar="N",
                   help="reference models trained one after another in one trial (Ray's start-up paid once per "
                        "N; a cluster still spreads the packs over its slots); default 1")
    p.add_argument("--search-kid-images", type=int, default=SEARCH_KID_IMAGES, metavar="N",
                   help=f"KID images per set of a search trial's val_nkid, at most kid_max_images (default {SEARCH_KID_IMAGES}; "
                        f"0: kid_max_images, which teachers and confirmation runs use)")
    p.add_argument("--defenses", default=",".join(DEFENSES), help=f"comma list out of {','.join(DEFENSES)}")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: what the cluster holds)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractions share a GPU (e.g. 0.25); default 1 if the cluster has GPUs, else 0")
    p.add_argument("--max-failures", type=int, default=1,
                   help="Tune retries of a failed trial (with --train-workers 1, Train also retries a crashed worker twice)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto); default: start local Ray")
    p.add_argument("--train-workers", type=int, choices=(0, 1), default=None,
                   help="1: a Ray Train worker group per run (Train restarts a crashed worker); 0: Ray Train's local "
                        "mode, the run inside the Tune trial's process (no per-run Train controller, helper actors or "
                        "worker: less start-up and memory). Default: 0 on the local cluster the sweep starts (also "
                        "--address local), 1 on a given cluster")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="local folder or s3://bucket/prefix (sweep dir = STORAGE/NAME)")
    p.add_argument("--name", default=None, help="sweep name (default pareto-PRESET, or smoke-PRESET with --smoke-test)")
    p.add_argument("--resume", action="store_true", help="finish the sweep STORAGE/NAME (its stored settings are used)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without starting Ray")
    p.add_argument("--smoke-test", action="store_true",
                   help="the tiny preset (its sizes over --preset if one is given), 1 seed, 1 trial per defense")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="RunConfig override for every trial (repeatable); a searched field set here is fixed")
    p.add_argument("--confirm", metavar="SWEEP_DIR", default=None,
                   help="confirmation stage: re-run the matched picks of SWEEP_DIR with --confirm-seeds seeds")
    p.add_argument("--confirm-seeds", type=int, default=5,
                   help="seeds of the confirmation stage (default 5: --confirm-seed-start .. +4)")
    p.add_argument("--confirm-seed-start", type=int, default=CONFIRM_SEED_START,
                   help=f"first confirmation seed (default {CONFIRM_SEED_START}); must not overlap the search seeds")
    p.add_argument("--refine-picks", action="store_true",
                   help="after the searches, add trials around every baseline pick with no trial within tolerance "
                        "of AKD's pick (10 %% NKID / 0.02 leak), in a narrowed search space")
    p.add_argument("--refine-trials", type=int, default=4, help="--refine-picks: trials per unmatched pick and round")
    p.add_argument("--refine-rounds", type=int, default=2, help="--refine-picks: at most this many rounds")
    p.add_argument("-q", "--quiet", action="store_true", help="less Tune output")
    return p


def confirm_spec(args: argparse.Namespace) -> SweepSpec:
    """The stored sweep at ``--confirm SWEEP_DIR``, with this call's resources."""
    uri = args.confirm if "://" in args.confirm else os.path.abspath(os.path.expanduser(args.confirm))
    uri = uri.rstrip("/")
    if not exists(join(uri, SWEEP_FILE)):
        raise ConfigError(f"--confirm: {uri} is not a sweep folder ({SWEEP_FILE} missing)")
    if args.confirm_seeds < 1:
        raise ConfigError("--confirm-seeds must be at least 1")
    stored = SweepSpec.from_json(read_bytes(join(uri, SWEEP_FILE)).decode(), source=join(uri, SWEEP_FILE))
    reused = sorted(set(confirm_seed_list(args)) & set(stored.seed_list))
    if reused:
        raise ConfigError(f"confirmation seeds {reused} were used by the search (seeds {stored.seed_list}); "
                          "confirm on unseen seeds: --confirm-seed-start above them")
    storage, name = uri.rsplit("/", 1)
    from akdray.sweep.stages import refuse_moved_unfinished  # imports Ray

    refuse_moved_unfinished(stored, uri)
    return replace(stored, storage=storage, name=name, cpus_per_trial=args.cpus_per_trial,
                   gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                   train_workers=train_workers(args), verbose=0 if args.quiet else 1)


def train_workers(args: argparse.Namespace) -> int:
    """--train-workers, or by where the sweep runs: Ray Train's local mode (0) on a local cluster this
    process starts, a worker group per run (1) on a cluster given by --address."""
    return args.train_workers if args.train_workers is not None else int(args.address not in (None, "local"))


def confirm_seed_list(args: argparse.Namespace) -> list[int]:
    return list(range(args.confirm_seed_start, args.confirm_seed_start + args.confirm_seeds))


def run_confirm(args: argparse.Namespace) -> int:
    from akdray.sweep.confirm import run_confirm_stage
    from analysis.load import NoResultsError, load_results
    from analysis.picks import confirmation_configs

    try:
        from akdray.sweep.flags import check_args

        check_args(args)
        spec = confirm_spec(args)
        configs = confirmation_configs(load_results(spec.sweep_uri), seeds=confirm_seed_list(args))
    except (ConfigError, ValueError, NoResultsError) as exc:
        print(f"pareto: error: {exc}", file=sys.stderr)
        return 2
    picks = sorted({label for label, _ in configs})
    print(f"confirmation of {spec.sweep_uri}: {len(picks)} pick(s) x {args.confirm_seeds} seed(s) = "
          f"{len(configs)} runs: {', '.join(picks)}; selection seeds {spec.seed_list}, confirmation seeds "
          f"{confirm_seed_list(args)}")
    if args.dry_run:
        from akdray.sweep.confirm import unconfirmed

        todo = unconfirmed(spec, configs)
        print(f"  {len(configs) - len(todo)} of {len(configs)} already confirmed with their current recipe; to run: "
              + (", ".join(f"{label} seed {c['seed']}" for label, c in todo) or "nothing"))
        return 0
    try:
        connect(args.address)
    except (ConfigError, ConnectionError, RuntimeError, ValueError) as exc:
        print(f"pareto: error: cannot connect to Ray at {args.address!r}: {exc}", file=sys.stderr)
        return 2
    df = _run_stages(lambda: run_confirm_stage(spec, configs, resume=args.resume))
    if isinstance(df, int):
        return df
    failed = int((df["status"] != "ok").sum()) if not df.empty else 0
    print(f"{len(df)} confirmation rows ({failed} failed); report: python -m analysis.report {spec.sweep_uri}")
    return 0


def _run_stages(stages: Callable[[], pd.DataFrame]) -> pd.DataFrame | int:
    """The rows the stages return, or the exit code where they stopped: 130 interrupted (``--resume``
    continues), 3 results that could not be stored."""
    from akdray.sweep.stages import SweepInterrupted

    try:
        return stages()
    except SweepInterrupted as exc:
        print(f"pareto: {exc}", file=sys.stderr)
        return 130
    except StorageError as exc:
        print(f"pareto: storage error: {exc}", file=sys.stderr)
        return 3


def _num_samples(text: str | None, defenses: Sequence[str], smoke: bool) -> dict[str, int]:
    samples = dict(SMOKE_SAMPLES if smoke else DEFAULT_SAMPLES)
    if text is None:
        return samples
    if text.strip().isdigit():
        return {d: int(text) for d in samples}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in DEFENSES or not value.strip().isdigit():
            raise ConfigError(f"--num-samples expects N or DEFENSE=N[,...] with a defense in "
                              f"{','.join(DEFENSES)}; got {item!r}")
        samples[name.strip()] = int(value)
    return samples


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    defenses = tuple(d.strip() for d in args.defenses.split(",") if d.strip())
    preset = args.preset or ("tiny" if args.smoke_test else "cpu-small")
    overrides: dict = dict(PRESETS["tiny"]) if args.smoke_test and preset != "tiny" else {}
    user = parse_overrides(args.overrides)
    overrides.update(user)
    root = overrides.get("data_root") or PRESETS[preset].get("data_root", "")
    if root and "://" not in root:  # trials run in Ray's session folders: resolve on the driver, now
        overrides["data_root"] = os.path.abspath(os.path.expanduser(root))
    return SweepSpec(
        name=args.name or f"{'smoke' if args.smoke_test else 'pareto'}-{preset}", storage=args.storage,
        preset=preset, overrides=overrides, fixed=tuple(user), seeds=1 if args.smoke_test else args.seeds,
        defenses=defenses, num_samples=_num_samples(args.num_samples, defenses, args.smoke_test),
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, max_failures=args.max_failures,
        train_workers=train_workers(args),
        verbose=0 if args.quiet else 1, refine_trials=args.refine_trials if args.refine_picks else 0,
        refine_rounds=args.refine_rounds,
        references=DEFAULT_REFERENCES if args.references is None else args.references,
        references_per_trial=args.references_per_trial, search_kid_images=args.search_kid_images,
    )


def probe_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail within seconds if nothing listens at a ``host:port`` / ``ray://host:port`` address.

    Ray itself retries an unreachable GCS address for minutes; ``auto``/``local``/None are Ray's own.
    """
    if not address or address in ("auto", "local") or address.startswith(("http://", "https://")):
        return
    host, _, port = address.split("://")[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                          "start one with `ray start --head` or leave --address out for a local one") from None


# A local cluster started by the sweep (no --address): Ray Train's per-run helpers that a laptop does
# not need are off, and the Train controller polls its one worker every 0.25 s instead of 2 s (a run's
# end is noticed sooner). Values already in the environment win. Clusters keep Ray's defaults
# (preemption watcher for spot nodes, Prometheus metrics). benchmarks/bench_sweep.py --smoke measures it.
LOCAL_TRAIN_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",  # no spot preemption on this machine
    "RAY_TRAIN_METRICS_ENABLED": "0",  # Prometheus metrics of Train: no scraper on a laptop
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
}


def connect(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        probe_address(address)
        # Worker progress bars would flood the terminal; Tune's table shows the progress instead.
        env = {"TQDM_DISABLE": "1"}
        if address is None:
            env.update({k: os.environ.get(k, v) for k, v in LOCAL_TRAIN_ENV.items()})
        ray.init(address=address, runtime_env={"env_vars": env})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.confirm:
        return run_confirm(args)
    from akdray.sweep import flags

    try:
        flags.check_args(args)  # bounds, names, URIs: before any config is built (--seeds 10**8 would not end)
        spec = spec_from_args(args)
        flags.check_spec(spec)
        if not args.resume:
            validate(spec)
            flags.check_data(base_config(spec, "teacher", spec.seed_list[0]))
        if args.dry_run:  # probes the storage and remote data as the real run would
            flags.probe(spec, spec.overrides.get("data_root") or PRESETS[spec.preset].get("data_root", ""))
            print(describe(spec, validate(spec)) if not args.resume else flags.resume_preview(spec, args, parser))
            return 0
        flags.probe(spec, "")
        if args.resume:  # the stored sweep.json is read and checked before Ray starts
            flags.resume_preview(spec, args, parser)
        probe_address(args.address)
        from akdray.sweep.stages import init_sweep

        spec = init_sweep(spec, args.resume)  # sweep.json created exclusively, before Ray starts
        if args.resume:  # the stored sweep, checked as a new one is
            flags.check_spec(spec)
            validate(spec)
            ignored = flags.ignored_on_resume(args, parser)
            if ignored:
                print(f"pareto: --resume ignores {', '.join(ignored)} (the stored sweep's settings are used)",
                      file=sys.stderr)
    except (ConfigError, ValueError, StorageError) as exc:
        print(f"pareto: error: {exc}", file=sys.stderr)
        return 2
    try:
        connect(args.address)
    except (ConfigError, ConnectionError, RuntimeError, ValueError) as exc:  # e.g. auto with no cluster
        print(f"pareto: error: cannot connect to Ray at {args.address!r}: {exc}", file=sys.stderr)
        return 2
    from akdray.sweep.stages import run_sweep
    from analysis.fronts import frontier_rows
    from analysis.picks import matched_picks

    df = _run_stages(lambda: run_sweep(spec, resume=args.resume, pick_fn=matched_picks, rows_fn=frontier_rows))
    if isinstance(df, int):
        return df
    print(format_front(df, spec))
    print(f'\nresults: pd.read_parquet("{join(spec.sweep_uri, RESULTS)}")')
    print(f"optuna:  optuna-dashboard {optuna_url(spec)}")
    teachers_ok = not df.empty and bool(((df["stage"] == "teacher") & (df["status"] == "ok")).any())
    return 0 if teachers_ok else 1


def _privacy(r, prefix: str = "val_") -> str:
    """(val_)leak, then each attack's AUC (akdray.attacks.registry; "-" where not run), and (val_)nkid."""
    aucs = " ".join(f"{a}={v:.3f}" if isinstance(v := getattr(r, f"{prefix}{a}_auc", None), float) and math.isfinite(v)
                    else f"{a}=-" for a in ATTACKS)
    return f"{prefix}leak={getattr(r, prefix + 'leak'):.4f} (AUC {aucs}) {prefix}nkid={getattr(r, prefix + 'nkid'):.4f}"


def format_front(df: pd.DataFrame, spec: SweepSpec) -> str:
    """Per study: the teachers and the non-dominated points with the fields ``spec``'s study of the
    defense searched (validation set)."""
    from analysis.fronts import pareto_front

    if df.empty:
        return "no results"
    lines = []
    for r in df[(df["stage"] == "teacher") & (df["status"] == "ok")].itertuples():
        label = r.pick if isinstance(r.pick, str) else "teacher"
        lines.append(f"{label} seed {r.seed}: {_privacy(r)}")
    for (defense, seed), group in df[df["stage"] == "search"].groupby(["study", "seed"], observed=True):
        params = [p.name for p in study_space(spec, str(defense))]
        failed = int((group["status"] != "ok").sum())
        lines.append(f"{defense} seed {seed}: {len(group)} trial(s), {failed} failed; Pareto front:")
        ok = group[group["status"] == "ok"].dropna(subset=["val_leak", "val_nkid"])
        for r in pareto_front(ok, "val_leak", "val_nkid").itertuples():
            values = ", ".join(f"{p}={getattr(r, p):.4g}" for p in params)
            lines.append(f"  {_privacy(r)}  ({values})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
