"""A host's BIRD 2 configuration, computed from etcd (pure).

``calculate_bird_inputs`` reads the etcd leaves this host cares about (the
``/calico/bgp/v1`` tree, the IP pools, the interface prefix) into a
``BirdInputs``; ``render_bird_config`` turns that into BIRD 2's config text.
Same inputs, same text, so "did anything change?" is a string comparison.
``calicoctl.agent.bgp.bird`` runs BIRD with it.

What the configuration does (the original's confd templates in BIRD 2
terms, docs/decisions.md "BGP"; one daemon serves IPv4 and IPv6):

- ``kernel`` protocols ``learn`` the device routes the agent installs for
  local workloads (``<ip> dev cali...``) and install the routes learned
  from BGP peers. Routes inside pools whose traffic the agent tunnels itself
  (VXLAN pools, and IPIP pools where the kernel has IPIP) are never
  installed from BGP: the tunnel components own those.
- ``direct`` gives BIRD the host's connected networks (not the workload
  veths), which is what resolves a peer's next hop on the shared LAN.
- Peers between calico hosts (``calculate_topology_peers``): with
  ``node_mesh`` on, every other host's ``ip_addr_v4``/``_v6`` (the mesh;
  route reflector cluster IDs are then ignored). With it off, the route
  reflectors (hosts with an ``rr_cluster_id``): a reflector peers with every
  other reflector and treats every other host as its client (``rr client;
  rr cluster id X;``); any other host peers with the reflectors only.
  Then the global peers and this node's own peers. Sessions are named
  ``Mesh_``/``Reflector_``/``Client_``/``Global_``/``Node_`` + the address
  with ``.``/``:`` as ``_`` -- the names ``calicoctl status`` reads (a
  ``Reflector_`` session is one with a reflector, a ``Client_`` one with
  this reflector's client). A peer address listed more than once gets one
  session: node peers win over global ones, global over the hosts' own.
  IPv6 sessions exist only when this host has an IPv6 address.
- To peers we export only local workload routes (learned on a device
  named with the host's interface prefix, ``cali*`` by default) and
  routes learned by BGP, and only inside the pools. Routes the tunnel
  components install (on their own devices) are never re-exported:
  on another host they would shadow that host's own workload routes.
- ``next hop self`` with the session's local address: peers forward to the
  host that owns the workload. Every session is ``multihop`` with recursive
  next hops, so a peer off the LAN (a route reflector, a ToR) works too. A
  reflector passes the routes it reflects on with their next hop unchanged
  (``next hop self ebgp``: only routes from another AS get its own), so
  traffic goes straight to the owner, never through the reflector.
"""
import ipaddress
import json
from dataclasses import dataclass
from typing import Optional, Tuple

from calicoctl import model, validate
from calicoctl.agent.keys import Kind, as_key
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError
from calicoctl.host import bird as bird_host

DEFAULT_AS = 64511
# Devices whose addresses/routes BIRD must not treat as the host's networks.
TUNNEL_DEVICES = ("vxlan.calico", "tunl0")

# Precedence when one address is listed twice; the last three never meet.
PEER_KINDS = bird_host.SESSION_KINDS

# The kinds of keys a BIRD config depends on (of the config, only the
# interface prefix); everything else in the stream is ignored.
KINDS = frozenset((Kind.HOST_ADDRESS, Kind.BGP_PEER, Kind.BGP_GLOBAL, Kind.POOL, Kind.CONFIG))


# -- pure: inputs ----------------------------------------------------------------

@dataclass(frozen=True)
class BgpPeerSpec:
    """One BGP session to render.

    :ivar rr_cluster_id: set when this host reflects routes over the session
        (it is a reflector and the peer in its own AS): its cluster ID.
    """
    kind: str           # one of PEER_KINDS
    ip: str
    as_num: int
    rr_cluster_id: Optional[str] = None

    @property
    def version(self):
        return 6 if ":" in self.ip else 4

    @property
    def rr_client(self):
        """The peer is this reflector's client (``rr client``)."""
        return self.kind == "Client" and self.rr_cluster_id is not None

    @property
    def protocol_name(self):
        return bird_host.session_name(self.kind, self.ip)


@dataclass(frozen=True)
class BirdInputs:
    """Everything the BIRD config of one host depends on."""
    hostname: str
    router_id: str                       # the host's IPv4 address
    ipv6: Optional[str]
    local_as: int
    peers: Tuple[BgpPeerSpec, ...]
    pools_v4: Tuple[str, ...]            # CIDRs exported to peers
    pools_v6: Tuple[str, ...]
    tunnelled_v4: Tuple[str, ...] = ()   # pool CIDRs BGP must not install into the kernel
    tunnelled_v6: Tuple[str, ...] = ()
    interface_prefix: str = model.DEFAULT_INTERFACE_PREFIX


def is_relevant_key(key, hostname):
    """True if a change to ``key`` (a path or keys.Key) can change the
    BIRD config of ``hostname`` (pure)."""
    key = as_key(key)
    if key.kind is Kind.CONFIG:
        return key.parts[1] == "InterfacePrefix" and key.parts[0] in (None, hostname)
    return key.kind in KINDS


