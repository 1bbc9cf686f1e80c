"""Typed models of what Calico keeps in etcd.

Plain data with validation and a JSON round trip that reads and writes the
original's JSON (docs/etcd-layout.md). No I/O here: the datastore client moves
these to and from etcd, the agent and the CLI consume them.

``from_json`` raises ValidationError for anything malformed, so the CLI can
refuse bad input and the agent can treat bad data as absent.
"""
import json
import re
from dataclasses import dataclass
from typing import Optional

from calicoctl.errors import ValidationError
from calicoctl import validate
# Profile rules have their own module (what Felix accepts when reading them,
# what calicoctl writes); they are models of etcd data like the rest.
from calicoctl.rulemodel import Rule, Rules, StoredRule, StoredRules  # noqa: F401

ENDPOINT_STATES = ("active", "inactive")
VXLAN_OVERHEAD = 50   # VXLAN over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
IPIP_OVERHEAD = 20    # IP-in-IP: the outer IPv4 header


def _load_json(text, what):
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Invalid JSON for %s: %s" % (what, exc)) from None


def parse_tags_json(text):
    data = _load_json(text, "tags")
    if not isinstance(data, list):
        raise ValidationError("Invalid tags: expected a JSON list.")
    tags = []
    for tag in data:
        validate.parse_name(tag, "tag")
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def render_tags_json(tags):
    return json.dumps(list(tags))


@dataclass(frozen=True)
class Profile:
    name: str
    tags: tuple = ()
    rules: Optional[Rules] = None

    @classmethod
    def new(cls, name):
        validate.parse_name(name, "profile name")
        return cls(name=name, tags=(name,), rules=Rules.default_for(name))


@dataclass(frozen=True)
class EndpointKey:
    """Where an endpoint lives: /calico/v1/host/<h>/workload/<o>/<w>/endpoint/<e>."""
    hostname: str
    orchestrator_id: str
    workload_id: str
    endpoint_id: str


@dataclass(frozen=True)
class Endpoint:
    key: EndpointKey
    name: str
    mac: Optional[str] = None
    state: str = "active"
    profile_ids: tuple = ()
    ipv4_nets: tuple = ()
    ipv6_nets: tuple = ()
    ipv4_gateway: Optional[str] = None
    ipv6_gateway: Optional[str] = None
    container_interface: Optional[str] = None
    """The interface's name inside the container (extension; None in
    endpoints written before it was recorded, or by other tools)."""

    @property
    def endpoint_id(self):
        return self.key.endpoint_id

    @classmethod
    def from_json(cls, key, text):
        data = _endpoint_dict(text)
        validate.parse_name(key.endpoint_id, "endpoint ID")
        state = _endpoint_state(data)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError("Invalid endpoint: missing interface name.")
        mac = data.get("mac")
        if mac is not None:
            mac = _parse_mac(mac)
        gateways = {}
        for version in (4, 6):
            key_name = "ipv%d_gateway" % version
            value = data.get(key_name)
            if value not in (None, ""):
                value = _canonical_ip(value, version, "gateway")
            else:
                value = None
            gateways[key_name] = value
        inside = data.get("container_interface")
        if inside is not None and (not isinstance(inside, str) or not 0 < len(inside) <= 15
                                   or "/" in inside):
            raise ValidationError("Invalid endpoint: bad container_interface %r." % (inside,))
        return cls(key=key, name=name, mac=mac, state=state, profile_ids=_endpoint_profiles(data),
                   ipv4_nets=_endpoint_nets(data, 4), ipv6_nets=_endpoint_nets(data, 6),
                   container_interface=inside, **gateways)

    def to_dict(self):
        data = {"state": self.state, "name": self.name, "mac": self.mac,
                "profile_ids": list(self.profile_ids),
                "ipv4_nets": list(self.ipv4_nets), "ipv6_nets": list(self.ipv6_nets),
                "ipv4_gateway": self.ipv4_gateway, "ipv6_gateway": self.ipv6_gateway}
        if self.container_interface is not None:
            data["container_interface"] = self.container_interface
        return data

    def to_json(self):
        return json.dumps(self.to_dict())

    def nets(self, version):
        return self.ipv4_nets if version == 4 else self.ipv6_nets

    def addresses(self, version=None):
        """Bare IP strings of this endpoint (prefix stripped)."""
        versions = (4, 6) if version is None else (version,)
        return [net.split("/")[0] for v in versions for net in self.nets(v)]


