"""The nftables policy dataplane without a kernel: rendering, the incremental
planner, the transactions, and the whole component on a fake libnftables
that refuses what the kernel refuses (tests/unit/fake_nft.py).

The real kernel is in tests/functional/test_nftables_kernel.py."""
import json

import pytest

from calicoctl.agent.components import choose_dataplane
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.policy.nftables import coexistence, rules, transaction
from calicoctl.agent.policy.nftables.dataplane import RETRY_INTERVAL, NftablesDataplane
from calicoctl.agent.policy.nftables.plan import Table, TablePlanner
from calicoctl.agent.state import PolicyIndex
from calicoctl.datastore import paths
from calicoctl.rulemodel import Rule, Rules
from tests.harness.feed import feed
from tests.unit.fake_nft import FakeNft

HOST = "h1"


def ep_key(name, host=HOST):
    return paths.endpoint_key(host, "docker", "w-" + name, "ep-" + name)


def endpoint(interface, ips, profiles, ips6=(), mac="02:00:00:00:00:01"):
    return json.dumps({"state": "active", "name": interface, "mac": mac,
                       "profile_ids": list(profiles), "ipv4_nets": ["%s/32" % ip for ip in ips],
                       "ipv6_nets": ["%s/128" % ip for ip in ips6], "ipv4_gateway": None, "ipv6_gateway": None})


def profile(name, inbound, outbound=({"action": "allow"},), tags=None):
    return {paths.profile_rules(name): json.dumps({"id": name, "inbound_rules": list(inbound),
                                                   "outbound_rules": list(outbound)}),
            paths.profile_tags(name): json.dumps(list(tags if tags is not None else [name]))}


def cluster():
    items = {}
    items.update(profile("A", [{"action": "allow", "src_tag": "A"}]))
    items.update(profile("B", [{"action": "deny", "protocol": "tcp", "dst_ports": [22]}, {"action": "allow"}]))
    items[ep_key("a1")] = endpoint("calia1", ["10.0.0.1"], ["A"], ips6=["fd00::1"])
    items[ep_key("a2")] = endpoint("calia2", ["10.0.0.2"], ["A"])
    items[ep_key("ab")] = endpoint("caliab", ["10.0.0.3"], ["A", "B"], mac=None)
    items[ep_key("r1", host="h2")] = endpoint("calir1", ["10.0.1.1"], ["A"])
    return items


def synced(items=None):
    nft = FakeNft()
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=nft)
    feed(dataplane).snapshot(cluster() if items is None else items)
    dataplane.flush()
    return dataplane, nft


def assert_programmed(dataplane, nft):
    """The fake kernel holds exactly the wanted table, and the dataplane knows it."""
    wanted = dataplane.plan.table
    assert {name: tuple(chain) for name, chain in nft.table["chains"].items()} == wanted.chains
    assert nft.table["sets"] == wanted.sets
    assert nft.table["elements"] == wanted.elements
    assert dataplane.programmed.chains == wanted.chains
    assert dataplane.programmed.elements == wanted.elements


# -- rendering ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, expected", [
    (Rule(action="allow"), ["accept"]),
    (Rule(action="deny", protocol="tcp", dst_ports=(80, "1000:2000", 443)),
     ["meta l4proto 6 th dport { 80, 1000-2000, 443 } drop"]),
    (Rule(action="allow", src_tag="web"), ["meta nfproto ipv4 ip saddr @t4-web accept",
                                           "meta nfproto ipv6 ip6 saddr @t6-web accept"]),
    (Rule(action="allow", src_tag="web", src_net="10.1.0.0/16"),
     ["meta nfproto ipv4 ip saddr 10.1.0.0/16 ip saddr @t4-web accept"]),
    (Rule(action="allow", dst_net="fd00::1/64", protocol=17, src_ports=(53,)),
     ["meta nfproto ipv6 ip6 daddr fd00::/64 meta l4proto 17 th sport 53 accept"]),
    (Rule(action="allow", protocol="icmp", icmp_type=8, icmp_code=0),
     ["meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 accept"]),
    (Rule(action="allow", protocol="icmpv6", icmp_type=128),
     ["meta nfproto ipv6 meta l4proto 58 icmpv6 type 128 accept"]),
    (Rule(action="allow", ip_version=6), ["meta nfproto ipv6 accept"]),
    (Rule(action="allow", protocol="icmp", icmp_type=255),
     ['meta nfproto ipv4 drop comment "Unexpressible rule: the kernel cannot match ICMP type 255"']),
    (Rule(action="allow", protocol=1, ip_version=6), []),       # Felix takes it; no packet matches
])
def test_each_rule_renders_as_the_iptables_dataplane_means_it(rule, expected):
    assert rules.render_rule(rule) == expected


