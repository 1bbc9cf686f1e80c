"""Pure decisions of the workload lifecycle (ops.lifecycle_logic), Docker's
event, 404 and inspect parsing (host.docker), and the recorded inside
interface name."""
import json

import pytest

from calicoctl import model
from calicoctl.errors import ValidationError
from calicoctl.host.docker import ContainerEvent, is_no_such_container, parse_container_info, parse_event
from calicoctl.ops.lifecycle_logic import (Action, EndpointPlan, Presence, decide_workload,
                                           is_docker_container_id, plan_endpoint, should_start_abandoned)

DOCKER_ID = "a" * 12 + "0123456789abcdef" * 3 + "b" * 4


def test_docker_ids_are_64_lower_hex():
    assert is_docker_container_id(DOCKER_ID)
    for other in ("", "abc", DOCKER_ID[:-1], DOCKER_ID.upper(), DOCKER_ID + "0", "netns-a",
                  "g" * 64, None):
        assert not is_docker_container_id(other), other


@pytest.mark.parametrize("presence, listed, action", [
    (Presence.RUNNING, True, Action.RESTORE),
    (Presence.RUNNING, None, Action.RESTORE),
    (Presence.STOPPED, True, Action.KEEP),
    (Presence.STOPPED, None, Action.KEEP),
    (Presence.GONE, False, Action.RELEASE),
    (Presence.GONE, None, Action.RELEASE),
    # Docker lists it but says it does not exist: doubt, keep everything.
    (Presence.GONE, True, Action.KEEP),
    (Presence.UNKNOWN, False, Action.KEEP),
    (Presence.UNKNOWN, None, Action.KEEP),
])
def test_decide_workload(presence, listed, action):
    assert decide_workload(DOCKER_ID, presence, listed) is action


@pytest.mark.parametrize("presence", list(Presence))
def test_workloads_that_are_not_docker_containers_are_ignored(presence):
    assert decide_workload("some-netns-workload", presence, False) is Action.IGNORE


@pytest.mark.parametrize("host_end, peer_inside, taken, plan", [
    (True, True, False, EndpointPlan.INTACT),
    (False, False, False, EndpointPlan.CREATE),
    (True, False, False, EndpointPlan.REPLACE_STALE),
    (False, False, True, EndpointPlan.NAME_TAKEN),
    (True, False, True, EndpointPlan.NAME_TAKEN),
])
def test_plan_endpoint(host_end, peer_inside, taken, plan):
    assert plan_endpoint(host_end, peer_inside, taken) is plan


def test_parse_event_current_and_old_forms():
    assert parse_event({"Type": "container", "Action": "start", "Actor": {"ID": DOCKER_ID}}) \
        == ContainerEvent(DOCKER_ID, "start")
    assert parse_event({"status": "destroy", "id": DOCKER_ID}) == ContainerEvent(DOCKER_ID, "destroy")


@pytest.mark.parametrize("data", [
    {"Type": "network", "Action": "start", "Actor": {"ID": DOCKER_ID}},
    {"Type": "container", "Action": "die", "Actor": {"ID": DOCKER_ID}},
    {"Type": "container", "Action": "start", "Actor": {}},
    "not a dict",
    None,
])
def test_parse_event_ignores_the_rest(data):
    assert parse_event(data) is None


def test_only_no_such_container_is_not_found():
    assert is_no_such_container("No such container: abc")
    assert is_no_such_container("no such container: abc")
    for other in ("page not found", "", None, "No such image: busybox"):
        assert not is_no_such_container(other)


KEY = model.EndpointKey("h1", "docker", DOCKER_ID, "e" * 32)
BASE = {"state": "active", "name": "cali" + "e" * 11, "mac": "aa:bb:cc:dd:ee:ff",
        "profile_ids": [], "ipv4_nets": ["10.0.0.1/32"], "ipv6_nets": [],
        "ipv4_gateway": "172.17.8.101", "ipv6_gateway": None}


def test_container_interface_round_trips_and_is_omitted_when_unknown():
    recorded = model.Endpoint.from_json(KEY, json.dumps(dict(BASE, container_interface="data0")))
    assert recorded.container_interface == "data0"
    assert json.loads(recorded.to_json())["container_interface"] == "data0"
    legacy = model.Endpoint.from_json(KEY, json.dumps(BASE))
    assert legacy.container_interface is None
    assert json.loads(legacy.to_json()) == BASE


@pytest.mark.parametrize("bad", ["", "x" * 16, "a/b", 5])
def test_container_interface_must_be_an_interface_name(bad):
    with pytest.raises(ValidationError):
        model.Endpoint.from_json(KEY, json.dumps(dict(BASE, container_interface=bad)))


CALICO_NET, OTHER_NET = "4d" * 32, "0b" * 32
PLUGINS = ("calico", "calico-ipam")
GAVE_UP = 'plugin "calico-ipam" not found'


def inspected(status, error, exit_code, policy, network=CALICO_NET):
    """``docker inspect`` of a container as Docker 20.10 left it after booting
    without our plugins (the fields we read, values as observed)."""
    return parse_container_info({
        "Id": DOCKER_ID, "Name": "/c1",
        "State": {"Status": status, "Running": status == "running", "Pid": 0, "ExitCode": exit_code,
                  "Error": error},
        "HostConfig": {"NetworkMode": "netR", "RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}},
        "NetworkSettings": {"Networks": {"netR": {"NetworkID": network, "EndpointID": "",
                                                  "IPAMConfig": {"IPv4Address": "192.168.90.10"}}}}})


def test_inspect_parsing_reads_state_policy_and_networks():
    info = inspected("exited", GAVE_UP, 255, "unless-stopped")
    assert (info.status, info.error, info.restart_policy, info.network_ids) == \
        ("exited", GAVE_UP, "unless-stopped", (CALICO_NET,))


@pytest.mark.parametrize("container, start", [
    # Running at the power-off, Docker tried and gave up: back to what its policy says.
    (inspected("exited", GAVE_UP, 255, "always"), True),
    (inspected("exited", GAVE_UP, 255, "unless-stopped"), True),
    (inspected("exited", 'plugin "calico" not found', 255, "always"), True),
    # `always` stopped by the user: Docker itself starts it at boot (and tried).
    (inspected("exited", GAVE_UP, 137, "always"), True),
    # Stopped by the user (unless-stopped) or no policy: Docker did not try, no error.
    (inspected("exited", "", 137, "unless-stopped"), False),
    (inspected("exited", "", 255, "no"), False),
    # A user's `docker start` that failed for want of the plugin: the policy says no.
    (inspected("exited", GAVE_UP, 255, "no"), False),
    (inspected("exited", GAVE_UP, 255, "on-failure"), False),
    # Failed for another reason (our plugin answered), or another plugin was missing.
    (inspected("exited", "remote: IP 192.168.90.10 is already assigned in pool 192.168.0.0/16.", 255,
               "always"), False),
    (inspected("exited", 'plugin "weave" not found', 255, "always"), False),
    # Not on a calico network, or not stopped.
    (inspected("exited", GAVE_UP, 255, "always", network=OTHER_NET), False),
    (inspected("running", GAVE_UP, 0, "always"), False),
    (inspected("created", GAVE_UP, 0, "always"), False),
])
def test_should_start_abandoned(container, start):
    assert should_start_abandoned(container, {CALICO_NET}, PLUGINS) is start
