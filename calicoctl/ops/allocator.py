"""Addresses for workloads: a given or a free address of a pool, claimed atomically.

``claim`` is the one entry: it parses what was asked for, chooses and checks
the pool, checks this host's address of that version (the workload's
gateway) and claims the address. ``calicoctl container add <C>
<IP>|ipv4|ipv6|<CIDR>``, the CNI plugins and the Docker IPAM driver all go
through it (docs/decisions.md, "Automatic address assignment"). It builds
on the pool's claim keys (docs/etcd-layout.md, "IP pools and address
claims"): an address is taken when its claim key is created, create-only,
so two hosts or fifty concurrent requests can never both win one address.

Search: pick addresses of the range at random and try to claim each. With
a fraction f of the range claimed a try fails with probability f, so the
cost of one assignment depends on how full the range is, not on how many
claims exist: 10,000 claims in a /16 cost about 1.2 tries. Only after
``RANDOM_TRIES`` misses (a nearly full range) are the pool's claims read,
once, and the free addresses tried in random order; when none is left the
range is full.
"""
import random
from dataclasses import dataclass
from typing import Optional

from calicoctl import validate
from calicoctl.datastore import paths
from calicoctl.errors import Conflict, HostNotReady, NotFound, ValidationError

RANDOM_TRIES = 16
# A workflow's claims have this TTL until it confirms them: long enough for
# any sane run (the claimed-but-unconfirmed window is the kernel work:
# milliseconds), short enough that a crash frees the address soon.
CLAIM_TTL = 30
AUTO_WORDS = {"ipv4": 4, "ipv6": 6}


@dataclass(frozen=True)
class AddressRequest:
    """What the user asked for: one address (``ip``), or any free one of an IP
    ``version``, optionally within ``cidr``."""
    version: int
    ip: Optional[object] = None          # netaddr.IPAddress
    cidr: Optional[str] = None

    @property
    def automatic(self):
        return self.ip is None


@dataclass(frozen=True)
class Assignment:
    """An address ``claim`` holds for its owner.

    :ivar gateway: this host's address of the IP's version (the workload's
        gateway); None when no host was asked about.
    """
    ip: object                           # netaddr.IPAddress
    pool: object                         # model.IPPool
    gateway: Optional[str] = None


# -- pure ----------------------------------------------------------------------------

def parse_address_request(text):
    """'ipv4', 'ipv6', a CIDR or an IP address -> AddressRequest (ValidationError otherwise)."""
    if isinstance(text, str) and text.lower() in AUTO_WORDS:
        return AddressRequest(version=AUTO_WORDS[text.lower()])
    if isinstance(text, str) and "/" in text:
        cidr = validate.parse_cidr(text, "pool CIDR")
        return AddressRequest(version=cidr.version, cidr=str(cidr))
    try:
        ip = validate.parse_ip(text)
    except ValidationError:
        raise ValidationError("Invalid address %r: give an IP address, ipv4, ipv6 or the CIDR of "
                              "a pool to assign one from." % (text,)) from None
    return AddressRequest(version=ip.version, ip=ip)


def choose_pool(pools, version, cidr=None):
    """The pool to assign from: the first of ``version``, or the one holding
    ``cidr``. NotFound names the pools there are."""
    import netaddr
    candidates = [pool for pool in pools if pool.version == version]
    if cidr is None:
        if not candidates:
            raise NotFound("There is no IPv%d pool to assign an address from; add one with "
                           "`calicoctl pool add`." % version)
        return candidates[0]
    network = netaddr.IPNetwork(cidr)
    for pool in candidates:
        if network in netaddr.IPNetwork(pool.cidr):
            return pool
    names = ", ".join(pool.cidr for pool in candidates) or "none"
    raise NotFound("%s is not inside a Calico IPv%d pool (pools: %s)." % (cidr, version, names))


def calculate_bounds(cidr):
    """(first, last) assignable address values of ``cidr``: not the network
    address, nor the IPv4 broadcast address, when the range has others."""
    import netaddr
    network = netaddr.IPNetwork(cidr)
    first, last = network.first, network.last
    if network.size > 2:
        first += 1
        if network.version == 4:
            last -= 1
    return first, last


def random_candidates(cidr, rng, count=RANDOM_TRIES):
    """``count`` addresses of ``cidr`` picked at random (netaddr.IPAddress)."""
    import netaddr
    first, last = calculate_bounds(cidr)
    version = netaddr.IPNetwork(cidr).version
    return [netaddr.IPAddress(rng.randint(first, last), version) for _ in range(count)]


def free_candidates(cidr, claimed, rng):
    """Every address of ``cidr`` not in ``claimed`` (strings), from a random
    starting point, wrapping round (a generator: the range may be large)."""
    import netaddr
    first, last = calculate_bounds(cidr)
    version = netaddr.IPNetwork(cidr).version
    taken = {int(netaddr.IPAddress(ip)) for ip in claimed}
    start = rng.randint(first, last)
    for value in range(start, last + 1):
        if value not in taken:
            yield netaddr.IPAddress(value, version)
    for value in range(first, start):
        if value not in taken:
            yield netaddr.IPAddress(value, version)


# -- the workflow -----------------------------------------------------------------------

