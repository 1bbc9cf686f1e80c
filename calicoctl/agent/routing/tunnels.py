"""What the tunnel components (VXLAN, IPIP) need to know, kept from the key stream.

``TunnelIndex`` keeps, from the etcd leaves (one shared by the VXLAN, IPIP
and NAT-outgoing components, in the dispatcher's indexes):
the IP pools, every host's IPv4 address, every host's VXLAN record, and the
IPv4 networks of every endpoint. ``calculate_remote_routes`` (pure) turns
that into the routes a tunnel must carry: for every endpoint on another
host, each of its IPv4 networks inside a chosen kind of pool, routed to
that host's tunnel address.

Only IPv4: VXLAN here runs over the IPv4 LAN, and the kernel cannot route
an IPv6 destination via an IPv4 next hop; IPIP is IPv4 only by definition.
"""
import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from calicoctl import model, validate
from calicoctl.agent.component import ReconcilingComponent
from calicoctl.agent.keys import Kind, as_key
from calicoctl.agent.state import parse_endpoint
from calicoctl.errors import ValidationError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteEndpoint:
    hostname: str
    nets: Tuple[str, ...]       # IPv4 CIDRs


class TunnelIndex:
    """Pools, host addresses, VXLAN records and endpoint networks, by key.

    ``load`` replaces everything from a snapshot; ``update`` applies one key
    (None value: deleted, a directory takes its contents along) and returns
    the set of kinds of data that changed (``POOLS``, ``HOSTS``, ``VTEPS``,
    ``ENDPOINTS``; empty when nothing did), so a component can ignore, say,
    endpoint churn while it has no pool that needs endpoints.

    Endpoints are kept as their JSON text and parsed only when asked for
    (``endpoint_list``): every agent sees every endpoint of the cluster, and
    most have no tunnel pool at all. ``parser`` is the shared endpoint
    parser (state.EndpointParser), so a value the policy index parsed
    already is not parsed again.
    """

    POOLS, HOSTS, VTEPS, ENDPOINTS = "pools", "hosts", "vteps", "endpoints"

    def __init__(self, parser=None):
        self._parse = parser or parse_endpoint
        self.pools = {}
        """pool key -> model.IPPool"""
        self.host_ips = {}
        """hostname -> IPv4 address (from /calico/bgp/v1/host/<h>/ip_addr_v4)"""
        self.vteps = {}
        """hostname -> model.VxlanTunnel"""
        self._endpoint_text = {}
        """endpoint key -> its JSON text, as etcd has it"""
        self._endpoints = {}
        """endpoint key -> RemoteEndpoint (or None: invalid), parsed on demand"""

    def load(self, items):
        self.pools, self.host_ips, self.vteps = {}, {}, {}
        self._endpoint_text, self._endpoints = {}, {}
        for key, value in items.items():
            self.update(key, value)

    def update(self, key, value):
        """One leaf (a path or keys.Key) set, or deleted (None); returns
        the kinds of data that changed. Constant time: a deleted directory
        reaches us as one deletion per leaf (the dispatcher sees to that)."""
        key = as_key(key)
        path = key.path
        if key.kind is Kind.ENDPOINT:
            if value is None:
                if self._endpoint_text.pop(path, None) is None:
                    return set()
            elif self._endpoint_text.get(path) == value:
                return set()
            else:
                self._endpoint_text[path] = value
            self._endpoints.pop(path, None)
            return {self.ENDPOINTS}
        if key.kind is Kind.POOL:
            return self._set(self.pools, path, None if value is None else _parse_pool(value), self.POOLS)
        if key.kind is Kind.HOST_ADDRESS:
            if key.parts[1] != "ip_addr_v4":
                return set()
            return self._set(self.host_ips, key.parts[0], None if value is None else _parse_ipv4(value), self.HOSTS)
        if key.kind is Kind.HOST_VXLAN:
            return self._set(self.vteps, key.parts[0], None if value is None else _parse_vtep(value), self.VTEPS)
        return set()

    @staticmethod
    def _set(table, key, parsed, kind):
        """Store ``parsed`` (None: drop the entry); {kind} if the table changed."""
        if parsed is None:
            return {kind} if table.pop(key, None) is not None else set()
        if table.get(key) == parsed:
            return set()
        table[key] = parsed
        return {kind}

    def endpoint(self, key):
        """The RemoteEndpoint at etcd key ``key`` (parsed once), or None
        (absent or invalid)."""
        if key not in self._endpoints:
            text = self._endpoint_text.get(key)
            if text is None:
                return None
            ep_key, endpoint = self._parse(key, text)
            self._endpoints[key] = None if endpoint is None else RemoteEndpoint(
                hostname=ep_key.hostname, nets=tuple(endpoint.ipv4_nets))
        return self._endpoints[key]

    def endpoint_keys(self):
        return list(self._endpoint_text)

    def endpoint_list(self):
        """Every valid endpoint as a RemoteEndpoint (parsing what is new)."""
        return [endpoint for endpoint in map(self.endpoint, self._endpoint_text) if endpoint is not None]

    def pools_where(self, predicate, version=4):
        return tuple(sorted((pool for pool in self.pools.values()
                             if pool.version == version and predicate(pool)),
                            key=lambda pool: pool.cidr))


