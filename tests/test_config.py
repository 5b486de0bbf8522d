import dataclasses

import pytest

from akdray.config import PRESETS, ConfigError, RunConfig, from_dict, make_config, parse_overrides


def test_presets_build_and_facades_matches_paper():
    for name in PRESETS:
        make_config(name, {"method": "teacher"})
    f = make_config("facades")
    assert (f.image_size, f.batch_size, f.epochs, f.epochs_decay, f.l1_lambda, f.lr) == (256, 1, 100, 100, 100.0, 2e-4)
    assert (f.beta1, f.beta2) == (0.5, 0.999) and f.resolved_unet_depth == 8


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ConfigError, match="nope"):
        make_config("nope")
    with pytest.raises(ConfigError, match="'bogus_field'"):
        from_dict({"bogus_field": 1})
    with pytest.raises(ConfigError, match="'bogus'"):
        parse_overrides(["bogus=1"])
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides(["noequals"])


@pytest.mark.parametrize("changes, field", [
    (dict(image_size=48), "image_size"), (dict(norm="layer"), "norm"), (dict(lr=-1.0), "lr"),
    (dict(gauss_sigma=-0.1), "gauss_sigma"), (dict(dp_noise_multiplier=-1.0), "dp_noise_multiplier"),
    (dict(proxy_size=500), "proxy_size"), (dict(method="akd"), "teacher_checkpoint"),
    (dict(inference_mode="test"), "inference_mode"), (dict(epochs="3"), "epochs"),
    (dict(data_source="aligned"), "data_root"), (dict(lr=float("nan")), "lr"),
])
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        RunConfig(**changes)


def test_string_overrides_are_typed_and_dict_round_trips():
    cfg = make_config("cpu-small", {"epochs": "3", "lr": "1e-3", "use_dropout": "false", "norm": "instance"})
    assert (cfg.epochs, cfg.lr, cfg.use_dropout, cfg.norm) == (3, 1e-3, False, "instance")
    assert from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="'epochs'"):
        make_config("cpu-small", {"epochs": "three"})


def test_config_is_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'seed'"):
        cfg.seed = 3  # type: ignore[misc]
    assert cfg.seed == RunConfig().seed


def test_data_seed_follows_seed_unless_set_and_below_minus_one_is_refused():
    assert RunConfig(seed=3).resolved_data_seed == 3 and RunConfig(seed=3, data_seed=1234).resolved_data_seed == 1234
    with pytest.raises(ConfigError, match="'data_seed'"):
        RunConfig(data_seed=-2)
    from akdray.data.splits import data_key
    assert data_key(RunConfig(seed=1)) != data_key(RunConfig(seed=2)) == data_key(RunConfig(seed=5, data_seed=2))


def test_checkpoints_compare_the_resolved_draw():
    from akdray.checkpoint import check_teacher_compatible
    check_teacher_compatible(RunConfig(seed=4), RunConfig(seed=0, data_seed=4), "t.pt")  # same draw
    with pytest.raises(ConfigError, match="'data_seed'"):
        check_teacher_compatible(RunConfig(seed=4), RunConfig(seed=0), "t.pt")


def test_reference_fields():
    assert RunConfig(n_train=50).resolved_reference_pool == 100
    assert RunConfig(reference_checkpoints=" a, b ,").reference_list == ["a", "b"]
    with pytest.raises(ConfigError, match="LiRA needs at least 2"):
        RunConfig(reference_checkpoints="only-one")
    with pytest.raises(ConfigError, match="'reference_pool_size'"):
        RunConfig(method="reference", reference_pool_size=10)
    with pytest.raises(ConfigError, match="'attack_bootstrap'"):
        RunConfig(attack_bootstrap=100)
