"""The typed trial metadata and the keys shared by the sweep's stages (no Ray cluster)."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from akdray.config import make_config
from akdray.reference_recipe import draw_key, reference_config
from akdray.sweep.meta import CONFIRM_KEY, META_KEY, TrialConfig, TrialMeta, grid_space, search_trial, split_trial_config
from akdray.sweep.spec import SweepSpec, base_config, search_space, study_space, studies

# The metadata dict a sweep stored before TrialMeta (akdray 7ce18b6), and one of akdray <= 0.1.0.
STORED = {"sweep_id": "s-1", "stage": "teacher", "study": "teacher", "runs_uri": "s3://b/s/runs", "scheme": "s3",
          "cpus": 4.0, "gpus": 0.25, "train_max_failures": 2, "train_workers": 0}
OLDEST = {"sweep_id": "s-0", "stage": "search", "study": "akd", "runs_uri": "/x/runs", "scheme": "", "cpus": 1.0,
          "gpus": 0.0, "train_max_failures": 2, "hooks": {}}


def test_trial_metadata_enters_tune_as_the_dict_a_stored_sweep_holds():
    spec = SweepSpec(name="s", storage="s3://b", cpus_per_trial=4.0, gpus_per_trial=0.25, train_workers=0,
                     sweep_id="s-1")
    meta = TrialMeta.of(spec, "teacher", "teacher")
    assert meta.to_dict() == STORED and list(meta.to_dict()) == list(STORED)
    assert TrialMeta.from_dict(STORED) == meta and meta.local_mode
    assert meta.storage_uri("b/s/runs/t1/checkpoint_0") == "s3://b/s/runs/t1/checkpoint_0"
    assert meta.with_cpus(8).cpus == 8.0 and meta.cpus == 4.0  # frozen: a new record


def test_metadata_stored_by_older_sweeps_still_loads():
    meta = TrialMeta.from_dict(OLDEST)  # no train_workers (a worker group then), the removed fault hooks
    assert (meta.sweep_id, meta.stage, meta.study, meta.train_workers, meta.local_mode) == ("s-0", "search", "akd", 1, False)
    assert meta.storage_uri("/x/runs/t") == "/x/runs/t"


def test_split_trial_config_returns_a_named_tuple_of_the_typed_parts():
    item = {"pick": "teacher-groupnorm", "cfg": {"method": "teacher", "seed": 3}, "pack": [{"seed": 4}]}
    space = grid_space(TrialMeta.from_dict(STORED), [item])
    trial_config = {META_KEY: space[META_KEY], CONFIRM_KEY: item}  # what Tune resolves the grid to
    parts = split_trial_config(trial_config)
    assert isinstance(parts, TrialConfig) and isinstance(parts.meta, TrialMeta)
    assert parts == ({"method": "teacher", "seed": 3}, TrialMeta.from_dict(STORED), "teacher-groupnorm", [{"seed": 4}])
    search = split_trial_config(search_trial({"method": "gauss", "gauss_sigma": 0.1}, parts.meta))
    assert search.config == {"method": "gauss", "gauss_sigma": 0.1} and search.pick is None and search.pack == []
    assert split_trial_config({"seed": 1}).meta == TrialMeta()  # no metadata: every field unset


def test_draw_key_is_the_same_for_a_config_its_references_and_their_rows():
    target = make_config("tiny", {"seed": 5})
    ref = reference_config(target, 1)
    assert draw_key(target) == draw_key(ref) == ("tiny", 5) and ref.seed != target.seed
    rows = pd.DataFrame([ref.to_dict(), make_config("tiny", {"seed": 5, "data_seed": 9}).to_dict()])
    assert [draw_key(r) for r in rows.itertuples()] == [("tiny", 5), ("tiny", 9)]
    assert draw_key(make_config("cpu-small", {"seed": 5})) != draw_key(target)  # another preset, another draw


def test_one_study_space_for_the_search_the_refinement_and_the_printed_front():
    spec = SweepSpec(name="x", storage="/tmp", preset="tiny", overrides={"gauss_sigma": 0.1, "seed": 2},
                     fixed=("gauss_sigma", "dp_max_grad_norm"))
    by_defense = {s.defense: s.space for s in studies(replace(spec, defenses=("akd", "dpsgd")))}
    assert by_defense["akd"] == study_space(spec, "akd") and by_defense["dpsgd"] == study_space(spec, "dpsgd")
    assert [p.name for p in study_space(spec, "dpsgd")] == ["dp_noise_multiplier"]
    pool = base_config(spec, "akd", 2, teacher="t")
    assert study_space(spec, "akd") == tuple(search_space("akd", pool))  # the preset's pool, not the default's
    assert study_space(spec, "akd") != tuple(search_space("akd", make_config()))
