"""Ray sweeps end to end: smoke sweep, confirmation, retries, NaN trials, driver death + resume, dashboard API.

All tests share one local Ray cluster (``ensure_ray``) and ``tiny``-preset configs.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import optuna
import pandas as pd
import pytest

from akdray.results import read_dataset
from akdray.sweep import cli as pareto
from akdray.sweep.spec import DEFENSES, Study, SweepSpec, optuna_url, validate
from akdray.sweep.stages import auto_resources, init_sweep, run_search_stage

ROOT = Path(__file__).resolve().parents[1]

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
# Slow: a real local Ray cluster
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The --smoke-test sweep, run in-process against the shared Ray cluster."""
    ensure_ray()
    storage = tmp_path_factory.mktemp("sweeps")
    t0 = time.perf_counter()
    code = pareto.main(["--smoke-test", "--storage", str(storage), "--name", "smoke", "--search-kid-images", "4", "-q"])
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
    teachers = df[df["stage"] == "teacher"]
    assert sorted(teachers["pick"].fillna("teacher")) == ["teacher", "teacher-groupnorm"]
    assert teachers.set_index(teachers["pick"].fillna("teacher"))["norm"].to_dict() == {
        "teacher": "batch", "teacher-groupnorm": "group"}
    teacher = teachers[teachers["pick"].isna()].iloc[0]
    search = df[df["stage"] == "search"]
    assert set(search["study"]) == set(DEFENSES)
    assert (search["teacher_checkpoint"] == teacher["checkpoint"]).all()
    assert Path(teacher["checkpoint"], "checkpoint.pt").is_file()  # persisted teacher run dir
    refs = df[df["stage"] == "reference"]
    assert len(refs) == 2 and refs["nkid"].isna().all() and refs["data_seed"].eq(0).all()  # K = 2, no KID
    assert all(set(r.split(",")) == set(refs["checkpoint"]) for r in search["reference_checkpoints"])
    deployed = df[df["stage"] != "reference"]
    val = ["val_leak", "val_leak_p", "val_loss_auc", "val_lira_auc", "val_rmia_auc", "val_nkid"]
    assert deployed[val].notna().all().all() and (deployed["val_leak_source"] == "loss,lira,rmia").all()
    assert (search["eval_split"] == "val").all() and search[["leak", "loss_auc", "nkid"]].isna().all().all()
    assert teachers[["leak", "leak_p", "loss_auc", "lira_auc", "rmia_auc", "nkid"]].notna().all().all()  # both blocks
    assert search["kid_max_images"].eq(4).all() and teachers["kid_max_images"].eq(8).all()  # --search-kid-images 4
    assert (deployed["n_references"] == 2).all() and (teachers["leak_source"] == "loss,lira,rmia").all()
    timing = df[["ray_start_s", "worker_setup_s", "ray_end_s"]]  # where Ray's share of each trial went
    assert (timing >= 0).all().all() and (timing.sum(axis=1) < df["trial_time_s"] - df["wall_s"] + 1.0).all()
    assert _spec(sweep).train_workers == 0  # the sweep's own local cluster: Ray Train's local mode
    trials = set(df["trial_id"].str.replace(r"-pack\d+$", "", regex=True))
    assert all((sweep / "runs" / t / "report.json").is_file() for t in trials)  # stored by the trial itself
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
    assert pareto.main(["--confirm", str(sweep), "--confirm-seeds", "1", "--max-concurrent", "2", "-q"]) == 0  # seed 100
    df = pd.read_parquet(sweep / "results")
    confirm = df[df["stage"] == "confirm"]
    assert {"teacher", "akd"} <= set(confirm["pick"]) and confirm["trial_id"].is_unique
    teacher = confirm[confirm["pick"] == "teacher"].iloc[0]
    akd = confirm[confirm["pick"] == "akd"].iloc[0]
    assert akd["teacher_checkpoint"] == teacher["checkpoint"] and akd["seed"] == teacher["seed"] == 100
    assert (confirm["eval_split"] == "both").all() and confirm[["leak", "val_leak", "nkid"]].notna().all().all()
    assert "teacher-groupnorm" in set(confirm["pick"])
    assert confirm["kid_max_images"].eq(8).all()  # the preset's count, not the 4 its search picks were measured on
    assert report.main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    table2 = pd.read_csv(tmp_path / "report" / "tables" / "table2.csv").set_index("pick")
    assert table2.loc["akd", "loss_auc_mean"] == pytest.approx(akd["loss_auc"])
    assert table2.loc["akd", "lira_auc_mean"] == pytest.approx(akd["lira_auc"])
    confirm_refs = df[df["stage"] == "confirm-reference"]
    assert len(confirm_refs) == 2 and set(akd["reference_checkpoints"].split(",")) == set(confirm_refs["checkpoint"])
    assert table2.loc["akd", "source"] == "confirm"


