"""The systemd unit in the repository starts the node in the foreground
with options the CLI accepts, before Docker and without needing it."""
import configparser
import os
import shlex

from calicoctl.cli import node, parse
from calicoctl.cli.node import _parse_start_options

UNIT = os.path.join(os.path.dirname(__file__), "..", "..", "systemd", "calico-node.service")


def read_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    with open(UNIT) as handle:
        unit.read_string(handle.read())
    return unit


def test_unit_runs_calicoctl_node_in_the_foreground():
    unit = read_unit()
    command = shlex.split(unit["Service"]["ExecStart"])
    assert os.path.basename(command[0]) == "calicoctl"
    args = parse(node.__doc__, command[1:])
    assert args["stop"] is False and args["bgp"] is False
    assert _parse_start_options(args)["detach"] is False
    assert unit["Service"]["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_is_ready_before_docker_starts_and_needs_no_docker():
    unit = read_unit()
    # calicoctl node reports ready once the plugin sockets exist; Docker,
    # which looks for them as it restarts containers, is ordered after that.
    assert unit["Service"]["Type"] == "notify"
    assert "docker.service" in unit["Unit"]["Before"].split()
    for key in ("After", "Requires", "Requisite", "BindsTo", "Wants", "PartOf"):
        assert not any(word.startswith("docker.") for word in unit["Unit"].get(key, "").split()), key