def _parse_pool(value):
    try:
        return model.IPPool.from_json(value)
    except ValidationError:
        return None


def _parse_ipv4(value):
    if not value:
        return None
    try:
        return str(validate.parse_ip(value.strip(), 4))
    except (ValidationError, AttributeError):
        return None


def _parse_vtep(value):
    try:
        return model.VxlanTunnel.from_json(value)
    except ValidationError:
        return None


def calculate_remote_routes(hostname, pools, endpoints, gateways):
    """Routes for other hosts' workloads inside ``pools`` (pure).

    :param pools: the IPPools whose addresses the tunnel carries.
    :param endpoints: iterable of RemoteEndpoint (any host; ours are skipped).
    :param gateways: hostname -> the tunnel next hop of that host; hosts
        without one get no routes (their workloads are unreachable this way).
    :return: {CIDR: gateway}
    """
    networks = _networks(pools)
    routes = {}
    for endpoint in endpoints:
        routes.update(_endpoint_routes(hostname, networks, endpoint, gateways))
    return routes


def _networks(pools):
    import netaddr
    return [netaddr.IPNetwork(pool.cidr) for pool in pools]


def _endpoint_routes(hostname, networks, endpoint, gateways):
    """{CIDR: gateway} of one endpoint's networks inside ``networks``."""
    import netaddr
    if endpoint is None or endpoint.hostname == hostname or not networks:
        return {}
    gateway = gateways.get(endpoint.hostname)
    if gateway is None:
        return {}
    routes = {}
    for net in endpoint.nets:
        cidr = netaddr.IPNetwork(net)
        if any(cidr in network for network in networks):
            routes[str(cidr)] = gateway
    return routes


class TunnelRoutes:
    """The routes a tunnel carries (``calculate_remote_routes``), kept per
    endpoint so that an endpoint's change costs its own networks, not a pass
    over every endpoint of the cluster (pure).

    ``rebuild`` starts over (pools, host addresses or VTEPs changed);
    ``update`` takes the endpoints that changed since and returns the routes
    that differ ({CIDR: gateway, or None for a route to remove}).
    """

    def __init__(self, hostname):
        self.hostname = hostname
        self.routes = {}
        """CIDR -> gateway."""
        self._networks = []
        self._gateways = {}
        self._by_endpoint = {}
        """etcd key -> {CIDR: gateway} that endpoint asks for."""
        self._claims = {}
        """CIDR -> {etcd key: gateway} (two endpoints may name one network)."""

    def rebuild(self, index, pools, gateways):
        self._networks, self._gateways = _networks(pools), dict(gateways)
        self.routes, self._by_endpoint, self._claims = {}, {}, {}
        self.update(index, index.endpoint_keys())
        return self.routes

    def update(self, index, keys):
        changed = {}
        for key in keys:
            wanted = _endpoint_routes(self.hostname, self._networks, index.endpoint(key), self._gateways)
            old = self._by_endpoint.pop(key, {})
            if wanted:
                self._by_endpoint[key] = wanted
            for cidr in set(old) | set(wanted):
                claims = self._claims.setdefault(cidr, {})
                claims.pop(key, None)
                if cidr in wanted:
                    claims[key] = wanted[cidr]
                gateway = claims[min(claims)] if claims else None
                if not claims:
                    del self._claims[cidr]
                if self.routes.get(cidr) != gateway:
                    changed[cidr] = gateway
                    if gateway is None:
                        self.routes.pop(cidr, None)
                    else:
                        self.routes[cidr] = gateway
        return changed


