"""Docker's plugin protocol as pure request -> response logic (calicoctl.ops.plugin_protocol)."""
import json

import pytest

from calicoctl import model
from calicoctl.errors import Conflict, ValidationError
from calicoctl.ops import plugin_protocol as protocol

NET_ID = "a" * 64
EP_ID = "0123456789abcdef" * 4


def test_pool_without_subnet_is_any_calico_pool_with_a_gateway_so_docker_asks_none():
    request = protocol.parse_pool_request({"AddressSpace": "CalicoLocal", "Pool": "", "SubPool": "",
                                           "Options": {}, "V6": False})
    assert request == protocol.PoolRequest(version=4)
    assert protocol.render_pool(request) == {"PoolID": "calico-ipv4", "Pool": "0.0.0.0/0",
                                             "Data": {"com.docker.network.gateway": "0.0.0.0/0"}}
    v6 = protocol.parse_pool_request({"AddressSpace": "CalicoLocal", "V6": True})
    assert protocol.render_pool(v6)["PoolID"] == "calico-ipv6"
    assert protocol.render_pool(v6)["Pool"] == "::/0"


def test_pool_with_subnet_and_range():
    request = protocol.parse_pool_request({"Pool": "192.168.5.0/24", "SubPool": "192.168.5.128/25"})
    assert request == protocol.PoolRequest(version=4, cidr="192.168.5.0/24", range="192.168.5.128/25")
    reply = protocol.render_pool(request)
    assert reply["PoolID"] == "192.168.5.128/25" and reply["Pool"] == "192.168.5.0/24"
    assert protocol.parse_pool_id(reply["PoolID"]) == (4, "192.168.5.128/25")
    assert protocol.parse_pool_id("calico-ipv6") == (6, None)


@pytest.mark.parametrize("body, words", [
    ({"Pool": "192.168.5.0/24", "SubPool": "10.0.0.0/25"}, "does not lie inside"),
    ({"SubPool": "10.0.0.0/25"}, "needs --subnet"),
    ({"Pool": "192.168.5.0/24", "Options": {"foo": "bar"}}, "--ipam-opt"),
    ({"Pool": "not-a-cidr"}, "Invalid subnet"),
])
def test_pool_requests_we_cannot_honour_are_refused(body, words):
    with pytest.raises(ValidationError) as info:
        protocol.parse_pool_request(body)
    assert words in str(info.value)