def _spec(sweep: Path) -> SweepSpec:
    return SweepSpec.from_json((sweep / "sweep.json").read_text())


def _fault_search(sweep: Path, name: str, defense: str, overrides: dict | None = None,
                  **limits) -> tuple[SweepSpec, pd.DataFrame, Path]:
    """One trial of ``defense`` against the smoke sweep's teacher, in a sweep of its own.

    Storage and teacher are given as ``file://`` URIs: the code path of remote (s3://) storage -
    teacher fetched with ``Checkpoint(uri).to_directory()``, Parquet via pyarrow.fs, the Optuna
    database kept locally and uploaded - runs against the local disk.
    """
    base = _spec(sweep)
    spec = replace(base, name=name, storage=f"file://{sweep.parent}", sweep_id="", defenses=(defense,),
                   num_samples={defense: 1}, verbose=0, overrides={**base.overrides, **(overrides or {})}, **limits)
    spec = auto_resources(init_sweep(spec, resume=False))
    rows = read_dataset(str(sweep), "results")
    teacher = rows.query("stage == 'teacher' and pick != 'teacher-groupnorm'")["checkpoint"].iloc[0]
    study = [s for s in validate(spec) if s.defense == defense][0]
    run_search_stage(spec, "search", [(study, f"file://{teacher}", "")], resume=False)
    return spec, read_dataset(spec.sweep_uri, "results"), sweep.parent / name


def _alive_pids(class_name: str) -> list[int]:
    from ray.util.state import list_actors

    address = f"http://{_RAY['ctx'].dashboard_url}"  # this session's cluster, even if other Ray instances run here
    actors = list_actors(address=address, filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
                         detail=True, raise_on_missing_output=False)
    return [a.pid for a in actors if a.pid]


def _run_folder_pid(scratch: Path, before: set[Path]):
    """A callable: the pid named by the first temporary run folder (``akdray-trial-<pid>-*``) not in
    ``before``, remembered once seen (the folder is deleted when its run is stored); None until then."""
    seen: list[int] = []

    def pid() -> int | None:
        if not seen:
            new = sorted(set(scratch.glob("akdray-trial-*")) - before)
            if new:
                seen.append(int(new[0].name[len("akdray-trial-"):].split("-", 1)[0]))
        return seen[0] if seen else None
    return pid


