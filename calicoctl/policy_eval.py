"""Pure: what the agents do to one packet, and why (``calicoctl policy explain``).

One evaluator returns the steps that decide a packet's fate; the verdict
is derived from those steps, so the explanation cannot drift from it, and
``policy matrix`` asks the same evaluator for every pair.

What the agents read comes from ``calicoctl.policy_view.ClusterPolicy``
(each host's agent's own index over etcd's leaves); only the walk below is
written here, following the chains of ``calicoctl.agent.policy.iptables.rules`` (its
docstring has the layout).

The walk, in the kernel's order
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A new connection from workload FROM to address TO:

- TO in FROM's own workload: the packet never leaves the namespace.
- TO one of FROM's host's addresses (recorded by ``calicoctl node``, or
  FROM's gateway): the host's INPUT path. The control-plane ports are
  dropped first; DHCP and DNS are accepted before any policy (so is IPv6
  neighbour discovery, which is never what is explained: a ping is an echo
  request); ``DefaultEndpointToHostAction`` DROP drops the rest,
  otherwise FROM's outbound policy decides, then ACCEPT accepts and RETURN
  leaves the packet to the host's own firewall.
- Anything else: the FORWARD path. The control-plane protection first (TCP
  to a protected port of a protected address), then FROM's outbound policy;
  then TO's inbound policy on TO's host if TO is a workload, else the
  packet leaves Calico's hands (another host's own firewall decides).

An endpoint's side: no chains at all (see above) drops; outbound, the
anti-spoofing match (source address and MAC) comes first; then each profile
in order: a rule of another IP family is skipped, one the kernel cannot
express drops everything at its place, the first rule that matches decides
(allow: this side accepts; deny: dropped), no match passes to the next
profile, and a profile without valid rules drops. Nothing accepted: dropped.

Replies to an allowed connection pass as established traffic; the other
direction is a connection of its own.

Ports the packet does not pin down
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A connection's source port is an ephemeral one the kernel picks
(``EPHEMERAL_PORTS``) unless given. A rule whose ports cover that whole
range, or none of it, is decided; one covering part of it is not:
``PortDecides`` says so (give the source port), rather than guess.
"""
import ipaddress
from dataclasses import dataclass
from typing import Optional

from calicoctl import policy_view, rulemodel, validate
from calicoctl.agent.policy.iptables import rules as agent_rules
from calicoctl.errors import ValidationError

EPHEMERAL_PORTS = (32768, 60999)
"""Linux's default ``net.ipv4.ip_local_port_range``: where a source port comes from."""
ALL_PORTS = (0, rulemodel.MAX_PORT)
ECHO_REQUEST = {4: 8, 6: 128}
ICMP_PROTOCOL = {4: 1, 6: 58}
TCP, UDP = 6, 17

# What a step did to the packet.
CONTINUE = "continue"     # on to the next check
ALLOW = "allow"           # this side (or Calico) accepts it
DENY = "deny"             # dropped: the last step

# Which part of the path a step belongs to.
OUTBOUND, INBOUND = "outbound", "inbound"
CONTROL_PLANE = "control plane"
HOST = "host"
NETWORK = "network"

# Step kinds (docs/policy-explain.md describes each).
SAME_WORKLOAD = "same workload"
NO_CHAINS = "no chains"
ANTI_SPOOFING = "anti-spoofing"
RULE = "rule"
UNEXPRESSIBLE = "unexpressible rule"
NO_MATCH = "no match"
NO_RULES = "no valid rules"
DEFAULT = "default"
PROTECTED = "protected"
BEFORE_POLICY = "accepted before policy"
HOST_ACTION = "host action"
LEAVES = "leaves calico"


