"""The policy dataplane's decisions, on a fake kernel (tests/unit/fake_kernel.py).

The planner (plan), the reconcilers' pure orderings (chain_reconciler,
set_reconciler) and the whole PolicyDataplane behind its ``tables=`` /
``ipsets=`` injection. The fake refuses what the kernel refuses (a jump to a
missing chain, deleting a chain still referred to, destroying a set in use),
so an ordering mistake fails here without root; the same behaviour in a
real kernel is tests/functional/test_dataplane_kernel.py.
"""
import json
import time

import pytest

from calicoctl.agent.policy.iptables import chain_reconciler as chains_mod
from calicoctl.agent.policy.iptables.chain_reconciler import CLEANUP_DELAY, WriteMode
from calicoctl.agent.policy.iptables.chaintree import Side, TagKind
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.policy.iptables.dataplane import RETRY_INTERVAL, PolicyDataplane
from calicoctl.agent.policy.iptables.plan import FamilyPlan, PolicyPlanner
from calicoctl.agent.policy.iptables.set_reconciler import diff_members
from calicoctl.agent.state import PolicyIndex
from calicoctl.datastore import paths
from calicoctl.host.ipsets import IpsetInfo
from tests.harness.feed import feed
from tests.unit.fake_kernel import fake_kernel

HOST = "h1"


def ep_key(name, host=HOST):
    return paths.endpoint_key(host, "docker", "w-" + name, "ep-" + name)


def endpoint(interface, ips, profiles, ips6=()):
    return json.dumps({"state": "active", "name": interface, "mac": "02:00:00:00:00:01",
                       "profile_ids": list(profiles), "ipv4_nets": ["%s/32" % ip for ip in ips],
                       "ipv6_nets": ["%s/128" % ip for ip in ips6], "ipv4_gateway": None, "ipv6_gateway": None})


def profile(name, inbound, tags=None):
    return {paths.profile_rules(name): json.dumps({"id": name, "inbound_rules": list(inbound),
                                                   "outbound_rules": [{"action": "allow"}]}),
            paths.profile_tags(name): json.dumps(list(tags if tags is not None else [name]))}


def items_with_tags(*tags):
    """One local endpoint per tag, each profile allowing its own tag."""
    items = {}
    for n, tag in enumerate(tags):
        items.update(profile(tag, [{"action": "allow", "src_tag": tag}]))
        items[ep_key(tag)] = endpoint("cali%s" % tag, ["10.0.%d.1" % n], [tag], ips6=["fd00::%x" % (n + 1)])
    return items


def make(kernel=None, budget=100, chunk=400):
    tables, ipsets = kernel or fake_kernel()
    config = AgentConfig(hostname=HOST, tag_ipset_budget=budget, restore_chunk_chains=chunk)
    return PolicyDataplane(config, tables=tables, ipsets=ipsets), tables, ipsets


def synced(items, **kwargs):
    dataplane, tables, ipsets = make(**kwargs)
    feed(dataplane).snapshot(items)
    dataplane.flush()
    return dataplane, tables, ipsets


def assert_programmed(dataplane, tables):
    for version, table in tables.items():
        assert table.owned() == dataplane.families[version].desired
        assert table.chains["INPUT"][0] == "-j felix-INPUT"


# -- the whole dataplane on the fake kernel -------------------------------------------------

def test_a_sync_programs_what_it_plans_and_a_restart_writes_nothing():
    items = items_with_tags("web", "db")
    dataplane, tables, ipsets = synced(items)
    assert_programmed(dataplane, tables)
    assert ipsets.sets["felix-v4-web"].members == {"10.0.0.1"}
    assert ipsets.sets["felix-v6-db"].members == {"fd00::2"}
    restarted, _, _ = make(kernel=(tables, ipsets))
    before = [len(table.restores) for table in tables.values()], len(ipsets.calls)
    feed(restarted).snapshot(items)
    restarted.flush()
    assert ([len(table.restores) for table in tables.values()], len(ipsets.calls)) == before


def test_chains_go_only_once_nothing_refers_to_them_and_sets_after_them(caplog):
    items = items_with_tags("web", "db")
    dataplane, tables, ipsets = synced(items)
    for key in [k for k in items if "/db" in k or k == ep_key("db")]:
        feed(dataplane).update(key, None)
    dataplane.flush()
    # The dispatch roots were prepended over: their old rules still jump to
    # felix-to-db, which jumps to the profile's chains, which match on the
    # tag's set. All of them wait, none is refused.
    assert {"felix-to-db", "felix-p-db-i"} <= set(tables[4].chains) and "felix-v4-db" in ipsets.sets
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    assert "felix-p-db-i" not in tables[4].chains and "felix-to-db" not in tables[4].chains
    assert "felix-v4-db" not in ipsets.sets and "felix-v6-db" not in ipsets.sets
    assert_programmed(dataplane, tables)
    assert [record.message for record in caplog.records if record.levelname == "ERROR"] == []