class Killer(threading.Thread):
    """SIGKILLs the first live process of a Ray actor class once ``ready()`` holds; records every pid seen.

    Only a process that appeared after the Killer was made: an actor of an earlier test that Ray has
    not yet torn down (the state API still lists it ALIVE) is never the one killed. With ``victim``,
    the process killed is the pid it returns (e.g. the one named by the run folder it writes).

    The state API is asked for pids every ``refresh_s`` (one query can take a second on a busy
    machine) while ``ready()`` is polled every 10 ms, so a short window - a trial driver lives
    about a second after its checkpoint is stored - is not missed between two slow queries.
    """

    def __init__(self, class_name: str, ready=lambda: True, delay_s: float = 0.0, refresh_s: float = 0.25,
                 victim=None, poll_s: float = 0.01):
        super().__init__(daemon=True)
        self.class_name, self.ready, self.delay_s, self.refresh_s = class_name, ready, delay_s, refresh_s
        self.victim, self.poll_s = victim, poll_s
        self.seen: list[int] = []
        self.killed: int | None = None
        self.stop = threading.Event()
        self.earlier = set(self._refresh(must_answer=True))  # asked now, before the test starts its trial

    def _refresh(self, must_answer: bool = False) -> list[int]:
        """The live pids of the class; ``[]`` if the state API does not answer, unless ``must_answer``
        (then it is asked again for up to 30 s)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                pids = _alive_pids(self.class_name)
                break
            except Exception:  # noqa: BLE001 - the state API may not answer while actors start
                if not must_answer:
                    pids = []
                    break
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.seen += [p for p in pids if p not in self.seen]
        return pids

    def run(self) -> None:
        pids, asked = [], 0.0
        while not self.stop.is_set() and self.killed is None:
            if time.monotonic() - asked > self.refresh_s:
                pids, asked = [p for p in self._refresh() if p not in self.earlier], time.monotonic()
            target = self.victim() if self.victim is not None else (pids[0] if pids else None)
            if target is not None and self.ready():
                time.sleep(self.delay_s)
                try:
                    os.kill(target, signal.SIGKILL)
                    self.killed = target
                except ProcessLookupError:  # it ended meanwhile: ask again
                    asked = 0.0
            time.sleep(self.poll_s)
        while not self.stop.is_set():  # keep recording pids (e.g. the restarted worker)
            self._refresh()
            time.sleep(0.25)


@pytest.mark.slow
def test_killed_train_worker_is_restarted_by_train_and_the_row_written_once(smoke):
    """SIGKILL of the Train worker process mid-training: Ray Train starts a new worker, Tune sees no failure."""
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("akdray-trial-*"))

    def running() -> bool:  # the worker made its temporary run folder: past start-up and imports, in run()
        return bool(set(scratch.glob("akdray-trial-*")) - before)

    # Not a fixed delay after the worker appears: on a loaded machine that can fall into the worker
    # group's start-up, which Train V2 reports as a controller error instead of restarting the worker.
    killer = Killer("RayTrainWorker", ready=running, delay_s=1.0)
    killer.start()
    try:
        spec, df, local = _fault_search(smoke[1], "kill-worker", "dmp", {"distill_epochs": 80},
                                        train_max_failures=2, max_failures=0, train_workers=1)
    finally:
        killer.stop.set()
    assert killer.killed is not None and len(killer.seen) >= 2, killer.seen  # a second worker process ran
    assert len(df) == 1 and df["status"].iloc[0] == "ok", df[["status", "error"]]
    assert df["trial_failures"].iloc[0] == 0  # handled inside Train: Tune did not have to retry
    assert not list(scratch.glob(f"akdray-trial-{killer.killed}-*"))  # the new worker removed the dead one's folder
    assert len(list((local / "results").rglob("*.parquet"))) == 1


@pytest.mark.slow
def test_trial_killed_after_its_checkpoint_upload_is_rereported_not_retrained(smoke):
    """SIGKILL of the Tune trial process right after Train stored the run: the retry re-reports the stored row."""
    runs = smoke[1].parent / "kill-driver" / "runs"

    def stored() -> bool:  # uploaded *and* registered by Train's checkpoint manager
        return any("checkpoint_dir_name" in p.read_text() for p in runs.glob("*/checkpoint_manager_snapshot.json"))

    killer = Killer("ImplicitFunc", ready=stored)
    killer.start()
    try:
        spec, df, local = _fault_search(smoke[1], "kill-driver", "gauss", train_max_failures=0, max_failures=1,
                                        train_workers=1)
    finally:
        killer.stop.set()
    _assert_rereported_not_retrained(killer, df, local)


def _assert_rereported_not_retrained(killer: "Killer", df: pd.DataFrame, local: Path) -> pd.Series:
    """One ok row from a retried trial whose stored run was reported again: one checkpoint folder, whose
    row (start time, wall time) is the row's, and one results file. Returns the row."""
    assert killer.killed is not None
    assert len(df) == 1 and df["status"].iloc[0] == "ok", df[["status", "error"]]
    row = df.iloc[0]
    assert row["trial_failures"] == 1
    checkpoints = [p for p in (local / "runs" / row["trial_id"]).glob("checkpoint_*") if p.is_dir()]
    assert len(checkpoints) == 1  # trained (and stored) once: a retrained run would store a second one
    first = json.loads((checkpoints[0] / "row.json").read_text())
    assert first["started_at"] == row["started_at"] and first["wall_s"] == pytest.approx(row["wall_s"])
    assert len(list((local / "results").rglob("*.parquet"))) == 1
    return row


