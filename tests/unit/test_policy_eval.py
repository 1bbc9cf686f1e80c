"""The policy evaluator behind ``policy explain`` / ``policy matrix`` (pure):
every kind of step, every rule field, the paths a packet can take.

Each test writes the etcd leaves of a small cluster (two hosts) and asks
for the explanation of one packet; the agent's own index reads the leaves,
as it does from etcd.
"""
import json

import pytest

from calicoctl import policy_eval as pe
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError
from calicoctl.policy_view import ClusterPolicy

H1, H2 = "172.17.8.101", "172.17.8.102"
ETCD = ("172.17.8.1", 2379)


class World:
    """The etcd leaves of a cluster being written by a test."""

    def __init__(self):
        self.items = {}
        self.count = 0
        self.host("h1", H1, "fd00::101")
        self.host("h2", H2, "fd00::102")

    def host(self, name, ip, ip6=""):
        self.items[paths.host_ip_addr(name, 4)] = ip
        self.items[paths.host_ip_addr(name, 6)] = ip6

    def profile(self, name, inbound=None, outbound=None, tags=None):
        """A profile; default rules and tags as ``profile add`` writes them."""
        self.items[paths.profile_rules(name)] = json.dumps({
            "id": name,
            "inbound_rules": [{"action": "allow", "src_tag": name}] if inbound is None else inbound,
            "outbound_rules": [{"action": "allow"}] if outbound is None else outbound})
        self.items[paths.profile_tags(name)] = json.dumps([name] if tags is None else tags)

    def endpoint(self, host, ip, profiles=(), ip6=None, state="active", interface=None, workload=None,
                 endpoint_id=None):
        self.count += 1
        endpoint_id = endpoint_id or "%02x" % self.count + "e" * 30
        workload = workload or "w%d" % self.count
        self.items[paths.endpoint_key(host, "docker", workload, endpoint_id)] = json.dumps({
            "state": state, "name": interface or "cali" + endpoint_id[:11],
            "mac": "02:00:00:00:00:%02x" % self.count, "profile_ids": list(profiles),
            "ipv4_nets": ["%s/32" % ip] if ip else [], "ipv6_nets": ["%s/128" % ip6] if ip6 else [],
            "ipv4_gateway": H1 if host == "h1" else H2, "ipv6_gateway": None})
        return endpoint_id

    def config(self, name, value, host=None):
        self.items[paths.host_config(host, name) if host else paths.global_config(name)] = value

    def cluster(self):
        return ClusterPolicy(self.items.items(), (ETCD,))

    def explain(self, source_id, destination, protocol="icmp", port=None, source_port=None):
        cluster = self.cluster()
        source = self._endpoint(cluster, source_id)
        target = [e for e in cluster.endpoints if pe.policy_view.canonical(destination) in
                  map(pe.policy_view.canonical, e.addresses())]
        version = 6 if ":" in destination else 4
        packet = pe.Packet.new(source.addresses(version)[0], destination, protocol, port, source_port)
        return pe.explain(cluster, source, packet, target[0] if target else None)

    @staticmethod
    def _endpoint(cluster, endpoint_id):
        return [e for e in cluster.endpoints if e.endpoint_id == endpoint_id][0]


def kinds(explanation):
    return [(step.side, step.kind, step.effect) for step in explanation.steps]


@pytest.fixture
def w():
    return World()


# -- the whole path -----------------------------------------------------------------------------

def test_members_of_a_default_profile_reach_each_other_across_hosts(w):
    w.profile("P")
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h2", "192.168.0.2", ["P"])
    explanation = w.explain(a, "192.168.0.2")
    assert explanation.allowed
    assert kinds(explanation) == [("outbound", pe.ANTI_SPOOFING, pe.CONTINUE), ("outbound", pe.RULE, pe.ALLOW),
                                  ("inbound", pe.RULE, pe.ALLOW)]
    outbound, inbound = explanation.steps[1:]
    assert (outbound.profile, outbound.position, outbound.rule) == ("P", 1, "allow")
    assert (inbound.profile, inbound.position, inbound.rule) == ("P", 1, "allow from tag P")
    assert inbound.endpoint == "02" + "e" * 30
    assert "02:00:00:00:00:01" in explanation.steps[0].text


