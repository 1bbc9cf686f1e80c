"""How the IP pools are used, and who holds an address (``calicoctl ipam show``).

An address is taken when its claim key exists (docs/etcd-layout.md, "IP
pools and address claims"); the claim's value names its owner:
``<host>/docker/<container ID>`` for ``container add``,
``<host>/libnetwork/ipam`` for the calico-ipam Docker driver (which is not
told the container), ``""`` for the original calicoctl's claims, and any
``<host>/<orchestrator>/<workload>`` another writer uses. Beside the claim,
the endpoints that carry the address and the hosts whose recorded address
it is are named too: together they say who holds it, or that it is free.

Reads only; the counting and parsing are pure (``calculate_``/``parse_``).
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl.datastore import paths


@dataclass(frozen=True)
class PoolUsage:
    """One pool's addresses: ``size`` those the allocator may assign (not
    the network address, nor IPv4's broadcast address), ``claimed`` the
    claims held in it. ``pool`` None: a pool removed while claims remain."""
    cidr: str
    size: int
    claimed: int
    pool: Optional[object] = None          # model.IPPool

    @property
    def free(self):
        return max(0, self.size - self.claimed)


@dataclass(frozen=True)
class ClaimOwner:
    """A claim's value, read: ``kind`` is "container" (container add),
    "docker network" (the calico-ipam driver), "workload" (another
    orchestrator's), "unnamed" (the original's "") or "unknown"."""
    kind: str
    text: str
    host: Optional[str] = None
    orchestrator: Optional[str] = None
    workload: Optional[str] = None


@dataclass(frozen=True)
class AddressReport:
    """Who holds ``ip``: its pool (None: in no pool), the claim (None:
    unclaimed), the endpoints carrying it and the hosts whose address it is."""
    ip: str
    pool: Optional[str]
    claim: Optional[ClaimOwner]
    endpoints: tuple = ()                  # (model.Endpoint, workload name or None)
    hosts: tuple = ()

    @property
    def free(self):
        return self.pool is not None and self.claim is None and not self.endpoints and not self.hosts


# -- pure ------------------------------------------------------------------------------------

def calculate_size(cidr):
    """The number of addresses of ``cidr`` the allocator may assign."""
    from calicoctl.ops.allocator import calculate_bounds
    first, last = calculate_bounds(cidr)
    return last - first + 1


def parse_claim_owner(text):
    """A claim's value -> ClaimOwner."""
    from calicoctl.ops.container_logic import LIBNETWORK_ORCHESTRATOR, ORCHESTRATOR
    if text == "":
        return ClaimOwner("unnamed", text)
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        return ClaimOwner("unknown", text)
    host, orchestrator, workload = parts
    if orchestrator == LIBNETWORK_ORCHESTRATOR and workload == "ipam":
        return ClaimOwner("docker network", text, host, orchestrator)
    kind = "container" if orchestrator == ORCHESTRATOR else "workload"
    return ClaimOwner(kind, text, host, orchestrator, workload)


# -- reads -------------------------------------------------------------------------------------

def read_usage(datastore):
    """PoolUsage of every pool (IPv4 first), then of every removed pool that
    still has claims."""
    import netaddr
    usage = []
    known = set()
    for pool in datastore.list_pools():
        known.add(pool.cidr)
        usage.append(PoolUsage(pool.cidr, calculate_size(pool.cidr), len(datastore.list_claims(pool.cidr)), pool))
    for version in (4, 6):
        for cidr in datastore.list_claim_pools(version):
            normalised = str(netaddr.IPNetwork(cidr).cidr)
            claims = datastore.list_claims(cidr) if normalised not in known else ()
            if claims:
                usage.append(PoolUsage(normalised, calculate_size(normalised), len(claims)))
    return usage


def read_address(datastore, ip):
    """The AddressReport of ``ip`` (a netaddr.IPAddress)."""
    import netaddr
    text = str(ip)
    pool = datastore.pool_for_ip(ip)
    claim = None
    for cidr in datastore.list_claim_pools(ip.version):
        if ip in netaddr.IPNetwork(cidr):
            owner = datastore.get_claim(cidr, text)
            if owner is not None:
                claim = parse_claim_owner(owner)
                break
    endpoints = []
    names = {}
    for endpoint in datastore.list_endpoints():
        if any(netaddr.IPAddress(address) == ip for address in endpoint.addresses(ip.version)):
            key = endpoint.key
            workload = (key.hostname, key.orchestrator_id, key.workload_id)
            if workload not in names:
                found = datastore.get_workload(*workload)
                names[workload] = found.name if found is not None else None
            endpoints.append((endpoint, names[workload]))
    hosts = []
    for key, value in datastore.dump_tree(paths.BGP_HOSTS_DIR):
        parsed = paths.parse_bgp_host_key(key)
        if parsed is not None and parsed[1] == "ip_addr_v%d" % ip.version and _same_address(value, ip):
            hosts.append(parsed[0])
    return AddressReport(text, pool.cidr if pool is not None else None, claim, tuple(endpoints), tuple(sorted(hosts)))


def _same_address(text, ip):
    import netaddr
    try:
        return netaddr.IPAddress(text) == ip
    except (netaddr.AddrFormatError, TypeError, ValueError):
        return False