class PortDecides(ValidationError):
    """The verdict depends on a port the packet does not pin down."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection (addresses in canonical form)."""
    version: int
    source: str
    destination: str
    protocol: int
    source_port: Optional[int] = None       # None: an ephemeral port
    destination_port: Optional[int] = None  # None: not given (protocols without ports)
    icmp_type: Optional[int] = None
    icmp_code: Optional[int] = None

    @classmethod
    def new(cls, source, destination, protocol, destination_port=None, source_port=None):
        """A packet from ``source`` to ``destination`` (addresses of one family);
        ``protocol`` is "icmp" (an echo request of the family) or a number."""
        src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
        if src.version != dst.version:
            raise ValidationError("%s and %s are not of the same IP version." % (source, destination))
        version = src.version
        if protocol == "icmp":
            return cls(version, src.compressed, dst.compressed, ICMP_PROTOCOL[version],
                       icmp_type=ECHO_REQUEST[version], icmp_code=0)
        return cls(version, src.compressed, dst.compressed, protocol, source_port, destination_port)

    def describe(self):
        """'tcp 192.168.0.1 -> 192.168.0.3 port 80' (for messages)."""
        name = agent_rules.PROTOCOL_NAMES.get(self.protocol, "protocol %d" % self.protocol)
        if self.icmp_type is not None:
            name = "ping (%s echo request)" % ("ICMP" if self.version == 4 else "ICMPv6")
        text = "%s %s -> %s" % (name, self.source, self.destination)
        if self.destination_port is not None:
            text += " port %d" % self.destination_port
        if self.source_port is not None:
            text += " from port %d" % self.source_port
        return text


@dataclass(frozen=True)
class Traffic:
    """What to send, whatever the addresses: ping ("icmp", the default) or
    a protocol number, with the destination port (port protocols only) and
    the source port (None: an ephemeral one)."""
    protocol: object = "icmp"
    port: Optional[int] = None
    source_port: Optional[int] = None

    @classmethod
    def parse(cls, protocol=None, port=None, source_port=None):
        """``--protocol`` (icmp or icmpv6: ping; tcp, udp, another name Felix
        knows, or a number 1-255), ``--port`` and ``--source-port`` texts."""
        number = "icmp"
        if protocol is not None:
            number = rulemodel.protocol_number(protocol.lower())
            if number is None:
                raise ValidationError("Invalid protocol %r: use icmp, tcp, udp or a protocol number 1-255."
                                      % protocol)
            if number in ICMP_PROTOCOL.values():
                number = "icmp"
        ports = [_parse_port(text, option) for text, option in ((port, "--port"), (source_port, "--source-port"))]
        if number not in rulemodel.PORT_PROTOCOL_NUMBERS:
            given = [option for text, option in ((port, "--port"), (source_port, "--source-port")) if text]
            if given:
                raise ValidationError("%s needs --protocol=tcp or udp (or another protocol with ports)."
                                      % given[0])
        elif ports[0] is None:
            raise ValidationError("--protocol=%s needs --port." % protocol)
        return cls(number, *ports)

    @property
    def probeable(self):
        return self.protocol in ("icmp", TCP, UDP)

    def packet(self, source, destination):
        return Packet.new(source, destination, self.protocol, self.port, self.source_port)

    def describe(self):
        """'ping', 'tcp port 80', 'protocol 47' (for headings)."""
        if self.protocol == "icmp":
            return "ping"
        text = agent_rules.PROTOCOL_NAMES.get(self.protocol, "protocol %d" % self.protocol)
        if self.port is not None:
            text += " port %d" % self.port
        if self.source_port is not None:
            text += " from port %d" % self.source_port
        return text

    def to_dict(self):
        return {"protocol": self.protocol if self.protocol == "icmp"
                else agent_rules.PROTOCOL_NAMES.get(self.protocol, self.protocol),
                "port": self.port, "source_port": self.source_port}


def _parse_port(text, option):
    if text is None:
        return None
    if not validate.DIGITS_RE.match(text) or not 1 <= int(text) <= rulemodel.MAX_PORT:
        raise ValidationError("Invalid %s %r: expected a port number from 1 to 65535." % (option, text))
    return int(text)