def test_a_profile_without_valid_rules_drops_everything_both_ways():
    chains = rules.render_profile_chains("P", None)
    assert set(chains) == {"p-P-i", "p-P-o"}
    assert all(chain[0].startswith("drop") for chain in chains.values())


def test_profile_sets_try_each_profile_in_order_then_drop():
    chains = rules.render_profile_set_chains("abc", ["A", "B"])
    assert chains["ps-abc-o"] == ("jump p-A-o", "jump p-B-o", "drop")
    assert chains["ps-abc-i"] == ("jump p-A-i", "jump p-B-i", "drop")
    assert rules.profile_set_id(["A", "B"]) != rules.profile_set_id(["B", "A"])


def test_the_host_action_decides_what_follows_the_host_exceptions():
    assert rules.render_global_chains("cali", "DROP")[rules.WL_TO_HOST][-1] == "drop"
    for action in ("RETURN", "ACCEPT"):
        assert rules.render_global_chains("cali", action)[rules.WL_TO_HOST][-1] == "goto from-wl"
    protected = rules.render_global_chains("tap", "RETURN", (2379, 179))
    assert protected["forward-out"] == ('iifname "tap*" jump wl-forward-out', 'iifname "tap*" drop')
    assert protected[rules.WL_TO_HOST][0] == "meta l4proto tcp th dport { 2379, 179 } drop"
    assert "ip daddr @cp4" in protected[rules.FORWARD_OUT][0]
    assert not any("@cp" in rule for rule in rules.render_global_chains("cali", "RETURN")[rules.FORWARD_OUT])


# -- the planner ---------------------------------------------------------------------------------

def planner(items):
    index = PolicyIndex(HOST)
    index.apply_snapshot(items)
    plan = TablePlanner(index)
    plan.recompute_all()
    plan.take_dirty()
    return index, plan


def test_endpoints_are_elements_and_a_profile_list_is_one_set_whoever_has_it():
    _, plan = planner(cluster())
    table = plan.table
    assert table.elements["ep-addr4"] == {'"calia1" . 10.0.0.1', '"calia2" . 10.0.0.2', '"caliab" . 10.0.0.3'}
    assert table.elements["ep-addr6"] == {'"calia1" . fd00::1'}
    assert table.elements["ep-mac"] == {'"calia1" . 02:00:00:00:00:01', '"calia2" . 02:00:00:00:00:01'}
    assert table.elements["ep-anymac"] == {'"caliab"'}
    only_a, a_and_b = rules.profile_set_id(["A"]), rules.profile_set_id(["A", "B"])
    assert table.elements["ps-" + only_a] == {'"calia1"', '"calia2"'}
    assert table.elements["ps-" + a_and_b] == {'"caliab"'}
    # No chain per endpoint: the chains are the fixed ones, two per profile and per profile list.
    assert len(table.chains) == len(rules.BASE_CHAINS) + 5 + 2 * 2 + 2 * 2
    assert table.elements["t4-A"] == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1"}


def test_a_change_dirties_only_what_it_touches():
    index, plan = planner(cluster())
    index.apply(ep_key("a3"), endpoint("calia3", ["10.0.0.4"], ["A"]))
    plan.apply_changes(index.take_changes())
    chains, sets = plan.take_dirty()
    assert chains == set()                                   # an endpoint: elements only
    assert set(sets) == {"ep-addr4", "ep-mac", "ep-anymac", "ep-addr6", "ps-" + rules.profile_set_id(["A"]),
                         "t4-A"} - {"ep-anymac", "ep-addr6"}
    index.apply(paths.profile_rules("B"), json.dumps({"id": "B", "inbound_rules": [], "outbound_rules": []}))
    plan.apply_changes(index.take_changes())
    chains, sets = plan.take_dirty()
    assert chains == {"p-B-i", "p-B-o"} and sets == {}
    index.apply(ep_key("r2", host="h2"), endpoint("calir2", ["10.0.1.2"], ["A"]))
    plan.apply_changes(index.take_changes())
    assert plan.take_dirty() == (set(), {"t4-A": {"10.0.1.2"}})


