"""cluster/aws.yaml passes Ray's own cluster-config validator; broken copies do not."""
from __future__ import annotations

import copy
import re
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


def test_cluster_is_closed_by_default():
    """Token auth on every node, no SSH from the whole internet, workers without the autoscaler's profile."""
    prepared = check(load())
    starts = prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in starts if "ray start" in cmd)
    assert any("get-auth-token --generate" in cmd for cmd in prepared["head_setup_commands"])
    assert "~/.ray/auth_token" in prepared["cluster_synced_files"]
    assert "security_group" not in prepared["provider"]  # Ray's default group opens SSH to 0.0.0.0/0
    head = prepared["head_node_type"]
    for name, node in prepared["available_node_types"].items():
        assert node["node_config"].get("SecurityGroupIds"), f"{name} would get Ray's open default group"
        if name != head:
            assert node["node_config"]["IamInstanceProfile"]["Name"] != "ray-autoscaler-v1"
    assert prepared["rsync_filter"] == [".gitignore"]
    ignored = (YAML.parents[1] / ".gitignore").read_text().split()
    assert {"/runs/", "*.pt", "*.parquet", ".venv/", "/datasets/"} <= set(ignored)


def test_access_template_opens_ssh_to_one_cidr_and_s3_to_one_bucket():
    class Loader(yaml.SafeLoader):  # CloudFormation's short tags (!Ref, !Sub, !GetAtt) as plain values
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                 if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))
    template = yaml.load((YAML.parent / "aws-access.yaml").read_text(), Loader=Loader)
    ssh = template["Resources"]["ClusterSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [rule["CidrIp"] for rule in ssh] == ["SshCidr"] and "Default" not in template["Parameters"]["SshCidr"]
    pattern = template["Parameters"]["SshCidr"]["AllowedPattern"]
    assert re.fullmatch(pattern, "203.0.113.7/32") and not re.fullmatch(pattern, "0.0.0.0/0")
    statements = template["Resources"]["WorkerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert all(str(s["Resource"]).startswith("arn:aws:s3:::${SweepBucket}") for s in statements)
    assert all(a.startswith("s3:") for s in statements for a in s["Action"])