class TunnelComponent(ReconcilingComponent):
    """What the IPIP and VXLAN components share: remote workloads' routes
    (``TunnelRoutes``) on a device of their own. Once an apply has put
    everything in place (``_device_index`` set) only the routes of the
    endpoints that changed are applied; any other change (pools, hosts,
    VTEPs) applies everything again."""

    def __init__(self, hostname):
        super().__init__()
        self.hostname = hostname
        self.routes = TunnelRoutes(hostname)
        self._changed_endpoints = set()
        self._device_index = None
        """The device's ifindex after a complete apply; None: apply everything next."""

    def has_pools(self):
        """True while a pool uses this tunnel (only then does endpoint churn matter)."""
        raise NotImplementedError

    def on_update(self, key, value):
        if key.kind is Kind.ENDPOINT:
            if not self.has_pools():
                return
            self._changed_endpoints.add(key.path)
        else:
            self._device_index = None
        self.mark_dirty()

    def forget_kernel_state(self):
        self._device_index = None

    def apply_changed_endpoints(self):
        """Apply the routes of the endpoints that changed, if the device is in
        place; False when everything must be applied instead."""
        from calicoctl.host import netlink
        changed, self._changed_endpoints = self._changed_endpoints, set()
        if self._device_index is None:
            return False
        routes = self.routes.update(self.index, changed)
        if routes:
            with netlink.Session() as session:
                for dst, gateway in routes.items():
                    if gateway is None:
                        session.delete_route(dst, index=self._device_index)
                    else:
                        session.replace_onlink_route(dst, gateway, self._device_index)
        return True


@dataclass(frozen=True)
class VxlanPlan:
    """What the VXLAN device and its tables should hold (pure result)."""
    wanted: bool                          # any VXLAN pool, and our own address known
    local_ip: Optional[str]
    routes: Dict[str, str]                # CIDR -> remote VTEP IP
    neighbours: Dict[str, str]            # remote VTEP IP -> its device MAC
    fdb: Dict[str, str]                   # remote device MAC -> remote VTEP IP


def calculate_vxlan_plan(hostname, index, vni, routes=None):
    """The VXLAN state this host should have, from a TunnelIndex (pure).

    :param routes: the TunnelRoutes to rebuild for it (kept by the caller,
        which then follows endpoint changes with ``routes.update``).
    """
    routes = routes or TunnelRoutes(hostname)
    pools = index.pools_where(lambda pool: pool.vxlan)
    local_ip = index.host_ips.get(hostname)
    if not pools or local_ip is None:
        routes.rebuild(index, (), {})
        return VxlanPlan(wanted=False, local_ip=local_ip, routes={}, neighbours={}, fdb={})
    remote = {host: vtep for host, vtep in index.vteps.items()
              if host != hostname and vtep.vni == vni and vtep.ip != local_ip}
    routes = dict(routes.rebuild(index, pools, {host: vtep.ip for host, vtep in remote.items()}))
    neighbours = {vtep.ip: vtep.mac for vtep in remote.values()}
    fdb = {vtep.mac: vtep.ip for vtep in remote.values()}
    return VxlanPlan(wanted=True, local_ip=local_ip, routes=routes, neighbours=neighbours, fdb=fdb)
