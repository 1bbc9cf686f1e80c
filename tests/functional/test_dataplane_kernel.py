"""The policy dataplane against a real kernel: iptables (nf_tables), ipsets and
traffic between network namespaces inside one simulated host.

``PolicyDataplane`` is driven directly from the test (snapshot, updates,
flush) with every command run inside the host's network namespace, so the
tests can look at exactly what it programmed and count what it rewrites.
The agent process itself is covered by test_dataplane_agent.py.
"""
import time

import pytest

from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.policy.iptables.chain_reconciler import CLEANUP_DELAY
from calicoctl.agent.policy.iptables.dataplane import RETRY_INTERVAL
from calicoctl.datastore import paths
from calicoctl.host.iptables import parse_save
from tests.harness.dataplanes import endpoint_json, endpoint_key, profile_items, IptablesRecorder, make_component
from tests.harness.feed import feed
from tests.harness.multihost import NetnsWorkload
from tests.harness.netns import parse_ipset_save

HOSTNAME = "dp-kernel"
HOST_IP = "172.17.8.61"


def ep_key(name):
    return endpoint_key(HOSTNAME, name)


def endpoint(*args, **kwargs):
    return endpoint_json(HOST_IP, *args, **kwargs)


@pytest.fixture(scope="module")
def host(make_module_simhost):
    return make_module_simhost(HOSTNAME, HOST_IP)


def chain_writes(recorder):
    """The chains an IptablesRecorder saw written."""
    return [line[1:].split()[0] for text in recorder.writes for line in text.splitlines()
            if line.startswith(":")]


def make_dataplane(host, budget=100, runner=None):
    config = AgentConfig(hostname=HOSTNAME, tag_ipset_budget=budget, restore_chunk_chains=7)
    return make_component("iptables", host, config, recorder=runner)


def kernel_chains(host, version=4):
    save = "iptables-nft-save" if version == 4 else "ip6tables-nft-save"
    return parse_save(host.run([save, "-t", "filter"], cwd="/").stdout)


def owned(chains):
    return {name: tuple(rules_) for name, rules_ in chains.items() if rules.is_owned_chain(name)}


def kernel_sets(host):
    """{name: set of members}, as ``ipset save`` shows them."""
    return {name: members for name, (_, _, members) in
            parse_ipset_save(host.run(["ipset", "save"], cwd="/").stdout).items()}


RICH_RULES = [
    {"action": "deny", "protocol": "tcp", "src_net": "10.65.0.0/16", "dst_ports": [22, "1000:1100"]},
    {"action": "allow", "protocol": "udp", "src_ports": list(range(1, 20)), "dst_tag": "db"},
    {"action": "allow", "protocol": "icmp", "icmp_type": 8, "icmp_code": 0},
    {"action": "allow", "protocol": "icmpv6", "icmp_type": 128},
    {"action": "allow", "protocol": "sctp", "dst_ports": [5000]},
    {"action": "allow", "ip_version": 6, "src_net": "fd00::/64"},
    {"action": "allow", "src_tag": "web", "dst_net": "10.65.1.0/24"},
    {"action": "deny", "protocol": 47},
]


def rich_items():
    items = {}
    items.update(profile_items("web", RICH_RULES))
    items.update(profile_items("db", [{"action": "allow", "src_tag": "web"}], tags=["db", "web"]))
    items[ep_key("a")] = endpoint("calia", ["10.65.0.1"], ["web"], mac="02:00:00:00:00:0a",
                                  ips6=["fd00::a"])
    items.update(profile_items("lonely", [{"action": "allow", "src_tag": "solo"}]))
    items[ep_key("b")] = endpoint("calib", ["10.65.0.2", "10.65.0.3"], ["web", "db", "lonely"])
    items[endpoint_key("elsewhere", "r")] = endpoint("calir", ["10.65.9.9"], ["db"])
    return items


def test_programs_exactly_what_it_renders_and_a_restart_rewrites_nothing(clean):
    host = clean
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(rich_items())
    dataplane.flush()
    for version in (4, 6):
        chains = kernel_chains(host, version)
        assert owned(chains) == dataplane.families[version].desired
        assert chains["INPUT"][0] == "-j felix-INPUT" and chains["FORWARD"][0] == "-j felix-FORWARD"
    sets = kernel_sets(host)
    assert sets["felix-v4-web"] == {"10.65.0.1", "10.65.0.2", "10.65.0.3", "10.65.9.9"}
    assert sets["felix-v4-db"] == {"10.65.0.2", "10.65.0.3", "10.65.9.9"}
    assert sets["felix-v6-web"] == {"fd00::a"}
    # A second dataplane (an agent restarted after SIGKILL) finds nothing to do.
    recorder = IptablesRecorder()
    restarted = make_dataplane(host, runner=recorder)
    feed(restarted).snapshot(rich_items())
    restarted.flush()
    assert recorder.writes == [] and restarted.sets.ipsets.calls == []


