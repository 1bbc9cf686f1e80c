"""Profile rules as another tool may store them, with Felix's verdict on each,
the iptables the agent programs for it, and what ``rule update`` makes of it.

Derived field by field from Felix's rule validation (projectcalico/felix
calico/common.py: validate_rules, validate_rule_port; the renderer's DROP
fallback in calico/felix/frules.py) and checked both ways by the tests:
tests/unit/test_rulemodel.py (pure), tests/functional/test_profile_rules_felix.py
(CLI and etcd) and tests/functional/test_dataplane_agent.py (the agent).
"""
from dataclasses import dataclass
from typing import Optional

ALLOW = "-g felix-ALLOW"
SAME = "as given"


def unexpressible(reason):
    return '-m comment --comment "Unexpressible rule: %s" -j DROP' % reason


ICMP_255 = unexpressible("the kernel cannot match ICMP type 255")
ICMP_WITHOUT_ICMP = unexpressible("an ICMP type needs protocol icmp or icmpv6")


@dataclass(frozen=True)
class Refused:
    """``rule update`` refuses the rule; ``words`` appear in its one-line error."""
    words: str


@dataclass(frozen=True)
class Case:
    id: str
    rule: object                  # the JSON of one inbound rule, as stored
    rejects: Optional[str] = None  # Felix rejects it: words of the reason shown
    v4: tuple = ()                # accepted: the rule's lines in the IPv4 profile chain
    v6: tuple = ()                # ... and in the IPv6 one
    written: object = SAME        # rule update with it: SAME, the dict stored instead, or Refused

    @property
    def accepted(self):
        return self.rejects is None


