"""Pure indexes (calicoctl.agent.state) and the other pure helpers of the agent
(route staleness, config); the watcher's parsing is in test_kv.py."""
import json

import pytest

from calicoctl import model
from calicoctl.agent import indexes, state
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.routing.routes import WorkloadNetwork, calculate_stale_routes
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError
from calicoctl.host.netlink import RouteInfo

HOST = "h1"


def ep_key(host=HOST, workload="w1", endpoint="e1"):
    return paths.endpoint_key(host, "docker", workload, endpoint)


def ep_json(name="cali0000000001", profiles=("A",), v4=("10.0.0.1/32",), v6=(), state_="active"):
    return json.dumps({"state": state_, "name": name, "mac": "02:00:00:00:00:01",
                       "profile_ids": list(profiles), "ipv4_nets": list(v4), "ipv6_nets": list(v6),
                       "ipv4_gateway": None, "ipv6_gateway": None})


def rules_json(name, inbound=(), outbound=()):
    return json.dumps({"id": name, "inbound_rules": list(inbound), "outbound_rules": list(outbound)})


@pytest.fixture
def index():
    idx = state.PolicyIndex(HOST)
    idx.take_changes()
    return idx


def test_local_endpoint_gets_chains_and_marks_its_profiles_used(index):
    index.apply(ep_key(), ep_json(profiles=("A", "B")))
    changes = index.take_changes()
    assert changes.ifaces == {"cali0000000001"}
    assert changes.profiles == {"A", "B"}
    assert index.local_endpoint("cali0000000001").profile_ids == ("A", "B")
    assert index.used_profiles() == {"A", "B"}


def test_remote_endpoints_are_indexed_but_not_local(index):
    index.apply(ep_key(host="h2"), ep_json())
    changes = index.take_changes()
    assert not changes.ifaces and not changes.profiles
    assert index.local == {} and index.used_profiles() == set()


def test_with_the_agents_parser_other_hosts_endpoints_are_read_for_their_addresses_only():
    parser = state.EndpointParser(HOST)
    idx = state.PolicyIndex(HOST, parser)
    bad_mac = json.loads(ep_json(v4=("10.0.0.2/32",)))
    bad_mac["mac"] = "junk"
    idx.apply(paths.profile_tags("A"), json.dumps(["web"]))
    idx.apply(ep_key(host="h2", endpoint="r"), json.dumps(bad_mac))    # its own host ignores it
    idx.apply(ep_key(endpoint="l"), json.dumps(dict(bad_mac, name="cali1")))
    assert idx.tag_members("web", 4) == {"10.0.0.2"}
    assert idx.local == {}
    assert isinstance(parser(ep_key(host="h2", endpoint="r"), json.dumps(bad_mac))[1], model.EndpointAddresses)
    assert isinstance(parser(ep_key(), ep_json())[1], model.Endpoint)


def test_tag_members_come_from_every_host(index):
    index.apply(paths.profile_tags("A"), json.dumps(["web"]))
    index.apply(ep_key(host="h2", endpoint="r"), ep_json(v4=("10.0.0.2/32",), v6=("fd00::2/128",)))
    index.apply(ep_key(), ep_json())
    assert index.tag_members("web", 4) == {"10.0.0.1", "10.0.0.2"}
    assert index.tag_members("web", 6) == {"fd00::2"}
    changes = index.take_changes()
    assert changes.tag_ips[("web", 4)] == {"10.0.0.1", "10.0.0.2"}


def test_an_address_stays_in_a_tag_while_any_profile_carries_it(index):
    index.apply(paths.profile_tags("A"), json.dumps(["web"]))
    index.apply(paths.profile_tags("B"), json.dumps(["web", "db"]))
    index.apply(ep_key(), ep_json(profiles=("A", "B")))
    index.apply(ep_key(), ep_json(profiles=("B",)))
    assert index.tag_members("web", 4) == {"10.0.0.1"}
    index.apply(paths.profile_tags("B"), json.dumps(["db"]))
    assert index.tag_members("web", 4) == set()
    assert index.tag_members("db", 4) == {"10.0.0.1"}
    index.apply(ep_key(), None)
    assert index.tag_members("db", 4) == set()


def test_profile_tag_change_reindexes_its_members(index):
    index.apply(ep_key(), ep_json())
    index.take_changes()
    index.apply(paths.profile_tags("A"), json.dumps(["x"]))
    changes = index.take_changes()
    assert changes.tag_ips[("x", 4)] == {"10.0.0.1"}
    assert index.tag_has("x", 4, "10.0.0.1")