def test_the_last_endpoint_of_a_profile_list_takes_its_set_and_chains_along():
    index, plan = planner(cluster())
    set_id = rules.profile_set_id(["A", "B"])
    index.apply(ep_key("ab"), None)
    plan.apply_changes(index.take_changes())
    chains, sets = plan.take_dirty()
    assert {"ps-%s-i" % set_id, "ps-%s-o" % set_id, "from-wl", "to-wl", "p-B-i", "p-B-o"} <= chains
    assert "ps-" + set_id not in plan.table.sets and "p-B-i" not in plan.table.chains


# -- transactions --------------------------------------------------------------------------------

def test_a_transaction_makes_things_before_using_them_and_removes_them_after():
    desired = Table(chains={"new": ("jump other", "ip saddr @s accept"), "other": ()},
                    sets={"s": "type ipv4_addr;"}, elements={"s": {"10.0.0.1"}})
    programmed = Table(chains={"gone": ("ip saddr @old accept",)}, sets={"old": "type ipv4_addr;"},
                       elements={"old": set()})
    units = transaction.plan_units(desired, programmed, {"new", "other", "gone"}, {"s": None, "old": None})
    phases = [(unit.phase, unit.name) for unit in units]
    assert phases == [(transaction.ADD_SET, "s"), (transaction.ADD_CHAIN, "new"), (transaction.ADD_CHAIN, "other"),
                      (transaction.WRITE_CHAIN, "new"), (transaction.FLUSH_CHAIN, "gone"),
                      (transaction.DELETE_CHAIN, "gone"), (transaction.DELETE_SET, "old")]
    assert "add chain inet calico other\n" in transaction.render(units)


def test_a_table_read_back_from_the_kernel_has_its_elements_and_unknown_rules():
    found = transaction.read_table([
        {"chain": {"name": "from-wl"}},
        {"set": {"name": "ep-addr4", "type": ["ifname", "ipv4_addr"], "elem": [{"concat": ["cali1", "10.0.0.1"]}]}},
        {"set": {"name": "ps-x", "type": "ifname", "elem": ["cali1"]}},
        {"set": {"name": "t4-A", "type": "ipv4_addr", "elem": ["10.0.0.1", {"elem": {"val": "10.0.0.2"}}]}},
    ])
    assert found.chains == {"from-wl": transaction.UNKNOWN_RULES}
    assert found.elements == {"ep-addr4": {'"cali1" . 10.0.0.1'}, "ps-x": {'"cali1"'}, "t4-A": {"10.0.0.1", "10.0.0.2"}}
    assert found.sets["ep-addr4"] == rules.SET_TYPES["ep-addr4"]


# -- the component on the fake kernel ---------------------------------------------------------------

def test_a_sync_writes_the_whole_table_in_one_batch_and_programs_what_it_plans():
    dataplane, nft = synced()
    assert len(nft.batches) == 1 and nft.batches[0].startswith("add table inet calico\ndelete table")
    assert_programmed(dataplane, nft)
    assert dataplane.status()["dataplane"] == "nftables" and dataplane.status()["local_endpoints"] == 3


def test_an_endpoint_or_remote_address_costs_elements_only_in_one_batch():
    dataplane, nft = synced()
    feed(dataplane).update(ep_key("a3"), endpoint("calia3", ["10.0.0.4"], ["A"]))
    feed(dataplane).update(ep_key("r2", host="h2"), endpoint("calir2", ["10.0.1.2"], ["A"]))
    dataplane.flush()
    assert len(nft.batches) == 2
    assert all(line.startswith("add element") for line in nft.batches[1].splitlines())
    assert_programmed(dataplane, nft)
    feed(dataplane).update(ep_key("a3"), None)
    dataplane.flush()
    assert all(line.startswith("delete element") for line in nft.batches[2].splitlines())
    assert_programmed(dataplane, nft)


