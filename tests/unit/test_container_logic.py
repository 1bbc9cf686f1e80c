"""The pure decisions behind `calicoctl container` (no kernel, etcd or Docker)."""
import pytest

from calicoctl import model, validate
from calicoctl.errors import Conflict, ValidationError
from calicoctl.host.docker import ContainerInfo, _find_os_error, parse_container_info
from calicoctl.ops import container_logic as ops


def test_veth_name_is_the_prefix_plus_the_id_cut_to_fifteen_characters():
    endpoint_id = "0123456789abcdef0123456789abcdef"
    assert ops.calculate_veth_name(endpoint_id, "cali") == "cali0123456789a"
    assert ops.calculate_veth_name(endpoint_id, "tap") == "tap0123456789ab"


def test_interface_prefix_setting():
    # One decision for the agent (policy, routes, BIRD) and every veth namer.
    assert model.parse_interface_prefix(None) == model.parse_interface_prefix("") == "cali"
    assert model.parse_interface_prefix("wl") == "wl"
    assert model.parse_interface_prefix("x" * 12) == "x" * 12
    for bad in ("has space", "x" * 13, "é", "a/b", "a*"):
        with pytest.raises(ValidationError, match="InterfacePrefix"):
            model.parse_interface_prefix(bad)
        assert model.interface_prefix(bad) == "cali"


@pytest.mark.parametrize("name", ["eth1", "cal0", "a", "x" * 15, "eth1.100"])
def test_interface_names_accepted(name):
    assert ops.parse_interface_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a:b", "a b", ".", "..", None])
def test_interface_names_refused(name):
    with pytest.raises(ValidationError):
        ops.parse_interface_name(name)


VXLAN = model.IPPool("10.65.0.0/16", vxlan=True)
IPIP = model.IPPool("10.66.0.0/16", ipip="tunl0")
PLAIN = model.IPPool("10.67.0.0/16")
PLAIN6 = model.IPPool("fd00::/64")


@pytest.mark.parametrize("lan_mtu, pools, expected", [
    (1500, [VXLAN], 1450),              # fits in the tunnel: VXLAN over IPv4 adds 50
    (9000, [VXLAN], 8950),              # follows the LAN device (jumbo frames)
    (1500, [IPIP], 1480),
    (1500, [PLAIN], 1500),              # no encapsulation: the LAN's MTU
    (1400, [PLAIN6], 1400),
    (1500, [PLAIN6, VXLAN], 1450),      # one interface for both addresses: the smaller
    (None, [VXLAN], 1450),              # no interface holds the host's address: 1500 assumed
    (1500, [None], 1500),               # pool gone meanwhile (a restore): nothing to subtract
])
def test_workload_mtu_is_the_lan_mtu_less_the_pools_encapsulation(lan_mtu, pools, expected):
    assert ops.calculate_workload_mtu(lan_mtu, pools) == expected


def test_host_net_and_default_route():
    assert ops.calculate_host_net(validate.parse_ip("10.1.2.3")) == "10.1.2.3/32"
    assert ops.calculate_host_net(validate.parse_ip("fd00::1")) == "fd00::1/128"
    assert ops.default_route(4) == "default" and ops.default_route(6) == "::/0"


def workload(workload_id, name=None):
    return model.Workload("h", "docker", workload_id, name=name)


def test_select_workloads_follows_dockers_order():
    a = workload("abc123" + "0" * 58, "web")
    b = workload("abd456" + "0" * 58, "abc123")     # a name that looks like another's ID prefix
    c = workload("fff000" + "0" * 58, "web2")
    every = [a, b, c]
    assert ops.select_workloads(every, a.workload_id) == [a]          # full ID first
    assert ops.select_workloads(every, "abc123") == [b]               # then the exact name
    assert ops.select_workloads(every, "/web") == [a]                 # Docker's leading slash
    assert ops.select_workloads(every, "ab") == [a, b]                # ambiguous prefix
    assert ops.select_workloads(every, "fff") == [c]
    assert ops.select_workloads(every, "nothing") == []
    assert ops.select_workloads(every, "") == []


def test_claim_owner_names_host_and_container():
    assert ops.render_claim_owner("host1", "abc") == "host1/docker/abc"


def endpoint(**kwargs):
    values = dict(key=model.EndpointKey("h", "docker", "w", "e1"), name="calie1", mac="ee:ee:ee:ee:ee:ee",
                  ipv4_nets=("10.0.0.1/32",), ipv4_gateway="172.17.8.2")
    values.update(kwargs)
    return model.Endpoint(**values)


def test_endpoint_with_ip_adds_net_and_missing_gateway_only():
    ep = endpoint()
    v4 = ops.calculate_endpoint_with_ip(ep, validate.parse_ip("10.0.0.2"), "172.17.8.99")
    assert v4.ipv4_nets == ("10.0.0.1/32", "10.0.0.2/32") and v4.ipv4_gateway == "172.17.8.2"
    v6 = ops.calculate_endpoint_with_ip(ep, validate.parse_ip("fd00::5"), "fd00::2")
    assert v6.ipv6_nets == ("fd00::5/128",) and v6.ipv6_gateway == "fd00::2"
    assert v6.ipv4_nets == ep.ipv4_nets
    with pytest.raises(Conflict):
        ops.calculate_endpoint_with_ip(ep, validate.parse_ip("10.0.0.1"), "172.17.8.2")


def test_endpoint_without_ip():
    ep = endpoint(ipv4_nets=("10.0.0.1/32", "10.0.0.2/32"))
    assert ops.calculate_endpoint_without_ip(ep, validate.parse_ip("10.0.0.1")).ipv4_nets == ("10.0.0.2/32",)
    assert ops.calculate_endpoint_without_ip(ep, validate.parse_ip("10.0.0.9")) == ep


def test_parse_container_info():
    data = {"Id": "f" * 64, "Name": "/web", "State": {"Running": True, "Pid": 4242},
            "HostConfig": {"NetworkMode": "default"}}
    info = parse_container_info(data)
    assert info == ContainerInfo(id="f" * 64, name="web", pid=4242, running=True, network_mode="default")
    assert info.netns_path == "/proc/4242/ns/net" and not info.host_networked and not info.shares_netns
    paused = parse_container_info(dict(data, State={"Running": True, "Paused": True, "Pid": 1}))
    assert not paused.running
    stopped = parse_container_info(dict(data, State={"Running": False, "Pid": 0}))
    assert not stopped.running and stopped.pid == 0
    assert parse_container_info(dict(data, HostConfig={"NetworkMode": "host"})).host_networked
    assert parse_container_info(dict(data, HostConfig={"NetworkMode": "container:abc"})).shares_netns


def test_find_os_error_digs_through_wrappers():
    inner = PermissionError(13, "Permission denied")
    wrapped = RuntimeError("Connection aborted.", inner)
    outer = ValueError(wrapped)
    assert _find_os_error(outer) is inner
    assert _find_os_error(ValueError("no cause")) is None