CASES = [
    # -- the rule object ---------------------------------------------------------
    Case("empty-rule", {}, v4=(ALLOW,), v6=(ALLOW,), written={"action": "allow"}),
    Case("not-an-object", "allow", rejects="JSON object", written=Refused("expected a JSON object")),
    Case("unknown-field", {"action": "allow", "frobnicate": 1}, rejects="unknown field",
         written=Refused("unknown field")),
    Case("nulls-ignored", {"action": "deny", "protocol": None, "src_net": None}, v4=("-j DROP",),
         v6=("-j DROP",), written={"action": "deny"}),
    # -- action ----------------------------------------------------------------------
    Case("deny", {"action": "deny"}, v4=("-j DROP",), v6=("-j DROP",)),
    Case("action-accept", {"action": "accept"}, rejects="action", written=Refused("action")),
    Case("action-upper-case", {"action": "ALLOW"}, rejects="action", written=Refused("action")),
    Case("action-number", {"action": 1}, rejects="action", written=Refused("action")),
    # -- protocol --------------------------------------------------------------------
    Case("tcp", {"action": "allow", "protocol": "tcp"}, v4=("-p tcp " + ALLOW,), v6=("-p tcp " + ALLOW,)),
    Case("udplite", {"action": "allow", "protocol": "udplite"}, v4=("-p udplite " + ALLOW,),
         v6=("-p udplite " + ALLOW,)),
    Case("protocol-6", {"action": "allow", "protocol": 6}, v4=("-p tcp " + ALLOW,), v6=("-p tcp " + ALLOW,)),
    Case("protocol-string-6", {"action": "allow", "protocol": "6"}, v4=("-p tcp " + ALLOW,),
         v6=("-p tcp " + ALLOW,), written={"action": "allow", "protocol": 6}),
    Case("protocol-47", {"action": "allow", "protocol": 47}, v4=("-p gre " + ALLOW,), v6=("-p gre " + ALLOW,)),
    Case("protocol-string-255", {"action": "allow", "protocol": "255"}, v4=("-p 255 " + ALLOW,),
         v6=("-p 255 " + ALLOW,), written={"action": "allow", "protocol": 255}),
    Case("protocol-0", {"protocol": 0}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-256", {"protocol": 256}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-string-06", {"protocol": "06"}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-gre-name", {"protocol": "gre"}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-dccp-name", {"protocol": "dccp"}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-upper-case", {"protocol": "TCP"}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-true", {"protocol": True}, rejects="protocol", written=Refused("protocol")),
    Case("protocol-float", {"protocol": 6.0}, rejects="protocol", written=Refused("protocol")),
    # -- ip_version --------------------------------------------------------------------
    Case("ip-version-4", {"action": "allow", "ip_version": 4}, v4=(ALLOW,)),
    Case("ip-version-6", {"action": "allow", "ip_version": 6}, v6=(ALLOW,)),
    Case("ip-version-5", {"ip_version": 5}, rejects="ip_version", written=Refused("ip_version")),
    Case("ip-version-string", {"ip_version": "4"}, rejects="ip_version", written=Refused("ip_version")),
    Case("icmp-with-ipv4", {"action": "allow", "protocol": "icmp", "ip_version": 4}, v4=("-p icmp " + ALLOW,)),
    Case("icmp-with-ipv6", {"protocol": "icmp", "ip_version": 6}, rejects="ip_version",
         written=Refused("ip_version 6")),
    Case("icmpv6-with-ipv4", {"protocol": "icmpv6", "ip_version": 4}, rejects="ip_version",
         written=Refused("ip_version 4")),
    # Felix compares names only: the numbers pass, and can never match.
    Case("protocol-1-with-ipv6", {"action": "allow", "protocol": 1, "ip_version": 6},
         written=Refused("IPv4 only")),
    Case("protocol-58-with-ipv4", {"action": "allow", "protocol": 58, "ip_version": 4},
         written=Refused("IPv6 only")),
    # -- icmp_type / icmp_code -----------------------------------------------------------
    Case("icmp-type", {"action": "allow", "protocol": "icmp", "icmp_type": 8},
         v4=("-p icmp -m icmp --icmp-type 8 " + ALLOW,)),
    Case("icmp-type-code", {"action": "allow", "protocol": "icmp", "icmp_type": 3, "icmp_code": 4},
         v4=("-p icmp -m icmp --icmp-type 3/4 " + ALLOW,)),
    Case("icmp-type-0", {"action": "allow", "protocol": "icmp", "icmp_type": 0},
         v4=("-p icmp -m icmp --icmp-type 0 " + ALLOW,)),
    Case("icmp-code-255", {"action": "allow", "protocol": "icmp", "icmp_type": 3, "icmp_code": 255},
         v4=("-p icmp -m icmp --icmp-type 3/255 " + ALLOW,)),
    Case("icmpv6-type", {"action": "allow", "protocol": "icmpv6", "icmp_type": 128, "ip_version": 6},
         v6=("-p ipv6-icmp -m icmp6 --icmpv6-type 128 " + ALLOW,)),
    Case("protocol-1-icmp-type", {"action": "allow", "protocol": 1, "icmp_type": 8},
         v4=("-p icmp -m icmp --icmp-type 8 " + ALLOW,)),
    Case("protocol-string-58-icmp-type", {"action": "allow", "protocol": "58", "icmp_type": 128},
         v6=("-p ipv6-icmp -m icmp6 --icmpv6-type 128 " + ALLOW,),
         written={"action": "allow", "protocol": 58, "icmp_type": 128}),
    # Accepted by Felix, but iptables cannot express them: a DROP in their place.
    Case("icmp-type-255", {"action": "allow", "protocol": "icmp", "icmp_type": 255}, v4=(ICMP_255,),
         written=Refused("ICMP type 255")),
    Case("icmp-type-with-tcp", {"action": "allow", "protocol": "tcp", "icmp_type": 8},
         v4=(ICMP_WITHOUT_ICMP,), v6=(ICMP_WITHOUT_ICMP,), written=Refused("only valid with protocol icmp")),
    Case("icmp-type-without-protocol", {"action": "allow", "icmp_type": 8},
         v4=(ICMP_WITHOUT_ICMP,), v6=(ICMP_WITHOUT_ICMP,), written=Refused("only valid with protocol icmp")),
    Case("icmp-type-256", {"protocol": "icmp", "icmp_type": 256}, rejects="out of range",
         written=Refused("out of range")),
    Case("icmp-type-negative", {"protocol": "icmp", "icmp_type": -1}, rejects="out of range",
         written=Refused("out of range")),
    Case("icmp-type-string", {"protocol": "icmp", "icmp_type": "8"}, rejects="not an integer",
         written=Refused("must be an integer")),
    Case("icmp-code-256", {"protocol": "icmp", "icmp_type": 3, "icmp_code": 256}, rejects="out of range",
         written=Refused("out of range")),
    Case("icmp-code-without-type", {"protocol": "icmp", "icmp_code": 0}, rejects="needs an icmp_type",
         written=Refused("needs an icmp_type")),
    # -- tags ----------------------------------------------------------------------------------
    Case("src-tag", {"action": "allow", "src_tag": "WEB"},
         v4=("-m set --match-set felix-v4-WEB src " + ALLOW,), v6=("-m set --match-set felix-v6-WEB src " + ALLOW,)),
    Case("dst-tag-punctuation", {"action": "allow", "dst_tag": "a.b-c_d"},
         v4=("-m set --match-set felix-v4-a.b-c_d dst " + ALLOW,),
         v6=("-m set --match-set felix-v6-a.b-c_d dst " + ALLOW,)),
    # A tag is a value, not an etcd key: Felix takes "..", calicoctl never writes it.
    Case("tag-dot-dot", {"action": "allow", "src_tag": ".."},
         v4=("-m set --match-set felix-v4-.. src " + ALLOW,), v6=("-m set --match-set felix-v6-.. src " + ALLOW,),
         written=Refused("Invalid tag")),
    Case("tag-with-space", {"src_tag": "bad tag"}, rejects="src_tag", written=Refused("Invalid tag")),
    Case("tag-trailing-newline", {"src_tag": "WEB\n"}, rejects="src_tag", written=Refused("Invalid tag")),
    Case("tag-empty", {"dst_tag": ""}, rejects="dst_tag", written=Refused("Invalid tag")),
    Case("tag-number", {"dst_tag": 5}, rejects="dst_tag", written=Refused("Invalid tag")),
    # -- nets ----------------------------------------------------------------------------------
    Case("src-net", {"action": "allow", "src_net": "10.0.0.0/8"}, v4=("-s 10.0.0.0/8 " + ALLOW,)),
    Case("src-net-host-bits", {"action": "allow", "src_net": "10.1.2.3/16"}, v4=("-s 10.1.0.0/16 " + ALLOW,),
         written={"action": "allow", "src_net": "10.1.0.0/16"}),
    Case("dst-net-address", {"action": "allow", "dst_net": "10.0.0.1"}, v4=("-d 10.0.0.1/32 " + ALLOW,),
         written={"action": "allow", "dst_net": "10.0.0.1/32"}),
    Case("dst-net-ipv6", {"action": "allow", "dst_net": "fd00::/8"}, v6=("-d fd00::/8 " + ALLOW,)),
    Case("net-bad-prefix", {"src_net": "10.0.0.0/33"}, rejects="src_net", written=Refused("Invalid CIDR")),
    Case("net-not-a-cidr", {"dst_net": "web-servers"}, rejects="dst_net", written=Refused("Invalid CIDR")),
    Case("net-number", {"src_net": 10}, rejects="src_net", written=Refused("Invalid CIDR")),
    Case("net-wrong-ip-version", {"src_net": "10.0.0.0/8", "ip_version": 6}, rejects="IPv6",
         written=Refused("IPv6")),
    # Accepted by Felix; they can never match, so nothing is programmed.
    Case("nets-of-both-families", {"action": "allow", "src_net": "10.0.0.0/8", "dst_net": "fd00::/8"},
         written=Refused("mixes an IPv4 and an IPv6")),
    Case("icmp-to-ipv6-net", {"action": "allow", "protocol": "icmp", "dst_net": "fd00::/8"},
         written=Refused("use icmpv6")),
    # -- ports -----------------------------------------------------------------------------------
    Case("dst-port", {"action": "allow", "protocol": "tcp", "dst_ports": [80]},
         v4=("-p tcp -m multiport --dports 80 " + ALLOW,), v6=("-p tcp -m multiport --dports 80 " + ALLOW,)),
    Case("ports-edges", {"action": "allow", "protocol": "udp", "src_ports": [0, "1:2", 65535]},
         v4=("-p udp -m multiport --sports 0,1:2,65535 " + ALLOW,),
         v6=("-p udp -m multiport --sports 0,1:2,65535 " + ALLOW,)),
    Case("port-range", {"action": "allow", "protocol": "sctp", "dst_ports": ["1000:2000"]},
         v4=("-p sctp -m multiport --dports 1000:2000 " + ALLOW,),
         v6=("-p sctp -m multiport --dports 1000:2000 " + ALLOW,)),
    Case("ports-protocol-6", {"action": "allow", "protocol": 6, "dst_ports": [80]},
         v4=("-p tcp -m multiport --dports 80 " + ALLOW,), v6=("-p tcp -m multiport --dports 80 " + ALLOW,)),
    Case("ports-protocol-string-17", {"action": "allow", "protocol": "17", "dst_ports": [53]},
         v4=("-p udp -m multiport --dports 53 " + ALLOW,), v6=("-p udp -m multiport --dports 53 " + ALLOW,),
         written={"action": "allow", "protocol": 17, "dst_ports": [53]}),
    Case("ports-dccp-33", {"action": "allow", "protocol": 33, "dst_ports": [5004]},
         v4=("-p dccp -m multiport --dports 5004 " + ALLOW,), v6=("-p dccp -m multiport --dports 5004 " + ALLOW,)),
    # Felix ignores an empty list when it programs the rule: any port.
    Case("ports-empty-list", {"action": "allow", "protocol": "tcp", "dst_ports": []},
         v4=("-p tcp " + ALLOW,), v6=("-p tcp " + ALLOW,), written=Refused("the list is empty")),
    Case("one-port-range", {"protocol": "tcp", "dst_ports": ["80:80"]}, rejects="must run upwards",
         written={"action": "allow", "protocol": "tcp", "dst_ports": [80]}),
    Case("port-as-string", {"protocol": "tcp", "dst_ports": ["80"]}, rejects="neither a number nor a range",
         written={"action": "allow", "protocol": "tcp", "dst_ports": [80]}),
    Case("port-range-dash", {"protocol": "tcp", "dst_ports": ["80-90"]}, rejects="neither a number nor a range",
         written={"action": "allow", "protocol": "tcp", "dst_ports": ["80:90"]}),
    Case("port-range-downwards", {"protocol": "tcp", "dst_ports": ["90:80"]}, rejects="must run upwards",
         written=Refused("Invalid ports")),
    Case("port-too-big", {"protocol": "tcp", "dst_ports": [65536]}, rejects="out of range",
         written=Refused("Invalid ports")),
    Case("port-negative", {"protocol": "tcp", "src_ports": [-1]}, rejects="out of range",
         written=Refused("Invalid ports")),
    Case("port-range-too-big", {"protocol": "tcp", "dst_ports": ["1:65536"]}, rejects="must run upwards",
         written=Refused("Invalid ports")),
    Case("port-true", {"protocol": "tcp", "dst_ports": [True]}, rejects="neither a number nor a range",
         written=Refused("Invalid ports")),
    Case("port-range-with-space", {"protocol": "tcp", "dst_ports": ["1: 2"]}, rejects="neither a number",
         written=Refused("Invalid ports")),
    Case("ports-not-a-list", {"protocol": "tcp", "dst_ports": "80"}, rejects="must be a list",
         written=Refused("must be a list")),
    Case("ports-without-protocol", {"dst_ports": [80]}, rejects="needs protocol", written=Refused("needs protocol")),
    Case("empty-ports-without-protocol", {"src_ports": []}, rejects="needs protocol",
         written=Refused("needs protocol")),
    Case("ports-with-icmp", {"protocol": "icmp", "dst_ports": [80]}, rejects="needs protocol",
         written=Refused("needs protocol")),
    Case("ports-with-protocol-47", {"protocol": 47, "dst_ports": [80]}, rejects="needs protocol",
         written=Refused("needs protocol")),
]

ACCEPTED = [case for case in CASES if case.accepted]
REJECTED = [case for case in CASES if not case.accepted]


def case_ids(cases):
    return [case.id for case in cases]


def stored_rules(profile, rule):
    """A profile's rules JSON as another tool writes it, with ``rule`` inbound."""
    return {"id": profile, "inbound_rules": [rule], "outbound_rules": [{"action": "allow"}]}
