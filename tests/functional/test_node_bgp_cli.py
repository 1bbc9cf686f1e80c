"""``calicoctl node bgp peer ...`` (this node's own BGP peers) against a real etcd."""
import json

import pytest

from tests.functional.clitools import assert_ok, assert_refused, calico_values, dump_etcd, run_cli

HOST = {"CALICO_HOSTNAME": "bgp-node-1"}


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def env_for(etcd, **extra):
    env = dict(etcd.env, **HOST)
    env.update(extra)
    return env


def table_rows(text):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_peer_add_show_remove(etcd):
    env = env_for(etcd)
    assert assert_ok(env, "node bgp peer add 10.0.0.2 as 64513").strip() == \
        "Added BGP peer 10.0.0.2 with AS 64513 to node bgp-node-1."
    assert_ok(env, "node bgp peer add FD00:0::2 as 4294967295")
    assert_ok(env, "node bgp peer add 10.0.0.10 as 0")
    values = calico_values(etcd.kv())
    assert json.loads(values["/calico/bgp/v1/host/bgp-node-1/peer_v4/10.0.0.2"]) == {
        "ip": "10.0.0.2", "as_num": 64513}
    assert json.loads(values["/calico/bgp/v1/host/bgp-node-1/peer_v6/fd00::2"]) == {
        "ip": "fd00::2", "as_num": 4294967295}
    assert not any("/global/" in key for key in values)
    # Sorted by address, not as text.
    assert table_rows(assert_ok(env, "node bgp peer show")) == [
        ["Node specific IPv4 BGP Peer", "AS Num"], ["10.0.0.2", "64513"], ["10.0.0.10", "0"],
        ["Node specific IPv6 BGP Peer", "AS Num"], ["fd00::2", "4294967295"]]
    assert table_rows(assert_ok(env, "node bgp peer show --ipv6")) == [
        ["Node specific IPv6 BGP Peer", "AS Num"], ["fd00::2", "4294967295"]]
    assert_ok(env, "node bgp peer remove fd00::2", contains="Removed BGP peer fd00::2 from node bgp-node-1.")
    assert assert_ok(env, "node bgp peer show --ipv6") == "No IPv6 BGP peers defined for node bgp-node-1.\n\n"
    # Another node sees none of them.
    other = env_for(etcd, CALICO_HOSTNAME="bgp-node-2")
    assert "No IPv4 BGP peers defined for node bgp-node-2." in assert_ok(other, "node bgp peer show --ipv4")


def test_peer_add_again_and_change_as(etcd):
    env = env_for(etcd)
    assert_ok(env, "node bgp peer add 10.0.0.2 as 64513")
    before = dump_etcd(etcd.kv())
    assert "already a BGP peer of node bgp-node-1 with AS 64513; nothing to do" in \
        assert_ok(env, "node bgp peer add 10.0.0.2 as 64513")
    assert dump_etcd(etcd.kv()) == before
    assert "from 64513 to 64514" in assert_ok(env, "node bgp peer add 10.0.0.2 as 64514")
    value = etcd.kv().get("/calico/bgp/v1/host/bgp-node-1/peer_v4/10.0.0.2").value
    assert json.loads(value)["as_num"] == 64514


def test_refusals_leave_etcd_alone(etcd):
    env = env_for(etcd)
    assert_ok(env, "node bgp peer add 10.0.0.2 as 64513")
    etcd.env = env           # assert_refused runs with etcd.env
    assert "10.0.0.3 is not a BGP peer of node bgp-node-1" in assert_refused(etcd, "node bgp peer remove 10.0.0.3")
    assert "peer IP address" in assert_refused(etcd, "node bgp peer add 10.0.0 as 64513")
    assert "AS number" in assert_refused(etcd, "node bgp peer add 10.0.0.4 as abcde")
    assert "AS number" in assert_refused(etcd, "node bgp peer add 10.0.0.4 as 99999999999999999999999")
    assert "AS number" in assert_refused(etcd, "node bgp peer add 10.0.0.4 as 4294967296")
    assert "peer IP address" in assert_refused(etcd, "node bgp peer remove bogus")


def test_usage_errors(etcd):
    result = run_cli(env_for(etcd), "node bgp peer add 10.0.0.2 64513")
    assert result.rc == 1
    assert result.err.startswith("Usage:")
    result = run_cli(env_for(etcd), "node bgp peer show --ipv4 --ipv6")
    assert result.rc == 1


def test_etcd_down_is_exit_3():
    result = run_cli(dict(HOST, ETCD_AUTHORITY="127.0.0.1:1"), "node bgp peer show")
    assert result.rc == 3
    assert len(result.err_lines) == 1 and "Cannot reach etcd" in result.err
