"""Issue #9, a fair comparison: validation split, equal budgets, tolerant picks, unseen confirmation seeds."""
import numpy as np
import pandas as pd
import pytest
import torch

import akdray.data.splits as splits_mod
from akdray.config import ConfigError, RunConfig, make_config
from akdray.data.aligned import DataError
from akdray.data.splits import PairedImages, Splits, load_splits
from akdray.data.synthetic import synthetic_facades
from akdray.defenses.dpsgd import dp_epsilon, poisson_schedule
from akdray.evaluate import member_halves
from akdray.run import Prepared, execute, run
from akdray.sweep import cli as pareto
from akdray.sweep.refine import narrowed_space, unmatched
from akdray.sweep.spec import OBJECTIVES, Param, SweepSpec, base_config, search_space
from analysis import picks as picking, tables
from analysis.load import load_results
from analysis.testing import row, write_sweep
from akdray.testing import TINY, Tripwire, make_aligned

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------------
# 1. Validation split: selection objectives never read test images
# ------------------------------------------------------------------------------------------------
@pytest.mark.train
def test_search_trial_never_reads_test_images(monkeypatch):
    """A search-stage run (eval_split="val") neither generates nor touches a test image."""
    real = splits_mod.synthetic_pairs

    def guarded(n, size, seed, role, style="textured"):
        assert role != "test", "the test role was generated (or read from the cache) during a search-stage run"
        return real(n, size, seed, role, style)

    monkeypatch.setattr(splits_mod, "synthetic_pairs", guarded)
    cfg = RunConfig(**TINY).replace(eval_split="val")
    out = run(cfg)
    assert out["status"] == "ok", out["error"]
    assert all(isinstance(out[k], float) for k in OBJECTIVES)  # val_leak, val_nkid
    assert out["leak"] is None and out["nkid"] is None and out["loss_auc"] is None  # no test block
    assert out["n_references"] == 0


@pytest.mark.train
def test_search_evaluation_with_the_test_role_guarded():
    """The test pairs are a Tripwire: any read of them (x, y, len) during a search trial fails."""
    cfg = RunConfig(**TINY).replace(eval_split="val", n_sample_images=2)
    x, y, names = synthetic_facades(16, 16, 0, "train")
    vx, vy, vnames = synthetic_facades(8, 16, 0, "val")
    px, py, pnames = synthetic_facades(8, 16, 0, "proxy")
    guarded = Tripwire()
    splits = Splits(train=PairedImages(x, y, names), proxy=PairedImages(px, py, pnames), test=guarded, key="guarded",
                    val=PairedImages(vx, vy, vnames))
    out = execute(Prepared(cfg, splits, None, CPU, None))
    assert out["status"] == "ok" and out["val_attack_n_members"] == 8 and out["val_attack_n_nonmembers"] == 8


def test_member_halves_are_disjoint_and_cover_the_members():
    val, test = member_halves(11, seed=3)
    assert len(val) == 5 and len(test) == 6 and not set(val.tolist()) & set(test.tolist())
    assert sorted(val.tolist() + test.tolist()) == list(range(11))
    assert torch.equal(member_halves(11, 3)[0], val) and not torch.equal(member_halves(11, 4)[0], val)


@pytest.mark.train
def test_the_test_block_audits_every_member_and_the_validation_block_half():
    out = run(RunConfig(**TINY))
    assert out["attack_n_members"] == 16 and out["val_attack_n_members"] == 8  # issue #27: confirmation audits all
    assert out["val_attack_n_nonmembers"] == TINY["n_val"] and out["attack_n_nonmembers"] == TINY["n_test"]


def test_validation_role_is_disjoint_from_the_others():
    s = load_splits(RunConfig(**TINY))
    assert s.val is not None and len(s.val) == TINY["n_val"] and all("/val/" in n for n in s.val.names)
    assert RunConfig().resolved_n_val == 500 and make_config("facades").resolved_n_val == 20


