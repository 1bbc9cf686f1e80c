"""Control-plane protection, pure parts: the setting's model, what the agent
derives from etcd (agent.control_plane, the policy index), the rules it
renders, and the CLI/status text."""
import json

import pytest

from calicoctl import model
from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.control_plane import ControlPlaneIndex
from calicoctl.agent.state import PolicyIndex
from calicoctl.cli import control_plane as cli
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError
from calicoctl.ops import control_plane as ops
from calicoctl.ops import status as status_ops

SETTING = paths.control_plane_protection()


# -- the setting --------------------------------------------------------------------------

def test_default_setting_protects_etcd_and_bgp():
    setting = model.ControlPlaneProtection()
    assert setting.enabled and setting.ports == (2379, 2380, 179) and setting.is_default
    assert SETTING == "/calico/v1/config/ControlPlaneProtection"


def test_setting_round_trips_through_json():
    setting = model.ControlPlaneProtection(enabled=False, ports=(4001, 179))
    assert json.loads(setting.to_json()) == {"enabled": False, "ports": [4001, 179]}
    assert model.ControlPlaneProtection.from_json(setting.to_json()) == setting
    assert model.ControlPlaneProtection.from_json('{"enabled": false}').ports == (2379, 2380, 179)
    assert model.ControlPlaneProtection.from_json('{}') == model.ControlPlaneProtection()


@pytest.mark.parametrize("text", [
    "", "nope", "[]", '{"enabled": "yes"}', '{"enabled": 1}', '{"ports": "2379"}', '{"ports": []}',
    '{"ports": [0]}', '{"ports": [65536]}', '{"ports": ["2379"]}', '{"ports": [true]}',
    '{"ports": [2379.5]}', '{"ports": [179, 179]}', '{"port": [179]}',
])
def test_bad_stored_values_are_refused(text):
    with pytest.raises(ValidationError):
        model.ControlPlaneProtection.from_json(text)


def test_a_bad_stored_value_means_the_defaults_with_a_reason():
    setting, problem = model.ControlPlaneProtection.from_stored('{"enabled": false, "ports": [99999]}')
    assert setting == model.ControlPlaneProtection() and "99999" in problem
    assert model.ControlPlaneProtection.from_stored(None) == (model.ControlPlaneProtection(), None)


def test_ports_from_the_command_line():
    assert model.ControlPlaneProtection.parse_ports("2379,2380,179,4001") == (2379, 2380, 179, 4001)
    assert model.ControlPlaneProtection.parse_ports("179") == (179,)


@pytest.mark.parametrize("text", ["", ",", "2379,", "a", "2379;179", " 179", "+179", "1_000", "179-180",
                                  "٣"])
def test_malformed_port_lists_are_refused(text):
    with pytest.raises(ValidationError):
        model.ControlPlaneProtection.parse_ports(text)


# -- what the agent derives from etcd -------------------------------------------------------------

def index(etcd_endpoints=(("10.0.0.100", 2379),)):
    return ControlPlaneIndex(etcd_endpoints)


def test_hosts_addresses_and_etcd_endpoints_are_protected():
    cp = index((("10.0.0.100", 4001), ("fd00::100", 2379), ("etcd.example", 2379)))
    cp.apply(paths.host_ip_addr("h1", 4), "10.0.0.1")
    cp.apply(paths.host_ip_addr("h1", 6), "FD00:0::1")
    cp.apply(paths.host_ip_addr("h2", 4), "10.0.0.2")
    cp.apply(paths.host_ip_addr("h2", 6), "")              # no IPv6 for h2
    assert cp.addresses(4) == {"10.0.0.1", "10.0.0.2", "10.0.0.100"}
    assert cp.addresses(6) == {"fd00::1", "fd00::100"}
    assert cp.ports == (179, 2379, 2380, 4001)             # the endpoints' ports are always in
    assert cp.etcd_hostnames == ("etcd.example",)
    cp.set_resolved("etcd.example", ["10.0.0.200", "fd00::200"])
    assert "10.0.0.200" in cp.addresses(4) and "fd00::200" in cp.addresses(6)
    cp.take_changed()
    cp.set_resolved("etcd.example", [])                    # a failed lookup keeps what we had
    assert "10.0.0.200" in cp.addresses(4) and not cp.take_changed()


def test_bgp_peers_are_protected_and_hosts_leave():
    cp = index()
    cp.apply(paths.host_ip_addr("h1", 4), "10.0.0.1")
    cp.apply(paths.global_peer("10.0.9.1"), json.dumps({"ip": "10.0.9.1", "as_num": 64512}))
    cp.apply(paths.host_peer("h1", "fd00::9"), json.dumps({"ip": "fd00::9", "as_num": 64512}))
    assert cp.addresses(4) == {"10.0.0.1", "10.0.9.1", "10.0.0.100"}
    assert cp.addresses(6) == {"fd00::9"}
    cp.take_changed()
    assert not cp.apply(paths.bgp_host_dir("h1"), None)   # a directory: others may need it too
    assert cp.take_changed()
    assert cp.addresses(4) == {"10.0.9.1", "10.0.0.100"} and cp.addresses(6) == set()
    cp.apply(paths.global_peer("10.0.9.1"), None)
    assert cp.addresses(4) == {"10.0.0.100"}


