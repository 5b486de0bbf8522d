"""cluster/aws.yaml passes Ray's own cluster-config validator; broken copies do not."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

YAML = Path(__file__).resolve().parents[1] / "cluster" / "aws.yaml"


def load() -> dict:
    return yaml.safe_load(YAML.read_text())


def check(config: dict) -> dict:
    """What ``ray up`` does before launching anything: fill defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_validates():
    prepared = check(load())
    nodes = prepared["available_node_types"]
    head = nodes[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu = [n for name, n in nodes.items() if name != prepared["head_node_type"]]
    assert gpu and all(n["min_workers"] == 0 and n["max_workers"] >= 1 for n in gpu)
    assert all(n["node_config"]["InstanceType"].startswith(("g5", "g6")) for n in gpu)
    setup = "\n".join(prepared["setup_commands"])
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup and "pip install -e" in setup


def test_cluster_yaml_holds_no_credentials_or_experiment_settings():
    text = YAML.read_text().lower()
    for word in ("aws_access_key", "aws_secret", "secret_access", "session_token", "password"):
        assert word not in text
    # launcher settings only: no sweep flags inside commands
    for flag in ("--num-samples", "--preset", "distill_lambda"):
        assert flag not in "\n".join(load()["setup_commands"] + load()["head_start_ray_commands"])


@pytest.mark.parametrize("breakage", ["max_workers_type", "unknown_top_level_key", "unknown_head_type"])
def test_broken_copies_do_not_validate(breakage):
    config = load()
    if breakage == "max_workers_type":
        config["max_workers"] = "four"
    elif breakage == "unknown_top_level_key":
        config["gpu_count"] = 4
    else:
        config["head_node_type"] = "no_such_type"
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        check(config)