def test_restart_removes_stale_state_and_never_touches_foreign_rules(clean):
    host = clean
    foreign = ("iptables-nft -N DOCKER && iptables-nft -A DOCKER -j RETURN && "
               "iptables-nft -A FORWARD -j DOCKER && "
               "ipset create felix-all-ipam-pools hash:net && ipset create other hash:ip && "
               "ipset add other 10.9.9.9")
    host.run(["sh", "-ec", foreign], cwd="/")
    first = make_dataplane(host)
    feed(first).snapshot(rich_items())
    first.flush()
    # While "the agent was dead": endpoint b and profile db went away.
    items = rich_items()
    del items[ep_key("b")]
    for key in list(items):
        if "/profile/db/" in key:
            del items[key]
    recorder = IptablesRecorder()
    second = make_dataplane(host, runner=recorder)
    feed(second).snapshot(items)
    second.flush()
    chains = kernel_chains(host)
    assert "felix-to-b" not in chains and "felix-from-b" not in chains
    assert "felix-p-db-i" not in chains and "felix-p-lonely-i" not in chains
    assert owned(chains) == second.families[4].desired
    # Only what changed was written: not endpoint a's chains, not the profile web.
    written = set(chain_writes(recorder))
    assert "felix-from-a" not in written and "felix-p-web-i" not in written
    assert chains["DOCKER"] == ["-j RETURN"] and "-j DOCKER" in chains["FORWARD"]
    assert chains["FORWARD"].count("-j felix-FORWARD") == 1
    sets = kernel_sets(host)
    assert "felix-v4-solo" not in sets                      # no longer referenced
    assert sets["felix-v4-db"] == set()             # referenced, but nobody carries it
    assert sets["felix-v4-web"] == {"10.65.0.1"}    # b's addresses left the tag
    assert "felix-all-ipam-pools" in sets and sets["other"] == {"10.9.9.9"}


def test_removed_hook_rules_are_put_back(clean):
    host = clean
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(rich_items())
    dataplane.flush()
    host.run(["iptables-nft", "-D", "INPUT", "-j", "felix-INPUT"], cwd="/")
    dataplane.tick(time.monotonic() + 3600)
    assert kernel_chains(host)["INPUT"] == ["-j felix-INPUT"]


@pytest.mark.slow
def test_policy_and_tags_carry_traffic(clean):
    host = clean
    a = NetnsWorkload(host, "pa", "10.65.1.1").create()
    b = NetnsWorkload(host, "pb", "10.65.1.2").create()
    c = NetnsWorkload(host, "pc", "10.65.1.3").create()
    b.serve(8080)
    items = {}
    items.update(profile_items("front", [{"action": "allow", "src_tag": "front"}]))
    items.update(profile_items("back", [{"action": "allow", "protocol": "tcp", "src_tag": "front",
                                   "dst_ports": [8080]}]))
    items[ep_key("pa")] = endpoint(a.interface, [a.ip], ["front"], mac=a.mac)
    items[ep_key("pb")] = endpoint(b.interface, [b.ip], ["back"], mac=b.mac)
    items[ep_key("pc")] = endpoint(c.interface, [c.ip], ["back"], mac=c.mac)
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    assert a.connects(b.ip, 8080)           # front -> back on its port
    assert not a.ping(b.ip)                     # but nothing else
    assert not c.connects(b.ip, 8080)       # c is not tagged front
    assert not b.ping(a.ip)                     # a accepts only front
    # c joins "front" through an update: allowed at once. The new rules go
    # in front of the old ones (adding rules is fast, removing them makes
    # the kernel wait); the old ones are cleaned out on a later tick.
    old_from_c = kernel_chains(host)["felix-from-pc"]
    feed(dataplane).update(ep_key("pc"), endpoint(c.interface, [c.ip], ["back", "front"], mac=c.mac))
    dataplane.flush()
    new_from_c = list(dataplane.families[4].desired["felix-from-pc"])
    assert kernel_chains(host)["felix-from-pc"] == new_from_c + ["-j RETURN"] + old_from_c
    assert c.connects(b.ip, 8080)
    assert c.ping(a.ip)
    feed(dataplane).update(ep_key("pc"), endpoint(c.interface, [c.ip], ["back"], mac=c.mac))
    dataplane.flush()
    assert not c.ping(a.ip) and not c.connects(b.ip, 8080)
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    assert owned(kernel_chains(host)) == dataplane.families[4].desired
    assert not c.ping(a.ip)