def test_profiles_come_and_go_in_an_order_the_kernel_takes():
    dataplane, nft = synced()
    feed(dataplane).update(ep_key("c1"), endpoint("calic1", ["10.0.0.9"], ["C"]))
    dataplane.flush()
    feed(dataplane).update(paths.profile_rules("C"), json.dumps(
        {"id": "C", "inbound_rules": [{"action": "allow", "src_tag": "web"}], "outbound_rules": []}))
    dataplane.flush()
    assert_programmed(dataplane, nft)
    assert "t4-web" in nft.table["sets"]
    for key in (ep_key("c1"), ep_key("ab"), paths.profile_rules("C")):
        feed(dataplane).update(key, None)
        dataplane.flush()
        assert_programmed(dataplane, nft)
    assert "t4-web" not in nft.table["sets"] and "p-B-i" not in nft.table["chains"]


def test_a_rule_the_kernel_refuses_drops_in_its_place_and_the_rest_applies():
    dataplane, nft = synced()
    nft.refuse = "th dport 22"
    feed(dataplane).update(paths.profile_rules("B"), json.dumps(
        {"id": "B", "inbound_rules": [{"action": "deny", "protocol": "tcp", "dst_ports": [22]},
                                      {"action": "allow", "protocol": "udp"}], "outbound_rules": []}))
    feed(dataplane).update(paths.profile_rules("A"), json.dumps(
        {"id": "A", "inbound_rules": [{"action": "allow", "protocol": "icmp"}], "outbound_rules": []}))
    dataplane.flush()
    assert nft.chain("p-A-i") == ("meta nfproto ipv4 meta l4proto 1 accept",)
    assert nft.chain("p-B-i") == ('drop comment "refused by the kernel"', "meta l4proto 17 accept")
    refused = dataplane.status()["refused_rules"]
    assert refused == [{"profile": "B", "direction": "inbound", "position": 1, "rule": "deny tcp to ports 22",
                        "error": refused[0]["error"]}]
    assert "refused by the test" in refused[0]["error"]
    # Fixed in etcd: the report goes.
    nft.refuse = None
    feed(dataplane).update(paths.profile_rules("B"), json.dumps({"id": "B", "inbound_rules": [], "outbound_rules": []}))
    dataplane.flush()
    assert dataplane.status()["refused_rules"] == [] and nft.chain("p-B-i") == ()


def test_a_refused_set_is_retried_and_a_refused_whole_table_is_written_part_by_part():
    nft = FakeNft()
    nft.refuse = "t4-A"
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=nft)
    feed(dataplane).snapshot(cluster())
    dataplane.flush()
    # The whole table was refused; everything but the tag's set and the rule using it went in.
    assert nft.table is not None and "t4-A" not in nft.table["sets"]
    assert nft.elements("ep-addr4") == dataplane.plan.table.elements["ep-addr4"]
    assert dataplane.status()["refused_rules"][0]["profile"] == "A"
    batches = len(nft.batches)
    nft.refuse = None
    dataplane.tick(dataplane._last_refresh + RETRY_INTERVAL + 1)     # a retry, well before the refresh
    assert "t4-A" in nft.table["sets"] and nft.elements("t4-A") == dataplane.plan.table.elements["t4-A"]
    assert not any(batch.startswith("add table") for batch in nft.batches[batches:])


def test_a_prefix_change_rewrites_the_whole_table():
    dataplane, nft = synced()
    feed(dataplane).update(paths.global_config("InterfacePrefix"), "tap")
    dataplane.flush()
    assert nft.batches[-1].startswith("add table inet calico\ndelete table")
    assert nft.chain("forward-out") == ('iifname "tap*" jump wl-forward-out', 'iifname "tap*" drop')
    assert nft.table["elements"]["ep-addr4"] == set()     # no endpoint fits the new prefix


def test_the_protection_is_reported_programmed_only_once_it_is():
    nft = FakeNft()
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=nft)
    assert dataplane.status()["control_plane"]["active"] is False
    feed(dataplane).snapshot(dict(cluster(), **{paths.host_ip_addr("h2", 4): "172.17.8.102"}))
    dataplane.flush()
    assert dataplane.status()["control_plane"]["active"] is True
    assert nft.elements("cp4") == {"172.17.8.102"}


