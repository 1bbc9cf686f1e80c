"""The systemd unit in the repository starts the node in the foreground
with options the CLI accepts."""
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
    assert "docker.service" in unit["Unit"]["After"].split()
