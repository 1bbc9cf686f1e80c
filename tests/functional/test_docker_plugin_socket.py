"""The calico and calico-ipam plugins driven over their unix sockets as Docker
drives them (the requests of moby's remote-driver and IPAM protocols), with
real etcd and the kernel of a simulated host. What Docker itself does with
the answers is in tests/system/test_docker_networks.py."""
import json

import pytest

from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
from calicoctl.host import plugin_server
from calicoctl.model import DockerNetwork
from calicoctl.ops import plugin_protocol as protocol
from calicoctl.ops.network import DockerPlugin
from tests.functional.containertools import (cali_links, claims, in_host, links, read_proc, route_to)
from tests.harness.util import run_in_threads

pytestmark = pytest.mark.usefixtures("root_required")

NET_ID = "f" * 64


def endpoint_id(index):
    return "%02x" % index + "e" * 62


@pytest.fixture
def plugin(seeded, host1, tmp_path):
    """Both plugin sockets in a private directory, working on host1's kernel."""
    datastore = DatastoreClient(etcdconn.connect({"ETCD_AUTHORITY": seeded.local_authority}, timeout=10))
    docker_plugin = DockerPlugin(datastore, docker=None, hostname=host1.name, host_netns=host1.netns_path)
    servers = []
    for name, routes in (("calico", docker_plugin.network_routes()), ("calico-ipam", docker_plugin.ipam_routes())):
        path = str(tmp_path / (name + ".sock"))
        servers.append(plugin_server.PluginServer(
            name, path, lambda p, b, routes=routes: protocol.dispatch(routes, p, b)).start())
    # As if Docker had already answered which name the network has.
    datastore.write_docker_network(host1.name, DockerNetwork(NET_ID, name="netA"))
    yield {"net": servers[0].path, "ipam": servers[1].path, "datastore": datastore}
    for server in servers:
        server.stop()


def call(path, method, body=None):
    status, reply = plugin_server.post(path, method, body)
    assert status == 200, (method, status, reply)
    return reply


def network_request():
    return {"NetworkID": NET_ID, "Options": {"com.docker.network.enable_ipv6": False,
                                             "com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "CalicoLocal", "Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}],
            "IPv6Data": []}


def test_handshake(plugin):
    assert call(plugin["net"], "/Plugin.Activate") == {"Implements": ["NetworkDriver"]}
    assert call(plugin["ipam"], "/Plugin.Activate") == {"Implements": ["IpamDriver"]}
    assert call(plugin["net"], "/NetworkDriver.GetCapabilities") == {"Scope": "local"}
    assert call(plugin["ipam"], "/IpamDriver.GetDefaultAddressSpaces")["LocalDefaultAddressSpace"] == "CalicoLocal"
    status, _ = plugin_server.post(plugin["net"], "/NetworkDriver.Nonsense", {})
    assert status == 404


def test_network_and_endpoint_lifecycle(plugin, seeded, host1):
    client = seeded.kv()
    known = cali_links(host1)
    pool = call(plugin["ipam"], "/IpamDriver.RequestPool", {"AddressSpace": "CalicoLocal", "V6": False})
    assert pool["PoolID"] == "calico-ipv4"
    assert call(plugin["net"], "/NetworkDriver.CreateNetwork", network_request()) == {}
    # The network is the profile of its name, with profile add's default rules.
    rules = json.loads(client.get("/calico/v1/policy/profile/netA/rules").value)
    assert rules["inbound_rules"] == [{"action": "allow", "src_tag": "netA"}]

    address = call(plugin["ipam"], "/IpamDriver.RequestAddress", {"PoolID": "calico-ipv4", "Address": ""})
    ip = address["Address"].split("/")[0]
    assert address["Address"].endswith("/32")
    assert claims(client) == {ip: "%s/libnetwork/ipam" % host1.name}
    eid = endpoint_id(1)
    reply = call(plugin["net"], "/NetworkDriver.CreateEndpoint", {
        "NetworkID": NET_ID, "EndpointID": eid, "Options": {},
        "Interface": {"Address": address["Address"], "AddressIPv6": "", "MacAddress": ""}})
    mac = reply["Interface"]["MacAddress"]
    veth = "cali" + eid[:11]
    # Both ends on the host, for Docker to move the peer; host side as container add makes it.
    assert set(cali_links(host1)) - set(known) == {veth}
    assert "tmp" + eid[:11] in links(in_host(host1))
    assert read_proc(in_host(host1), "/proc/sys/net/ipv4/conf/%s/proxy_arp" % veth) == "1"
    assert route_to(in_host(host1), ip)["dev"] == veth
    stored = json.loads(client.get("/calico/v1/host/%s/workload/libnetwork/%s/endpoint/%s"
                                    % (host1.name, eid, eid)).value)
    assert stored["profile_ids"] == ["netA"] and stored["ipv4_nets"] == [ip + "/32"]
    assert stored["mac"] == mac and stored["name"] == veth and stored["ipv4_gateway"] == host1.ip

    join = call(plugin["net"], "/NetworkDriver.Join", {"NetworkID": NET_ID, "EndpointID": eid,
                                                        "SandboxKey": "/var/run/docker/netns/x", "Options": {}})
    assert join["InterfaceName"] == {"SrcName": "tmp" + eid[:11], "DstPrefix": "eth"}
    assert join["Gateway"] == host1.ip
    assert join["StaticRoutes"] == [{"Destination": host1.ip + "/32", "RouteType": 1}]

    assert call(plugin["net"], "/NetworkDriver.Leave", {"NetworkID": NET_ID, "EndpointID": eid}) == {}
    assert call(plugin["net"], "/NetworkDriver.DeleteEndpoint", {"NetworkID": NET_ID, "EndpointID": eid}) == {}
    assert set(cali_links(host1)) == set(known)
    assert call(plugin["ipam"], "/IpamDriver.ReleaseAddress", {"PoolID": "calico-ipv4", "Address": ip}) == {}
    assert claims(client) == {}
    assert call(plugin["net"], "/NetworkDriver.DeleteNetwork", {"NetworkID": NET_ID}) == {}
    assert call(plugin["ipam"], "/IpamDriver.ReleasePool", {"PoolID": "calico-ipv4"}) == {}
    # The driver made the profile and nothing uses it: it goes with the network.
    assert plugin["datastore"].list_profile_names() == []
    assert plugin["datastore"].list_docker_networks() == []