def _parse_as(value):
    if value in (None, ""):
        return None
    try:
        return validate.parse_as_number(str(value).strip())
    except ValidationError:
        return None


def _parse_mesh(value):
    """node_mesh JSON -> bool; absent or unreadable means on (as calicoctl shows it)."""
    if not value:
        return True
    try:
        data = json.loads(value)
        return bool(data.get("enabled", True)) if isinstance(data, dict) else True
    except ValueError:
        return True


def parse_pools(items):
    """The valid IP pools among ``items`` (key -> value), sorted by CIDR (pure)."""
    pools = []
    for key, value in items.items():
        if value is None or paths.parse_pool_key(key) is None:
            continue
        try:
            pools.append(model.IPPool.from_json(value))
        except ValidationError:
            continue
    return sorted(pools, key=lambda pool: (pool.version, pool.cidr))


def calculate_topology_peers(own, hosts, node_mesh, default_as):
    """The sessions host ``own`` has with the other calico hosts (pure).

    :param own: this host's model.BgpHost.
    :param hosts: every host's model.BgpHost (``own`` among them or not).
    :param node_mesh: the node-to-node mesh is on.
    :return: [BgpPeerSpec] in the order of ``hosts``, IPv4 before IPv6 per host.

    Mesh on: every other host (kind Mesh), reflectors or not. Mesh off: a
    reflector has every other reflector (Reflector) and every other host
    (Client); any other host has the reflectors (Reflector), and no session
    at all while there is none. Reflection is iBGP: with a host of another
    AS a reflector has a plain session (no cluster ID, no ``rr client``).
    """
    local_as = own.as_num or default_as
    specs = []
    for other in hosts:
        if other.hostname == own.hostname:
            continue
        if node_mesh:
            kind = "Mesh"
        elif other.is_reflector:
            kind = "Reflector"
        elif own.is_reflector:
            kind = "Client"
        else:
            continue
        as_num = other.as_num or default_as
        cluster_id = own.rr_cluster_id if kind != "Mesh" and as_num == local_as else None
        for version in (4, 6):
            ip = other.ip(version)
            if ip and ip != own.ip(version):
                specs.append(BgpPeerSpec(kind=kind, ip=ip, as_num=as_num, rr_cluster_id=cluster_id))
    return specs


def calculate_bird_inputs(items, hostname, ipip_tunnelled=False):
    """Read BirdInputs for ``hostname`` out of etcd leaves (pure).

    :param items: key -> value of (at least) every relevant leaf.
    :param ipip_tunnelled: True when the agent routes IPIP pools over tunl0
        itself (the kernel has IPIP); otherwise BGP installs their routes
        like any other pool's.
    :return: BirdInputs, or None while this host has no IPv4 address recorded.
    """
    hosts = {}
    global_peers, node_peers = [], []
    for key, value in items.items():
        if value is None:
            continue
        host_field = paths.parse_bgp_host_key(key)
        if host_field:
            hosts.setdefault(host_field[0], {})[host_field[1]] = value
            continue
        peer_key = paths.parse_bgp_peer_key(key)
        if peer_key:
            peer_host, version, _ = peer_key
            try:
                peer = model.BGPPeer.from_json(value)
            except ValidationError:
                continue
            if peer.version != version:
                continue
            if peer_host is None:
                global_peers.append(peer)
            elif peer_host == hostname:
                node_peers.append(peer)

    own = model.BgpHost.from_fields(hostname, hosts.get(hostname, {}))
    router_id, own_v6 = own.ipv4, own.ipv6
    if router_id is None:
        return None
    default_as = _parse_as(items.get(paths.BGP_GLOBAL_AS)) or DEFAULT_AS
    local_as = own.as_num or default_as

    specs = {}    # ip -> BgpPeerSpec, first kind in PEER_KINDS order wins

    def offer(spec):
        current = specs.get(spec.ip)
        if current is None or PEER_KINDS.index(spec.kind) < PEER_KINDS.index(current.kind):
            specs[spec.ip] = spec

    all_hosts = [model.BgpHost.from_fields(name, fields) for name, fields in hosts.items()]
    for spec in calculate_topology_peers(own, all_hosts, _parse_mesh(items.get(paths.BGP_NODE_MESH)),
                                         default_as):
        offer(spec)
    for peer in global_peers:
        offer(BgpPeerSpec(kind="Global", ip=peer.ip, as_num=peer.as_num))
    for peer in node_peers:
        offer(BgpPeerSpec(kind="Node", ip=peer.ip, as_num=peer.as_num))

    # No IPv6 address here: no IPv6 session can have a source address.
    peers = [spec for spec in specs.values() if spec.version == 4 or own_v6]
    peers.sort(key=lambda spec: (spec.version, PEER_KINDS.index(spec.kind), _ip_sort_key(spec.ip)))

    pools = parse_pools(items)
    prefix = model.interface_prefix(paths.config_value(items.get, hostname, "InterfacePrefix"))

    def tunnelled(pool):
        return pool.vxlan or (ipip_tunnelled and bool(pool.ipip))

    return BirdInputs(
        hostname=hostname, router_id=router_id, ipv6=own_v6, local_as=local_as,
        peers=tuple(peers),
        pools_v4=tuple(p.cidr for p in pools if p.version == 4),
        pools_v6=tuple(p.cidr for p in pools if p.version == 6),
        tunnelled_v4=tuple(p.cidr for p in pools if p.version == 4 and tunnelled(p)),
        tunnelled_v6=tuple(p.cidr for p in pools if p.version == 6 and tunnelled(p)),
        interface_prefix=prefix)


