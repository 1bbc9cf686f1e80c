"""Typed models: validation and a JSON round trip that matches the reference's JSON."""
import json

import pytest

from calicoctl import model
from calicoctl.errors import ValidationError

REFERENCE_ENDPOINT = {
    "state": "active", "name": "cali0123456789a", "mac": "aa:bb:cc:dd:ee:ff",
    "profile_ids": ["P1", "P2"],
    "ipv4_nets": ["192.168.0.1/32"], "ipv6_nets": [],
    "ipv4_gateway": "172.17.8.101", "ipv6_gateway": None,
}
EP_KEY = model.EndpointKey("host1", "docker", "wl1", "ep1")


# -- rules ----------------------------------------------------------------------

def test_new_profile_has_reference_default_rules_and_tag():
    profile = model.Profile.new("P")
    assert profile.tags == ("P",)
    assert json.loads(profile.rules.to_json()) == {
        "id": "P",
        "inbound_rules": [{"action": "allow", "src_tag": "P"}],
        "outbound_rules": [{"action": "allow"}],
    }


def test_rules_round_trip_every_field():
    data = {
        "id": "WEB",
        "inbound_rules": [
            {"action": "deny", "protocol": "tcp", "src_net": "10.0.0.0/8", "src_ports": [22, "1000:2000"],
             "dst_tag": "DB", "dst_ports": [5432]},
            {"action": "allow", "protocol": "icmp", "icmp_type": 8, "icmp_code": 0, "src_tag": "WEB"},
            {"action": "allow", "protocol": "icmpv6", "icmp_type": 128, "ip_version": 6},
            {"action": "allow", "protocol": 47},
        ],
        "outbound_rules": [{"action": "allow", "dst_net": "fd00::/8"}],
    }
    rules = model.Rules.from_json(json.dumps(data))
    assert json.loads(rules.to_json()) == data
    assert model.Rules.from_json(rules.to_json()) == rules


def test_rule_action_defaults_to_allow_and_nulls_are_dropped():
    rules = model.Rules.from_json(json.dumps({
        "id": "P", "inbound_rules": [{"src_tag": "P", "protocol": None}], "outbound_rules": []}))
    assert rules.inbound_rules[0].to_dict() == {"action": "allow", "src_tag": "P"}


def test_rule_nets_are_normalised():
    rule = model.Rule.from_dict({"action": "allow", "src_net": "10.1.2.3/16"})
    assert rule.src_net == "10.1.0.0/16"


def test_rule_ports_ranges_stored_as_strings():
    rule = model.Rule.from_dict({"protocol": "udp", "dst_ports": ["100-200", 53]})
    assert rule.to_dict()["dst_ports"] == ["100:200", 53]


@pytest.mark.parametrize("rule", [
    {"action": "accept"},
    {"protocol": "gre"},
    {"protocol": 0},
    {"protocol": 256},
    {"protocol": True},
    {"protocol": "icmp", "src_ports": [80]},
    {"protocol": "tcp", "src_ports": []},
    {"protocol": "tcp", "src_ports": "80"},
    {"protocol": "tcp", "dst_ports": [70000]},
    {"protocol": "tcp", "icmp_type": 8},
    {"protocol": "icmp", "icmp_code": 0},
    {"protocol": "icmp", "icmp_type": 255},
    {"protocol": "icmp", "icmp_type": "8"},
    {"src_net": "10.0.0.0/33"},
    {"src_net": 10},
    {"src_tag": "bad tag"},
    {"ip_version": 5},
    {"ip_version": 4, "src_net": "fd00::/8"},
    {"unknown_key": 1},
    "allow",
])
def test_invalid_rules_refused(rule):
    with pytest.raises(ValidationError):
        model.Rule.from_dict(rule)


def test_rules_error_names_the_bad_rule():
    text = json.dumps({"id": "P", "inbound_rules": [{"action": "allow"}, {"action": "nope"}],
                       "outbound_rules": []})
    with pytest.raises(ValidationError) as error:
        model.Rules.from_json(text)
    assert "inbound rule 2" in str(error.value)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"id": "P", "inbound_rules": {}}',
                                  '{"id": "P", "extra": 1}', '{"id": "bad id"}'])
def test_invalid_rules_json_refused(text):
    with pytest.raises(ValidationError):
        model.Rules.from_json(text)


def test_rules_id_must_match_profile():
    text = model.Rules.default_for("A").to_json()
    with pytest.raises(ValidationError) as error:
        model.Rules.from_json(text, expected_id="B")
    assert "does not match" in str(error.value)
    assert model.Rules.from_json(text, expected_id="A").id == "A"


