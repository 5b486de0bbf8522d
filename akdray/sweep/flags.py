"""The sweep driver's flag checks and bounds (runs in the driver; no Ray, no torch).

Every count flag has an upper bound a real sweep could finish (``--seeds 10**8`` or ``--confirm-seeds
10**9`` used to run until killed), every float flag must be finite (``--cpus-per-trial nan`` was
accepted), names are one path component, storage and data URIs carry no query string, and a dry run
probes the storage and remote data as the real run would. A stored ``sweep.json`` is checked field by
field (``"seeds": "abc"`` used to end in a traceback). Bounds (docs/sweeps.md):

=====================================  ==========
flag (SweepSpec field)                 range
=====================================  ==========
--seeds, --confirm-seeds               1..1,000
--num-samples (per defense)            1..10,000
--references                           0 or 2..64
--references-per-trial                 1..64
--refine-trials / --refine-rounds      0..1,000 / 1..100
--max-concurrent                       1..100,000
--cpus-per-trial                       (0, 1024], finite
--gpus-per-trial                       [0, 64], finite
--max-failures                         0..100
--search-kid-images                    0 or 2..100,000
--confirm-seed-start (+ seeds)         0..2**31-1
=====================================  ==========
"""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, fields

from akdray.bounds import MAX_REFERENCES
from akdray.config import MAX_SEED, ConfigError
from akdray.preflight import check_count, check_name, check_uri, probe_folder, probe_storage

MAX_SEEDS = 1000
BOUNDS = {  # SweepSpec field -> (flag, low, high)
    "seeds": ("--seeds", 1, MAX_SEEDS), "references": ("--references", 0, MAX_REFERENCES),
    "references_per_trial": ("--references-per-trial", 1, 64), "refine_trials": ("--refine-trials", 0, 1000),
    "refine_rounds": ("--refine-rounds", 1, 100), "max_concurrent": ("--max-concurrent", 1, 100_000),
    "max_failures": ("--max-failures", 0, 100), "train_max_failures": ("train_max_failures", 0, 100),
    "search_kid_images": ("--search-kid-images", 0, 100_000),
}
FLOAT_BOUNDS = {"cpus_per_trial": ("--cpus-per-trial", 0.0, 1024.0), "gpus_per_trial": ("--gpus-per-trial", 0.0, 64.0)}
MAX_SAMPLES = 10_000
# Flags a resumed sweep does not apply: its stored settings are used (storage, name, resources and
# --refine-picks are taken from the call).
RESUME_IGNORES = ("preset", "num_samples", "seeds", "references", "references_per_trial", "search_kid_images",
                  "defenses", "max_failures", "smoke_test", "overrides")


def check_args(args: argparse.Namespace) -> None:
    """Flags of this call that no stored spec carries: name, storage, confirmation seeds, float flags."""
    if args.name is not None:
        check_name(args.name)
    check_uri(args.storage, "--storage")
    for name, (flag, low, high) in FLOAT_BOUNDS.items():
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and low <= value <= high and (name != "cpus_per_trial" or value > 0)):
            raise ConfigError(f"{flag} must be finite and in {'(' if name == 'cpus_per_trial' else '['}{low:g}, {high:g}], "
                              f"got {value}")
    if args.seeds > MAX_SEEDS:  # checked here too: --smoke-test would hide it from the spec
        raise ConfigError(f"--seeds must be at most {MAX_SEEDS:,}, got {args.seeds}")
    if args.confirm_seeds > MAX_SEEDS:
        raise ConfigError(f"--confirm-seeds must be at most {MAX_SEEDS:,}, got {args.confirm_seeds}")
    check_count("--confirm-seed-start", args.confirm_seed_start, 0, MAX_SEED - max(args.confirm_seeds, 1) + 1)
    names = [d.strip() for d in args.defenses.split(",")]
    if not any(names) or "" in names:
        raise ConfigError(f"--defenses {args.defenses!r}: give a comma list of defenses with no empty entry")
    twice = sorted({d for d in names if names.count(d) > 1})
    if twice:
        raise ConfigError(f"--defenses names {', '.join(twice)} twice: each defense has one study per seed")


