"""Ray sweeps end to end: smoke sweep, retries, NaN trials, driver death + resume, dashboard API.

All tests share one local Ray cluster (``ensure_ray``) and TINY-sized configs; the fast tests at the
top need no Ray at all.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from akdray.parquet_sink import RESULT_SCHEMA, read_dataset, row_table
from akdray.run import METRIC_KEYS
from akdray.tune import (
    DEFENSES, SMOKE_OVERRIDES, FailureAwareOptunaSearch, Study, SweepSpec, _finalize_row, auto_resources,
    base_config, init_sweep, optuna_url, pareto_front, run_search_stage, search_space, validate,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sweeps"))
import pareto  # noqa: E402  (the CLI script)

_RAY = {}


def ensure_ray():
    """One local Ray cluster (2 CPUs, with dashboard) for the whole test session."""
    import ray

    if not ray.is_initialized():
        env = {"TQDM_DISABLE": "1", "AKDRAY_CACHE": os.environ.get("AKDRAY_CACHE", "")}
        _RAY["ctx"] = ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False,
                               runtime_env={"env_vars": {k: v for k, v in env.items() if v}})
    return _RAY.get("ctx")


# ------------------------------------------------------------------------------------------------
# Fast: no Ray
# ------------------------------------------------------------------------------------------------
def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys):
    assert pareto.main(["--dry-run", "--storage", str(tmp_path), "--num-samples", "akd=2,gauss=1"]) == 0
    out = capsys.readouterr().out
    for word in ("stage 0 'reference': 2 reference model(s) per seed", "minimise leak & nkid", "stage 1 'teacher'", "akd-seed0: 2 trial(s)", "distill_lambda in [1, 1000] (log)",
                 "proxy_size in [25, 400]", "dpsgd-seed0", "gauss-seed0: 1 trial(s)", "optuna.db"):
        assert word in out
    assert not any(tmp_path.iterdir())


def _exit_code(argv: list[str]) -> int:
    try:
        return pareto.main(argv)
    except SystemExit as exc:  # argparse's own errors (e.g. an unknown --preset choice)
        return int(exc.code)


@pytest.mark.parametrize("argv", [
    ["--set", "nope=1"], ["--set", "epochs=abc"], ["--defenses", "akd,foo"], ["--num-samples", "akd=x"],
    ["--seeds", "0"], ["--preset", "nope"], ["--set", "method=akd"], ["--cpus-per-trial", "0"],
    ["--references", "1"], ["--set", "reference_checkpoints=a,b"], ["--set", "data_seed=-5"],
])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, argv):
    assert _exit_code([*argv, "--storage", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


def test_resume_of_a_missing_sweep_exits_2(tmp_path):
    assert _exit_code(["--resume", "--storage", str(tmp_path), "--name", "none"]) == 2
    assert not any(tmp_path.iterdir())


def test_set_fixes_a_searched_field_and_search_spaces_scale_with_the_pool():
    spec = SweepSpec(name="x", storage="/tmp", overrides={"distill_epochs": "5"}, fixed=("distill_epochs",))
    akd = [s for s in validate(spec) if s.defense == "akd"][0]
    assert [p.name for p in akd.space] == ["distill_lambda", "proxy_size"]
    small = search_space("dmp", base_config(SweepSpec(name="x", storage="/tmp", overrides=dict(SMOKE_OVERRIDES)),
                                            "dmp", 0, teacher="t"))
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
    row = _finalize_row({"status": "ok", "error": None, "leak": float("nan"), "nkid": 0.2, "kid": float("nan")})
    assert row["status"] == "failed" and "leak" in row["error"]
    assert row["leak"] is None and row["kid"] is None and row["nkid"] == 0.2
    reference = _finalize_row({"method": "reference", "status": "ok", "error": None, "leak": 0.6, "nkid": None})
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


def test_pareto_front_keeps_non_dominated_ok_rows():
    df = pd.DataFrame({"status": ["ok", "ok", "ok", "failed"], "leak": [0.5, 0.6, 0.55, 0.1],
                       "nkid": [0.3, 0.1, 0.4, 0.0]})
    assert sorted(pareto_front(df).index) == [0, 1]


# ------------------------------------------------------------------------------------------------
# Slow: a real local Ray cluster
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The --smoke-test sweep, run in-process against the shared Ray cluster."""
    ensure_ray()
    storage = tmp_path_factory.mktemp("sweeps")
    t0 = time.perf_counter()
    code = pareto.main(["--smoke-test", "--storage", str(storage), "--name", "smoke", "-q"])
    print(f"smoke sweep: {time.perf_counter() - t0:.0f} s")
    return code, storage / "smoke"