def test_address_requests():
    auto = protocol.parse_address_request({"PoolID": "calico-ipv4", "Address": "", "Options": {}})
    assert auto.ip is None and auto.pool_id == "calico-ipv4"
    fixed = protocol.parse_address_request({"PoolID": "192.168.5.0/24", "Address": "192.168.5.9"})
    assert str(fixed.ip) == "192.168.5.9"
    assert protocol.render_address(fixed.ip) == {"Address": "192.168.5.9/32", "Data": {}}
    with pytest.raises(ValidationError) as info:
        protocol.parse_address_request({"PoolID": "calico-ipv4",
                                        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert "--gateway" in str(info.value)
    with pytest.raises(ValidationError):
        protocol.parse_address_request({"PoolID": "calico-ipv4", "Address": "fd00::1"})
    with pytest.raises(ValidationError) as info:
        protocol.parse_address_request({"PoolID": "LocalDefault/172.18.0.0/16"})
    assert "Unknown pool ID" in str(info.value)
    assert protocol.parse_release_address({"PoolID": "calico-ipv6", "Address": "fd80::5"})[1].version == 6


def test_network_requests():
    body = {"NetworkID": NET_ID, "Options": {"com.docker.network.enable_ipv6": True,
                                             "com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "CalicoLocal", "Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}],
            "IPv6Data": [{"AddressSpace": "CalicoLocal", "Pool": "::/0", "Gateway": "::/0"}]}
    request = protocol.parse_network_request(body)
    assert request.network_id == NET_ID and request.ipv6
    assert request.pool_ids == ("0.0.0.0/0", "::/0")


@pytest.mark.parametrize("options, data, words", [
    ({"com.docker.network.generic": {"mtu": "1400"}}, None, "-o): mtu"),
    ({"com.docker.network.internal": True}, None, "--internal"),
    ({}, [{"AddressSpace": "LocalDefault", "Pool": "172.18.0.0/16"}], "--ipam-driver calico-ipam"),
])
def test_network_options_we_cannot_honour_are_refused(options, data, words):
    body = {"NetworkID": NET_ID, "Options": options,
            "IPv4Data": data or [{"AddressSpace": "CalicoLocal", "Pool": "0.0.0.0/0"}]}
    with pytest.raises(ValidationError) as info:
        protocol.parse_network_request(body)
    assert words in str(info.value)


def test_endpoint_requests():
    request = protocol.parse_endpoint_request({
        "NetworkID": NET_ID, "EndpointID": EP_ID,
        "Interface": {"Address": "192.168.1.5/32", "AddressIPv6": "", "MacAddress": ""},
        "Options": {"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": []}})
    assert str(request.ipv4) == "192.168.1.5" and request.ipv6 is None and request.mac is None
    with pytest.raises(ValidationError) as info:
        protocol.parse_endpoint_request({"NetworkID": NET_ID, "EndpointID": EP_ID,
                                         "Interface": {"Address": "192.168.1.5/32"},
                                         "Options": {"com.docker.network.portmap": [{"HostPort": 80}]}})
    assert "-p" in str(info.value)
    with pytest.raises(ValidationError) as info:
        protocol.parse_endpoint_request({"NetworkID": NET_ID, "EndpointID": EP_ID,
                                         "Interface": {"Address": "192.168.1.5/32"}, "Options": {"x": "1"}})
    assert "--driver-opt): x" in str(info.value)
    with pytest.raises(ValidationError) as info:
        protocol.parse_endpoint_request({"NetworkID": NET_ID, "EndpointID": EP_ID, "Interface": {}})
    assert "calico-ipam" in str(info.value)
    with pytest.raises(ValidationError):
        protocol.parse_endpoint_ids({"NetworkID": NET_ID, "EndpointID": "../x"})


def test_join_routes_through_the_host_like_container_add():
    endpoint = model.Endpoint(key=model.EndpointKey("h", "libnetwork", EP_ID, EP_ID), name="cali0123456789a",
                              ipv4_nets=("192.168.1.5/32",), ipv6_nets=("fd80::5/128",),
                              ipv4_gateway="172.17.8.101", ipv6_gateway="fd00::101")
    reply = protocol.render_join(endpoint)
    assert reply["InterfaceName"] == {"SrcName": "tmp0123456789a", "DstPrefix": "eth"}
    assert reply["Gateway"] == "172.17.8.101" and reply["GatewayIPv6"] == "fd00::101"
    assert reply["StaticRoutes"] == [{"Destination": "172.17.8.101/32", "RouteType": 1},
                                     {"Destination": "fd00::101/128", "RouteType": 1}]
    v4_only = protocol.render_join(model.Endpoint(key=endpoint.key, name="x", ipv4_nets=("192.168.1.5/32",),
                                                  ipv4_gateway="172.17.8.101", ipv6_gateway="fd00::101"))
    assert "GatewayIPv6" not in v4_only and len(v4_only["StaticRoutes"]) == 1


def test_a_further_interface_gets_no_second_route_to_the_host():
    endpoint = model.Endpoint(key=model.EndpointKey("h", "libnetwork", EP_ID, EP_ID), name="x",
                              ipv4_nets=("192.168.1.5/32",), ipv4_gateway="172.17.8.101")
    reply = protocol.render_join(endpoint, routed_versions=[4])
    assert "Gateway" not in reply and reply["StaticRoutes"] == []
    assert reply["InterfaceName"]["SrcName"] == "tmp0123456789a"
    assert protocol.parse_join({"NetworkID": NET_ID, "EndpointID": EP_ID, "SandboxKey": "/var/run/docker/netns/1"}) \
        == (NET_ID, EP_ID, "/var/run/docker/netns/1")
    with pytest.raises(ValidationError):
        protocol.parse_join({"NetworkID": NET_ID, "EndpointID": EP_ID})


def test_docker_inspect_parsing_finds_endpoints_and_addresses():
    from calicoctl.host import docker
    info = docker.parse_container_info({
        "Id": "c" * 64, "Name": "/w1", "State": {"Running": True, "Pid": 7},
        "HostConfig": {"NetworkMode": "netA"},
        "NetworkSettings": {"Networks": {"netA": {"EndpointID": "e2"}, "netB": {"EndpointID": "e1"},
                                         "netC": {"EndpointID": ""}}}})
    assert info.endpoint_ids == ("e1", "e2") and info.name == "w1"
    net = docker.parse_network_info({
        "Id": NET_ID, "Name": "netA", "Driver": "calico",
        "Containers": {"c1": {"EndpointID": "e1", "IPv4Address": "192.168.1.5/32", "IPv6Address": ""}},
        "IPAM": {"Config": [{"Subnet": "192.168.1.0/24", "AuxiliaryAddresses": {"r": "192.168.1.9"}}]}})
    assert net.name == "netA" and net.endpoint_ids == ("e1",)
    assert net.addresses == ("192.168.1.5", "192.168.1.9")


def test_generated_macs_are_locally_administered_unicast():
    for _ in range(20):
        first = int(protocol.generate_mac().split(":")[0], 16)
        assert first & 0x02 and not first & 0x01


def test_dispatch():
    def refuse(_body):
        raise Conflict("taken")

    def broken(_body):
        raise KeyError("oops")
    seen = []
    routes = {"/A": lambda body: {"got": body}, "/B": refuse, "/C": broken}
    assert protocol.dispatch(routes, "/A", json.dumps({"x": 1}).encode()) == (200, {"got": {"x": 1}})
    assert protocol.dispatch(routes, "/A", b"") == (200, {"got": None})
    assert protocol.dispatch(routes, "/B", b"{}") == (200, {"Err": "taken", "Error": "taken"})
    assert protocol.dispatch(routes, "/Z", b"{}")[0] == 404
    assert protocol.dispatch(routes, "/A", b"{nope")[0] == 400
    status, reply = protocol.dispatch(routes, "/C", b"{}", on_bug=seen.append)
    assert status == 500 and "oops" in reply["Err"] and isinstance(seen[0], KeyError)