def test_bad_endpoint_data_counts_as_deleted(index):
    index.apply(paths.profile_tags("A"), json.dumps(["web"]))
    index.apply(ep_key(), ep_json())
    index.take_changes()
    index.apply(ep_key(), "{not json")
    changes = index.take_changes()
    assert changes.ifaces == {"cali0000000001"}
    assert index.local == {} and index.tag_members("web", 4) == set()
    index.apply(ep_key(), json.dumps({"state": "active", "name": "cali1", "profile_ids": "A"}))
    assert index.local == {}


def test_bad_rules_are_kept_as_none_so_the_profile_drops(index):
    index.apply(ep_key(), ep_json())
    index.apply(paths.profile_rules("A"), rules_json("A", [{"action": "allow"}]))
    assert index.profile_rules("A").inbound_rules[0].action == "allow"
    index.take_changes()
    index.apply(paths.profile_rules("A"), rules_json("A", [{"action": "maybe"}]))
    assert index.take_changes().profiles == {"A"}
    assert "A" in index.rules and index.profile_rules("A") is None


def test_rules_are_read_as_felix_reads_them(index, caplog):
    # Accepted though unusual: a protocol number as a string, no id, no action.
    index.apply(paths.profile_rules("A"), json.dumps({"inbound_rules": [{"protocol": "6", "dst_ports": [80]}]}))
    assert index.profile_rules("A").inbound_rules[0].protocol_number == 6
    assert index.profile_rules("A").outbound_rules == ()
    # A one-port range Felix rejects: the profile's rules count as absent, and the log says why.
    index.apply(paths.profile_rules("A"), rules_json("A", [{"protocol": "tcp", "dst_ports": ["80:80"]}]))
    assert index.profile_rules("A") is None
    assert 'inbound rule 1: dst_ports: port range "80:80"' in caplog.text


def test_unchanged_rules_report_nothing(index):
    index.apply(paths.profile_rules("A"), rules_json("A"))
    index.take_changes()
    index.apply(paths.profile_rules("A"), rules_json("A"))
    assert not index.take_changes()


def test_inactive_or_profileless_or_misnamed_endpoints_get_no_chains(index):
    index.apply(ep_key(endpoint="a"), ep_json(name="cali1", state_="inactive"))
    index.apply(ep_key(endpoint="b"), ep_json(name="cali2", profiles=()))
    index.apply(ep_key(endpoint="c"), ep_json(name="tap3"))
    index.apply(ep_key(endpoint="d"), ep_json(name="cali+weird"))
    assert index.local == {}


def test_two_endpoints_claiming_one_interface_resolve_deterministically(index):
    index.apply(ep_key(endpoint="b"), ep_json(name="cali1", profiles=("B",)))
    index.apply(ep_key(endpoint="a"), ep_json(name="cali1", profiles=("A",)))
    assert index.local_endpoint("cali1").profile_ids == ("A",)
    index.apply(ep_key(endpoint="a"), None)
    assert index.local_endpoint("cali1").profile_ids == ("B",)
    assert index.used_profiles() == {"B"}


def test_directory_deletes_remove_everything_below(index):
    index.apply(ep_key(workload="w1", endpoint="a"), ep_json(name="cali1"))
    index.apply(ep_key(workload="w2", endpoint="b"), ep_json(name="cali2"))
    index.apply(paths.profile_rules("A"), rules_json("A"))
    index.apply(paths.workload_dir(HOST, "docker", "w1"), None)
    assert set(index.local) == {"cali2"}
    index.apply(paths.profile_dir("A"), None)
    assert "A" not in index.rules
    index.apply("/calico", None)
    assert index.local == {} and index.endpoints == {}


def test_interface_prefix_and_host_action_config(index):
    index.apply(ep_key(), ep_json(name="tap1"))
    assert index.local == {}
    index.apply(paths.global_config("InterfacePrefix"), "tap")
    changes = index.take_changes()
    assert changes.config and changes.ifaces == {"tap1"}
    assert set(index.local) == {"tap1"}
    # The host's own prefix wins over the global one; an invalid one is the default.
    index.apply(paths.host_config(HOST, "InterfacePrefix"), "wl")
    assert index.interface_prefix == "wl" and index.local == {}
    index.apply(paths.host_config(HOST, "InterfacePrefix"), "x" * 13)
    assert index.interface_prefix == "cali"
    index.apply(paths.host_config(HOST, "InterfacePrefix"), None)
    assert set(index.local) == {"tap1"}
    assert index.host_action == "RETURN"
    index.apply(paths.global_config("DefaultEndpointToHostAction"), "drop")
    assert index.host_action == "DROP"
    index.apply(paths.host_config(HOST, "DefaultEndpointToHostAction"), "ACCEPT")
    assert index.host_action == "ACCEPT"
    index.apply(paths.host_config("other", "DefaultEndpointToHostAction"), "DROP")
    assert index.host_action == "ACCEPT"
    index.apply(paths.host_config(HOST, "DefaultEndpointToHostAction"), "bogus")
    assert index.host_action == "RETURN"