def test_only_real_changes_are_reported():
    cp = index()
    assert cp.take_changed()                               # a fresh index has everything to program
    assert cp.apply(paths.host_ip_addr("h1", 4), "10.0.0.1") and cp.take_changed()
    cp.apply(paths.host_ip_addr("h1", 4), "10.0.0.1")
    assert not cp.take_changed()
    assert not cp.apply(paths.host_as_num("h1"), "64512") and not cp.take_changed()
    assert not cp.apply(paths.BGP_NODE_MESH, '{"enabled": true}') and not cp.take_changed()
    cp.apply(paths.host_ip_addr("h1", 4), "not an address")     # bad data: no address
    assert cp.take_changed() and cp.addresses(4) == {"10.0.0.100"}


def test_setting_switches_and_bad_data_keeps_the_defaults():
    cp = index()
    cp.apply(SETTING, json.dumps({"enabled": True, "ports": [179]}))
    assert cp.ports == (179, 2379)                         # the etcd endpoint's port stays
    cp.apply(SETTING, json.dumps({"enabled": False, "ports": [179]}))
    assert cp.ports == () and cp.describe()["enabled"] is False
    cp.apply(SETTING, json.dumps({"enabled": False, "ports": "all"}))
    assert cp.ports == (179, 2379, 2380) and "ports must be a list" in cp.problem
    cp.apply(SETTING, None)
    assert cp.ports == (179, 2379, 2380) and cp.problem is None


def test_policy_index_hands_control_plane_changes_to_the_dataplane():
    policy = PolicyIndex("h1", etcd_endpoints=(("etcd.example", 2379),))
    policy.control_plane.set_resolved("etcd.example", ["10.0.0.200"])
    policy.apply_snapshot({paths.host_ip_addr("h1", 4): "10.0.0.1"})
    changes = policy.take_changes()
    assert changes.control_plane
    # Resolved names survive a snapshot (they do not come from etcd).
    assert policy.control_plane.addresses(4) == {"10.0.0.1", "10.0.0.200"}
    policy.apply(paths.host_ip_addr("h2", 4), "10.0.0.2")
    changes = policy.take_changes()
    assert changes and changes.control_plane and not changes.ifaces and not changes.profiles
    policy.apply(paths.profile_rules("P"), model.Rules.default_for("P").to_json())
    assert not policy.take_changes().control_plane


# -- rules -----------------------------------------------------------------------------------------

def test_protection_drops_early_in_input_and_forward_for_each_family():
    for version in (4, 6):
        chains = rules.render_global_chains(version, "cali", "RETURN", (179, 2379, 2380))
        inp, forward = chains["felix-INPUT"], chains["felix-FORWARD"]
        # Towards this host: any of its addresses; before established traffic is accepted.
        assert inp[:2] == ("! -i cali+ -j RETURN", "-p tcp -m multiport --dports 179,2379,2380 -j DROP")
        assert inp.index("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT") > 1
        # Through this host: the protected addresses' set of the family, first of all.
        assert forward[0] == ("-i cali+ -p tcp -m multiport --dports 179,2379,2380 -m set --match-set "
                              "felix-cp-v%d dst -j DROP" % version)
        # Otherwise the chains are exactly the ones without protection.
        plain = rules.render_global_chains(version, "cali", "RETURN")
        assert forward[1:] == plain["felix-FORWARD"]
        assert inp[:1] + inp[2:] == plain["felix-INPUT"]


def test_protection_applies_whatever_the_host_action():
    for action in rules.HOST_ACTIONS:
        inp = rules.render_global_chains(4, "tap", action, (179,))["felix-INPUT"]
        assert inp[1] == "-p tcp -m multiport --dports 179 -j DROP"


def test_many_ports_take_several_rules():
    ports = tuple(range(1000, 1020))
    to_host, through = rules.render_control_plane_rules(4, "cali", ports)
    assert len(to_host) == len(through) == 2
    assert to_host[0] == "-p tcp -m multiport --dports %s -j DROP" % ",".join(map(str, range(1000, 1015)))
    assert rules.render_control_plane_rules(4, "cali", ()) == ([], [])