@dataclass(frozen=True)
class EndpointAddresses:
    """What another host's endpoint means to this host's agent: its state,
    profiles and addresses (tags match addresses; tunnels route networks).

    Read with the same checks as ``Endpoint`` for those fields, and none for
    the rest (interface name, MAC, gateways): those matter only to the
    endpoint's own host, which ignores the endpoint if they are bad.
    """
    state: str = "active"
    profile_ids: tuple = ()
    ipv4_nets: tuple = ()
    ipv6_nets: tuple = ()

    @classmethod
    def from_json(cls, text):
        data = _endpoint_dict(text)
        return cls(state=_endpoint_state(data), profile_ids=_endpoint_profiles(data),
                   ipv4_nets=_endpoint_nets(data, 4), ipv6_nets=_endpoint_nets(data, 6))

    def nets(self, version):
        return self.ipv4_nets if version == 4 else self.ipv6_nets

    def addresses(self, version=None):
        """Bare IP strings (prefix stripped), as ``Endpoint.addresses``."""
        versions = (4, 6) if version is None else (version,)
        return [net.split("/")[0] for v in versions for net in self.nets(v)]


def _endpoint_dict(text):
    data = _load_json(text, "endpoint")
    if not isinstance(data, dict):
        raise ValidationError("Invalid endpoint: expected a JSON object.")
    return data


def _endpoint_state(data):
    state = data.get("state", "active")
    if state not in ENDPOINT_STATES:
        raise ValidationError("Invalid endpoint state %r." % (state,))
    return state


def _endpoint_profiles(data):
    profile_ids = data.get("profile_ids")
    if profile_ids is None and "profile_id" in data:   # legacy single-profile form
        profile_ids = [data["profile_id"]] if data["profile_id"] else []
    if profile_ids is None:
        profile_ids = []
    if not isinstance(profile_ids, list):
        raise ValidationError("Invalid endpoint: profile_ids must be a list.")
    for profile in profile_ids:
        validate.parse_name(profile, "profile name")
    return tuple(profile_ids)


# An IPv4 address written the way netaddr prints it (no leading zeros): the
# common case, taken as it is without a parse (agents read every endpoint).
_IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(_IPV4 + r"\Z")
_CANONICAL_IPV4_HOST = re.compile(_IPV4 + r"/32\Z")
_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}\Z")


def _endpoint_nets(data, version):
    key_name = "ipv%d_nets" % version
    value = data.get(key_name) or []
    if not isinstance(value, list):
        raise ValidationError("Invalid endpoint: %s must be a list." % key_name)
    parsed = []
    for net in value:
        if version == 4 and isinstance(net, str) and _CANONICAL_IPV4_HOST.match(net):
            parsed.append(net)
            continue
        cidr = validate.parse_cidr(net)
        if cidr.version != version:
            raise ValidationError("Invalid endpoint: %s in %s." % (net, key_name))
        parsed.append(str(cidr))
    return tuple(parsed)


def _canonical_ip(value, version, what):
    if version == 4 and isinstance(value, str) and _CANONICAL_IPV4.match(value):
        return value
    return str(validate.parse_ip(value, version, what))


@dataclass(frozen=True)
class Workload:
    """A workload directory on one host: its endpoints and (our extension) its name."""
    hostname: str
    orchestrator_id: str
    workload_id: str
    name: Optional[str] = None
    endpoints: tuple = ()


def _parse_mac(value):
    if isinstance(value, str) and _CANONICAL_MAC.match(value):
        return value
    import netaddr
    try:
        mac = netaddr.EUI(value, dialect=netaddr.mac_unix_expanded)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise ValidationError("Invalid MAC address %r." % (value,)) from None
    if mac.version != 48:
        raise ValidationError("Invalid MAC address %r." % (value,))
    return str(mac).lower()


@dataclass(frozen=True)
class IPPool:
    """An address pool. ``cidr`` is normalised (host bits cleared)."""
    cidr: str
    ipip: Optional[str] = None        # interface name ("tunl0") when IP-in-IP is on
    masquerade: bool = False          # --nat-outgoing
    vxlan: bool = False               # our extension: encapsulate between hosts with VXLAN

    @property
    def version(self):
        return 6 if ":" in self.cidr else 4

    @property
    def encapsulation_overhead(self):
        """Bytes its encapsulation between hosts adds to a packet (0: routed as it is)."""
        if self.vxlan:
            return VXLAN_OVERHEAD
        return IPIP_OVERHEAD if self.ipip else 0

    @classmethod
    def from_json(cls, text):
        data = _load_json(text, "pool")
        if not isinstance(data, dict) or "cidr" not in data:
            raise ValidationError("Invalid pool: expected an object with a cidr.")
        cidr = str(validate.parse_cidr(data["cidr"]))
        ipip = data.get("ipip") or None
        return cls(cidr=cidr, ipip=ipip, masquerade=bool(data.get("masquerade", False)),
                   vxlan=bool(data.get("vxlan", False)))

    def to_dict(self):
        data = {"cidr": self.cidr}
        if self.ipip:
            data["ipip"] = self.ipip
        if self.masquerade:
            data["masquerade"] = True
        if self.vxlan:
            data["vxlan"] = True
        return data

    def to_json(self):
        return json.dumps(self.to_dict())

    def options(self):
        """Option words for ``pool show``."""
        words = []
        if self.ipip:
            words.append("ipip")
        if self.vxlan:
            words.append("vxlan")
        if self.masquerade:
            words.append("nat-outgoing")
        return words