def test_a_profile_that_existed_stays(plugin, seeded):
    client = seeded.kv()
    client.put("/calico/v1/policy/profile/netA/rules", json.dumps(
        {"id": "netA", "inbound_rules": [], "outbound_rules": []}))
    call(plugin["net"], "/NetworkDriver.CreateNetwork", network_request())
    call(plugin["net"], "/NetworkDriver.DeleteNetwork", {"NetworkID": NET_ID})
    assert json.loads(client.get("/calico/v1/policy/profile/netA/rules").value)["inbound_rules"] == []


def test_refusals_name_the_reason_and_leave_nothing(plugin, seeded, host1):
    client = seeded.kv()
    known = cali_links(host1)
    reply = call(plugin["ipam"], "/IpamDriver.RequestPool", {"Pool": "172.30.0.0/24"})
    assert "not inside a Calico IPv4 pool (pools: 192.168.0.0/16)" in reply["Err"]
    reply = call(plugin["ipam"], "/IpamDriver.RequestAddress", {"PoolID": "192.168.9.0/24",
                                                                 "Address": "192.168.10.1"})
    assert "not in the network's range" in reply["Err"]
    reply = call(plugin["net"], "/NetworkDriver.CreateEndpoint", {
        "NetworkID": NET_ID, "EndpointID": endpoint_id(2),
        "Interface": {"Address": "192.168.3.3/32"},
        "Options": {"com.docker.network.portmap": [{"Proto": 6, "HostPort": 8080, "Port": 80}]}})
    assert "-p" in reply["Err"]
    assert cali_links(host1) == known
    assert claims(client) == {}
    assert not [k for k in client.tree("/calico/v1/host").entries if "/workload/" in (k.key or "")]


def test_an_address_given_with_ip_is_claimed_once(plugin, seeded):
    body = {"PoolID": "192.168.9.0/24", "Address": "192.168.9.9"}
    assert call(plugin["ipam"], "/IpamDriver.RequestAddress", body)["Address"] == "192.168.9.9/32"
    assert "already assigned" in call(plugin["ipam"], "/IpamDriver.RequestAddress", body)["Err"]


@pytest.mark.slow
def test_fifty_concurrent_endpoints(plugin, seeded, host1):
    client = seeded.kv()
    known = cali_links(host1)
    call(plugin["net"], "/NetworkDriver.CreateNetwork", network_request())
    results = {}

    def start(index):
        address = call(plugin["ipam"], "/IpamDriver.RequestAddress", {"PoolID": "192.168.200.0/26"})
        eid = endpoint_id(index)
        reply = call(plugin["net"], "/NetworkDriver.CreateEndpoint", {
            "NetworkID": NET_ID, "EndpointID": eid, "Options": {}, "Interface": {"Address": address["Address"]}})
        assert "Err" not in reply, reply
        results[eid] = address["Address"]
    assert run_in_threads(start, [(i,) for i in range(50)], 120) == []
    assert len(set(results.values())) == 50
    assert len(set(cali_links(host1)) - set(known)) == 50
    assert len(claims(client)) == 50
    for eid in results:
        call(plugin["net"], "/NetworkDriver.DeleteEndpoint", {"NetworkID": NET_ID, "EndpointID": eid})
    for address in results.values():
        call(plugin["ipam"], "/IpamDriver.ReleaseAddress", {"PoolID": "192.168.200.0/26",
                                                             "Address": address.split("/")[0]})
    assert claims(client) == {} and set(cali_links(host1)) == set(known)


def test_a_request_sent_to_a_bound_socket_is_answered_once_it_is_served(tmp_path):
    """What calicoctl node relies on: Docker's request, sent while only the
    socket exists (bound before the agent runs), waits and is answered."""
    import http.client
    import socket
    path = str(tmp_path / "calico.sock")
    listener = plugin_server.listen(path)
    docker_side = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    docker_side.settimeout(10)
    docker_side.connect(path)
    docker_side.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\nContent-Length: 2\r\n\r\n{}")
    routes = {"/Plugin.Activate": lambda _body: protocol.render_activate(["NetworkDriver"])}
    server = plugin_server.PluginServer("calico", path, lambda p, b: protocol.dispatch(routes, p, b))
    server.start(listener)
    try:
        response = http.client.HTTPResponse(docker_side)
        response.begin()
        assert response.status == 200
        assert json.loads(response.read()) == {"Implements": ["NetworkDriver"]}
        # While it is served, nobody else may bind it.
        with pytest.raises(RuntimeError):
            plugin_server.listen(path)
    finally:
        docker_side.close()
        server.stop()