def check(datastore, request, hostname=None):
    """(AddressRequest, pool, gateway) for ``request`` (an AddressRequest or
    the text ``parse_address_request`` reads), claiming nothing: the pool to
    assign from (``choose_pool``) or the one holding the given address (which
    must lie inside ``request.cidr`` when that is set), and with ``hostname``
    its address of that version in etcd (HostNotReady without one)."""
    if not isinstance(request, AddressRequest):
        request = parse_address_request(request)
    if request.automatic:
        pool = choose_pool(datastore.list_pools(request.version), request.version, request.cidr)
    else:
        pool = datastore.pool_for_ip(request.ip)
        if pool is None:
            raise ValidationError("IP %s is not in any Calico IPv%d pool (see `calicoctl pool show`)."
                                  % (request.ip, request.version))
        if request.cidr is not None and not _inside(request.ip, request.cidr):
            raise ValidationError("IP %s is not in the network's range %s." % (request.ip, request.cidr))
    gateway = host_address(datastore, hostname, request.version) if hostname is not None else None
    return request, pool, gateway


def host_address(datastore, hostname, version):
    """``hostname``'s address of IP ``version`` in etcd, a workload's gateway;
    HostNotReady without one."""
    gateway = datastore.get_host_ip(hostname, version)
    if gateway is None:
        hint = "calicoctl node --ip6=<IPv6>" if version == 6 else "calicoctl node"
        raise HostNotReady("Host %s has no IPv%d address in etcd (%s): run `%s` first."
                           % (hostname, version, paths.host_ip_addr(hostname, version), hint))
    return gateway


def claim(datastore, request, owner, rollback=None, hostname=None, rng=None):
    """The address ``request`` asks for, claimed for ``owner``: ``check``,
    then the given address or a free one of the range claimed. With a
    ``rollback`` (a workflow that has more to do) the claim has CLAIM_TTL
    and its release is pushed on the rollback until ``confirm_claim``; a
    leftover claim of the same owner is adopted. Without one the claim is
    permanent at once (the Docker IPAM driver's, released by Docker's
    ReleaseAddress). Returns an Assignment; Conflict when it is taken."""
    request, pool, gateway = check(datastore, request, hostname)
    if request.automatic:
        ip = assign_address(datastore, pool, request.cidr or pool.cidr, owner,
                            ttl=CLAIM_TTL if rollback is not None else None, rng=rng)
        if rollback is not None:
            rollback.push("release the claim on %s" % ip,
                          lambda: datastore.release_ip(pool.cidr, str(ip), owner=owner))
    else:
        ip = request.ip
        claim_address(datastore, pool, ip, owner, rollback)
    return Assignment(ip=ip, pool=pool, gateway=gateway)


def _inside(ip, cidr):
    import netaddr
    return ip in netaddr.IPNetwork(cidr)

def assign_address(datastore, pool, cidr, owner, ttl=None, rng=None):
    """Claim a free address of ``cidr`` (inside ``pool``, an IPPool) for
    ``owner``; returns it (netaddr.IPAddress). Conflict when none is free."""
    rng = rng or random.SystemRandom()
    tried = set()
    for ip in random_candidates(cidr, rng):
        if ip in tried:
            continue
        tried.add(ip)
        if datastore.claim_ip(pool.cidr, str(ip), owner=owner, ttl=ttl):
            return ip
    for ip in free_candidates(cidr, datastore.list_claims(pool.cidr), rng):
        if ip not in tried and datastore.claim_ip(pool.cidr, str(ip), owner=owner, ttl=ttl):
            return ip
    raise Conflict("No free address left in %s (pool %s)." % (cidr, pool.cidr))


def release_address(datastore, ip, owner, allow_anonymous=True):
    """Release ip's claim held by ``owner`` in whichever pool directory holds
    it (a pool may have been deleted since the claim was made); False if
    there was none. Anonymous claims (the reference's) are released only
    when the caller knows the IP is this owner's."""
    import netaddr
    released = False
    for cidr in datastore.list_claim_pools(ip.version):
        if ip in netaddr.IPNetwork(cidr):
            released = datastore.release_ip(cidr, str(ip), owner=owner,
                                            allow_anonymous=allow_anonymous) or released
    return released


def claim_address(datastore, pool, ip, owner, rollback=None):
    """Claim ``ip`` for ``owner``. With a Rollback: with CLAIM_TTL, its
    release pushed on it, and a leftover claim of the same owner (an earlier
    run that failed before it could release it) is adopted. Without one:
    permanently, and never adopted (that owner may stand for several
    workloads: the Docker IPAM driver's is the host). Conflict if taken."""
    ttl = CLAIM_TTL if rollback is not None else None
    if datastore.claim_ip(pool.cidr, str(ip), owner=owner, ttl=ttl):
        if rollback is not None:
            rollback.push("release the claim on %s" % ip,
                          lambda: datastore.release_ip(pool.cidr, str(ip), owner=owner))
        return
    if rollback is not None and datastore.get_claim(pool.cidr, str(ip)) == owner:
        return
    raise Conflict("IP %s is already assigned in pool %s." % (ip, pool.cidr))


def confirm_claim(datastore, pool, ip, owner):
    """Make ``owner``'s claim permanent, once the work it was for is done."""
    if not datastore.confirm_claim(pool.cidr, str(ip), owner):
        raise Conflict("IP %s was claimed by someone else meanwhile." % ip)