def test_a_non_member_falls_through_to_the_default_drop(w):
    w.profile("P")
    w.profile("Q")
    a = w.endpoint("h1", "192.168.0.1", ["Q"])
    w.endpoint("h1", "192.168.0.2", ["P"])
    explanation = w.explain(a, "192.168.0.2")
    assert not explanation.allowed
    assert kinds(explanation)[-2:] == [("inbound", pe.NO_MATCH, pe.CONTINUE), ("inbound", pe.DEFAULT, pe.DENY)]


def test_profiles_run_in_order_no_match_passes_on_and_a_deny_wins(w):
    w.profile("NOTHING", inbound=[{"action": "allow", "src_net": "10.0.0.0/8"}])
    w.profile("NO_A", inbound=[{"action": "deny", "src_net": "192.168.0.1/32"}])
    w.profile("ALL", inbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["ALL"])
    c = w.endpoint("h1", "192.168.0.3", ["ALL"])
    w.endpoint("h2", "192.168.0.2", ["NOTHING", "NO_A", "ALL"])
    denied = w.explain(a, "192.168.0.2")
    assert [(s.profile, s.kind, s.effect) for s in denied.steps if s.side == "inbound"] == [
        ("NOTHING", pe.NO_MATCH, pe.CONTINUE), ("NO_A", pe.RULE, pe.DENY)]
    allowed = w.explain(c, "192.168.0.2")
    assert [(s.profile, s.kind, s.effect) for s in allowed.steps if s.side == "inbound"] == [
        ("NOTHING", pe.NO_MATCH, pe.CONTINUE), ("NO_A", pe.NO_MATCH, pe.CONTINUE), ("ALL", pe.RULE, pe.ALLOW)]