@dataclass(frozen=True)
class Step:
    """One check the packet met.

    :ivar side: OUTBOUND (FROM's policy), CONTROL_PLANE, HOST (FROM's own
        host), INBOUND (TO's policy) or NETWORK (nothing of Calico's).
    :ivar kind: what was checked (the constants above).
    :ivar effect: CONTINUE, ALLOW (this side accepts) or DENY (dropped).
    :ivar endpoint: the endpoint ID whose policy this is, if any.
    :ivar profile, position, rule: the profile, and the rule's 1-based
        position in its direction and its text as ``rule show`` writes it.
    """
    side: str
    kind: str
    effect: str
    text: str
    endpoint: Optional[str] = None
    profile: Optional[str] = None
    position: Optional[int] = None
    rule: Optional[str] = None


@dataclass(frozen=True)
class Explanation:
    packet: Packet
    steps: tuple

    @property
    def allowed(self):
        return not any(step.effect == DENY for step in self.steps)


# -- the walk --------------------------------------------------------------------------

def explain(cluster, source, packet, destination=None):
    """The Explanation of ``packet`` leaving workload endpoint ``source``
    (a model.Endpoint) for ``destination`` (the workload endpoint holding
    the destination address, or None for any other address)."""
    walk = _Walk(cluster, packet)
    if destination is not None and _same_workload(source, destination):
        walk.add(NETWORK, SAME_WORKLOAD, ALLOW,
                 "%s is an address of the same workload: the packet never leaves its network "
                 "namespace, no policy applies" % packet.destination)
    elif packet.destination in _own_host_addresses(cluster, source, packet.version):
        walk.to_own_host(source)
    else:
        walk.forward(source, destination)
    return Explanation(packet, tuple(walk.steps))


def _same_workload(source, destination):
    key, other = source.key, destination.key
    return (key.hostname, key.orchestrator_id, key.workload_id) == \
        (other.hostname, other.orchestrator_id, other.workload_id)


def _own_host_addresses(cluster, source, version):
    gateway = source.ipv4_gateway if version == 4 else source.ipv6_gateway
    found = cluster.addresses_of_host(source.key.hostname)
    if gateway:
        found.add(policy_view.canonical(gateway))
    return found