@pytest.mark.slow
def test_local_mode_trial_killed_mid_run_is_retried_by_tune_and_stored_once(smoke):
    """Ray Train's local mode (the default on the sweep's own cluster): the run is inside the Tune trial's
    process. SIGKILL of that process mid-training: Tune retries the trial, which trains and stores it once."""
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("akdray-trial-*"))

    # The process named by the trial's temporary run folder (it is inside run()), not the first
    # ImplicitFunc the state API lists, and soon after the folder appears: on a fast machine the whole
    # run takes a few seconds.
    killer = Killer("ImplicitFunc", victim=_run_folder_pid(scratch, before), delay_s=0.2)
    killer.start()
    try:
        spec, df, local = _fault_search(smoke[1], "kill-local", "dmp", {"distill_epochs": 80}, max_failures=1,
                                        train_workers=0)
    finally:
        killer.stop.set()
    assert killer.killed is not None
    assert len(df) == 1 and df["status"].iloc[0] == "ok", df[["status", "error"]]
    row = df.iloc[0]
    assert row["trial_failures"] == 1 and row["train_s"] > 0
    trial = local / "runs" / row["trial_id"]
    checkpoints = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    assert len(checkpoints) == 1 and row["checkpoint"] == f"file://{checkpoints[0]}"  # the killed attempt stored nothing
    assert json.loads((checkpoints[0] / "row.json").read_text())["started_at"] == row["started_at"]
    assert json.loads((trial / "report.json").read_text())["checkpoint"] == row["checkpoint"]
    assert not list(scratch.glob(f"akdray-trial-{killer.killed}-*"))  # the retry removed the dead one's folder
    assert len(list((local / "results").rglob("*.parquet"))) == 1


@pytest.mark.slow
def test_local_mode_trial_killed_after_storing_its_run_is_rereported_not_retrained(smoke):
    """SIGKILL of the local-mode trial process as soon as its report.json exists: the retry finds the
    stored run and reports it (same row, one checkpoint folder, no second training)."""
    runs = smoke[1].parent / "kill-local-stored" / "runs"
    scratch = Path(tempfile.gettempdir())
    # The trial's own process, known from its run folder before it stores the run, and report.json
    # looked for every millisecond: from report.json to the result reaching Tune takes under 10 ms on
    # a fast machine (a kill 8-10 ms after it missed the window), far less than the state API takes
    # to list a new actor.
    killer = Killer("ImplicitFunc", ready=lambda: any(runs.glob("*/report.json")), delay_s=0.0,
                    victim=_run_folder_pid(scratch, set(scratch.glob("akdray-trial-*"))), poll_s=0.001)
    killer.start()
    try:
        spec, df, local = _fault_search(smoke[1], "kill-local-stored", "gauss", max_failures=1, train_workers=0)
    finally:
        killer.stop.set()
    row = _assert_rereported_not_retrained(killer, df, local)
    assert row["checkpoint"].startswith(f"file://{local / 'runs' / row['trial_id']}/checkpoint_")
    assert pd.isna(row["ray_start_s"])  # re-reported: the times are of the attempt that trained


@pytest.mark.slow
def test_diverging_search_trial_is_failed_and_optuna_gets_no_number(smoke):
    """A real divergence (absurd learning rate) in an AKD trial: failed row with the reason, Optuna FAIL."""
    spec, df, _ = _fault_search(smoke[1], "diverge", "akd", {"lr": 1e30})
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == "failed" and row["error"].startswith("diverged: non-finite loss"), row["error"]
    assert pd.isna(row["loss_auc"]) and pd.isna(row["leak"]) and pd.isna(row["nkid"])
    study = optuna.load_study(study_name=Study("akd", 0, (), 1).name, storage=optuna_url(spec))
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
    assert "resuming search from" in second.stdout  # one experiment for every study of the stage
    df = pd.read_parquet(tmp_path / "resume" / "results")
    assert len(df) == 5 and df["trial_id"].is_unique, df[["method", "trial_id", "status"]]
    assert (df["status"] == "ok").all()
    assert df["method"].astype(str).value_counts().to_dict() == {"gauss": 3, "teacher": 2}  # + teacher-groupnorm
    study = optuna.load_study(study_name="gauss-seed0", storage=optuna_url(_spec(tmp_path / "resume")))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3 and all(not math.isnan(v) for t in complete for v in t.values)