@dataclass(frozen=True)
class DockerNetwork:
    """Our extension: a Docker network of the calico driver on one host, at
    /calico/v1/host/<h>/docker/network/<network ID>.

    ``name`` is the network's (and its profile's) name, None until Docker
    has told us; ``created_profile`` says the driver created that profile
    (only then may removing the network remove it).
    """
    network_id: str
    name: Optional[str] = None
    created_profile: bool = False

    @classmethod
    def from_json(cls, network_id, text):
        data = _load_json(text, "Docker network")
        if not isinstance(data, dict):
            raise ValidationError("Invalid Docker network: expected a JSON object.")
        name = data.get("name")
        if name is not None:
            validate.parse_name(name, "network name")
        return cls(network_id=validate.parse_name(network_id, "network ID"), name=name,
                   created_profile=data.get("created_profile") is True)

    def to_json(self):
        return json.dumps({"name": self.name, "created_profile": self.created_profile})


@dataclass(frozen=True)
class BGPPeer:
    ip: str
    as_num: int

    @property
    def version(self):
        return 6 if ":" in self.ip else 4

    @classmethod
    def from_json(cls, text):
        data = _load_json(text, "BGP peer")
        if not isinstance(data, dict):
            raise ValidationError("Invalid BGP peer: expected a JSON object.")
        ip = str(validate.parse_ip(data.get("ip")))
        return cls(ip=ip, as_num=validate.parse_as_number(data.get("as_num")))

    def to_json(self):
        return json.dumps({"ip": self.ip, "as_num": self.as_num})


def _lenient(parse, value, *args):
    """``parse(value, *args)`` as a string, or None when absent or invalid."""
    if value in (None, ""):
        return None
    try:
        return parse(str(value).strip(), *args)
    except ValidationError:
        return None


@dataclass(frozen=True)
class BgpHost:
    """One host's BGP record: the leaves under /calico/bgp/v1/host/<h>.

    Read leniently (``from_fields``): an absent or unreadable field is None,
    as the agent must treat bad data. ``rr_cluster_id`` makes the host a
    route reflector (docs/decisions.md, "Route reflectors").
    """
    hostname: str
    ipv4: Optional[str] = None
    ipv6: Optional[str] = None
    as_num: Optional[int] = None
    rr_cluster_id: Optional[str] = None

    @property
    def is_reflector(self):
        return self.rr_cluster_id is not None

    def ip(self, version):
        return self.ipv4 if version == 4 else self.ipv6

    @classmethod
    def from_fields(cls, hostname, fields):
        """``fields``: leaf name (``ip_addr_v4``, ``as_num``...) -> stored text."""
        def address(version):
            ip = _lenient(validate.parse_ip, fields.get("ip_addr_v%d" % version), version)
            return str(ip) if ip is not None else None
        return cls(hostname=hostname, ipv4=address(4), ipv6=address(6),
                   as_num=_lenient(validate.parse_as_number, fields.get("as_num")),
                   rr_cluster_id=_lenient(validate.parse_cluster_id, fields.get("rr_cluster_id")))


@dataclass(frozen=True)
class VxlanTunnel:
    """Our extension: a host's VXLAN tunnel endpoint, at /calico/v1/host/<h>/vxlan.

    ``ip`` is the host's own IPv4 address: the outer source of its packets
    and the (onlink) next hop other hosts route its workloads through.
    ``mac`` is the MAC of its VXLAN device, ``vni`` the VXLAN network ID.
    """
    ip: str
    mac: str
    vni: int

    @classmethod
    def from_json(cls, text):
        data = _load_json(text, "VXLAN tunnel")
        if not isinstance(data, dict):
            raise ValidationError("Invalid VXLAN tunnel: expected a JSON object.")
        vni = data.get("vni")
        if isinstance(vni, bool) or not isinstance(vni, int) or not 0 < vni < 2 ** 24:
            raise ValidationError("Invalid VXLAN tunnel: vni must be an integer 1-16777215.")
        return cls(ip=str(validate.parse_ip(data.get("ip"), 4)), mac=_parse_mac(data.get("mac")), vni=vni)

    def to_json(self):
        return json.dumps({"ip": self.ip, "mac": self.mac, "vni": self.vni})


