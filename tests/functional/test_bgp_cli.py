"""`calicoctl bgp ...` against a real etcd."""
import json

import pytest

from calicoctl.datastore import paths
from tests.functional.clitools import assert_ok, assert_refused, calico_values, dump_etcd, run_cli_process


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def table_rows(text):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_peer_add_show_remove(etcd):
    assert assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64513").strip() == \
        "Added global BGP peer 10.0.0.2 with AS 64513."
    assert_ok(etcd.env, "bgp peer add fd00::2 as 4294967295")
    values = calico_values(etcd.kv())
    assert json.loads(values["/calico/bgp/v1/global/peer_v4/10.0.0.2"]) == {"ip": "10.0.0.2", "as_num": 64513}
    assert json.loads(values["/calico/bgp/v1/global/peer_v6/fd00::2"]) == {"ip": "fd00::2", "as_num": 4294967295}
    out = assert_ok(etcd.env, "bgp peer show")
    assert table_rows(out) == [["Global IPv4 BGP Peer", "AS Num"], ["10.0.0.2", "64513"],
                               ["Global IPv6 BGP Peer", "AS Num"], ["fd00::2", "4294967295"]]
    assert table_rows(assert_ok(etcd.env, "bgp peer show --ipv6")) == [["Global IPv6 BGP Peer", "AS Num"],
                                                                       ["fd00::2", "4294967295"]]
    assert_ok(etcd.env, "bgp peer remove 10.0.0.2", contains="Removed global BGP peer 10.0.0.2")
    assert assert_ok(etcd.env, "bgp peer show --ipv4").splitlines() == [
        "No global IPv4 BGP peers defined.", "",
        "No route reflectors (make one with 'calicoctl node --rr-cluster-id=<IPv4>')."]


def test_peer_add_again(etcd):
    assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64513")
    before = dump_etcd(etcd.kv())
    assert "already a global BGP peer" in assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64513")
    assert dump_etcd(etcd.kv()) == before
    assert "from 64513 to 64514" in assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64514")
    assert json.loads(etcd.kv().get("/calico/bgp/v1/global/peer_v4/10.0.0.2").value)["as_num"] == 64514


def test_node_mesh_reference_sequence(etcd):
    assert assert_ok(etcd.env, "bgp node-mesh") == "on\n"
    # No route reflector and no peer: the reference turned it off regardless; we ask for --force.
    assert_ok(etcd.env, "bgp node-mesh off --force", contains="mesh off")
    assert json.loads(etcd.kv().get("/calico/bgp/v1/global/node_mesh").value) == {"enabled": False}
    assert assert_ok(etcd.env, "bgp node-mesh") == "off\n"
    assert "already off" in assert_ok(etcd.env, "bgp node-mesh off")
    assert_ok(etcd.env, "bgp node-mesh on")
    assert assert_ok(etcd.env, "bgp node-mesh") == "on\n"
    assert json.loads(etcd.kv().get("/calico/bgp/v1/global/node_mesh").value) == {"enabled": True}


def test_default_node_as_reference_sequence(etcd):
    assert assert_ok(etcd.env, "bgp default-node-as") == "64511\n"
    assert_ok(etcd.env, "bgp default-node-as 12345", contains="12345")
    assert etcd.kv().get("/calico/bgp/v1/global/as_num").value == "12345"
    assert assert_ok(etcd.env, "bgp default-node-as") == "12345\n"
    assert "already 12345" in assert_ok(etcd.env, "bgp default-node-as 12345")
    assert_ok(etcd.env, "bgp default-node-as 0")
    assert assert_ok(etcd.env, "bgp default-node-as") == "0\n"
    assert_ok(etcd.env, "bgp default-node-as 4294967295")
    assert assert_ok(etcd.env, "bgp default-node-as") == "4294967295\n"


@pytest.fixture
def configured(etcd):
    assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64513")
    assert_ok(etcd.env, "bgp default-node-as 64600")
    return etcd


@pytest.mark.parametrize("argv,contains", [
    ("bgp default-node-as abcde", "Invalid AS number"),
    ("bgp default-node-as 99999999999999999999999", "Invalid AS number"),
    ("bgp default-node-as 4294967296", "Invalid AS number"),
    ("bgp peer add 10.0.0.3 as 4294967296", "Invalid AS number"),
    ("bgp peer add 10.0.0.3 as x", "Invalid AS number"),
    ("bgp peer add 10.0.0.300 as 1", "Invalid peer IP"),
    ("bgp peer add 10.0.0.0/24 as 1", "Invalid peer IP"),
    ("bgp peer add host1 as 1", "Invalid peer IP"),
    ("bgp peer remove 10.0.0.9", "not a global BGP peer"),
    ("bgp peer remove fd00::9", "not a global BGP peer"),
    ("bgp peer remove nonsense", "Invalid peer IP"),
])
def test_mistakes_leave_etcd_unchanged(configured, argv, contains):
    assert_refused(configured, argv, contains=contains)


