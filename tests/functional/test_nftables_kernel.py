"""The nftables policy dataplane against a real kernel: libnftables, the
``inet calico`` table and traffic between network namespaces inside one
simulated host.

``NftablesDataplane`` is driven directly from the test (snapshot, updates,
flush), its libnftables context opened inside the host's network namespace,
so the tests can look at exactly what it programmed. The same policy on the
iptables dataplane is test_dataplane_kernel.py; the agent on both dataplanes
is in tests/system.
"""
import json
import subprocess
import sys
import time

import pytest

from calicoctl.agent.config import AgentConfig
from calicoctl.agent.policy.iptables.dataplane import PolicyDataplane, remove_iptables_policy
from calicoctl.agent.policy.nftables.dataplane import remove_nftables_policy
from calicoctl.datastore import paths
from calicoctl.host import nftables
from calicoctl.host.iptables import parse_save
from tests.harness.dataplanes import (NftablesRecorder, endpoint_json, endpoint_key, iptables_access,
                                      make_component, profile_items)
from tests.harness.feed import feed
from tests.harness.multihost import NetnsWorkload

HOSTNAME = "nft-kernel"
HOST_IP = "172.17.8.62"


def ep_key(name):
    return endpoint_key(HOSTNAME, name)


def endpoint(*args, **kwargs):
    return endpoint_json(HOST_IP, *args, **kwargs)


@pytest.fixture(scope="module")
def host(make_module_simhost):
    return make_module_simhost(HOSTNAME, HOST_IP)


def make_dataplane(host, recorder=None, cleanup=None, **config):
    """:param recorder: a NftablesRecorder, to refuse what a kernel without some feature would."""
    return make_component("nftables", host, AgentConfig(hostname=HOSTNAME, **config), recorder=recorder,
                          cleanup=cleanup)


def kernel_table(host):
    """{"chains": {name: rule count}, "sets": {name: elements}} of inet calico, or None."""
    result = host.run(["nft", "-j", "list", "table", "inet", "calico"], cwd="/")
    if result.returncode != 0:
        return None
    found = {"chains": {}, "sets": {}}
    for item in json.loads(result.stdout)["nftables"]:
        if "chain" in item:
            found["chains"].setdefault(item["chain"]["name"], 0)
        elif "rule" in item:
            found["chains"][item["rule"]["chain"]] = found["chains"].get(item["rule"]["chain"], 0) + 1
        elif "set" in item:
            found["sets"][item["set"]["name"]] = len(item["set"].get("elem", ()))
    return found


def three_workloads(host):
    """a and b in profile front (which admits its own tag), c in back (admits nothing but front on 8080)."""
    a = NetnsWorkload(host, "na", "10.70.0.1").create()
    b = NetnsWorkload(host, "nb", "10.70.0.2").create()
    c = NetnsWorkload(host, "nc", "10.70.0.3").create()
    items = {}
    items.update(profile_items("front", [{"action": "allow", "src_tag": "front"}]))
    items.update(profile_items("back", [{"action": "deny", "protocol": "icmp"},
                                  {"action": "allow", "protocol": "tcp", "src_tag": "front", "dst_ports": [8080]}]))
    items[ep_key("na")] = endpoint(a.interface, [a.ip], ["front"], mac=a.mac)
    items[ep_key("nb")] = endpoint(b.interface, [b.ip], ["front"], mac=b.mac)
    items[ep_key("nc")] = endpoint(c.interface, [c.ip], ["back"], mac=c.mac)
    return (a, b, c), items


def programmed_workloads(host):
    """``three_workloads``, c serving on 8080, and a dataplane that has
    programmed them: ((a, b, c), items, dataplane)."""
    (a, b, c), items = three_workloads(host)
    c.serve(8080)
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    return (a, b, c), items, dataplane


