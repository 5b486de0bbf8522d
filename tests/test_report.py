"""``python analysis/report.py SWEEP_DIR``: files written, Table II traced back to the Parquet rows,
exit 2 without results, and the HTML opening in headless Chromium with every image loaded."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import report, testing

ROOT = Path(__file__).resolve().parent.parent
CONFIRMED = (("teacher", "teacher", 0.80, 0.20), ("akd", "akd", 0.55, 0.35), ("dpsgd@utility", "dpsgd", 0.60, 0.36),
             ("dpsgd@privacy", "dpsgd", 0.54, 0.78), ("dmp@utility+dmp@privacy", "dmp", 0.52, 0.45))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A hand-built sweep (search + confirm stages, one failure of each) and its report."""
    sweep = tmp_path_factory.mktemp("sweep")
    rows = [r for r in testing.known_rows() if r["stage"] != "confirm"] + testing.confirm_rows(CONFIRMED)
    testing.write_sweep(sweep, rows, sweep_json={"preset": "tiny", "seeds": [0, 1, 2, 3, 4], "commit": "abc1234",
                                                 "wall_s": 321.0})
    out = sweep / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    return sweep, out


def test_report_writes_every_table_and_figure(built):
    _, out = built
    for name in ("report.html", "report.md", "confirm_configs.json", "tables/table2.csv", "tables/table3.csv",
                 "tables/table4.csv", "tables/picks.csv", "tables/hypervolume.csv", "tables/counts.csv"):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert sorted(Path(f).name for f in figures) == sorted(
        f"{k}_tiny.png" for k in ("pareto", "roc", "loss_hist", "samples"))
    assert all((out / f).is_file() for f in figures)
    for heading in ("Provenance", "Table II", "Table III", "Table IV", "Matched picks", "Hypervolume"):
        assert heading in md
    assert "abc1234" in md and "38 (36 ok, 2 failed)" in md  # provenance: commit and ok/failed counts
    page = (out / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # self-contained
    labels = {item["pick"] for item in json.loads((out / "confirm_configs.json").read_text())}
    assert labels == {"teacher", "akd", "dmp@utility+dmp@privacy", "dpsgd@utility", "dpsgd@privacy"}


def test_table_ii_cells_trace_to_the_parquet_rows(built):
    sweep, out = built
    raw = pd.read_parquet(sweep / "results")  # straight from the dataset, categorical method and all
    table2 = pd.read_csv(out / "tables" / "table2.csv").set_index("pick")
    for pick in ("akd", "dpsgd@privacy"):
        mine = raw[(raw["stage"] == "confirm") & (raw["pick"] == pick) & (raw["status"] == "ok")]
        assert len(mine) == 5
        assert table2.loc[pick, "loss_auc_mean"] == pytest.approx(mine["loss_auc"].mean())
        assert table2.loc[pick, "nkid_std"] == pytest.approx(mine["nkid"].std(ddof=1))
    assert table2.loc["akd", "n_failed"] == 1
    assert list(table2["source"].unique()) == ["confirm"]
    picks = pd.read_csv(out / "tables" / "picks.csv").set_index("pick")
    assert picks.loc["akd", "trial_id"] == "a2" and picks.loc["dpsgd@utility", "trial_id"] == "d3"


def test_without_confirm_rows_the_tables_use_the_search_rows_and_say_so(tmp_path):
    testing.write_sweep(tmp_path, [r for r in testing.known_rows() if r["stage"] != "confirm"], samples=False)
    assert report.main([str(tmp_path)]) == 0  # default --out: SWEEP_DIR/report
    md = (tmp_path / "report" / "report.md").read_text()
    assert "no confirmation rows - the search rows of the picks" in md
    assert re.search(r"\(Figs 5/6 \(tiny\): input, ground truth and outputs [^\n]*: no data in the sweep\.\)", md)
    table2 = pd.read_csv(tmp_path / "report" / "tables" / "table2.csv").set_index("pick")
    assert table2.loc["akd", "loss_auc_mean"] == pytest.approx(0.55) and table2.loc["akd", "n"] == 1


@pytest.mark.parametrize("case", ["all_failed", "dpsgd_only_without_scores"])
def test_sparse_sweeps_still_give_a_report(tmp_path, case):
    if case == "all_failed":
        rows = [testing.row("teacher", "t", None, None, status="failed"), testing.row("akd", "a", None, None, status="failed")]
    else:
        rows = [r for r in testing.known_rows() if r["method"] == "dpsgd"]
    testing.write_sweep(tmp_path, rows, scores=case == "all_failed", samples=False)
    assert report.main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Table IV" in md and md.count("no data in the sweep") >= 3


def test_no_results_dataset_is_a_clear_exit_2(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "no results dataset" in capsys.readouterr().err
    # and as the documented script invocation
    done = subprocess.run([sys.executable, str(ROOT / "analysis" / "report.py"), str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "no results dataset" in done.stderr and "Traceback" not in done.stderr


def test_analysis_is_installed_with_akdray_and_runs_as_a_module(tmp_path):
    """pyproject's package list ships analysis/, so ``python -m analysis.report`` (and the script path, above)
    work from any folder without a sys.path insert."""
    import tomllib

    from setuptools import find_packages

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert "analysis" in find_packages(str(ROOT), include=find["include"])
    assert "sys.path" not in (ROOT / "analysis" / "report.py").read_text()
    done = subprocess.run([sys.executable, "-m", "analysis.report", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "SWEEP_DIR" in done.stdout.upper(), done.stderr


# --- headless Chromium ------------------------------------------------------------------------
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--hide-scrollbars"]
PROBE = ('<script>window.addEventListener("load", () => { const all = [...document.images];'
         ' const ok = all.filter(i => i.complete && i.naturalWidth > 0).length;'
         ' const p = document.createElement("pre"); p.id = "probe"; p.textContent = `IMAGES ${all.length} LOADED ${ok}`;'
         ' document.body.appendChild(p); });</script>')


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (CI installs Debian's `chromium` package)")
def test_html_report_opens_in_headless_chromium_with_every_image_loaded(built, tmp_path):
    _, out = built
    page = (out / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    done = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r"IMAGES (\d+) LOADED (\d+)", done.stdout)
    assert found, f"no probe result; chromium rc={done.returncode} stderr tail: {done.stderr[-800:]}"
    assert int(found.group(1)) == 4 and found.group(2) == found.group(1)

    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, "--window-size=1200,4000", f"--screenshot={shot}", (out / "report.html").as_uri())
    assert shot.is_file(), f"no screenshot; chromium rc={done.returncode} stderr tail: {done.stderr[-800:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page
    figures_band = pixels[pixels.shape[0] // 2:]  # the lower half holds the tables' end and the figures
    assert figures_band.std() > 10


def test_the_sample_grid_shows_models_sampled_on_different_images(tmp_path):
    """Teachers are sampled on test images, search trials on validation images: the grid shows both, blank
    where a model has no sample (before issue #27 it was missing from every report without confirmation)."""
    from analysis import figures

    def frame(trial: str, role: str) -> pd.DataFrame:
        names = [f"synthetic/{role}/{i:05d}" for i in range(4)]
        return pd.DataFrame({"trial_id": trial, "name": names, "input_png": [testing.png(i) for i in range(4)],
                             "target_png": [testing.png(10 + i) for i in range(4)],
                             "output_png": [testing.png(20 + i) for i in range(4)]})

    samples = pd.concat([frame("t0", "test"), frame("a1", "val")], ignore_index=True)
    by_trial = {t: samples[samples["trial_id"] == t].set_index("name") for t in ("t0", "a1")}
    names = figures._grid_images(by_trial, [("Regular", "t0"), ("AKD", "a1")], 4)
    assert {n.split("/")[1] for n in names} == {"test", "val"} and len(names) == 4
    path = figures.sample_grid(samples, [("Regular", "t0"), ("AKD", "a1")], tmp_path / "grid.png", "grid")
    assert path is not None and path.stat().st_size > 0