def test_protection_sets_are_owned_and_referenced():
    assert rules.control_plane_set_name(4) == "felix-cp-v4" and rules.control_plane_set_name(6) == "felix-cp-v6"
    assert rules.is_owned_ipset("felix-cp-v6") and not rules.is_owned_ipset("felix-cpx")
    _, through = rules.render_control_plane_rules(6, "cali", (179,))
    assert rules.set_references(through[0]) == {"felix-cp-v6"}
    assert rules.set_references("-m set --match-set a src -m set ! --match-set b dst -j X") == {"a", "b"}


# -- calicoctl control-plane ------------------------------------------------------------------------

def test_changes_that_change_nothing_are_not_writes():
    unset = ops.interpret(None)
    assert unset.setting.is_default and not unset.stored and unset.problem is None
    assert not ops.ProtectionChange(unset, ops.calculate_protection(unset.setting, enabled=True)).changed
    off = ops.calculate_protection(unset.setting, enabled=False)
    assert off == model.ControlPlaneProtection(enabled=False)
    assert ops.ProtectionChange(unset, off).changed
    broken = ops.interpret('{"ports": []}')
    assert broken.problem and broken.setting.is_default
    # Asking for the defaults over a broken value does write: it repairs it.
    assert ops.ProtectionChange(broken, ops.calculate_protection(broken.setting, enabled=True)).changed
    assert ops.calculate_protection(off, ports=(179,)) == model.ControlPlaneProtection(False, (179,))


def test_show_text():
    lines = cli.render_setting(ops.interpret(None))
    assert lines[0] == "Control-plane protection is on (the default)."
    assert lines[1].startswith("Protected TCP ports: 2379, 2380, 179 (the default), plus the port of every")
    stored = cli.render_setting(ops.interpret('{"enabled": false, "ports": [4001]}'))
    assert stored[0].startswith("Control-plane protection is OFF")
    assert stored[1].startswith("Protected TCP ports: 4001, plus")
    broken = cli.render_setting(ops.interpret('{"enabled": false, "ports": [0]}'))
    assert broken[0] == "Control-plane protection is on."
    assert broken[-1].startswith("WARNING: the stored setting is not valid (Invalid control-plane port 0")


def test_change_text():
    unset = ops.interpret(None)
    same = ops.ProtectionChange(unset, unset.setting)
    assert cli.render_change(same, "protection") == "Control-plane protection is already on; nothing to do."
    assert cli.render_change(same, "ports") == ("The protected control-plane ports are already 2379, 2380, "
                                                "179 (the default); nothing to do.")
    off = ops.ProtectionChange(unset, model.ControlPlaneProtection(enabled=False))
    assert cli.render_change(off, "protection").startswith("Control-plane protection switched off: ")
    ports = ops.ProtectionChange(ops.interpret("garbage"), model.ControlPlaneProtection(ports=(179,)))
    assert cli.render_change(ports, "ports") == ("Protected control-plane ports set to 179. (This replaced "
                                                 "a stored setting that was not valid.)")


# -- calicoctl status -------------------------------------------------------------------------------

def status_json(control_plane):
    data = {"pid": 42, "started": 1000.0, "time": 1100.5, "in_sync": True, "last_sync": 1090,
            "local_endpoints": 3}
    if control_plane is not None:
        data["control_plane"] = control_plane
    return json.dumps(data)


def test_status_says_whether_the_protection_is_active_here():
    active = {"enabled": True, "active": True, "ports": [179, 2379, 2380],
              "addresses": {"4": 3, "6": 1}, "problem": None}
    status = status_ops.parse_agent_status(status_json(active))
    assert status.control_plane == status_ops.ControlPlaneReport(True, True, (179, 2379, 2380), 3, 1)
    assert status_ops.render_control_plane(status.control_plane) == [
        "Control-plane protection: active (TCP 179, 2379, 2380 closed to workloads on this host and on "
        "3 IPv4 and 1 IPv6 protected addresses)."]
    pending = dict(active, active=False)
    assert status_ops.render_control_plane(status_ops.parse_agent_status(status_json(pending)).control_plane)[0] \
        .startswith("WARNING: control-plane protection is on but NOT programmed on this host yet")
    off = dict(active, enabled=False, active=False, ports=[])
    assert status_ops.render_control_plane(status_ops.parse_agent_status(status_json(off)).control_plane)[0] \
        .startswith("Control-plane protection: OFF")
    broken = dict(active, problem="Invalid control-plane port 0.")
    lines = status_ops.render_control_plane(status_ops.parse_agent_status(status_json(broken)).control_plane)
    assert lines[1] == ("WARNING: the control-plane setting in etcd is not valid (Invalid control-plane "
                        "port 0.); the default ports are protected.")
    # An older agent, or a report we cannot read: nothing is claimed.
    for report in (None, "yes", {"enabled": True}, dict(active, ports="all")):
        status = status_ops.parse_agent_status(status_json(report))
        assert status is not None and status.control_plane is None
        assert status_ops.render_control_plane(None) == ["Control-plane protection: not reported by this agent."]