def test_an_update_prepends_and_the_old_rules_go_once_changes_pause():
    items = items_with_tags("web")
    dataplane, tables, _ = synced(items)
    old = list(tables[4].chains["felix-p-web-i"])
    feed(dataplane).update(paths.profile_rules("web"), json.dumps(
        {"id": "web", "inbound_rules": [{"action": "allow", "protocol": "tcp"}], "outbound_rules": []}))
    dataplane.flush()
    new = list(dataplane.families[4].desired["felix-p-web-i"])
    assert tables[4].chains["felix-p-web-i"] == new + ["-j RETURN"] + old
    dataplane.tick(time.monotonic())                  # too early: still there
    assert tables[4].chains["felix-p-web-i"] == new + ["-j RETURN"] + old
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    assert_programmed(dataplane, tables)


def test_a_set_old_rules_still_use_waits_for_their_cleanup():
    items = items_with_tags("web")
    dataplane, tables, ipsets = synced(items)
    # The profile stops using its tag: its chain is prepended over, and the
    # old rules behind the RETURN still match on felix-v4-web.
    feed(dataplane).update(paths.profile_rules("web"), json.dumps(
        {"id": "web", "inbound_rules": [{"action": "allow"}], "outbound_rules": []}))
    dataplane.flush()
    assert "felix-v4-web" in ipsets.sets and dataplane.plan.slots == {}
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    assert "felix-v4-web" not in ipsets.sets
    assert_programmed(dataplane, tables)


@pytest.mark.parametrize("budget", [0, 1])
def test_tags_past_the_budget_get_trees_and_keep_their_place(budget):
    items = items_with_tags("alpha", "beta")
    dataplane, tables, ipsets = synced(items, budget=budget)
    assert_programmed(dataplane, tables)
    kinds = dataplane.plan.slots
    assert sorted(kinds.values(), key=lambda kind: kind.value) == \
        sorted([TagKind.SET] * budget + [TagKind.TREE] * (2 - budget), key=lambda kind: kind.value)
    assert len([name for name in ipsets.sets if name.startswith("felix-v4-")]) == budget
    if budget:
        # On a restart a tag whose set is in the kernel keeps it, even when
        # the name order would give the slot to the other one.
        holder = next(tag for tag, kind in kinds.items() if kind is TagKind.SET)
        restarted, _, _ = make(kernel=(tables, ipsets), budget=budget)
        feed(restarted).snapshot(items)
        restarted.flush()
        assert restarted.plan.slots[holder] is TagKind.SET


def test_a_set_the_kernel_refuses_demotes_its_tag_to_a_tree_for_good():
    # Room for five sets, created in name order: the control plane's two, both
    # IPv4 tag sets, felix-v6-alpha; felix-v6-beta is refused.
    dataplane, tables, ipsets = synced(items_with_tags("alpha", "beta"), kernel=fake_kernel(max_sets=5))
    assert_programmed(dataplane, tables)
    trees = {tag for tag, kind in dataplane.plan.slots.items() if kind is TagKind.TREE}
    assert trees == {"beta"} and dataplane.plan.refused_set_tags == {"beta"}
    assert "felix-t4s-beta" in tables[4].chains and "felix-v4-beta" not in ipsets.sets


def test_a_set_of_another_type_in_the_way_demotes_its_tag():
    tables, ipsets = fake_kernel()
    ipsets.sets["felix-v4-alpha"] = IpsetInfo("felix-v4-alpha", "hash:net", "inet", set())
    dataplane, _, _ = synced(items_with_tags("alpha"), kernel=(tables, ipsets))
    assert dataplane.plan.slots == {"alpha": TagKind.TREE}
    assert "felix-t4s-alpha" in tables[4].chains
    assert_programmed(dataplane, tables)


def test_a_refused_chain_becomes_a_drop_stub_alone_and_is_retried():
    items = items_with_tags("web", "db")
    items.update(profile("odd", [{"action": "allow", "protocol": "tcp", "dst_ports": [666]}]))
    items[ep_key("o")] = endpoint("calio", ["10.0.9.1"], ["odd"])
    tables, ipsets = fake_kernel()
    tables[4].refuse = "--dports 666"
    dataplane, _, _ = synced(items, kernel=(tables, ipsets), chunk=3)
    assert tables[4].chains["felix-p-odd-i"] == ['-m comment --comment "calico: failed to program" -j DROP']
    desired = dataplane.families[4].desired
    assert all(tuple(tables[4].chains[name]) == desired[name] for name in desired if name != "felix-p-odd-i")
    assert_programmed(dataplane, {6: tables[6]})
    tables[4].refuse = None
    dataplane.tick(time.monotonic() + RETRY_INTERVAL + 1)
    assert_programmed(dataplane, tables)


