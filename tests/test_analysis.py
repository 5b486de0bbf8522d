"""Sweep analysis on hand-built data with known answers: loading, fronts, hypervolume, picks,
confirmation configs and Tables II-IV (no training, no figures; see test_report.py for those)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from akdray.config import FIELD_TYPES, from_dict
from analysis import fronts, load, picks, tables, testing


@pytest.fixture
def known() -> pd.DataFrame:
    return load.normalize_results(pd.DataFrame(testing.known_rows()))


# --- hypervolume and fronts -------------------------------------------------------------------
def _grid_hypervolume(points, ref=(1.0, 1.0)) -> float:
    """Independent exact check: the union of the dominated boxes on the grid of all coordinates."""
    pts = [(a, b) for a, b in points if a < ref[0] and b < ref[1]]
    xs, ys = sorted({a for a, _ in pts} | {ref[0]}), sorted({b for _, b in pts} | {ref[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if any(a <= x0 and b <= y0 for a, b in pts):
            area += (x1 - x0) * (y1 - y0)
    return area


def test_hypervolume_of_toy_fronts_has_the_known_area():
    assert fronts.hypervolume([(0.5, 0.5)]) == pytest.approx(0.25)
    # two boxes 0.8 x 0.2 and 0.4 x 0.7 overlapping in 0.4 x 0.2: 0.16 + 0.28 - 0.08
    assert fronts.hypervolume([(0.2, 0.8), (0.6, 0.3)]) == pytest.approx(0.36)
    # a dominated point, points beyond or on the reference, and NaN add nothing
    extra = [(0.7, 0.9), (1.2, 0.1), (0.1, 1.5), (0.5, 1.0), (np.nan, 0.1)]
    assert fronts.hypervolume([(0.2, 0.8), (0.6, 0.3), *extra]) == pytest.approx(0.36)
    assert fronts.hypervolume([]) == 0.0
    assert fronts.hypervolume([(0.0, 0.0)], reference=(2.0, 3.0)) == pytest.approx(6.0)


def test_hypervolume_matches_a_brute_force_union_of_boxes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = [tuple(p) for p in rng.uniform(0, 1.2, (12, 2))]
        assert fronts.hypervolume(pts) == pytest.approx(_grid_hypervolume(pts), abs=1e-12)


def test_pareto_mask_minimises_both_and_keeps_duplicates():
    x = [0.5, 0.6, 0.5, 0.4, 0.5, np.nan, 0.7]
    y = [0.5, 0.4, 0.6, 0.9, 0.5, 0.0, 0.4]
    assert fronts.pareto_mask(x, y).tolist() == [True, True, False, True, True, False, False]


def test_fronts_use_ok_non_confirm_rows_and_one_hypervolume_per_method(known):
    akd = fronts.fronts(known).query("method == 'akd'")
    assert akd["trial_id"].tolist() == ["a1", "a2", "a3"]  # a4 dominated, a5 failed, a6 confirm
    hv = fronts.hypervolume_table(known).set_index("method")
    assert hv.loc["akd", "n_trials"] == 4
    assert hv.loc["akd", "hypervolume"] == pytest.approx(fronts.hypervolume([(0.5, 0.6), (0.55, 0.35), (0.7, 0.2)]))
    assert list(hv.index) == ["teacher", "akd", "dmp", "dpsgd"]


# --- picks ----------------------------------------------------------------------------------
def test_matched_picks_are_the_ones_the_rule_selects(known):
    got = picks.matched_picks(known).set_index("pick")
    assert got["trial_id"].to_dict() == {
        "teacher": "t0", "akd": "a2",  # NKID .35 <= .25 x 1.5; a1 has lower AUC but NKID .60
        "dmp@utility": "m1", "dmp@privacy": "m1",
        "dpsgd@utility": "d3",  # d2 and d3 both 0.05 from NKID .35: lower AUC wins
        "dpsgd@privacy": "d1",  # d1 and d4 both 0.02 from AUC .55: lower NKID wins
    }
    assert got.loc["akd", "target"] == pytest.approx(0.375)
    assert got.loc["dpsgd@utility", "distance"] == pytest.approx(0.05)
    assert "lowest leak on front" in got.loc["akd", "rule"]


def test_privacy_axis_is_leak_so_an_auc_below_chance_is_not_rewarded():
    rows = [testing.row("teacher", "t0", 0.9, 0.2), testing.row("akd", "low", 0.30, 0.25),
            testing.row("akd", "near", 0.55, 0.28)]
    results = load.normalize_results(pd.DataFrame(rows))
    assert results.set_index("trial_id").loc["low", "leak"] == pytest.approx(0.70)
    got = picks.matched_picks(results).set_index("pick")
    assert got.loc["akd", "trial_id"] == "near"  # AUC 0.30 leaks as much as 0.70
    front = fronts.fronts(results).query("method == 'akd'")
    assert front["trial_id"].tolist() == ["near", "low"]  # by leak: (0.55, 0.28), (0.70, 0.25)
    hv = fronts.hypervolume_table(results).set_index("method").loc["akd", "hypervolume"]
    assert hv == pytest.approx(0.45 * 0.72 + 0.30 * 0.03)  # reference point (leak 1, NKID 1)


def test_akd_pick_falls_back_to_the_lowest_nkid_front_point(known):
    got = picks.matched_picks(known, tol=-0.5).set_index("pick")  # bound 0.125: nothing qualifies
    assert got.loc["akd", "trial_id"] == "a3" and "lowest NKID" in got.loc["akd", "rule"]
    no_teacher = picks.matched_picks(known[known["method"] != "teacher"]).set_index("pick")
    assert "teacher" not in no_teacher.index
    assert no_teacher.loc["akd", "trial_id"] == "a3" and no_teacher.loc["akd", "rule"].startswith("no teacher")


def test_picks_are_deterministic_under_row_order_and_read_parquet_categoricals(known, tmp_path):
    testing.write_sweep(tmp_path, testing.known_rows(), scores=False, samples=False)
    raw = pd.read_parquet(tmp_path / "results")
    assert isinstance(raw["method"].dtype, pd.CategoricalDtype)
    shuffled = raw.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(picks.matched_picks(shuffled), picks.matched_picks(known))


def test_picks_are_made_per_preset(known):
    other = known.assign(preset="facades", trial_id="f-" + known["trial_id"])
    got = picks.matched_picks(pd.concat([known, other]))
    assert sorted(got["preset"].unique()) == ["facades", "tiny"]
    assert got.query("preset == 'facades' and pick == 'akd'")["trial_id"].item() == "f-a2"


# --- confirmation configs --------------------------------------------------------------------
def test_confirmation_configs_are_flat_run_configs_per_pick_and_seed(known):
    configs = picks.confirmation_configs(known, seeds=(0, 1, 2, 3, 4))
    labels = [label for label, _ in configs]
    assert labels[:5] == ["teacher"] * 5  # teachers first: the others need their checkpoints
    assert sorted(set(labels)) == ["akd", "dmp@utility+dmp@privacy", "dpsgd@privacy", "dpsgd@utility", "teacher"]
    assert len(configs) == 5 * 5
    for _, cfg in configs:
        assert set(cfg) == set(FIELD_TYPES)  # only RunConfig fields; the label is separate
        assert all(type(cfg[k]) is FIELD_TYPES[k] for k in cfg)
        if cfg["method"] in ("akd", "dmp", "gauss"):
            assert cfg["teacher_checkpoint"] == ""  # the sweep fills the same-seed teacher
            from_dict({**cfg, "teacher_checkpoint": "/x"})
        else:
            from_dict(cfg)
    by_label = {}
    for label, cfg in configs:
        by_label.setdefault(label, []).append(cfg)
    assert [c["seed"] for c in by_label["akd"]] == [0, 1, 2, 3, 4]
    assert {c["distill_lambda"] for c in by_label["akd"]} == {50.0}  # a2's hyper-parameters
    assert {c["dp_noise_multiplier"] for c in by_label["dpsgd@utility"]} == {2.0}  # d3
    assert {c["dp_noise_multiplier"] for c in by_label["dpsgd@privacy"]} == {0.5}  # d1


def test_confirmation_configs_evaluate_on_the_teachers_kid_image_count_not_the_search_trials(known):
    searched = known.assign(kid_max_images=known["method"].map(lambda m: 100 if m == "teacher" else 50))
    configs = picks.confirmation_configs(searched, seeds=(0,))
    assert {label for label, _ in configs} >= {"teacher", "akd", "dpsgd@utility"}
    assert all(cfg["kid_max_images"] == 100 for _, cfg in configs)  # --search-kid-images 50 picks, confirmed on 100


def test_confirmation_configs_name_missing_fields():
    rows = pd.DataFrame(testing.known_rows()).drop(columns="gauss_sigma")
    with pytest.raises(ValueError, match="gauss_sigma"):
        picks.confirmation_configs(rows)


# --- loading ---------------------------------------------------------------------------------
def test_load_results_reads_hive_partitions_with_drifting_schemas(tmp_path):
    root = tmp_path / "sweep" / "results"
    teacher = pd.DataFrame([testing.row("teacher", "t0", 0.8, 0.2)])
    (root / "method=teacher").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(teacher.drop(columns="method")), root / "method=teacher" / "a.parquet")
    assert pq.read_schema(root / "method=teacher" / "a.parquet").field("proxy_mia_auc").type == pa.null()
    akd = pd.DataFrame([testing.row("akd", "a1", 0.5, 0.3, proxy_mia_auc=0.51)])
    (root / "method=akd").mkdir()
    pq.write_table(pa.Table.from_pandas(akd.drop(columns="method")), root / "method=akd" / "b.parquet")
    (root / "_SUCCESS").write_text("")
    got = load.load_results(tmp_path / "sweep").set_index("trial_id")
    assert got.loc["a1", "method"] == "akd" and isinstance(got.loc["a1", "method"], str)
    assert got.loc["a1", "proxy_mia_auc"] == pytest.approx(0.51) and np.isnan(got.loc["t0", "proxy_mia_auc"])
    assert got["seed"].dtype.kind == "i"


def test_load_results_without_a_dataset_raises(tmp_path):
    with pytest.raises(load.NoResultsError, match="results"):
        load.load_results(tmp_path)


def test_scores_and_samples_are_read_for_the_requested_trials_only(tmp_path):
    testing.write_sweep(tmp_path, testing.known_rows())
    scores = load.load_rows_for(tmp_path, "scores", ["a2", "d1"])
    assert set(scores["trial_id"]) == {"a2", "d1"} and len(scores) == 80
    assert load.load_rows_for(tmp_path, "samples", []).empty
    assert load.load_rows_for(tmp_path / "nowhere", "samples", ["a2"]).empty


# --- tables ----------------------------------------------------------------------------------
def test_tables_from_confirm_rows_are_mean_and_std_over_seeds(known):
    results = load.normalize_results(pd.DataFrame([r for r in testing.known_rows() if r["trial_id"] != "a6"]
                                                  + testing.confirm_rows()))
    rows, sources = tables.pick_rows(results, picks.matched_picks(results))
    assert sources == {"tiny": "mixed"}  # dmp and dpsgd@privacy were not confirmed
    table2 = tables.summarize(rows, tables.TABLES[0], sources).set_index("pick")
    assert list(table2.index) == ["teacher", "akd", "dmp@utility+dmp@privacy", "dpsgd@utility", "dpsgd@privacy"]
    assert table2["source"].to_dict() == {"teacher": "confirm", "akd": "confirm", "dmp@utility+dmp@privacy": "search",
                                          "dpsgd@utility": "confirm", "dpsgd@privacy": "search"}
    akd_auc = [0.55 + 0.01 * s for s in range(5)]
    assert table2.loc["akd", "loss_auc_mean"] == pytest.approx(np.mean(akd_auc))
    assert table2.loc["akd", "loss_auc_std"] == pytest.approx(np.std(akd_auc, ddof=1))
    assert (table2.loc["akd", "n"], table2.loc["akd", "n_failed"], table2.loc["akd", "seeds"]) == (5, 1, "0 1 2 3 4")
    table3 = tables.summarize(rows, tables.TABLES[1], sources).set_index("pick")
    assert table3.loc["akd", "loss_tpr_at_1pct_fpr_mean"] == pytest.approx(np.mean(akd_auc) - 0.45)
    table4 = tables.summarize(rows, tables.TABLES[2], sources).set_index("pick")
    assert table4.loc["teacher", "gen_gap_mean"] == pytest.approx(0.05)
    shown = tables.display(table2.reset_index(), tables.TABLES[0])
    assert shown.loc[1, "AUC loss"] == f"{np.mean(akd_auc):.3f} ± {np.std(akd_auc, ddof=1):.3f}"
    assert "confirmation stage" in tables.caption(tables.TABLES[0], sources)


def test_tables_fall_back_to_the_search_rows_of_the_picks(known):
    results = known[known["stage"] != "confirm"]
    rows, sources = tables.pick_rows(results, picks.matched_picks(results))
    assert sources == {"tiny": "search"}
    table2 = tables.summarize(rows, tables.TABLES[0], sources).set_index("pick")
    assert table2.loc["dmp@utility+dmp@privacy", "loss_auc_mean"] == pytest.approx(0.52)
    assert table2.loc["akd", "n"] == 1 and np.isnan(table2.loc["akd", "loss_auc_std"])
    assert "no confirmation rows" in tables.caption(tables.TABLES[0], sources)
    assert tables.markdown_table(pd.DataFrame({"a|b": ["x"]})).splitlines()[0] == "| a\\|b |"


def test_metric_columns_exist_in_the_run_schema():
    from akdray.schema import INFO_KEYS, METRIC_KEYS

    assert set(load.NUMERIC_COLUMNS) <= set(METRIC_KEYS) | set(INFO_KEYS)


def test_rows_of_a_sweep_from_before_the_calibrated_attacks_get_leak_from_the_loss_attack():
    old = testing.row("akd", "x", 0.3, 0.2)
    old["mia_auc"] = old.pop("loss_auc")
    del old["leak"], old["leak_source"]
    got = load.normalize_results(pd.DataFrame([old])).iloc[0]
    assert got["leak"] == pytest.approx(0.7) and got["loss_auc"] == pytest.approx(0.3) and got["leak_source"] == "loss"


def test_seeds_text_names_run_seeds_not_reference_model_seeds():
    from analysis.report import seeds_text

    rows = testing.known_rows() + testing.confirm_rows() + [
        testing.row("reference", "r0", None, None, seed=10_000, stage="reference"),
        testing.row("reference", "r1", None, None, seed=20_100, stage="confirm-reference")]
    text = seeds_text(load.normalize_results(pd.DataFrame(rows)))
    assert "10000" not in text and "20100" not in text
    assert text.startswith("Selection seeds (teacher and search stages): 0, 1;")


def test_confirm_rows_of_a_recipe_no_longer_picked_are_left_out_and_others_get_the_current_label():
    """After --refine-picks a pick may change: its old confirmation rows must not be shown under it."""
    stale = testing.confirm_rows(picks=(("dpsgd@utility", "dpsgd", 0.70, 0.50),), failed=None,
                                 recipes={"dpsgd@utility": {"dp_noise_multiplier": 3.0}})  # an older pick's sigma
    regrouped = testing.confirm_rows(picks=(("dmp@utility", "dmp", 0.52, 0.45),), failed=None)  # m1, labelled alone
    results = load.normalize_results(pd.DataFrame(testing.known_rows() + stale + regrouped))
    rows, _ = tables.pick_rows(results, picks.matched_picks(results))
    table2 = tables.summarize(rows, tables.TABLES[0]).set_index("pick")
    assert table2.loc["dpsgd@utility", "source"] == "search" and table2.loc["dpsgd@utility", "n"] == 1
    assert table2.loc["dpsgd@utility", "loss_auc_mean"] == pytest.approx(0.58)  # d3 itself, not the stale 0.70+
    assert table2.loc["dmp@utility+dmp@privacy", "source"] == "confirm" and table2.loc["dmp@utility+dmp@privacy", "n"] == 5


def test_recipe_key_ignores_what_the_confirmation_changes_and_nothing_else(known):
    from akdray.recipe import recipe_key

    row = known.set_index("trial_id").loc["a2"]
    cfg = picks.run_config_dict(row)
    assert recipe_key(row) == recipe_key(cfg)  # a results row and its config dict agree
    rerun = {**cfg, "seed": 101, "eval_split": "both", "teacher_checkpoint": "/t101", "reference_checkpoints": "/r,/s",
             "kid_max_images": cfg["kid_max_images"] + 50}  # a search pick measured on fewer KID images
    assert recipe_key(rerun) == recipe_key(cfg)
    assert recipe_key({**cfg, "distill_lambda": 51.0}) != recipe_key(cfg)
    assert recipe_key({**cfg, "data_seed": 7}) != recipe_key(cfg)


def test_method_claims_are_paired_t_intervals_over_shared_seeds():
    from analysis import verdict

    mean, lo, hi = verdict.paired_interval(np.array([0.1, 0.2, 0.3]))
    assert mean == pytest.approx(0.2) and hi - mean == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert np.isnan(verdict.paired_interval(np.array([0.1]))[1])
    rows = pd.DataFrame({"preset": "p", "status": "ok", "seed": [1, 2, 3, 1, 2, 4],
                         "label": ["akd"] * 3 + ["dmp@utility"] * 3,
                         "leak": [0.70, 0.72, 0.71, 0.75, 0.78, 0.99], "nkid": [0.2, 0.2, 0.2, 0.1, 0.1, 0.1]})
    diffs = verdict.paired_differences(rows).set_index("pick")
    assert diffs.loc["dmp@utility", "n_pairs"] == 2  # seed 3 and seed 4 have no partner
    assert diffs.loc["dmp@utility", "leak_diff"] == pytest.approx(0.055)  # (0.05 + 0.06) / 2, not 0.84/3 - 0.71
    line = verdict.verdict_lines(diffs.reset_index(), {})[0]  # two pairs: the leak interval still holds 0
    assert "no difference measured (leak − AKD +0.055 [-0.009, +0.119])" in line and "better images than AKD" in line


def test_the_privacy_tolerance_is_the_standard_error_of_a_difference_of_two_leaks():
    ref = pd.Series({"val_leak": 0.7, "val_leak_lo": 0.64, "val_leak_hi": 0.76})
    assert picks.privacy_tolerance(ref, "val_leak", None) == pytest.approx(np.sqrt(2) * 0.12 / 3.919928)
    assert picks.privacy_tolerance(ref, "val_leak", 0.05) == 0.05
    assert picks.privacy_tolerance(pd.Series({"leak": 0.7}), "leak", None) == picks.LEGACY_PRIVACY_TOL
