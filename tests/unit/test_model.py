"""Typed models: validation and a JSON round trip that matches the reference's JSON.

Profile rules have their own tests (tests/unit/test_rulemodel.py)."""
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


@pytest.mark.parametrize("net", ["10.0.0.1/32", "0.0.0.0/32", "255.255.255.255/32", "192.168.10.200/32",
                                 "010.0.0.1/32", "10.0.0.1/24", "10.0.0.1", "10.0.0.01/32", "256.0.0.1/32",
                                 "10.0.0.1/32 ", "10.1/32", "fd00::1/128", "FD00:0::1/128", "::ffff:1.2.3.4/128"])
def test_endpoint_addresses_read_as_the_full_parse_reads_them(net):
    """The fast paths (canonical IPv4, MAC) give what netaddr gives, and the
    addresses-only read of another host's endpoint agrees with the full one."""
    from calicoctl import validate
    version = 6 if ":" in net else 4
    data = dict(REFERENCE_ENDPOINT, **{"ipv%d_nets" % version: [net]}, **{"ipv%d_nets" % (10 - version): []})
    try:
        expected = str(validate.parse_cidr(net))
        assert validate.parse_cidr(net).version == version
    except ValidationError:
        for read in (lambda: model.Endpoint.from_json(EP_KEY, json.dumps(data)),
                     lambda: model.EndpointAddresses.from_json(json.dumps(data))):
            with pytest.raises(ValidationError):
                read()
        return
    full = model.Endpoint.from_json(EP_KEY, json.dumps(data))
    summary = model.EndpointAddresses.from_json(json.dumps(data))
    assert full.nets(version) == summary.nets(version) == (expected,)
    assert full.addresses() == summary.addresses()
    assert (full.state, full.profile_ids) == (summary.state, summary.profile_ids)


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01", "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff",
                                 "2:0:0:0:0:1"])
def test_endpoint_mac_fast_path_matches_netaddr(mac):
    import netaddr
    expected = str(netaddr.EUI(mac, dialect=netaddr.mac_unix_expanded)).lower()
    assert model.Endpoint.from_json(EP_KEY, json.dumps(dict(REFERENCE_ENDPOINT, mac=mac))).mac == expected


def test_another_hosts_endpoint_is_read_without_what_only_its_host_needs():
    """A bad MAC or gateway makes an endpoint invalid for its own host; the
    addresses-only read ignores them, but still refuses bad profiles and nets."""
    data = dict(REFERENCE_ENDPOINT, mac="not-a-mac", ipv4_gateway="nonsense", name="")
    with pytest.raises(ValidationError):
        model.Endpoint.from_json(EP_KEY, json.dumps(data))
    assert model.EndpointAddresses.from_json(json.dumps(data)).addresses(4) == ["192.168.0.1"]
    for change in ({"profile_ids": ["bad name"]}, {"ipv4_nets": ["fd00::1/128"]}, {"state": "gone"}):
        with pytest.raises(ValidationError):
            model.EndpointAddresses.from_json(json.dumps(dict(REFERENCE_ENDPOINT, **change)))


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