def test_real_process_reference_bgp_defaults(etcd):
    """The reference's test_bgp_config.test_defaults, through real processes."""
    assert run_cli_process(etcd.env, "bgp default-node-as").out == "64511\n"
    assert run_cli_process(etcd.env, "bgp default-node-as 12345").rc == 0
    assert run_cli_process(etcd.env, "bgp default-node-as").out == "12345\n"
    for bad in ("99999999999999999999999", "abcde"):
        result = run_cli_process(etcd.env, ["bgp", "default-node-as", bad])
        assert result.rc == 1 and "Traceback" not in result.err
    assert run_cli_process(etcd.env, "bgp node-mesh").out == "on\n"
    assert run_cli_process(etcd.env, "bgp node-mesh off --force").rc == 0
    assert run_cli_process(etcd.env, "bgp node-mesh").out == "off\n"


# -- the mesh and route reflectors --------------------------------------------------------

def make_reflector(etcd, hostname, ip, ip6="", cluster_id="244.0.0.1"):
    """What ``calicoctl node --ip=<ip> --rr-cluster-id=<id>`` leaves in etcd for BGP."""
    kv = etcd.kv()
    kv.put(paths.host_ip_addr(hostname, 4), ip)
    kv.put(paths.host_ip_addr(hostname, 6), ip6)
    kv.put(paths.host_rr_cluster_id(hostname), cluster_id)


def test_mesh_off_refused_while_hosts_would_learn_no_routes(etcd):
    assert_ok(etcd.env, "bgp node-mesh on")
    line = assert_refused(etcd, "bgp node-mesh off", contains="--force")
    assert line.startswith("Not turning the node-to-node mesh off: with no route reflector and no BGP peer, "
                           "hosts would learn no routes")
    # Any way for routes to travel is enough: a global peer, a node's own peer, a reflector.
    for setup, undo in (("bgp peer add 10.0.0.1 as 64512", "bgp peer remove 10.0.0.1"),
                        ("node bgp peer add 10.0.0.2 as 64512", "node bgp peer remove 10.0.0.2")):
        assert_ok(dict(etcd.env, CALICO_HOSTNAME="calico-09"), setup)
        assert_ok(etcd.env, "bgp node-mesh off", contains="mesh off")
        assert_ok(etcd.env, "bgp node-mesh on")
        assert_ok(dict(etcd.env, CALICO_HOSTNAME="calico-09"), undo)
    make_reflector(etcd, "calico-01", "172.17.8.101")
    assert_ok(etcd.env, "bgp node-mesh off", contains="mesh off")
    assert "already off" in assert_ok(etcd.env, "bgp node-mesh off")


def test_peer_show_lists_the_reflectors(etcd):
    assert_ok(etcd.env, "bgp peer add 10.0.0.2 as 64513")
    out = assert_ok(etcd.env, "bgp peer show")
    assert "No route reflectors (make one with 'calicoctl node --rr-cluster-id=<IPv4>')." in out
    make_reflector(etcd, "calico-02", "172.17.8.102", cluster_id="244.0.0.2")
    make_reflector(etcd, "calico-01", "172.17.8.101", ip6="fd00:8::101")
    etcd.kv().put(paths.host_ip_addr("calico-03", 4), "172.17.8.103")      # an ordinary node
    out = assert_ok(etcd.env, "bgp peer show")
    assert table_rows(out)[-3:] == [["Route reflector", "IPv4 address", "IPv6 address", "Cluster ID"],
                                    ["calico-01", "172.17.8.101", "fd00:8::101", "244.0.0.1"],
                                    ["calico-02", "172.17.8.102", "", "244.0.0.2"]]
    assert "mesh is on, so the route reflectors are not used" in out
    assert table_rows(assert_ok(etcd.env, "bgp peer show --ipv6"))[-2:] == [
        ["Route reflector", "IPv6 address", "Cluster ID"], ["calico-01", "fd00:8::101", "244.0.0.1"]]
    assert_ok(etcd.env, "bgp node-mesh off")
    assert "not used" not in assert_ok(etcd.env, "bgp peer show")