class _Walk:
    """One packet's way through the chains, recorded in ``steps``."""

    def __init__(self, cluster, packet):
        self.cluster = cluster
        self.packet = packet
        self.steps = []

    def add(self, *args, **kwargs):
        self.steps.append(Step(*args, **kwargs))

    def forward(self, source, destination):
        """The FORWARD path: through FROM's host, to a workload or away."""
        packet = self.packet
        if not self.protect(source.key.hostname, to_host=False) or not self.endpoint_side(source, OUTBOUND):
            return
        if destination is not None:
            self.endpoint_side(destination, INBOUND)
            return
        owner = self.cluster.host_addresses.get(packet.destination)
        where = ("host %s's address: Calico leaves it to that host's own firewall" % owner
                 if owner is not None else "not a workload's address: Calico lets it go")
        self.add(NETWORK, LEAVES, ALLOW, "%s is %s" % (packet.destination, where))

    # -- the control plane -----------------------------------------------------------
    def protect(self, hostname, to_host):
        """The control-plane protection of ``hostname``'s agent; False if it drops."""
        packet = self.packet
        control_plane = self.cluster.host(hostname).control_plane
        if packet.protocol != TCP or packet.destination_port not in control_plane.ports:
            return True
        port = packet.destination_port
        if to_host:
            self.add(CONTROL_PLANE, PROTECTED, DENY,
                     "TCP port %d is a control-plane port: workloads may not reach it on their own host"
                     % port)
            return False
        if packet.destination in control_plane.addresses(packet.version):
            self.add(CONTROL_PLANE, PROTECTED, DENY,
                     "TCP port %d of %s is part of the control plane (a Calico host, etcd endpoint or BGP "
                     "peer): dropped whatever the profiles say" % (port, packet.destination))
            return False
        self.add(CONTROL_PLANE, PROTECTED, CONTINUE,
                 "TCP port %d is a control-plane port, but %s is not a control-plane address: passes"
                 % (port, packet.destination))
        return True

    # -- traffic to the workload's own host ----------------------------------------------
    def to_own_host(self, source):
        packet = self.packet
        hostname = source.key.hostname
        if not self.protect(hostname, to_host=True):
            return
        for name, source_port, port in agent_rules.HOST_UDP_SERVICES[packet.version]:
            if (packet.protocol == UDP and packet.destination_port == port
                    and (source_port is None or packet.source_port == source_port)):
                self.add(HOST, BEFORE_POLICY, ALLOW,
                         "%s to the workload's own host is accepted before any policy" % name)
                return
        action = self.cluster.host(hostname).host_action
        if action == "DROP":
            self.add(HOST, HOST_ACTION, DENY,
                     "%s is host %s's address and its DefaultEndpointToHostAction is DROP: workloads may "
                     "not reach it" % (packet.destination, hostname))
            return
        if not self.endpoint_side(source, OUTBOUND):
            return
        if action == "ACCEPT":
            self.add(HOST, HOST_ACTION, ALLOW,
                     "DefaultEndpointToHostAction ACCEPT on host %s: accepted" % hostname)
        else:
            self.add(HOST, HOST_ACTION, ALLOW,
                     "DefaultEndpointToHostAction RETURN on host %s: Calico lets it through and the "
                     "host's own INPUT rules decide" % hostname)

    # -- one endpoint's chain ----------------------------------------------------------------
    def endpoint_side(self, endpoint, direction):
        """``endpoint``'s policy for the packet; False if it drops it."""
        packet = self.packet
        index = self.cluster.host(endpoint.key.hostname)
        endpoint_id = endpoint.endpoint_id
        reason = _unprogrammed(index, endpoint, packet.version)
        if reason is not None:
            self.add(direction, NO_CHAINS, DENY,
                     "endpoint %s gets no IPv%d chains on host %s (%s): all its IPv%d traffic is dropped"
                     % (endpoint_id, packet.version, endpoint.key.hostname, reason, packet.version),
                     endpoint=endpoint_id)
            return False
        if direction == OUTBOUND:
            mac = " and MAC %s" % endpoint.mac if endpoint.mac else ""
            self.add(direction, ANTI_SPOOFING, CONTINUE,
                     "source %s%s are endpoint %s's own: passes anti-spoofing"
                     % (packet.source, mac, endpoint_id), endpoint=endpoint_id)
        for profile in endpoint.profile_ids:
            effect = self.profile(index, endpoint_id, profile, direction)
            if effect == ALLOW:
                return True
            if effect == DENY:
                return False
        self.add(direction, DEFAULT, DENY,
                 "no profile of endpoint %s accepted it (%s): dropped by default"
                 % (endpoint_id, ", ".join(endpoint.profile_ids)), endpoint=endpoint_id)
        return False

    def profile(self, index, endpoint_id, profile, direction):
        packet = self.packet
        rules = index.profile_rules(profile)
        where = dict(endpoint=endpoint_id, profile=profile)
        if rules is None:
            self.add(direction, NO_RULES, DENY, "profile %s %s: the agent drops everything at it"
                     % (profile, self._why_no_rules(profile)), **where)
            return DENY
        for position, rule in enumerate(getattr(rules, direction + "_rules"), 1):
            if not agent_rules.applies_to_family(rule, packet.version):
                continue
            text = rule.describe()
            if rule.drop_reason is not None:
                self.add(direction, UNEXPRESSIBLE, DENY,
                         "profile %s %s rule %d \"%s\": %s, so the agent drops all IPv%d traffic there"
                         % (profile, direction, position, text, rule.drop_reason, packet.version),
                         position=position, rule=text, **where)
                return DENY
            if self.matches(rule, index, profile, direction, position):
                verdict = "allowed %s" % ("out" if direction == OUTBOUND else "in") \
                    if rule.action == "allow" else "denied"
                self.add(direction, RULE, ALLOW if rule.action == "allow" else DENY,
                         "profile %s %s rule %d \"%s\" matches: %s" % (profile, direction, position, text, verdict),
                         position=position, rule=text, **where)
                return ALLOW if rule.action == "allow" else DENY
        self.add(direction, NO_MATCH, CONTINUE, "profile %s: no %s rule matches: on to the next profile"
                 % (profile, direction), **where)
        return CONTINUE

    def _why_no_rules(self, profile):
        stored = self.cluster.stored_rules.get(profile)
        if profile not in self.cluster.profiles:
            return "does not exist"
        if stored is None or stored.text is None:
            return "has no rules"
        return "has rules Felix rejects (%s)" % "; ".join(stored.problems)

    # -- matching one rule -------------------------------------------------------------------
    def matches(self, rule, index, profile, direction, position):
        """Whether ``rule`` matches the packet (its family is checked already).

        Ports come last: a rule another field rules out is decided whatever
        the port; PortDecides when only an unknown port could tell."""
        packet = self.packet
        if rule.protocol is not None and rule.protocol_number != packet.protocol:
            return False
        for net, address in ((rule.src_net, packet.source), (rule.dst_net, packet.destination)):
            if net is not None and ipaddress.ip_address(address) not in ipaddress.ip_network(net, strict=False):
                return False
        for tag, address in ((rule.src_tag, packet.source), (rule.dst_tag, packet.destination)):
            if tag is not None and not index.tag_has(tag, packet.version, address):
                return False
        if rule.icmp_type is not None:
            if packet.icmp_type != rule.icmp_type:
                return False
            if rule.icmp_code is not None and packet.icmp_code != rule.icmp_code:
                return False
        where = "profile %s %s rule %d \"%s\"" % (profile, direction, position, rule.describe())
        return (_ports_match(rule.src_ports, packet.source_port, EPHEMERAL_PORTS, "source", where)
                and _ports_match(rule.dst_ports, packet.destination_port, ALL_PORTS, "destination", where))


