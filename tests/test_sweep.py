"""The sweep without Ray: the plan, flags, schema, row finalisation, Optuna bookkeeping, the study
router and reference packing (the Ray end-to-end tests are in tests/test_sweep_ray.py)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from akdray.config import ConfigError
from akdray.results import RESULT_SCHEMA, row_table
from akdray.schema import METRIC_KEYS
from akdray.sweep import cli as pareto
from akdray.sweep.search import FailureAwareOptunaSearch, StudyRouter, study_searcher
from akdray.sweep.spec import SweepSpec, base_config, search_space, validate
from akdray.sweep.trial import finalize_row, ray_times


# ------------------------------------------------------------------------------------------------
# No Ray cluster (test_packed_reference_runs... trains reference models in this process: marked train)
# ------------------------------------------------------------------------------------------------
def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys):
    assert pareto.main(["--dry-run", "--storage", str(tmp_path), "--num-samples", "akd=2,gauss=1"]) == 0
    out = capsys.readouterr().out
    for word in ("stage 0 'reference': 2 reference model(s) per seed", "minimise val_leak & val_nkid", "stage 1 'teacher'", "akd-seed0: 2 trial(s)", "distill_lambda in [1, 1000] (log)",
                 "proxy_size in [25, 400]", "dpsgd-seed0", "gauss-seed0: 1 trial(s)", "optuna.db"):
        assert word in out
    assert not any(tmp_path.iterdir())


def test_train_mode_is_local_on_the_sweeps_own_cluster_and_a_worker_group_on_a_given_one(tmp_path, capsys):
    parse = pareto.build_parser().parse_args
    assert pareto.spec_from_args(parse(["--storage", str(tmp_path)])).train_workers == 0
    assert pareto.spec_from_args(parse(["--storage", str(tmp_path), "--address", "auto"])).train_workers == 1
    assert pareto.spec_from_args(parse(["--storage", str(tmp_path), "--address", "local"])).train_workers == 0
    assert pareto.spec_from_args(parse(["--storage", str(tmp_path), "--train-workers", "1"])).train_workers == 1
    spec = pareto.spec_from_args(parse(["--storage", str(tmp_path)]))
    with pytest.raises(ConfigError, match="--train-workers must be 0"):
        validate(replace(spec, train_workers=2))  # e.g. a hand-edited sweep.json
    assert pareto.main(["--dry-run", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the run in the trial process (Ray Train local mode)" in out and "retries: 1 by Tune (trial crash)" in out


def _exit_code(argv: list[str]) -> int:
    try:
        return pareto.main(argv)
    except SystemExit as exc:  # argparse's own errors (e.g. an unknown --preset choice)
        return int(exc.code)


@pytest.mark.parametrize("argv", [
    ["--set", "nope=1"], ["--set", "epochs=abc"], ["--defenses", "akd,foo"], ["--num-samples", "akd=x"],
    ["--seeds", "0"], ["--preset", "nope"], ["--set", "method=akd"], ["--cpus-per-trial", "0"],
    ["--references", "1"], ["--set", "reference_checkpoints=a,b"], ["--set", "data_seed=-5"],
    ["--search-kid-images", "-1"], ["--search-kid-images", "1"],
])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, argv):
    assert _exit_code([*argv, "--storage", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


def test_search_trials_measure_kid_on_search_kid_images_and_never_more_than_kid_max_images(tmp_path, capsys):
    from akdray.sweep.spec import search_config

    parse = pareto.build_parser().parse_args
    spec = pareto.spec_from_args(parse(["--storage", str(tmp_path)]))
    base = base_config(spec, "akd", 0, teacher="/t")
    assert (base.kid_max_images, spec.search_kid_images) == (100, 50)  # cpu-small, the default
    assert search_config(spec, base).kid_max_images == 50 and search_config(spec, base).eval_split == "val"
    assert search_config(replace(spec, search_kid_images=0), base).kid_max_images == 100  # 0: as every trial
    assert search_config(replace(spec, search_kid_images=500), base).kid_max_images == 100  # never more
    assert search_config(spec, base.replace(kid_max_images=0)).kid_max_images == 50  # kid_max_images 0 = all
    assert search_config(replace(spec, search_kid_images=0), base.replace(kid_max_images=0)).kid_max_images == 0
    assert pareto.main(["--dry-run", "--storage", str(tmp_path), "--search-kid-images", "30"]) == 0
    assert "val_nkid of a search trial on the first 30 validation pairs" in capsys.readouterr().out
    assert pareto.main(["--dry-run", "--storage", str(tmp_path), "--set", "n_val=20", "--set", "kid_max_images=0"]) == 0
    assert "on all 20 validation pairs (--search-kid-images); teachers and confirmation runs on all 20" in (
        capsys.readouterr().out)
    stored = SweepSpec.from_json('{"name": "old", "storage": "/tmp"}')  # a sweep stored before the field
    assert stored.search_kid_images == 0  # its remaining search trials keep measuring as its first ones did


def test_resume_of_a_missing_sweep_exits_2(tmp_path):
    assert _exit_code(["--resume", "--storage", str(tmp_path), "--name", "none"]) == 2
    assert not any(tmp_path.iterdir())


def test_set_fixes_a_searched_field_and_search_spaces_scale_with_the_pool():
    spec = SweepSpec(name="x", storage="/tmp", overrides={"distill_epochs": "5"}, fixed=("distill_epochs",))
    akd = [s for s in validate(spec) if s.defense == "akd"][0]
    assert [p.name for p in akd.space] == ["distill_lambda", "proxy_size"]
    small = search_space("dmp", base_config(SweepSpec(name="x", storage="/tmp", preset="tiny"), "dmp", 0, teacher="t"))
    assert (small[0].low, small[0].high) == (2, 12)


def test_result_rows_always_have_the_same_schema():
    ok = row_table({"method": "akd", "seed": 1, "loss_auc": 0.5, "leak": 0.5, "leak_source": "loss", "nkid": 0.1,
                    "attack_n_members": 16, "status": "ok"})
    failed = row_table({"method": "akd", "loss_auc": float("nan"), "status": "failed", "error": "x"})
    assert ok.schema == failed.schema == RESULT_SCHEMA
    assert "method" not in RESULT_SCHEMA.names  # the hive partition key
    assert failed.column("loss_auc")[0].as_py() is None and ok.column("leak_source")[0].as_py() == "loss"
    assert set(METRIC_KEYS) <= set(RESULT_SCHEMA.names)


def test_nan_objectives_make_a_failed_row():
    row = finalize_row({"status": "ok", "error": None, "leak": float("nan"), "nkid": 0.2, "kid": float("nan")})
    assert row["status"] == "failed" and "leak" in row["error"]
    assert row["leak"] is None and row["kid"] is None and row["nkid"] == 0.2
    reference = finalize_row({"method": "reference", "status": "ok", "error": None, "leak": 0.6, "nkid": None})
    assert reference["status"] == "ok"  # a reference run has no KID by design


def test_failure_aware_search_tells_optuna_fail_not_a_number():
    from ray import tune

    searcher = FailureAwareOptunaSearch(metric=["leak", "nkid"], mode=["min", "min"], study_name="t")
    searcher.set_search_properties(None, None, {"gauss_sigma": tune.loguniform(0.01, 1.0)})
    for trial_id, result in [("a", {"status": "ok", "leak": 0.6, "nkid": 0.2}),
                             ("b", {"status": "ok", "leak": float("nan"), "nkid": 0.2}),
                             ("c", {"status": "failed", "leak": None, "nkid": None, "error": "diverged"}),
                             ("d", None)]:
        searcher.suggest(trial_id)
        searcher.on_trial_complete(trial_id, result, error=result is None)
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] + [optuna.trial.TrialState.FAIL] * 3
    assert searcher._ot_study.trials[2].user_attrs["akdray_error"] == "diverged"
    assert [t.values for t in searcher._ot_study.trials[1:]] == [None, None, None]


def test_printed_front_keeps_the_non_dominated_ok_rows_on_the_validation_objectives():
    df = pd.DataFrame({"status": ["ok", "ok", "ok", "failed"], "val_leak": [0.5, 0.6, 0.55, 0.1],
                       "val_nkid": [0.3, 0.1, 0.4, 0.0], "stage": "search", "study": "gauss", "seed": 0,
                       "trial_id": list("abcd"), "gauss_sigma": [0.11, 0.22, 0.33, 0.44], "pick": None})
    lines = pareto.format_front(df, SweepSpec(name="x", storage="/tmp")).splitlines()
    assert lines[0] == "gauss seed 0: 4 trial(s), 1 failed; Pareto front:"
    assert [line.split("(gauss_sigma=")[1] for line in lines[1:]] == ["0.11)", "0.22)"]


def test_printed_front_shows_the_fields_the_study_searched_not_those_set():
    """A field fixed with ``--set`` is not shown as a searched field of the front (the study's space)."""
    df = pd.DataFrame({"status": ["ok"], "val_leak": [0.5], "val_nkid": [0.3], "stage": "search", "study": "akd",
                       "seed": 0, "trial_id": ["a"], "pick": None, "distill_lambda": [7.0], "proxy_size": [30],
                       "distill_epochs": [2]})
    fixed = SweepSpec(name="x", storage="/tmp", preset="tiny", overrides={"distill_lambda": 7.0},
                      fixed=("distill_lambda",))
    assert pareto.format_front(df, fixed).splitlines()[1].endswith("(proxy_size=30, distill_epochs=2)")
    searched = pareto.format_front(df, replace(fixed, overrides={}, fixed=())).splitlines()[1]
    assert searched.endswith("(distill_lambda=7, proxy_size=30, distill_epochs=2)")


def test_study_router_runs_every_study_side_by_side_within_its_budget():
    """Trials alternate between studies (no study waits for another to finish), longest-running
    defense first within a round, each study gets exactly its budget, results reach the study that
    suggested them, then the router is finished."""
    from ray.tune.search import Searcher

    spec = SweepSpec(name="x", storage="/tmp", num_samples={"akd": 1, "dmp": 1, "dpsgd": 2, "gauss": 3})
    storage = optuna.storages.InMemoryStorage()
    plan = validate(spec)
    router = StudyRouter([(s.name, {"method": s.defense}, study_searcher(spec, s, storage), s.num_samples)
                          for s in plan])
    configs = [router.suggest(f"t{i}") for i in range(8)]
    assert configs[-1] == Searcher.FINISHED
    methods = [c["method"] for c in configs[:7]]
    assert methods[:4] == ["dpsgd", "akd", "dmp", "gauss"]  # equal shares (none issued): DP-SGD's long trials first
    assert methods[4:] == ["gauss", "dpsgd", "gauss"]  # then the smallest share of its budget (gauss 1/3 < dpsgd 1/2)
    assert "gauss_sigma" in configs[3] and "distill_lambda" in configs[1]
    router.on_trial_complete("t3", {"status": "ok", "val_leak": 0.6, "val_nkid": 0.2})
    gauss = optuna.load_study(study_name="gauss-seed0", storage=storage)
    assert [t.state for t in gauss.trials][0] == optuna.trial.TrialState.COMPLETE
    assert router.suggest("t3") == configs[3]  # a restored trial asks again: same study and values


@pytest.mark.train
def test_packed_reference_runs_equal_separate_runs_weight_for_weight(tmp_path):
    """--references-per-trial: one Train worker trains N reference models one after another, each
    into its own folder, and each is the same model as its own separate run (same seeds)."""
    import torch

    from akdray.reference_recipe import reference_config
    from akdray.config import make_config
    from akdray.run import run
    from akdray.sweep.references import item_runs, reference_items
    from akdray.sweep.trial import pack_folder, run_pack

    target = make_config("tiny", {"device": "cpu", "epochs": 3})
    items = reference_items([target, target.replace(seed=7)], 3, per_trial=2)
    assert [1 + len(i.get("pack", [])) for i in items] == [2, 1, 2, 1] and item_runs(items) == 6
    configs = [reference_config(target, i) for i in range(2)]
    rows = run_pack(configs, tmp_path / "packed", str(tmp_path))
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[1]["seed"] == configs[1].seed
    # Ray's Train controller and Tune's trial driver unpickle these rows: a torch type in them
    # (torch.__version__ is a str subclass of torch's) would import torch there (+0.45 GB each).
    def plain(value) -> bool:
        if type(value) in (list, tuple):
            return all(plain(v) for v in value)
        if type(value) is dict:
            return all(type(k) is str and plain(v) for k, v in value.items())
        return type(value) in (str, int, float, bool, type(None))

    assert all(plain(r) for r in rows), {k: type(v) for r in rows for k, v in r.items() if not plain(v)}
    for i, cfg in enumerate(configs):
        run(cfg, tmp_path / f"alone{i}")
        packed = torch.load(pack_folder(tmp_path / "packed", i) / "checkpoint.pt", weights_only=False)
        alone = torch.load(tmp_path / f"alone{i}" / "checkpoint.pt", weights_only=False)
        weights = [k for k, v in alone["generator"].items() if v.is_floating_point()]
        assert weights and all(torch.equal(packed["generator"][k], alone["generator"][k]) for k in weights)
    assert not torch.equal(*(torch.load(pack_folder(tmp_path / "packed", i) / "checkpoint.pt", weights_only=False)
                             ["generator"][weights[0]] for i in range(2)))  # two different models


def test_ray_times_split_a_trial_into_start_setup_run_and_end():
    # driver started at 100; worker entered at 107.5, its runs ran 110-150; the driver had the result at 153
    times = ray_times(100.0, [107.5, 110.0, 150.0, 100.0], 153.0)
    assert times == {"ray_start_s": 7.5, "worker_setup_s": 2.5, "ray_end_s": 3.0}
    # Train restored a finished trial: the stored report carries an earlier attempt's times
    restored = ray_times(900.0, [107.5, 110.0, 150.0, 100.0], 901.0)
    assert restored == {"ray_start_s": None, "worker_setup_s": None, "ray_end_s": None}
    assert ray_times(100.0, None, 101.0)["ray_end_s"] is None
    assert ray_times(100.0, [107.5, float("nan"), float("nan"), 100.0], 101.0)["ray_start_s"] is None
    assert {"ray_start_s", "worker_setup_s", "ray_end_s"} <= set(RESULT_SCHEMA.names)


def test_resume_with_refine_picks_adds_refinement_to_a_sweep_that_ran_without(tmp_path):
    from akdray.sweep.stages import init_sweep

    def spec(*extra: str) -> SweepSpec:
        return pareto.spec_from_args(pareto.build_parser().parse_args(["--storage", str(tmp_path), "--name", "s", *extra]))

    first = init_sweep(spec(), resume=False)
    assert first.refine_trials == 0
    resumed = init_sweep(spec("--resume", "--refine-picks", "--refine-trials", "3", "--refine-rounds", "1"), resume=True)
    assert (resumed.refine_trials, resumed.refine_rounds, resumed.sweep_id) == (3, 1, first.sweep_id)
    assert init_sweep(spec("--resume"), resume=True).refine_trials == 0  # without the flag: as stored


def test_a_copied_sweep_resumes_where_it_now_is(tmp_path, capsys):
    import shutil

    from akdray.sweep.stages import init_sweep

    args = lambda *extra: pareto.build_parser().parse_args(["--storage", str(tmp_path), *extra])  # noqa: E731
    first = init_sweep(pareto.spec_from_args(args("--name", "original")), resume=False)
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    resumed = init_sweep(pareto.spec_from_args(args("--name", "copy", "--resume")), resume=True)
    assert resumed.sweep_uri == str(tmp_path / "copy") and resumed.sweep_id == first.sweep_id
    assert SweepSpec.from_json((tmp_path / "copy" / "sweep.json").read_text()).sweep_uri == str(tmp_path / "copy")
    (tmp_path / "original" / "search").mkdir()  # an unfinished Tune experiment (its tuner state, no done marker)
    (tmp_path / "original" / "search" / "tuner.pkl").write_bytes(b"state")
    shutil.copytree(tmp_path / "original", tmp_path / "copy2")
    with pytest.raises(ConfigError, match="unfinished experiment.*search"):  # Tune would resume it into the original
        init_sweep(pareto.spec_from_args(args("--name", "copy2", "--resume")), resume=True)
    capsys.readouterr()
    assert _exit_code(["--confirm", str(tmp_path / "copy2")]) == 2
    assert "would resume into that old place" in capsys.readouterr().err


def test_confirmation_skips_runs_whose_recipe_was_confirmed_and_names_a_new_experiment(tmp_path):
    """--confirm after --refine-picks: only a changed pick's seeds run, in an experiment of their own."""
    from dataclasses import replace

    from akdray.sweep.confirm import PICKS_EXPERIMENT, picks_experiment, unconfirmed
    from analysis import testing

    confirmed = testing.confirm_rows(picks=(("dpsgd@utility", "dpsgd", 0.6, 0.4),), seeds=(100, 101), failed=None)
    testing.write_sweep(tmp_path / "s", confirmed, scores=False, samples=False)
    spec = replace(SweepSpec(name="s", storage=str(tmp_path)), sweep_id="sw1")
    config = {k: v for k, v in confirmed[0].items() if k in base_config(spec, "dpsgd", 0).to_dict()}
    items = [("dpsgd@utility", {**config, "seed": s}) for s in (100, 101, 102)]
    items += [("dpsgd@utility", {**config, "seed": 100, "dp_noise_multiplier": 1.5})]  # a refined pick
    todo = unconfirmed(spec, items)
    assert [(c["seed"], c["dp_noise_multiplier"]) for _, c in todo] == [(102, 2.0), (100, 1.5)]
    assert picks_experiment(spec, todo) == PICKS_EXPERIMENT  # the first confirmation is not done yet
    (tmp_path / "s" / "stages").mkdir()
    (tmp_path / "s" / "stages" / f"{PICKS_EXPERIMENT}.done.json").write_text("{}")
    name = picks_experiment(spec, todo)
    assert name.startswith(f"{PICKS_EXPERIMENT}-") and name != picks_experiment(spec, todo[:1])


def test_rows_of_an_older_akdray_beside_newer_ones_keep_every_column(tmp_path):
    """A sweep resumed by a newer akdray holds files without its newer columns: plain pandas takes the
    first file's columns (and drops the rest), read_dataset and the documented schema call keep them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from akdray.results import dataset_path, read_dataset

    base = {"sweep_id": "sw", "stage": "search", "status": "ok", "seed": 0, "preset": "tiny"}
    old = row_table({**base, "method": "akd", "trial_id": "a1"}).drop_columns(["ray_start_s"])  # an older version's file
    new = row_table({**base, "method": "dmp", "trial_id": "d1", "ray_start_s": 12.5})
    for table, method, trial in ((old, "akd", "a1"), (new, "dmp", "d1")):
        path = tmp_path / dataset_path("s", "results", method, trial)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    plain = pd.read_parquet(tmp_path / "s" / "results")
    assert "ray_start_s" not in plain.columns  # what docs/results.md warns about
    df = read_dataset(str(tmp_path / "s")).set_index("trial_id")
    assert df.loc["d1", "ray_start_s"] == 12.5 and pd.isna(df.loc["a1", "ray_start_s"])
    documented = pd.read_parquet(tmp_path / "s" / "results", schema=RESULT_SCHEMA.append(pa.field("method", pa.string())))
    assert documented.set_index("trial_id").loc["d1", "ray_start_s"] == 12.5


def test_the_sweep_driver_plans_trials_without_loading_torch():
    """The driver process lives as long as the sweep; importing the training stack there cost it
    about 580 MiB of anonymous memory (akdray.audit, reached through the reference stage)."""
    import subprocess
    import sys

    code = ("import sys, akdray.sweep.cli, akdray.sweep.stages, akdray.sweep.confirm, analysis.picks\n"
            "from akdray.reference_recipe import reference_config\n"
            "heavy = sorted(m for m in ('torch', 'torch_fidelity', 'sklearn', 'opacus') if m in sys.modules)\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == ""


def test_tune_adds_no_logger_that_loads_torch_into_the_driver(tmp_path):
    """Tune's automatic TensorBoardX logger imports torch in the driver; the sweep's callbacks keep the
    CSV and JSON loggers and leave it out (checked with Tune's own default-callback assembly)."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "os.environ.pop('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', None)\n"
            "from ray.tune.utils.callback import _create_default_callbacks\n"
            "from akdray.sweep.spec import SweepSpec\n"
            "from akdray.sweep.stages import experiment_callbacks\n"
            f"spec = SweepSpec(name='s', storage={str(tmp_path)!r})\n"
            "names = sorted(type(c).__name__ for c in _create_default_callbacks(experiment_callbacks(spec, 'x')))\n"
            "print(','.join(names), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    names, torch_loaded = done.stdout.split()
    assert "CSVLoggerCallback" in names and "JsonLoggerCallback" in names and "ParquetSink" in names
    assert "TBXLoggerCallback" not in names and torch_loaded == "False"