def test_aligned_validation_is_carved_from_the_proxy_folder_or_refused(tmp_path):
    root = make_aligned(tmp_path / "d", counts=(6, 6, 4))
    cfg = RunConfig(data_source="aligned", data_root=str(root), image_size=16, d_layers=2, n_train=0, proxy_pool_size=0,
                    proxy_size=3, n_test=0, n_val=2)
    s = load_splits(cfg)
    assert [n.split("/")[-1] for n in s.val.names] == ["004.png", "005.png"]  # the last n_val files of val/
    assert not set(s.val.names) & set(s.proxy.names) and len(s.proxy) == 3
    with pytest.raises(DataError, match=r"carving the last n_val=4 .* leaves 2, fewer than proxy_size=3"):
        load_splits(cfg.replace(n_val=4))
    assert load_splits(cfg.replace(n_val=-1)).val is None  # auto: none for an aligned folder
    aligned = {"data_source": "aligned", "data_root": str(root), "n_train": 0, "proxy_pool_size": 0, "n_test": 0,
               "proxy_size": 3, "image_size": 16, "d_layers": 2}
    with pytest.raises(ConfigError, match="n_val"):
        pareto.validate(SweepSpec(name="x", storage="/tmp", overrides={**aligned, "n_val": 0}))
    with pytest.raises(ConfigError, match="leaves 2, fewer than proxy_size=3"):  # refused before any trial
        pareto.validate(SweepSpec(name="x", storage="/tmp", overrides={**aligned, "n_val": 4}))
    assert pareto.validate(SweepSpec(name="x", storage="/tmp", overrides={**aligned, "n_val": 2}))


# ------------------------------------------------------------------------------------------------
# 2-3. Unseen confirmation seeds, equal budgets, DMP and DP-SGD spaces
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--num-samples", "5"], ["--seeds", "2", "--num-samples", "2"]])
def test_dry_run_plan_gives_every_method_the_same_trial_count(tmp_path, capsys, extra):
    assert pareto.main(["--dry-run", "--storage", str(tmp_path), *extra]) == 0
    out = capsys.readouterr().out
    counts = {line.split(":")[0].strip(): line.split(":")[1].split("trial")[0].strip()
              for line in out.splitlines() if "-seed" in line and "trial(s)" in line}
    assert len(counts) == 4 * (2 if "--seeds" in extra else 1) and len(set(counts.values())) == 1, counts
    assert "(equal)" in out and "teacher-groupnorm" in out
    if "5" in extra:
        assert set(counts.values()) == {"5"}


def test_dmp_searches_the_distillation_parameters_of_akd_that_apply_to_it():
    base = RunConfig()
    akd = {p.name: p for p in search_space("akd", base)}
    dmp = {p.name: p for p in search_space("dmp", base)}
    assert set(dmp) == {"proxy_size", "distill_epochs"} and all(dmp[k] == akd[k] for k in dmp)


@pytest.mark.parametrize("preset", ["cpu-small", "facades"])
def test_dpsgd_noise_range_brackets_epsilon_from_over_1000_to_under_10(preset):
    cfg = make_config(preset)
    n = 400 if preset == "facades" else cfg.n_train
    sigma = {p.name: p for p in search_space("dpsgd", cfg)}["dp_noise_multiplier"]
    spe, q, _ = poisson_schedule(n, cfg.batch_size)
    steps = spe * (cfg.epochs + cfg.epochs_decay)
    assert dp_epsilon(sigma.low, q, steps, 0.1 / n) > 1000 and dp_epsilon(sigma.high, q, steps, 0.1 / n) < 10