@pytest.mark.slow
def test_policy_holds_with_endpoints_as_elements_and_changes_cost_elements_only(clean):
    host = clean
    (a, b, c), items, dataplane = programmed_workloads(host)
    table = kernel_table(host)
    assert set(table["chains"]) == set(dataplane.plan.table.chains)
    assert table["sets"]["ep-addr4"] == 3 and table["sets"]["t4-front"] == 2
    assert a.ping(b.ip) and b.ping(a.ip)
    assert a.connects(c.ip, 8080)           # front -> back on its port
    assert not a.ping(c.ip)                     # but not ICMP: back denies it
    assert not c.ping(a.ip)                     # front admits front only
    # d appears: elements only, no chain added; allowed at the flush.
    d = NetnsWorkload(host, "nd", "10.70.0.4").create()
    chains_before = kernel_table(host)["chains"]
    feed(dataplane).update(ep_key("nd"), endpoint(d.interface, [d.ip], ["front"], mac=d.mac))
    dataplane.flush()
    assert kernel_table(host)["chains"] == chains_before
    assert d.ping(a.ip) and a.ping(d.ip)
    # An address the endpoint does not own, and another MAC, are spoofing.
    d.run(["ip", "addr", "add", "10.70.0.99/32", "dev", "eth1"])
    assert d.run(["busybox", "ping", "-c", "1", "-W", "1", "-I", "10.70.0.99", a.ip]).returncode != 0
    d.run(["ip", "link", "set", "eth1", "address", "02:00:00:00:99:99"])
    d.run(["ip", "neigh", "flush", "all"])
    assert not d.ping(a.ip)
    # An interface with the prefix but no endpoint gets nothing.
    feed(dataplane).update(ep_key("nd"), None)
    dataplane.flush()
    assert not d.ping(a.ip)