def check_spec(spec) -> None:
    """Types and bounds of every SweepSpec field (a stored sweep.json is read back into one)."""
    for f in fields(spec):
        value = getattr(spec, f.name)
        default = (f.default if f.default is not MISSING else
                   f.default_factory() if f.default_factory is not MISSING else "")  # no default: name, storage
        if default is None:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and (isinstance(default, float) or float(value).is_integer())
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"sweep field {f.name!r}: expected {type(default).__name__ if default is not None else 'a number or null'}, "
                              f"got {value!r}")
    for name, (flag, _, high) in BOUNDS.items():  # lower bounds: spec.validate, with their own messages
        value = getattr(spec, name, None)
        if value is not None and value > high:
            raise ConfigError(f"{flag} must be at most {high:,}, got {value}")
    for name, (flag, low, high) in FLOAT_BOUNDS.items():
        value = getattr(spec, name, None)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{flag} must be finite and in [{low:g}, {high:g}], got {value}")
    for defense, n in dict(getattr(spec, "num_samples", {})).items():
        if not isinstance(n, int) or isinstance(n, bool):
            raise ConfigError(f"--num-samples {defense}: expected an integer, got {n!r}")
        if n > MAX_SAMPLES:
            raise ConfigError(f"--num-samples {defense} must be at most {MAX_SAMPLES:,}, got {n}")
    check_count("last seed (seed + --seeds - 1)", int(spec.overrides.get("seed", 0) or 0) + spec.seeds - 1, 0, MAX_SEED)
    if len(set(spec.defenses)) != len(spec.defenses):
        raise ConfigError(f"defenses {list(spec.defenses)} name one twice")


def probe(spec, data_root: str) -> None:
    """What a dry run checks beyond the plan: the storage can hold the sweep, remote data exists."""
    probe_storage(spec.storage)
    if data_root and "://" in data_root:
        probe_folder(data_root, "field 'data_root'")
    elif data_root:
        check_uri(data_root, "field 'data_root'")


def ignored_on_resume(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags given to ``--resume`` that it will not apply (the stored sweep's settings win)."""
    given = []
    for name in RESUME_IGNORES:
        if getattr(args, name, None) != parser.get_default(name):
            given.append("--" + name.replace("_", "-").replace("overrides", "set"))
    return given


def check_data(cfg) -> None:
    """A local aligned folder: one image size across the splits a run reads, and at least
    MIN_AUDIT_PER_SIDE audited members (per half) and non-members (akdray.audit_inputs)."""
    from pathlib import Path

    if cfg.data_source != "aligned" or "://" in cfg.data_root or not Path(cfg.data_root).is_dir():
        return  # URIs are probed by a dry run and fetched by each worker; a missing folder is validate()'s
    from akdray.audit_inputs import check_audit_counts, check_split_sizes
    from akdray.data.aligned import list_images

    root = Path(cfg.data_root)
    check_split_sizes(root, (cfg.train_split, cfg.proxy_split, cfg.test_split), None, label="data_root")
    count = lambda split: len(list_images(root / split))  # noqa: E731
    members = (cfg.n_train or count(cfg.train_split)) // 2  # a validation and a test half
    test = cfg.n_test or (count(cfg.test_split) // 2 if cfg.test_split == cfg.proxy_split else count(cfg.test_split))
    check_audit_counts(members, min(test, cfg.resolved_n_val), f"data_root {root}")


def resume_preview(spec, args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """``--resume --dry-run``: the stored sweep is read and checked as a resume would; says what is ignored."""
    from dataclasses import replace

    from akdray.results import SWEEP_FILE
    from akdray.storage import exists, join, read_bytes
    from akdray.sweep.spec import SweepSpec, validate

    path = join(spec.sweep_uri, SWEEP_FILE)
    if not exists(path):
        raise ConfigError(f"--resume: no sweep at {spec.sweep_uri} ({SWEEP_FILE} missing)")
    stored = SweepSpec.from_json(read_bytes(path).decode(), source=path)
    check_spec(stored)
    validate(replace(stored, storage=spec.storage, name=spec.name))
    ignored = ignored_on_resume(args, parser)
    return f"would resume {spec.sweep_uri}" + (f"; ignored (the stored sweep's settings are used): {', '.join(ignored)}"
                                               if ignored else "")