def test_confirmation_seeds_default_unseen_and_overlap_refused(tmp_path, capsys):
    assert picking.DEFAULT_SEEDS == (100, 101, 102, 103, 104)
    sweep = write_sweep(tmp_path / "sw", [row("teacher", "t0", 0.8, 0.2), row("akd", "a1", 0.6, 0.3)],
                        sweep_json=SweepSpec(name="sw", storage=str(tmp_path)).__dict__)
    assert pareto.main(["--confirm", str(sweep), "--dry-run", "--confirm-seed-start", "0"]) == 2
    assert "were used by the search" in capsys.readouterr().err
    assert pareto.main(["--confirm", str(sweep), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "confirmation seeds [100, 101, 102, 103, 104]" in out
    assert "0 of 10 already confirmed with their current recipe; to run: teacher seed 100" in out and "akd seed 104" in out


# ------------------------------------------------------------------------------------------------
# 4. Matched picks with a tolerance
# ------------------------------------------------------------------------------------------------
def _tolerance_rows():
    """AKD's pick: val (leak .55, NKID .35). DP-SGD: NKID .50 / .20 (both > 10 % away) and leak
    .60 / .70 (both > .02 away): no trial within tolerance. DMP: NKID .36, leak .56: matched."""
    v = lambda leak, nkid: dict(val_leak=leak, val_nkid=nkid)  # noqa: E731
    return [
        row("teacher", "t0", 0.80, 0.20, **v(0.80, 0.30)), row("teacher", "tg", 0.79, 0.25, pick="teacher-groupnorm",
                                                               norm="group", **v(0.79, 0.33)),
        row("akd", "a1", None, None, **v(0.55, 0.35)), row("akd", "a2", None, None, **v(0.75, 0.30)),
        row("dpsgd", "d1", None, None, **v(0.60, 0.50)), row("dpsgd", "d2", None, None, **v(0.70, 0.20)),
        row("dmp", "m1", None, None, **v(0.56, 0.36)),
    ]


def test_pick_rule_says_no_trial_within_tolerance_on_a_hand_built_parquet(tmp_path):
    results = load_results(write_sweep(tmp_path / "sw", _tolerance_rows(), scores=False, samples=False))
    picks = picking.matched_picks(results).set_index("pick")
    assert picks.loc["akd", "trial_id"] == "a1" and picks.loc["akd", "measured_on"] == "val"
    assert picks.loc["teacher", "trial_id"] == "t0" and picks.loc["teacher-groupnorm", "trial_id"] == "tg"
    for pick, trial, dist in (("dpsgd@utility", "d1", 0.15), ("dpsgd@privacy", "d1", 0.05)):
        assert picks.loc[pick, "trial_id"] == trial and not picks.loc[pick, "within"]
        assert picks.loc[pick, "distance"] == pytest.approx(dist)
        assert picks.loc[pick, "rule"].startswith("no trial within tolerance")
    assert picks.loc["dmp@utility", "within"] and picks.loc["dmp@privacy", "within"]
    assert set(unmatched(picks.reset_index())["pick"]) == {"dpsgd@utility", "dpsgd@privacy"}
    notes = tables.match_notes(picks.reset_index())
    assert notes[("tiny", "dpsgd@utility+dpsgd@privacy")].count("no trial within tolerance") == 2
    wider = picking.matched_picks(results, utility_tol=0.5, privacy_tol=0.1).set_index("pick")
    assert wider.loc["dpsgd@utility", "within"] and wider.loc["dpsgd@privacy", "within"]


def test_narrowed_space_brackets_the_target():
    space = (Param("dp_noise_multiplier", 0.1, 4.0, log=True), Param("proxy_size", 2, 400, log=True, integer=True))
    rows = pd.DataFrame({"nkid": [0.1, 0.3, 0.9], "dp_noise_multiplier": [0.2, 1.0, 3.0], "proxy_size": [10, 50, 300]})
    sigma, proxy = narrowed_space(space, rows, "nkid", 0.5, pad=0.0)
    assert (sigma.low, sigma.high) == pytest.approx((1.0, 3.0)) and (proxy.low, proxy.high) == (50, 300)
    padded, _ = narrowed_space(space, rows, "nkid", 0.5)
    assert 0.1 <= padded.low < 1.0 and 3.0 < padded.high <= 4.0
    # a target beyond every trial: the nearest trial anchors, and the range steps out the way NKID rises
    up, up_proxy = narrowed_space(space, rows, "nkid", 2.0, pad=0.0)
    assert (up.low, up.high) == pytest.approx((3.0, 4.0)) and (up_proxy.low, up_proxy.high) == (300, 400)
    down, _ = narrowed_space(space, rows, "nkid", 0.05, pad=0.0)
    assert (down.low, down.high) == pytest.approx((0.1, 0.2))
    flat = pd.DataFrame({"nkid": [0.1, 0.3, 0.9, 0.6], "dp_noise_multiplier": [1.0, 3.0, 1.0, 3.0],
                         "proxy_size": [10, 50, 300, 100]})  # sigma uncorrelated with NKID: only the anchor
    sigma_flat, _ = narrowed_space(space, flat, "nkid", 2.0, pad=0.0)
    assert sigma_flat.low == sigma_flat.high == pytest.approx(1.0)


def test_sweep_spec_keeps_refine_settings_and_old_sweep_json_loads():
    spec = SweepSpec(name="x", storage="/tmp", refine_trials=4)
    assert SweepSpec.from_json(spec.to_json()).refine_trials == 4
    assert base_config(spec, "teacher", 0).resolved_n_val == 500
    assert np.isfinite(dp_epsilon(4.0, 0.02, 2000, 5e-4))