def test_the_first_matching_rule_decides(w):
    w.profile("P", inbound=[{"action": "allow", "protocol": "icmp"}, {"action": "deny"},
                            {"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h1", "192.168.0.2", ["P"])
    assert w.explain(a, "192.168.0.2").steps[-1].position == 1
    tcp = w.explain(a, "192.168.0.2", pe.TCP, 80)
    assert not tcp.allowed and tcp.steps[-1].position == 2 and tcp.steps[-1].rule == "deny"


def test_an_outbound_deny_stops_the_packet_before_the_destination(w):
    w.profile("OUT", outbound=[{"action": "deny", "protocol": "tcp", "dst_ports": [22]}, {"action": "allow"}])
    w.profile("P", inbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["OUT"])
    w.endpoint("h2", "192.168.0.2", ["P"])
    explanation = w.explain(a, "192.168.0.2", pe.TCP, 22)
    assert kinds(explanation)[-1] == ("outbound", pe.RULE, pe.DENY)
    assert not any(step.side == "inbound" for step in explanation.steps)


# -- endpoints without chains ---------------------------------------------------------------------

@pytest.mark.parametrize("change,reason", [
    (dict(state="inactive"), "inactive"),
    (dict(profiles=()), "no profiles"),
    (dict(interface="tap0123"), "does not fit the interface prefix cali"),
])
@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_endpoints_the_agent_gives_no_chains_drop_everything(w, change, reason, side):
    w.profile("P", inbound=[{"action": "allow"}])
    odd = dict(dict(profiles=["P"]), **change)
    if side == "outbound":
        source = w.endpoint("h1", "192.168.0.1", **odd)
        w.endpoint("h2", "192.168.0.2", ["P"])
    else:
        source = w.endpoint("h1", "192.168.0.1", ["P"])
        w.endpoint("h2", "192.168.0.2", **odd)
    explanation = w.explain(source, "192.168.0.2")
    assert kinds(explanation)[-1] == (side, pe.NO_CHAINS, pe.DENY)
    assert reason in explanation.steps[-1].text


def test_an_interface_prefix_set_in_etcd_is_the_hosts(w):
    w.profile("P", inbound=[{"action": "allow"}])
    w.config("InterfacePrefix", "tap", host="h2")
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h2", "192.168.0.2", ["P"], interface="tap0123")
    assert w.explain(a, "192.168.0.2").allowed


def test_only_the_first_endpoint_claiming_an_interface_gets_chains(w):
    w.profile("P", inbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h2", "192.168.0.2", ["P"], interface="calishared", endpoint_id="a" * 32)
    w.endpoint("h2", "192.168.0.3", ["P"], interface="calishared", endpoint_id="b" * 32)
    assert w.explain(a, "192.168.0.2").allowed
    second = w.explain(a, "192.168.0.3")
    assert kinds(second)[-1] == ("inbound", pe.NO_CHAINS, pe.DENY)
    assert "belongs to endpoint " + "a" * 32 in second.steps[-1].text


def test_an_endpoint_without_an_address_of_the_family_gets_no_chains_there(w):
    w.profile("P", inbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"], ip6="fd80::1")
    w.endpoint("h2", "192.168.0.2", ["P"], ip6="fd80::2")
    w.endpoint("h2", "192.168.0.3", ["P"])
    assert w.explain(a, "fd80::2").allowed
    cluster = w.cluster()
    source = World._endpoint(cluster, a)
    destination = [e for e in cluster.endpoints if "192.168.0.3" in e.addresses()][0]
    explanation = pe.explain(cluster, source, pe.Packet.new("fd80::1", "fd80::3", "icmp"), destination)
    assert kinds(explanation)[-1] == ("inbound", pe.NO_CHAINS, pe.DENY)
    assert "no IPv6 address" in explanation.steps[-1].text


# -- profiles the agent cannot use -----------------------------------------------------------------

@pytest.mark.parametrize("write,reason", [
    (lambda w: None, "does not exist"),
    (lambda w: w.items.__setitem__(paths.profile_tags("P"), '["P"]'), "has no rules"),
    (lambda w: w.items.__setitem__(paths.profile_rules("P"), json.dumps(
        {"id": "P", "inbound_rules": [{"action": "allow", "dst_ports": ["80:80"], "protocol": "tcp"}],
         "outbound_rules": []})), "Felix rejects (inbound rule 1: dst_ports"),
])
def test_a_profile_without_valid_rules_drops_everything_at_it(w, write, reason):
    w.profile("ALL", inbound=[{"action": "allow"}])
    write(w)
    a = w.endpoint("h1", "192.168.0.1", ["ALL"])
    w.endpoint("h1", "192.168.0.2", ["P", "ALL"])
    explanation = w.explain(a, "192.168.0.2")
    assert kinds(explanation)[-1] == ("inbound", pe.NO_RULES, pe.DENY)
    assert explanation.steps[-1].profile == "P" and reason in explanation.steps[-1].text


def test_a_rule_the_kernel_cannot_express_drops_everything_of_its_family_at_its_place(w):
    w.profile("P", inbound=[{"action": "allow", "protocol": "tcp", "dst_ports": [80]},
                            {"action": "allow", "protocol": "icmp", "icmp_type": 255},
                            {"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"], ip6="fd80::1")
    w.endpoint("h1", "192.168.0.2", ["P"], ip6="fd80::2")
    assert w.explain(a, "192.168.0.2", pe.TCP, 80).allowed           # rule 1 comes first
    dropped = w.explain(a, "192.168.0.2", pe.UDP, 53)
    assert kinds(dropped)[-1] == ("inbound", pe.UNEXPRESSIBLE, pe.DENY) and dropped.steps[-1].position == 2
    assert "ICMP type 255" in dropped.steps[-1].text
    assert w.explain(a, "fd80::2", pe.UDP, 53).allowed                  # an IPv4 rule: not in IPv6


# -- matching one rule --------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,protocol,port,matches", [
    ({"protocol": "tcp"}, pe.TCP, 80, True),
    ({"protocol": "tcp"}, pe.UDP, 80, False),
    ({"protocol": 6}, pe.TCP, 80, True),
    ({"protocol": "17"}, pe.UDP, 53, True),
    ({"protocol": "icmp"}, "icmp", None, True),
    ({"protocol": "icmp", "icmp_type": 8}, "icmp", None, True),
    ({"protocol": "icmp", "icmp_type": 8, "icmp_code": 0}, "icmp", None, True),
    ({"protocol": "icmp", "icmp_type": 8, "icmp_code": 1}, "icmp", None, False),
    ({"protocol": "icmp", "icmp_type": 0}, "icmp", None, False),
    ({"protocol": "tcp", "dst_ports": [80, "1000:2000"]}, pe.TCP, 1500, True),
    ({"protocol": "tcp", "dst_ports": [80, "1000:2000"]}, pe.TCP, 2001, False),
    ({"protocol": "udp", "dst_ports": []}, pe.UDP, 9, True),
    ({"src_net": "192.168.0.0/24"}, "icmp", None, True),
    ({"src_net": "192.168.1.0/24"}, "icmp", None, False),
    ({"dst_net": "192.168.0.2/32"}, "icmp", None, True),
    ({"dst_net": "10.0.0.0/8"}, "icmp", None, False),
    ({"dst_net": "fd80::/16"}, "icmp", None, False),          # IPv6 only: skipped for IPv4
    ({"ip_version": 4}, "icmp", None, True),
    ({"ip_version": 6}, "icmp", None, False),
    ({"src_tag": "WEB"}, "icmp", None, True),
    ({"src_tag": "DB"}, "icmp", None, False),
    ({"dst_tag": "DB"}, "icmp", None, True),
    ({"dst_tag": "WEB"}, "icmp", None, False),
    ({"src_tag": "WEB", "dst_tag": "DB", "protocol": "tcp", "dst_ports": [5432]}, pe.TCP, 5432, True),
])
def test_each_field_of_a_rule(w, rule, protocol, port, matches):
    """The source carries tag WEB (through its profile), the destination DB;
    the rule is the destination's only inbound rule, an allow."""
    w.profile("FRONT", outbound=[{"action": "allow"}], tags=["WEB"])
    w.profile("BACK", inbound=[dict(rule, action="allow")], tags=["DB"])
    a = w.endpoint("h1", "192.168.0.1", ["FRONT"])
    w.endpoint("h2", "192.168.0.2", ["BACK"])
    explanation = w.explain(a, "192.168.0.2", protocol, port)
    assert explanation.allowed is matches
    assert kinds(explanation)[-1] == (("inbound", pe.RULE, pe.ALLOW) if matches else ("inbound", pe.DEFAULT, pe.DENY))


def test_tags_count_endpoints_on_every_host_and_each_family(w):
    w.profile("WEB", inbound=[], tags=["WEB"])
    w.profile("DB", inbound=[{"action": "allow", "src_tag": "WEB"}], tags=["DB"])
    w.profile("OTHER", inbound=[])
    a = w.endpoint("h2", "192.168.0.1", ["WEB"], ip6="fd80::1")
    w.endpoint("h1", "192.168.0.2", ["DB"], ip6="fd80::2")
    c = w.endpoint("h2", "192.168.0.3", ["OTHER"], ip6="fd80::3")
    assert w.explain(a, "192.168.0.2").allowed and w.explain(a, "fd80::2").allowed
    assert not w.explain(c, "192.168.0.2").allowed and not w.explain(c, "fd80::2").allowed
    # A second profile carrying the tag makes its members count too.
    w.profile("OTHER", inbound=[], tags=["WEB"])
    assert w.explain(c, "fd80::2").allowed


def test_icmpv6_rules_match_ipv6_pings_only(w):
    w.profile("P", inbound=[{"action": "allow", "protocol": "icmpv6", "icmp_type": 128}])
    a = w.endpoint("h1", "192.168.0.1", ["P"], ip6="fd80::1")
    w.endpoint("h1", "192.168.0.2", ["P"], ip6="fd80::2")
    assert w.explain(a, "fd80::2").allowed
    assert not w.explain(a, "192.168.0.2").allowed


@pytest.mark.parametrize("ports,source_port,outcome", [
    (["1024:65535"], None, True),          # covers every ephemeral port
    ([53, "100:200"], None, False),        # covers none
    (["40000:50000"], None, "decides"),    # covers some
    (["40000:50000"], 45000, True),
    (["40000:50000"], 39999, False),
])
def test_source_ports_an_ephemeral_port_cannot_settle_are_refused(w, ports, source_port, outcome):
    w.profile("P", inbound=[{"action": "allow", "protocol": "tcp", "src_ports": ports}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h1", "192.168.0.2", ["P"])
    if outcome == "decides":
        with pytest.raises(pe.PortDecides, match="source port.*--source-port"):
            w.explain(a, "192.168.0.2", pe.TCP, 80)
        return
    assert w.explain(a, "192.168.0.2", pe.TCP, 80, source_port).allowed is outcome


def test_an_unknown_port_is_only_asked_for_when_the_other_fields_match(w):
    w.profile("P", inbound=[{"action": "allow", "protocol": "sctp", "dst_ports": [9]},
                            {"action": "allow", "protocol": "udp", "src_ports": ["40000:50000"]}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.endpoint("h1", "192.168.0.2", ["P"])
    assert not w.explain(a, "192.168.0.2", pe.TCP, 80).allowed        # neither rule is tcp
    with pytest.raises(pe.PortDecides, match="destination port"):
        w.explain(a, "192.168.0.2", 132)


# -- the control plane ----------------------------------------------------------------------------

def test_control_plane_ports_of_the_own_host_are_dropped_first(w):
    w.profile("P", outbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    explanation = w.explain(a, H1, pe.TCP, 2379)
    assert kinds(explanation) == [("control plane", pe.PROTECTED, pe.DENY)]


@pytest.mark.parametrize("address", [H2, "fd00::102", ETCD[0], "10.5.5.5"])
def test_control_plane_addresses_are_protected_on_every_route(w, address):
    w.items[paths.global_peer("10.5.5.5")] = json.dumps({"ip": "10.5.5.5", "as_num": 64512})
    w.profile("P", outbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"], ip6="fd80::1")
    explanation = w.explain(a, address, pe.TCP, 179)
    assert kinds(explanation) == [("control plane", pe.PROTECTED, pe.DENY)]
    assert w.explain(a, address, pe.TCP, 80).allowed


def test_a_control_plane_port_elsewhere_passes_and_says_so(w):
    w.profile("P", outbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    explanation = w.explain(a, "8.8.8.8", pe.TCP, 2379)
    assert explanation.allowed
    assert kinds(explanation)[0] == ("control plane", pe.PROTECTED, pe.CONTINUE)


def test_the_protection_follows_its_setting_in_etcd(w):
    w.profile("P", outbound=[{"action": "allow"}])
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    w.items[paths.control_plane_protection()] = json.dumps({"enabled": False})
    assert w.explain(a, H2, pe.TCP, 2379).allowed
    w.items[paths.control_plane_protection()] = json.dumps({"enabled": True, "ports": [4001]})
    assert w.explain(a, H2, pe.TCP, 2380).allowed
    assert not w.explain(a, H2, pe.TCP, 4001).allowed
    assert not w.explain(a, H2, pe.TCP, ETCD[1]).allowed      # the agents' own etcd port, always


# -- the workload's own host ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol,port,source_port,service", [
    (pe.UDP, 53, None, "DNS"),
    (pe.UDP, 67, 68, "DHCP"),
])
def test_dns_and_dhcp_to_the_own_host_are_accepted_before_policy(w, protocol, port, source_port, service):
    w.profile("CLOSED", outbound=[{"action": "deny"}])
    a = w.endpoint("h1", "192.168.0.1", ["CLOSED"])
    explanation = w.explain(a, H1, protocol, port, source_port)
    assert kinds(explanation) == [("host", pe.BEFORE_POLICY, pe.ALLOW)] and service in explanation.steps[0].text
    assert not w.explain(a, H1, pe.UDP, 67).allowed                  # DHCP only from port 68


@pytest.mark.parametrize("action,expected", [
    ("DROP", [("host", pe.HOST_ACTION, pe.DENY)]),
    ("ACCEPT", [("outbound", pe.ANTI_SPOOFING, pe.CONTINUE), ("outbound", pe.RULE, pe.ALLOW),
                ("host", pe.HOST_ACTION, pe.ALLOW)]),
    ("RETURN", [("outbound", pe.ANTI_SPOOFING, pe.CONTINUE), ("outbound", pe.RULE, pe.ALLOW),
                ("host", pe.HOST_ACTION, pe.ALLOW)]),
    ("bogus", [("outbound", pe.ANTI_SPOOFING, pe.CONTINUE), ("outbound", pe.RULE, pe.ALLOW),
               ("host", pe.HOST_ACTION, pe.ALLOW)]),
])
def test_default_endpoint_to_host_action(w, action, expected):
    w.profile("P")
    w.config("DefaultEndpointToHostAction", "ACCEPT")                # the host's own value wins
    w.config("DefaultEndpointToHostAction", action, host="h1")
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    explanation = w.explain(a, H1, pe.TCP, 22)
    assert kinds(explanation) == expected
    if action in ("RETURN", "bogus"):
        assert "host's own INPUT rules decide" in explanation.steps[-1].text


def test_outbound_policy_still_applies_to_the_own_host(w):
    w.profile("CLOSED", outbound=[{"action": "deny"}])
    a = w.endpoint("h1", "192.168.0.1", ["CLOSED"])
    assert kinds(w.explain(a, H1))[-1] == ("outbound", pe.RULE, pe.DENY)


def test_the_workloads_gateway_is_its_host(w):
    w.profile("P")
    w.config("DefaultEndpointToHostAction", "DROP", host="h1")
    del w.items[paths.host_ip_addr("h1", 4)]
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    assert kinds(w.explain(a, H1)) == [("host", pe.HOST_ACTION, pe.DENY)]


# -- leaving Calico ----------------------------------------------------------------------------------

def test_other_hosts_and_outside_addresses_are_left_to_others(w):
    w.profile("P")
    a = w.endpoint("h1", "192.168.0.1", ["P"])
    to_host = w.explain(a, H2)
    assert kinds(to_host)[-1] == ("network", pe.LEAVES, pe.ALLOW) and "host h2" in to_host.steps[-1].text
    outside = w.explain(a, "8.8.8.8")
    assert kinds(outside)[-1] == ("network", pe.LEAVES, pe.ALLOW) and outside.allowed


def test_an_address_of_the_same_workload_needs_no_policy(w):
    w.profile("CLOSED", outbound=[{"action": "deny"}], inbound=[])
    a = w.endpoint("h1", "192.168.0.1", ["CLOSED"], workload="same")
    w.endpoint("h1", "192.168.0.2", ["CLOSED"], workload="same")
    assert kinds(w.explain(a, "192.168.0.2")) == [("network", pe.SAME_WORKLOAD, pe.ALLOW)]


# -- what to send ----------------------------------------------------------------------------------------

def test_traffic_from_the_command_line():
    assert pe.Traffic.parse() == pe.Traffic("icmp")
    assert pe.Traffic.parse("icmpv6") == pe.Traffic("icmp")
    assert pe.Traffic.parse("tcp", "80") == pe.Traffic(6, 80)
    assert pe.Traffic.parse("17", "53", "5353") == pe.Traffic(17, 53, 5353)
    assert pe.Traffic.parse("47") == pe.Traffic(47)
    assert pe.Traffic.parse("sctp", "9").describe() == "sctp port 9"
    assert not pe.Traffic.parse("47").probeable and pe.Traffic.parse("udp", "1").probeable


@pytest.mark.parametrize("protocol,port,source_port,words", [
    ("tcp", None, None, "--protocol=tcp needs --port"),
    (None, "80", None, "--port needs --protocol=tcp or udp"),
    ("icmp", "80", None, "--port needs --protocol=tcp or udp"),
    (None, None, "80", "--source-port needs --protocol=tcp or udp"),
    ("gre", None, None, "Invalid protocol"),
    ("256", None, None, "Invalid protocol"),
    ("tcp", "0", None, "Invalid --port"),
    ("tcp", "65536", None, "Invalid --port"),
    ("udp", "53", "x", "Invalid --source-port"),
])
def test_bad_traffic_is_refused(protocol, port, source_port, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")):
        pe.Traffic.parse(protocol, port, source_port)


def test_packets_of_each_family():
    ping6 = pe.Packet.new("fd80::0:1", "fd80::2", "icmp")
    assert (ping6.version, ping6.source, ping6.protocol, ping6.icmp_type) == (6, "fd80::1", 58, 128)
    assert pe.Packet.new("10.0.0.1", "10.0.0.2", 6, 80, 4000).describe() == "tcp 10.0.0.1 -> 10.0.0.2 port 80 " \
                                                                            "from port 4000"
    with pytest.raises(ValidationError, match="same IP version"):
        pe.Packet.new("10.0.0.1", "fd80::2", "icmp")


def test_the_agents_logs_of_bad_data_stay_out_of_the_commands_output(w, caplog):
    """What the agent logs for its operator (invalid rules, an endpoint it
    cannot read, an interface claimed twice) is said by the explanation, not
    sprayed on the command's stderr."""
    w.items[paths.profile_rules("P")] = '{"id": "P", "inbound_rules": [{"action": "accept"}]}'
    w.items[paths.endpoint_key("h1", "docker", "bad", "bad")] = "{not json"
    a = w.endpoint("h1", "192.168.0.1", ["P"], interface="calitwice")
    w.endpoint("h1", "192.168.0.2", ["P"], interface="calitwice")
    caplog.set_level("DEBUG")
    explanation = w.explain(a, "192.168.0.2")
    assert "Felix rejects" in explanation.steps[-1].text
    assert [record for record in caplog.records if record.levelname == "WARNING"] == []