def _ip_sort_key(ip):
    return ipaddress.ip_address(ip)


# -- pure: rendering --------------------------------------------------------------

# BGP timers: short, so that a new host or a restarted BIRD is routed within
# seconds (defaults are minutes); the hold time still rides out a busy host.
BGP_TIMERS = ("connect delay time 1;", "connect retry time 2;", "error wait time 1, 10;",
              "error forget time 30;", "hold time 30;", "keepalive time 5;")


def _prefix_set(cidrs):
    return "[ %s ]" % ", ".join("%s+" % cidr for cidr in cidrs)


def render_bird_config(inputs):
    """The complete BIRD 2 configuration text for ``inputs`` (pure)."""
    lines = [
        "# BIRD 2 configuration for host %s, written by calico-agent from etcd." % inputs.hostname,
        "# Rewritten on every relevant change; edits here are lost.",
        "",
        "router id %s;" % inputs.router_id,
        "log stderr all;",
        "",
    ]
    for version in (4, 6):
        lines += _render_filters(inputs, version)
    lines += [
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# The host's connected networks resolve peers' next hops; workload",
        "# veths and tunnel devices are not networks of the host.",
        "protocol direct {",
        "  ipv4;",
        "  ipv6;",
        "  interface %s, \"*\";" % ", ".join(
            '-"%s"' % name for name in ("%s*" % inputs.interface_prefix,) + TUNNEL_DEVICES),
        "}",
        "",
    ]
    for version in (4, 6):
        lines += [
            "# Learns the workload routes the agent installs; installs BGP routes.",
            "protocol kernel kernel_v%d {" % version,
            "  ipv%d {" % version,
            "    import all;",
            "    export filter calico_kernel_v%d;" % version,
            "  };",
            "  learn;",
            "  scan time 1;",
            "}",
            "",
        ]
    peers_by_version = {4: [], 6: []}
    for spec in inputs.peers:
        peers_by_version[spec.version].append(spec)
    for version, local_ip in ((4, inputs.router_id), (6, inputs.ipv6)):
        if local_ip is None:
            lines += ["# No IPv%d address on this host: no IPv%d sessions." % (version, version), ""]
            continue
        lines += [
            "template bgp calico_v%d {" % version,
            "  local %s as %d;" % (local_ip, inputs.local_as),
            "  multihop;",
        ] + ["  %s" % timer for timer in BGP_TIMERS] + [
            "  ipv%d {" % version,
            "    import all;",
            "    export filter calico_bgp_v%d;" % version,
            "    next hop self;",
            "    gateway recursive;",
            "  };",
            "}",
            "",
        ]
        if not any(spec.kind == "Mesh" for spec in peers_by_version[version]):
            lines += ["# No node-to-node mesh sessions over IPv%d." % version, ""]
        for spec in peers_by_version[version]:
            lines += _render_peer(spec)
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_peer(spec):
    lines = ["protocol bgp %s from calico_v%d {" % (spec.protocol_name, spec.version),
             "  neighbor %s as %d;" % (spec.ip, spec.as_num)]
    if spec.rr_client:
        lines.append("  rr client;")
    if spec.rr_cluster_id is not None:
        lines += [
            "  rr cluster id %s;" % spec.rr_cluster_id,
            "  # Reflected routes keep the next hop of the host that owns them.",
            "  ipv%d {" % spec.version,
            "    next hop self ebgp;",
            "  };",
        ]
    return lines + ["}", ""]


def _render_filters(inputs, version):
    pools = inputs.pools_v4 if version == 4 else inputs.pools_v6
    tunnelled = inputs.tunnelled_v4 if version == 4 else inputs.tunnelled_v6
    lines = ["# To peers: local workload routes and BGP routes, inside the IPv%d pools only." % version,
             "filter calico_bgp_v%d {" % version]
    if pools:
        lines += [
            "  if net ~ %s then {" % _prefix_set(pools),
            "    if source = RTS_BGP then accept;",
            "    if source = RTS_INHERIT && ifname ~ \"%s*\" then accept;" % inputs.interface_prefix,
            "  }",
        ]
    lines += ["  reject;", "}", ""]
    lines += ["# To the kernel: routes learned from peers, except in tunnelled pools.",
              "filter calico_kernel_v%d {" % version,
              "  if source != RTS_BGP then reject;"]
    if tunnelled:
        lines.append("  if net ~ %s then reject;" % _prefix_set(tunnelled))
    lines += ["  accept;", "}", ""]
    return lines