@pytest.mark.slow
def test_smoke_sweep_writes_parquet_for_every_stage_and_defense(smoke):
    code, sweep = smoke
    assert code == 0
    df = pd.read_parquet(sweep / "results")
    assert isinstance(df["method"].dtype, pd.CategoricalDtype)
    assert set(df["method"].astype(str)) == {"reference", "teacher", *DEFENSES}
    assert (df["status"] == "ok").all(), df[["method", "status", "error"]]
    assert df["trial_id"].is_unique and df["sweep_id"].nunique() == 1
    teacher = df[df["stage"] == "teacher"].iloc[0]
    search = df[df["stage"] == "search"]
    assert set(search["study"]) == set(DEFENSES)
    assert (search["teacher_checkpoint"] == teacher["checkpoint"]).all()
    assert Path(teacher["checkpoint"], "checkpoint.pt").is_file()  # persisted teacher run dir
    refs = df[df["stage"] == "reference"]
    assert len(refs) == 2 and refs["nkid"].isna().all() and refs["data_seed"].eq(0).all()  # K = 2, no KID
    assert all(set(r.split(",")) == set(refs["checkpoint"]) for r in search["reference_checkpoints"])
    deployed = df[df["stage"] != "reference"]
    assert deployed[["leak", "loss_auc", "cal_auc", "lira_auc", "nkid"]].notna().all().all()
    assert (deployed["n_references"] == 2).all() and (deployed["leak_source"] == "loss,cal,lira").all()
    for dataset in ("scores", "samples"):
        other = pd.read_parquet(sweep / dataset)
        assert set(other["trial_id"]) == set(df["trial_id"])
        assert {"trial_id", "sweep_id", "method", "seed"} <= set(other.columns)
    assert sorted(optuna.get_all_study_names(optuna_url(_spec(sweep)))) == sorted(f"{d}-seed0" for d in DEFENSES)


@pytest.mark.slow
def test_confirmation_stage_and_report_on_the_smoke_sweep(smoke, tmp_path):
    """--confirm re-runs the matched picks (here with 1 seed); the report's Table II traces to them."""
    from analysis import report

    _, sweep = smoke
    assert pareto.main(["--confirm", str(sweep), "--confirm-seeds", "1", "--max-concurrent", "2", "-q"]) == 0
    df = pd.read_parquet(sweep / "results")
    confirm = df[df["stage"] == "confirm"]
    assert {"teacher", "akd"} <= set(confirm["pick"]) and confirm["trial_id"].is_unique
    teacher = confirm[confirm["pick"] == "teacher"].iloc[0]
    akd = confirm[confirm["pick"] == "akd"].iloc[0]
    assert akd["teacher_checkpoint"] == teacher["checkpoint"] and akd["seed"] == teacher["seed"] == 0
    assert report.main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    table2 = pd.read_csv(tmp_path / "report" / "tables" / "table2.csv").set_index("pick")
    assert table2.loc["akd", "loss_auc_mean"] == pytest.approx(akd["loss_auc"])
    assert table2.loc["akd", "lira_auc_mean"] == pytest.approx(akd["lira_auc"])
    confirm_refs = df[df["stage"] == "confirm-reference"]
    assert len(confirm_refs) == 2 and set(akd["reference_checkpoints"].split(",")) == set(confirm_refs["checkpoint"])
    assert table2.loc["akd", "source"] == "confirm"


def _spec(sweep: Path) -> SweepSpec:
    return SweepSpec.from_json((sweep / "sweep.json").read_text())


def _fault_search(sweep: Path, name: str, **hooks_and_limits) -> tuple[SweepSpec, pd.DataFrame, Path]:
    """One gauss trial against the smoke sweep's teacher, in a sweep of its own, with test hooks.

    Storage and teacher are given as ``file://`` URIs: the code path of remote (s3://) storage -
    teacher fetched with ``Checkpoint(uri).to_directory()``, Parquet via pyarrow.fs, the Optuna
    database kept locally and uploaded - runs against the local disk.
    """
    base = _spec(sweep)
    limits = {k: hooks_and_limits.pop(k) for k in ("train_max_failures", "max_failures") if k in hooks_and_limits}
    spec = replace(base, name=name, storage=f"file://{sweep.parent}", sweep_id="", defenses=("gauss",),
                   num_samples={"gauss": 1}, hooks=hooks_and_limits, verbose=0, **limits)
    spec = auto_resources(init_sweep(spec, resume=False))
    teacher = read_dataset(str(sweep), "results").query("stage == 'teacher'")["checkpoint"].iloc[0]
    study = [s for s in validate(spec) if s.defense == "gauss"][0]
    run_search_stage(spec, study, f"file://{teacher}", resume=False)
    return spec, read_dataset(spec.sweep_uri, "results"), sweep.parent / name