@pytest.mark.slow
def test_established_flows_survive_a_policy_change_and_a_rewrite_of_the_whole_table(clean):
    host = clean
    (a, b, c), items, dataplane = programmed_workloads(host)
    # A connection from a to c that sends a line every 50 ms and expects it back.
    client = ("import socket, time, sys\ns = socket.create_connection(('%s', 8080), timeout=2)\n"
              "for i in range(60):\n    s.sendall(b'x' * 10); assert s.recv(100)\n    time.sleep(0.05)\n"
              "print('ok')\n" % c.ip)
    talker = host.popen(["ip", "netns", "exec", a.name, sys.executable, "-c", client], cwd="/",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    # New connections from front to back are no longer allowed...
    feed(dataplane).update(paths.profile_rules("back"), json.dumps(
        {"id": "back", "inbound_rules": [], "outbound_rules": [{"action": "allow"}]}))
    dataplane.flush()
    assert not b.connects(c.ip, 8080)
    # ... and an agent restarted after SIGKILL writes the whole table again.
    restarted = make_dataplane(host)
    feed(restarted).snapshot(dict(items, **{paths.profile_rules("back"): json.dumps(
        {"id": "back", "inbound_rules": [], "outbound_rules": [{"action": "allow"}]})}))
    restarted.flush()
    out, err = talker.communicate(timeout=30)
    assert talker.returncode == 0 and out.strip() == "ok", err
    assert not b.connects(c.ip, 8080)


def test_a_refused_rule_drops_in_its_place_and_the_rest_of_the_policy_applies(clean):
    host = clean
    (a, b, c), items = three_workloads(host)
    c.serve(8080)
    kernel = NftablesRecorder(refuse="th dport 8080")
    dataplane = make_dataplane(host, recorder=kernel)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    assert a.ping(b.ip)                                   # the other profiles are in force
    assert not a.connects(c.ip, 8080)                 # the refused allow is a drop
    refused = dataplane.status()["refused_rules"]
    assert [(r["profile"], r["direction"], r["position"]) for r in refused] == [("back", "inbound", 2)]
    assert "Operation not supported" in refused[0]["error"]
    kernel.refuse = None
    dataplane.tick(dataplane._last_refresh + 10)           # the retry
    assert a.connects(c.ip, 8080) and dataplane.status()["refused_rules"] == []


@pytest.mark.slow
def test_beside_dockers_forward_drop_allowed_traffic_flows_and_denied_does_not(clean):
    host = clean
    (a, b, c), items = three_workloads(host)
    host.run(["sh", "-ec", "iptables-nft -P FORWARD DROP; iptables-nft -N DOCKER-USER; "
              "iptables-nft -A DOCKER-USER -j RETURN; iptables-nft -A FORWARD -j DOCKER-USER; "
              "ip6tables-nft -P FORWARD DROP"], cwd="/")
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    assert a.ping(b.ip) and not c.ping(a.ip)
    saved = parse_save(host.run(["iptables-nft-save", "-t", "filter"], cwd="/").stdout)
    assert set(saved["FORWARD"][:2]) == {"-i cali+ -m comment --comment \"calico-nftables from cali*\" -j ACCEPT",
                                         "-o cali+ -m comment --comment \"calico-nftables to cali*\" -j ACCEPT"}
    assert "-j DOCKER-USER" in saved["FORWARD"] and saved["DOCKER-USER"] == ["-j RETURN"]
    # Someone flushes FORWARD: the check puts our rules back.
    host.run(["iptables-nft", "-F", "FORWARD"], cwd="/")
    assert not a.ping(b.ip)
    dataplane.tick(dataplane._last_refresh + dataplane.config.hook_check_interval + 1)
    assert a.ping(b.ip)


@pytest.mark.parametrize("action, to_host", [("DROP", False), ("RETURN", True), ("ACCEPT", True)])
@pytest.mark.slow
def test_workloads_reach_their_host_as_the_default_endpoint_to_host_action_says(clean, action, to_host):
    host = clean
    (a, b, c), items = three_workloads(host)
    items[paths.global_config("DefaultEndpointToHostAction")] = action
    host.run(["sh", "-ec", "iptables-nft -P INPUT DROP"], cwd="/")      # a host firewall
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    # With RETURN the host's own rules decide (its INPUT policy drops); with ACCEPT we accept.
    assert a.ping(HOST_IP) is (action == "ACCEPT")
    host.run(["sh", "-ec", "iptables-nft -P INPUT ACCEPT"], cwd="/")
    assert a.ping(HOST_IP) is to_host


@pytest.mark.slow
def test_switching_dataplanes_removes_only_what_the_other_one_programmed(clean):
    host = clean
    (a, b, c), items = three_workloads(host)
    tables, ipsets = iptables_access(host)
    foreign = ("iptables-nft -N DOCKER && iptables-nft -A DOCKER -j RETURN && iptables-nft -A FORWARD -j DOCKER && "
               "ipset create other hash:ip && nft add table inet other && "
               "nft add chain inet other c '{ type filter hook forward priority 0; }'")
    host.run(["sh", "-ec", foreign], cwd="/")
    old = PolicyDataplane(AgentConfig(hostname=HOSTNAME), tables=tables, ipsets=ipsets)
    feed(old).snapshot(items)
    old.flush()
    assert any(name.startswith("felix-") for name in tables[4].read())
    new = make_dataplane(host, cleanup=lambda: remove_iptables_policy(tables, ipsets))
    feed(new).snapshot(items)
    new.flush()
    chains = tables[4].read()
    assert not any(name.startswith("felix-") for name in chains)
    assert chains["DOCKER"] == ["-j RETURN"] and "-j DOCKER" in chains["FORWARD"]
    assert set(ipsets.read()) == {"other"}
    assert a.ping(b.ip) and not c.ping(a.ip)
    # And back: the table goes, the other nftables table stays.
    back = PolicyDataplane(AgentConfig(hostname=HOSTNAME), tables=tables, ipsets=ipsets,
                           cleanup=lambda: remove_nftables_policy(nftables.Nftables(host.netns_path)))
    feed(back).snapshot(items)
    back.flush()
    assert kernel_table(host) is None
    assert "table inet other" in host.run(["nft", "list", "tables"], cwd="/").stdout
    assert not any("calico-nftables" in rule for rule in tables[4].read()["FORWARD"])
    assert a.ping(b.ip) and not c.ping(a.ip)