@pytest.mark.parametrize("rule,text", [
    ({"action": "allow", "src_tag": "WEB"}, "allow from tag WEB"),
    ({"action": "allow", "protocol": "tcp", "dst_ports": [80, 443]}, "allow tcp to ports 80,443"),
    ({"action": "allow", "protocol": "icmp", "icmp_type": 8}, "allow icmp type 8"),
    ({"action": "deny", "protocol": "icmp", "icmp_type": 3, "icmp_code": 1, "dst_net": "10.0.0.0/8"},
     "deny icmp type 3 code 1 to cidr 10.0.0.0/8"),
    ({"action": "deny", "protocol": "udp", "src_ports": ["1:2"], "src_tag": "A", "src_net": "1.0.0.0/8",
      "dst_ports": [53], "dst_tag": "B", "dst_net": "2.0.0.0/8"},
     "deny udp from ports 1:2 tag A cidr 1.0.0.0/8 to ports 53 tag B cidr 2.0.0.0/8"),
    ({"action": "allow"}, "allow"),
])
def test_rule_describe(rule, text):
    assert model.Rule.from_dict(rule).describe() == text


def test_with_rules_replaces_one_direction():
    rules = model.Rules.default_for("P")
    new = rules.with_rules("outbound", [model.Rule(action="deny")])
    assert new.inbound_rules == rules.inbound_rules
    assert new.outbound_rules == (model.Rule(action="deny"),)


# -- tags -------------------------------------------------------------------------

def test_tags_round_trip_and_dedup():
    assert model.parse_tags_json('["A", "B", "A"]') == ("A", "B")
    assert json.loads(model.render_tags_json(("A", "B"))) == ["A", "B"]


@pytest.mark.parametrize("text", ['{"a": 1}', '["bad tag"]', "[1]", "nope"])
def test_invalid_tags_refused(text):
    with pytest.raises(ValidationError):
        model.parse_tags_json(text)


# -- endpoints ----------------------------------------------------------------------

def test_endpoint_round_trip_reference_json():
    endpoint = model.Endpoint.from_json(EP_KEY, json.dumps(REFERENCE_ENDPOINT))
    assert endpoint.profile_ids == ("P1", "P2")
    assert endpoint.addresses() == ["192.168.0.1"]
    assert json.loads(endpoint.to_json()) == REFERENCE_ENDPOINT


def test_endpoint_legacy_profile_id_and_mac_canonicalised():
    data = dict(REFERENCE_ENDPOINT, mac="AA-BB-CC-DD-EE-FF")
    del data["profile_ids"]
    data["profile_id"] = "OLD"
    endpoint = model.Endpoint.from_json(EP_KEY, json.dumps(data))
    assert endpoint.profile_ids == ("OLD",)
    assert endpoint.mac == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("change", [
    {"state": "up"},
    {"name": ""},
    {"mac": "not-a-mac"},
    {"profile_ids": "P1"},
    {"profile_ids": ["bad name"]},
    {"ipv4_nets": ["fd00::1/128"]},
    {"ipv6_nets": ["10.0.0.1/32"]},
    {"ipv4_gateway": "fd00::1"},
])
def test_invalid_endpoints_refused(change):
    with pytest.raises(ValidationError):
        model.Endpoint.from_json(EP_KEY, json.dumps(dict(REFERENCE_ENDPOINT, **change)))


# -- pools and peers -----------------------------------------------------------------

def test_pool_json_matches_reference():
    pool = model.IPPool.from_json('{"cidr": "192.168.0.0/16", "ipip": "tunl0", "masquerade": true}')
    assert pool == model.IPPool("192.168.0.0/16", ipip="tunl0", masquerade=True)
    assert json.loads(pool.to_json()) == {"cidr": "192.168.0.0/16", "ipip": "tunl0", "masquerade": True}
    assert json.loads(model.IPPool("10.0.0.0/8").to_json()) == {"cidr": "10.0.0.0/8"}
    assert pool.options() == ["ipip", "nat-outgoing"]
    assert model.IPPool("fd00::/64").version == 6


def test_pool_vxlan_extension_round_trips():
    pool = model.IPPool("10.0.0.0/8", vxlan=True)
    assert model.IPPool.from_json(pool.to_json()) == pool
    assert pool.options() == ["vxlan"]


def test_pool_cidr_normalised_and_invalid_refused():
    assert model.IPPool.from_json('{"cidr": "10.1.2.3/8"}').cidr == "10.0.0.0/8"
    for text in ('{"ipip": "tunl0"}', '{"cidr": "10.0.0.0/40"}', "[]"):
        with pytest.raises(ValidationError):
            model.IPPool.from_json(text)


def test_bgp_peer_json():
    peer = model.BGPPeer.from_json('{"ip": "10.0.0.2", "as_num": 64513}')
    assert peer == model.BGPPeer("10.0.0.2", 64513)
    assert json.loads(peer.to_json()) == {"ip": "10.0.0.2", "as_num": 64513}
    assert model.BGPPeer("fd00::2", 1).version == 6
    for text in ('{"ip": "x", "as_num": 1}', '{"ip": "10.0.0.2", "as_num": 4294967296}'):
        with pytest.raises(ValidationError):
            model.BGPPeer.from_json(text)