@pytest.mark.slow
def test_trial_crashing_once_is_retried_and_written_once(smoke):
    # Train gets no retries here, so the crash reaches Tune, which retries the whole trial.
    spec, df, local = _fault_search(smoke[1], "crash", crash_once=True, train_max_failures=0, max_failures=1)
    assert len(df) == 1 and df["status"].iloc[0] == "ok", df[["status", "error"]]
    assert df["trial_failures"].iloc[0] == 1
    assert df["teacher_checkpoint"].iloc[0].startswith("file://") and df["checkpoint"].iloc[0].startswith("file://")
    trial_id = df["trial_id"].iloc[0]
    assert (local / "runs" / trial_id / "injected-crash.marker").is_file()
    assert len(list((local / "results").rglob("*.parquet"))) == 1
    assert (local / "optuna.db").is_file()  # the local Optuna database, uploaded to the sweep dir


@pytest.mark.slow
def test_nan_trial_is_stored_failed_and_optuna_gets_no_number(smoke):
    spec, df, _ = _fault_search(smoke[1], "nan", nan_metrics=True)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == "failed" and "non-finite" in row["error"]
    assert pd.isna(row["leak"]) and pd.isna(row["nkid"])  # the hook makes the objectives NaN
    study = optuna.load_study(study_name=Study("gauss", 0, (), 1).name, storage=optuna_url(spec))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    assert study.trials[0].values is None
    assert study.trials[0].user_attrs["tune_trial_id"] == row["trial_id"]


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = Path.home() / ".ray" / "auth_token"
    if not token and path.is_file():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get_json(url: str):
    with urllib.request.urlopen(urllib.request.Request(url, headers=_auth_headers()), timeout=10) as resp:
        return json.loads(resp.read())


def _dashboard_sees(dashboard: str) -> dict[str, bool]:
    """Whether the dashboard REST API lists a running driver job and the sweep's Tune/Train actors."""
    jobs = _get_json(f"{dashboard}/api/jobs/")
    actors = _get_json(f"{dashboard}/api/v0/actors?limit=1000&detail=false")["data"]["result"]["result"]
    alive = {a.get("class_name") for a in actors if a.get("state") == "ALIVE"}
    return {"job": any(j.get("status") == "RUNNING" and j.get("type") == "DRIVER" for j in jobs),
            "trial": any("ImplicitFunc" in (c or "") for c in alive),
            "train": bool(alive & {"TrainController", "RayTrainWorker"})}


def _sweep_cmd(storage: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "sweeps" / "pareto.py"), "--smoke-test", "--defenses", "gauss",
            "--num-samples", "3", "--max-concurrent", "1", "--storage", str(storage), "--name", "resume",
            "--address", address, "--references", "0", "-q", *extra]


@pytest.mark.slow
def test_killed_driver_resumes_without_duplicates_and_dashboard_lists_it(tmp_path):
    ctx = ensure_ray()
    address, dashboard = ctx.address_info["gcs_address"], f"http://{ctx.dashboard_url}"
    results = tmp_path / "resume" / "results" / "method=gauss"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_sweep_cmd(tmp_path, address), stdout=log, stderr=subprocess.STDOUT,
                             cwd=ROOT, start_new_session=True)
    seen: dict[str, bool] = {}
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list(results.glob("*.parquet")):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            try:
                for key, value in _dashboard_sees(dashboard).items():
                    seen[key] = seen.get(key, False) or value
            except OSError:
                pass
            time.sleep(2)
        assert list(results.glob("*.parquet")), "no gauss row appeared"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-search
        first.wait()
    assert seen == {"job": True, "trial": True, "train": True}, seen
    done_before = len(list(results.glob("*.parquet")))
    assert 1 <= done_before < 3

    second = subprocess.run(_sweep_cmd(tmp_path, address, "--resume"), cwd=ROOT, capture_output=True,
                            text=True, timeout=500)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "teacher already complete, skipped" in second.stdout
    assert "resuming search-gauss-seed0" in second.stdout
    df = pd.read_parquet(tmp_path / "resume" / "results")
    assert len(df) == 4 and df["trial_id"].is_unique, df[["method", "trial_id", "status"]]
    assert (df["status"] == "ok").all()
    assert df["method"].astype(str).value_counts().to_dict() == {"gauss": 3, "teacher": 1}
    study = optuna.load_study(study_name="gauss-seed0", storage=optuna_url(_spec(tmp_path / "resume")))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3 and all(not math.isnan(v) for t in complete for v in t.values)