@pytest.mark.parametrize("budget", [0, 1])
@pytest.mark.slow
def test_tags_past_the_ipset_budget_are_matched_by_chain_trees(clean, budget):
    host = clean
    loads = {n: NetnsWorkload(host, "t%s" % n, "10.66.%d.%d" % (n, n + 1)).create() for n in range(4)}
    items = {}
    items.update(profile_items("alpha", [{"action": "allow", "src_tag": "alpha"}]))
    items.update(profile_items("beta", [{"action": "allow", "src_tag": "beta"},
                                  {"action": "allow", "dst_tag": "alpha", "src_tag": "alpha"}]))
    # Many more members than a tree leaf holds, on other hosts.
    for i in range(60):
        items[endpoint_key("other", "x%d" % i)] = endpoint("calix%d" % i, ["10.66.200.%d" % i], ["beta"])
    for n, load in loads.items():
        items[ep_key(load.name)] = endpoint(load.interface, [load.ip], ["alpha" if n < 2 else "beta"],
                                            mac=load.mac)
    dataplane = make_dataplane(host, budget=budget)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    chains = kernel_chains(host)
    sets = kernel_sets(host)
    assert len([s for s in sets if s.startswith("felix-v4-")]) == budget
    assert any(name.startswith("felix-t4s-") for name in chains)
    assert owned(chains) == dataplane.families[4].desired
    a0, a1, b2, b3 = (loads[n] for n in range(4))
    assert a0.ping(a1.ip) and a1.ping(a0.ip)
    assert b2.ping(b3.ip)
    assert not b2.ping(a0.ip) and not a0.ping(b2.ip)
    # Membership changes go through the trees too.
    feed(dataplane).update(ep_key(b2.name), endpoint(b2.interface, [b2.ip], ["alpha"], mac=b2.mac))
    dataplane.flush()
    assert b2.ping(a0.ip) and not b2.ping(b3.ip)
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    assert owned(kernel_chains(host)) == dataplane.families[4].desired


def test_a_set_the_kernel_will_not_create_falls_back_to_a_tree(clean):
    host = clean
    host.run(["ipset", "create", "felix-v4-alpha", "hash:net"], cwd="/")     # wrong type, in the way
    a = NetnsWorkload(host, "fa", "10.67.0.1").create()
    b = NetnsWorkload(host, "fb", "10.67.0.2").create()
    items = profile_items("alpha", [{"action": "allow", "src_tag": "alpha"}])
    items[ep_key("fa")] = endpoint(a.interface, [a.ip], ["alpha"], mac=a.mac)
    items[ep_key("fb")] = endpoint(b.interface, [b.ip], ["alpha"], mac=b.mac)
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    assert "felix-t4s-alpha" in kernel_chains(host)
    assert a.ping(b.ip) and b.ping(a.ip)


def test_a_refused_chain_is_stubbed_alone_and_retried(clean):
    host = clean
    recorder = IptablesRecorder(refuse="--dports 666")
    items = rich_items()
    items.update(profile_items("odd", [{"action": "allow", "protocol": "tcp", "dst_ports": [666]}]))
    items[ep_key("o")] = endpoint("calio", ["10.65.3.1"], ["odd"])
    dataplane = make_dataplane(host, runner=recorder)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    chains = kernel_chains(host)
    assert chains["felix-p-odd-i"] == ['-m comment --comment "calico: failed to program" -j DROP']
    desired = dataplane.families[4].desired
    assert all(tuple(chains[name]) == desired[name] for name in desired if name != "felix-p-odd-i")
    recorder.refuse = None
    dataplane.tick(time.monotonic() + RETRY_INTERVAL + 1)
    assert owned(kernel_chains(host)) == dataplane.families[4].desired


@pytest.mark.slow
def test_deleted_profile_drops_and_unknown_interfaces_drop(clean):
    host = clean
    a = NetnsWorkload(host, "da", "10.68.0.1").create()
    b = NetnsWorkload(host, "db", "10.68.0.2").create()
    stranger = NetnsWorkload(host, "dc", "10.68.0.3").create()       # no endpoint at all
    items = profile_items("p", [{"action": "allow"}])
    items[ep_key("da")] = endpoint(a.interface, [a.ip], ["p"], mac=a.mac)
    items[ep_key("db")] = endpoint(b.interface, [b.ip], ["p"], mac=b.mac)
    dataplane = make_dataplane(host)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    assert a.ping(b.ip)
    assert not stranger.ping(a.ip) and not a.ping(stranger.ip)
    feed(dataplane).update(paths.profile_dir("p"), None)
    dataplane.flush()
    assert kernel_chains(host)["felix-p-p-o"][0].endswith("-j DROP")
    assert not a.ping(b.ip)