def test_snapshot_replaces_everything(index):
    index.apply(ep_key(endpoint="old"), ep_json(name="cali9"))
    index.apply_snapshot({ep_key(endpoint="new"): ep_json(name="tap1"),
                          paths.global_config("InterfacePrefix"): "tap",
                          "/calico/bgp/v1/global/as_num": "64511"})
    assert set(index.local) == {"tap1"}


def test_a_shared_parser_parses_each_value_once():
    parser = state.EndpointParser()
    first = parser(ep_key(), ep_json())
    assert parser(ep_key(), ep_json()) is first
    assert parser(ep_key(), ep_json(name="cali2")) is not first
    assert parser(ep_key(), None) == (first[0], None)
    assert parser(paths.profile_rules("A"), "[]") is None
    idx = state.PolicyIndex(HOST, parser)
    local = indexes.LocalEndpoints(HOST, parser)
    idx.apply(ep_key(), ep_json())
    local.apply(ep_key(), ep_json())
    assert idx.local_endpoint("cali0000000001") is local.endpoint_for("cali0000000001")


# -- LocalEndpoints ----------------------------------------------------------------------------

def test_local_endpoints_by_interface():
    local = indexes.LocalEndpoints(HOST)
    local.apply(ep_key(endpoint="a"), ep_json(name="cali1"))
    local.apply(ep_key(endpoint="b"), ep_json(name="cali2", state_="inactive"))
    local.apply(ep_key(host="h2", endpoint="c"), ep_json(name="cali3"))
    assert [name for name in ("cali1", "cali2", "cali3") if local.endpoint_for(name)] == ["cali1"]
    changed, resynced = local.take_changed()
    assert changed == {"cali1", "cali2"} and resynced
    local.apply(paths.host_workloads_dir(HOST), None)
    assert local.take_changed() == ({"cali1", "cali2"}, False)
    assert local.endpoint_for("cali1") is None


# -- routes ---------------------------------------------------------------------------------------

def route(dst, ifname, protocol=3, gateway=None):
    return RouteInfo(dst=dst, gateway=gateway, ifname=ifname, scope=253, version=4, protocol=protocol)


def test_stale_routes_are_only_our_host_routes_on_workload_interfaces():
    desired = {"cali1": WorkloadNetwork("cali1", ("10.0.0.1",), ("fd00::1",))}
    routes = [route("10.0.0.1/32", "cali1"), route("fd00::1/128", "cali1"),
              route("10.0.0.9/32", "cali1"),                  # stale address
              route("10.0.0.2/32", "cali2"),                  # no endpoint on cali2
              route("fe80::/64", "cali1", protocol=2),        # the kernel's own
              route("10.0.0.3/32", "cali1", protocol=186),    # BIRD's
              route("10.0.0.4/32", "eth0"),                   # not a workload interface
              route("10.1.0.0/24", "cali1")]                  # not a host route
    assert [r.dst for r in calculate_stale_routes(routes, desired, "cali")] == ["10.0.0.9/32", "10.0.0.2/32"]


# -- config ---------------------------------------------------------------------------------------

def test_config_from_environment():
    config = AgentConfig.from_environment({"CALICO_HOSTNAME": "h9", "CALICO_AGENT_TAG_IPSETS": "3",
                                           "CALICO_AGENT_IPTABLES_BACKEND": "legacy"},
                                          log_dir="/tmp/l")
    assert (config.hostname, config.tag_ipset_budget, config.iptables_backend, config.log_dir) == \
        ("h9", 3, "legacy", "/tmp/l")
    assert AgentConfig.from_environment({}, hostname="x").hostname == "x"
    with pytest.raises(ValidationError):
        AgentConfig.from_environment({"CALICO_AGENT_TAG_IPSETS": "many"}, hostname="x")
    with pytest.raises(ValidationError):
        AgentConfig.from_environment({"CALICO_AGENT_IPTABLES_BACKEND": "ebpf"}, hostname="x")
