"""The pure parts of automatic address assignment (calicoctl.ops.allocator)."""
import random

import netaddr
import pytest

from calicoctl import model
from calicoctl.errors import Conflict, HostNotReady, NotFound, ValidationError
from calicoctl.ops import allocator


@pytest.mark.parametrize("text, version, cidr, ip", [
    ("ipv4", 4, None, None),
    ("IPv6", 6, None, None),
    ("192.168.5.0/24", 4, "192.168.5.0/24", None),
    ("192.168.5.7/24", 4, "192.168.5.0/24", None),          # host bits cleared
    ("fd80::/64", 6, "fd80::/64", None),
    ("10.1.2.3", 4, None, "10.1.2.3"),
])
def test_parse_address_request(text, version, cidr, ip):
    request = allocator.parse_address_request(text)
    assert request.version == version
    assert request.cidr == cidr
    assert (str(request.ip) if request.ip is not None else None) == ip
    assert request.automatic == (ip is None)


@pytest.mark.parametrize("text", ["ipv5", "", "10.0.0.0/33", "10.1", "any"])
def test_parse_address_request_refuses_nonsense(text):
    with pytest.raises(ValidationError):
        allocator.parse_address_request(text)


POOLS = [model.IPPool("10.0.0.0/8"), model.IPPool("192.168.0.0/16"), model.IPPool("fd80::/64")]


def test_choose_pool_first_of_version_or_the_one_holding_the_cidr():
    assert allocator.choose_pool(POOLS, 4).cidr == "10.0.0.0/8"
    assert allocator.choose_pool(POOLS, 6).cidr == "fd80::/64"
    assert allocator.choose_pool(POOLS, 4, "192.168.7.0/24").cidr == "192.168.0.0/16"
    assert allocator.choose_pool(POOLS, 4, "192.168.0.0/16").cidr == "192.168.0.0/16"


def test_choose_pool_names_the_pools_when_the_cidr_is_outside_them():
    with pytest.raises(NotFound) as info:
        allocator.choose_pool(POOLS, 4, "172.16.0.0/24")
    assert "10.0.0.0/8, 192.168.0.0/16" in str(info.value)
    with pytest.raises(NotFound):
        allocator.choose_pool(POOLS, 4, "192.0.0.0/8")          # larger than the pool
    with pytest.raises(NotFound) as info:
        allocator.choose_pool([], 6)
    assert "no IPv6 pool" in str(info.value)


@pytest.mark.parametrize("cidr, first, last", [
    ("10.0.0.0/24", "10.0.0.1", "10.0.0.254"),
    ("10.0.0.0/31", "10.0.0.0", "10.0.0.1"),
    ("10.0.0.7/32", "10.0.0.7", "10.0.0.7"),
    ("fd80::/126", "fd80::1", "fd80::3"),
])
def test_calculate_bounds_skips_network_and_broadcast(cidr, first, last):
    low, high = allocator.calculate_bounds(cidr)
    assert (str(netaddr.IPAddress(low, 6 if ":" in cidr else 4)),
            str(netaddr.IPAddress(high, 6 if ":" in cidr else 4))) == (first, last)


def test_random_candidates_lie_inside_the_range():
    rng = random.Random(7)
    found = allocator.random_candidates("192.168.4.0/30", rng, count=50)
    assert {str(ip) for ip in found} == {"192.168.4.1", "192.168.4.2"}


def test_free_candidates_are_every_unclaimed_address_once():
    rng = random.Random(3)
    free = [str(ip) for ip in allocator.free_candidates("10.9.0.0/29", ["10.9.0.2", "10.9.0.5"], rng)]
    assert sorted(free) == ["10.9.0.1", "10.9.0.3", "10.9.0.4", "10.9.0.6"]


class ClaimBook:
    """An in-memory stand-in for the two datastore calls the allocator makes,
    counting them (the real ones are tested against etcd)."""

    def __init__(self, claimed=()):
        self.claims = {ip: "someone" for ip in claimed}
        self.attempts = 0
        self.listings = 0

    def claim_ip(self, _pool, ip, owner="", ttl=None):
        self.attempts += 1
        if ip in self.claims:
            return False
        self.claims[ip] = owner
        return True

    def list_claims(self, _pool):
        self.listings += 1
        return sorted(self.claims)