def test_the_other_dataplane_is_cleaned_up_once_after_the_first_write():
    calls = []
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=FakeNft(), cleanup=lambda: calls.append(1))
    feed(dataplane).snapshot(cluster())
    dataplane.flush()
    dataplane.resync()
    dataplane.flush()
    assert calls == [1]


# -- beside iptables, and the choice ------------------------------------------------------------------

def test_coexistence_rules_are_added_where_iptables_has_a_table_and_taken_out_when_unwanted():
    wanted = coexistence.wanted_rules("cali", "RETURN")
    ours = {"rule": {"handle": 7, "comment": "calico-nftables from cali*"}}
    theirs = {"rule": {"handle": 3, "comment": "docker"}}
    commands = coexistence.plan_commands("ip", {"FORWARD": [theirs], "INPUT": [ours]}, wanted)
    assert commands == [
        "delete rule ip filter INPUT handle 7",
        'insert rule ip filter FORWARD iifname "cali*" counter accept comment "calico-nftables from cali*"',
        'insert rule ip filter FORWARD oifname "cali*" counter accept comment "calico-nftables to cali*"']
    assert coexistence.plan_commands("ip6", {"FORWARD": None, "INPUT": None}, wanted) == []
    accept = coexistence.wanted_rules("cali", "ACCEPT")
    assert coexistence.plan_commands("ip", {"FORWARD": [], "INPUT": [ours]}, accept)[0].startswith(
        "insert rule ip filter FORWARD")
    assert not any("INPUT" in c for c in coexistence.plan_commands("ip", {"FORWARD": [], "INPUT": [ours]}, accept))


def test_auto_chooses_nftables_where_it_works_and_says_why_not_otherwise():
    assert choose_dataplane("auto", lambda: None) == ("nftables", "the default where the host supports it")
    name, why = choose_dataplane("auto", lambda: "no libnftables")
    assert name == "iptables" and "no libnftables" in why
    assert choose_dataplane("iptables", lambda: None)[0] == "iptables"


def test_rules_carry_their_profile_and_order_into_the_refusal_report():
    index, plan = planner(cluster())
    assert plan.profile_of_chain("p-B-i") == ("B", "inbound")
    assert plan.profile_of_chain("from-wl") is None
    assert plan.policy_rule("B", "inbound", "meta l4proto 6 th dport 22 drop") == (1, "deny tcp to ports 22")
    assert plan.policy_rule("A", "inbound", "meta nfproto ipv6 ip6 saddr @t6-A accept") == (1, "allow from tag A")
    assert plan.policy_rule("A", "inbound", "nothing like it") == (None, "nothing like it")
    assert Rules.default_for("X").inbound_rules[0].src_tag == "X"


def test_a_chain_with_refused_rules_is_retried_until_the_kernel_takes_it():
    nft = FakeNft()
    nft.refuse = "@t4-A"
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=nft)
    feed(dataplane).snapshot(cluster())
    dataplane.flush()
    assert nft.chain("p-A-i")[0] == 'drop comment "refused by the kernel"'
    dataplane.tick(dataplane._last_refresh + RETRY_INTERVAL + 1)
    assert nft.chain("p-A-i")[0] == 'drop comment "refused by the kernel"'     # still refused
    nft.refuse = None
    dataplane.tick(dataplane._last_refresh + 2 * (RETRY_INTERVAL + 1))
    assert nft.chain("p-A-i") == dataplane.plan.table.chains["p-A-i"]
    assert dataplane.status()["refused_rules"] == []


def test_a_chain_whose_rules_are_refused_leaves_workload_traffic_dropped():
    """The empty chain returns to its base chain, which drops what comes back."""
    nft = FakeNft()
    nft.refuse = "@cp4"
    dataplane = NftablesDataplane(AgentConfig(hostname=HOST), nft=nft)
    feed(dataplane).snapshot(cluster())
    dataplane.flush()
    assert nft.chain(rules.FORWARD_OUT) == ()                    # refused, so empty
    base = nft.chain("forward-out")
    assert base[0] == 'iifname "cali*" jump %s' % rules.FORWARD_OUT and base[-1] == 'iifname "cali*" drop'
    assert all(rules.chain_references(rule) <= {rules.FORWARD_OUT} for rule in base)