def test_removed_hooks_are_noticed_and_put_back():
    dataplane, tables, _ = synced(items_with_tags("web"))
    tables[6].chains["FORWARD"].remove("-j felix-FORWARD")
    dataplane.tick(time.monotonic() + 3600)
    assert tables[6].chains["FORWARD"] == ["-j felix-FORWARD"]


def test_an_interface_prefix_change_recomputes_everything():
    items = items_with_tags("web")
    items[ep_key("tap")] = endpoint("tap0", ["10.0.7.1"], ["web"])
    dataplane, tables, _ = synced(items)
    assert "felix-to-0" not in tables[4].chains
    feed(dataplane).update(paths.global_config("InterfacePrefix"), "tap")
    dataplane.flush()
    assert "felix-to-0" in tables[4].chains and "felix-to-web" not in tables[4].chains
    assert_programmed(dataplane, tables)


# -- the planner alone ------------------------------------------------------------------------

def test_the_planner_renders_without_a_kernel_and_reports_dirty_chains():
    index = PolicyIndex(HOST)
    index.apply_snapshot(items_with_tags("web"))
    planner = PolicyPlanner(index, budget=5)
    planner.recompute_all({4: {"felix-p-gone-i": ()}, 6: {}}, programmed_sets={"felix-v4-gone"})
    family = planner.families[4]
    assert {"felix-p-web-i", "felix-to-web", "felix-FORWARD"} <= set(family.desired)
    assert "felix-p-gone-i" in family.dirty and "felix-p-gone-i" not in family.desired
    assert planner.sets["felix-v4-web"].members == {"10.0.0.1"}
    assert planner.sets_dirty["felix-v4-gone"] is None and "felix-v4-gone" not in planner.sets
    assert planner.resolve_tag("web", 4, Side.SRC).kind is TagKind.SET
    planner.demote_tag("web")
    assert planner.resolve_tag("web", 4, Side.SRC).kind is TagKind.TREE
    assert "felix-v4-web" not in planner.sets and "felix-t4s-web" in family.desired
    assert any("-j felix-t4s-web" in rule for rule in family.desired["felix-p-web-i"])


# -- pure orderings --------------------------------------------------------------------------

def test_writes_go_by_rank_after_stubs_for_missing_targets():
    plan = FamilyPlan(4)
    plan.set_chain("felix-top", ("-j felix-mid", "-j felix-lost"), 10)
    plan.set_chain("felix-mid", ("-j DROP",), 5)
    plan.set_chain("felix-same", ("-j ACCEPT",), 1)
    items = chains_mod.plan_writes(plan, {"felix-same": ("-j ACCEPT",), "felix-top": ("-j RETURN",)},
                                   prepend=True)
    assert [(name, mode) for name, _, mode in items] == [
        ("felix-lost", WriteMode.REPLACE), ("felix-mid", WriteMode.REPLACE), ("felix-top", WriteMode.PREPEND)]
    assert items[0][1][0].endswith("-j DROP")


def test_deletes_wait_while_old_rules_refer_to_them():
    plan = FamilyPlan(4)
    plan.dirty = {"felix-a", "felix-b", "felix-c", "felix-never"}
    programmed = {"felix-a": (), "felix-b": ("-j felix-c",), "felix-c": (),
                  "felix-x": ("-j felix-new", "-j RETURN", "-j felix-b")}
    deletes, waiting = chains_mod.plan_deletes(plan, programmed, cleanup={"felix-x": 0.0})
    assert deletes == ["felix-a"] and waiting == {"felix-b", "felix-c"}


def test_cleanups_wait_for_a_pause_unless_overdue_or_grown():
    now = 100.0
    cleanup = {"early": now + 1, "due": now - 1, "old": now - chains_mod.CLEANUP_MAX_WAIT, "long": now - 1}
    programmed = {"long": ("-j RETURN",) * 40}
    desired = {"long": ("-j RETURN",)}
    assert chains_mod.due_cleanups(cleanup, programmed, desired, now, quiet=True) == ["due", "old", "long"]
    assert chains_mod.due_cleanups(cleanup, programmed, desired, now, quiet=False) == ["old", "long"]


def test_prepended_rules_end_so_the_old_ones_are_never_reached():
    assert chains_mod.prepended(("-s 10.0.0.1/32 -j ACCEPT",)) == ("-s 10.0.0.1/32 -j ACCEPT", "-j RETURN")
    assert chains_mod.prepended(("-g felix-ALLOW",)) == ("-g felix-ALLOW",)
    assert chains_mod.prepended(()) == ("-j RETURN",)
    assert not chains_mod.is_verdict("-j MARK --set-xmark 0x0/0x1") and chains_mod.is_verdict("-j DROP")


def test_member_diffs_check_only_what_may_have_changed():
    assert diff_members({"a", "b"}, {"b", "c"}) == (["a"], ["c"])
    assert diff_members({"a", "b"}, {"b", "c"}, check={"a"}) == (["a"], [])