def _ports_match(items, port, unknown_range, which, where):
    """Whether a port list (ints and "lo:hi"; empty or None: any) holds ``port``;
    an unknown port (None) is any of ``unknown_range``."""
    if not items:
        return True
    ranges = [(item, item) if isinstance(item, int) else tuple(int(p) for p in item.split(":"))
              for item in items]
    if port is not None:
        return any(low <= port <= high for low, high in ranges)
    first, last = unknown_range
    covered = sum(max(0, min(high, last) - max(low, first) + 1) for low, high in _merged(ranges))
    if covered == 0:
        return False
    if covered == last - first + 1:
        return True
    hint = "--source-port" if which == "source" else "--port"
    raise PortDecides("Whether %s matches depends on the %s port, which the packet does not pin down "
                      "(%d-%d); give %s." % (where, which, first, last, hint))


def _merged(ranges):
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _unprogrammed(index, endpoint, version):
    """Why ``index``'s agent gives ``endpoint`` no chains of ``version``, or None."""
    if endpoint.state != "active":
        return "it is inactive"
    if not endpoint.profile_ids:
        return "it has no profiles"
    if agent_rules.validate_interface_name(endpoint.name, index.interface_prefix) is None:
        return "its interface name %s does not fit the interface prefix %s" % (endpoint.name,
                                                                               index.interface_prefix)
    entry = index.local.get(endpoint.name)
    if entry is None or entry[0] != policy_view.endpoint_path(endpoint):
        owner = entry[1].endpoint_id if entry is not None else "another endpoint"
        return "its interface %s belongs to endpoint %s" % (endpoint.name, owner)
    if not endpoint.addresses(version):
        return "it has no IPv%d address" % version
    return None