# -- the interface prefix ---------------------------------------------------------
# Which host interfaces are workloads': the agent's policy (both dataplanes)
# and routes, BIRD's export filter and every veth namer (container add, the
# Docker and CNI plugins) decide it here, from ``InterfacePrefix`` (a host's
# own value over the global one: ``paths.config_value``).

DEFAULT_INTERFACE_PREFIX = "cali"
IFNAMSIZ = 15
"""The kernel's limit on an interface name."""
MIN_ID_CHARS = 3
"""Characters of an endpoint ID that a workload interface name keeps at least."""


def parse_interface_prefix(value):
    """The prefix ``value`` (the InterfacePrefix setting) makes: the default
    when unset or empty; raises ValidationError unless 1-12 ASCII letters,
    digits, '_', '.' or '-' (a longer one leaves no room for the ID)."""
    if value in (None, ""):
        return DEFAULT_INTERFACE_PREFIX
    if not isinstance(value, str) or not value.isascii() or len(value) > IFNAMSIZ - MIN_ID_CHARS \
            or not all(c.isalnum() or c in "_.-" for c in value):
        raise ValidationError("Invalid InterfacePrefix %r: use 1-%d of letters, digits, '_', '.' and '-'."
                              % (value, IFNAMSIZ - MIN_ID_CHARS))
    return value


def interface_prefix(value):
    """``parse_interface_prefix``, with the default in place of an invalid value."""
    try:
        return parse_interface_prefix(value)
    except ValidationError:
        return DEFAULT_INTERFACE_PREFIX


CONTROL_PLANE_DEFAULT_PORTS = (2379, 2380, 179)
"""etcd's client and peer ports and BGP's, closed to workloads unless set otherwise."""
CONTROL_PLANE_FIELDS = ("enabled", "ports")


@dataclass(frozen=True)
class ControlPlaneProtection:
    """Our extension: which TCP ports of the control plane workloads may not reach.

    Stored as ``{"enabled": true, "ports": [2379, 2380, 179]}``; an absent
    key means these defaults. The agent protects these ports plus those of
    its own etcd endpoints, on every Calico host's address and on the etcd
    endpoints' addresses, while ``enabled``.
    """
    enabled: bool = True
    ports: tuple = CONTROL_PLANE_DEFAULT_PORTS

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValidationError("Invalid control-plane protection: enabled must be true or false.")
        if not isinstance(self.ports, tuple) or not self.ports:
            raise ValidationError("Invalid control-plane ports: give at least one port "
                                  "(to open them all, switch the protection off).")
        seen = set()
        for port in self.ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValidationError("Invalid control-plane port %r: expected a number from 1 to 65535."
                                      % (port,))
            if port in seen:
                raise ValidationError("Control-plane port %d is given twice." % port)
            seen.add(port)

    @property
    def is_default(self):
        return self == ControlPlaneProtection()

    @classmethod
    def parse_ports(cls, text):
        """'2379,2380,179' -> (2379, 2380, 179), in the order given."""
        if not isinstance(text, str) or not text.strip(","):
            raise ValidationError("Invalid control-plane ports %r: expected a comma-separated list "
                                  "of port numbers, e.g. 2379,2380,179." % (text,))
        ports = []
        for part in text.split(","):
            if not validate.DIGITS_RE.match(part):
                where = " in %r" % text if part != text else ""
                raise ValidationError("Invalid control-plane port %r%s: expected a number from 1 "
                                      "to 65535." % (part, where))
            ports.append(int(part, 10))
        return tuple(ports)

    @classmethod
    def from_stored(cls, text):
        """What etcd's value means: (setting, problem). Unset gives the defaults;
        so does a value that does not parse, with ``problem`` saying why: bad
        data must never open the control plane."""
        if text is None:
            return cls(), None
        try:
            return cls.from_json(text), None
        except ValidationError as exc:
            return cls(), str(exc)

    @classmethod
    def from_json(cls, text):
        data = _load_json(text, "control-plane protection")
        if not isinstance(data, dict):
            raise ValidationError("Invalid control-plane protection: expected a JSON object.")
        unknown = set(data) - set(CONTROL_PLANE_FIELDS)
        if unknown:
            raise ValidationError("Invalid control-plane protection: unknown field(s) %s."
                                  % ", ".join(sorted(unknown)))
        ports = data.get("ports", list(CONTROL_PLANE_DEFAULT_PORTS))
        if not isinstance(ports, list):
            raise ValidationError("Invalid control-plane protection: ports must be a list.")
        return cls(enabled=data.get("enabled", True), ports=tuple(ports))

    def to_json(self):
        return json.dumps({"enabled": self.enabled, "ports": list(self.ports)})