def test_assign_takes_the_last_free_address_of_a_full_range_after_one_listing():
    pool = model.IPPool("10.9.0.0/24")
    book = ClaimBook("10.9.0.%d" % i for i in range(1, 255) if i != 77)
    ip = allocator.assign_address(book, pool, "10.9.0.0/24", "me", rng=random.Random(1))
    assert str(ip) == "10.9.0.77" and book.claims["10.9.0.77"] == "me"
    assert book.listings == 1


def test_assign_in_a_full_range_is_a_conflict():
    pool = model.IPPool("10.9.0.0/29")
    book = ClaimBook("10.9.0.%d" % i for i in range(1, 7))
    with pytest.raises(Exception) as info:
        allocator.assign_address(book, pool, "10.9.0.0/29", "me", rng=random.Random(1))
    assert "No free address left in 10.9.0.0/29" in str(info.value)


def test_assign_in_a_sparse_range_needs_no_listing():
    pool = model.IPPool("10.0.0.0/16")
    book = ClaimBook("10.0.%d.%d" % (i // 250, i % 250 + 1) for i in range(10000))
    for _ in range(50):
        allocator.assign_address(book, pool, pool.cidr, "me", rng=random.Random())
    assert book.listings == 0
    assert len(book.claims) == 10050


# -- claim: the one entry (parse, choose, check, claim) ------------------------------------

class Store(ClaimBook):
    """ClaimBook plus the pools, the host addresses and the claims' TTLs."""

    def __init__(self, claimed=(), host_ips=None):
        super().__init__(claimed)
        self.host_ips = host_ips if host_ips is not None else {4: "172.17.8.101"}
        self.ttls = {}

    def claim_ip(self, pool, ip, owner="", ttl=None):
        self.ttls[ip] = ttl
        return super().claim_ip(pool, ip, owner, ttl)

    def get_claim(self, _pool, ip):
        return self.claims.get(ip)

    def release_ip(self, _pool, ip, owner):
        if self.claims.get(ip) == owner:
            del self.claims[ip]

    def list_pools(self, version):
        return [pool for pool in POOLS if pool.version == version]

    def pool_for_ip(self, ip):
        return next((pool for pool in POOLS if ip in netaddr.IPNetwork(pool.cidr)), None)

    def get_host_ip(self, _hostname, version):
        return self.host_ips.get(version)


def test_claim_parses_chooses_checks_and_claims_until_rolled_back():
    from calicoctl.ops.rollback import Rollback
    store = Store()
    with pytest.raises(RuntimeError), Rollback() as rollback:
        got = allocator.claim(store, "192.168.0.0/16", "h1/docker/c1", rollback, hostname="h1",
                              rng=random.Random(3))
        assert got.pool.cidr == "192.168.0.0/16" and got.gateway == "172.17.8.101"
        assert store.claims == {str(got.ip): "h1/docker/c1"}
        assert store.ttls[str(got.ip)] == allocator.CLAIM_TTL
        raise RuntimeError("a later step failed")
    assert store.claims == {}


def test_claim_refuses_before_claiming_anything():
    store = Store(host_ips={4: "172.17.8.101"})
    for wanted, error, words in [
            ("banana", ValidationError, "Invalid address"),
            ("11.0.0.1", ValidationError, "not in any Calico IPv4 pool"),
            (allocator.AddressRequest(4, ip=netaddr.IPAddress("10.1.0.1"), cidr="10.2.0.0/16"), ValidationError,
             "not in the network's range 10.2.0.0/16"),
            ("172.16.0.0/24", NotFound, "not inside a Calico IPv4 pool"),
            ("ipv6", HostNotReady, "has no IPv6 address in etcd")]:
        with pytest.raises(error, match=words):
            allocator.claim(store, wanted, "owner", hostname="h1")
    assert store.attempts == 0


def test_a_leftover_claim_is_adopted_only_by_a_workflow_with_a_rollback():
    from calicoctl.ops.rollback import Rollback
    store = Store()
    store.claims["10.0.0.5"] = "h1/docker/c1"
    with Rollback() as rollback:
        assert str(allocator.claim(store, "10.0.0.5", "h1/docker/c1", rollback).ip) == "10.0.0.5"
    # The Docker IPAM driver's owner is the host: the same address twice is a conflict.
    assert str(allocator.claim(store, "10.0.0.6", "h1/ipam").ip) == "10.0.0.6"
    assert store.ttls["10.0.0.6"] is None
    with pytest.raises(Conflict, match="already assigned"):
        allocator.claim(store, "10.0.0.6", "h1/ipam")
