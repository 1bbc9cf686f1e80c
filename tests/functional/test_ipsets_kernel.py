"""calicoctl.host.ipsets (netlink, in-process) against the real kernel.

Everything happens in one throwaway network namespace; what the adapter did
is read back with ``ipset save`` and iptables, independently of it.
"""
import ipaddress

import pytest

from calicoctl.host.ipsets import Ipsets, SetWrite
from calicoctl.host.netlink.ipset import IpsetError
from tests.harness.netns import Netns

pytestmark = pytest.mark.usefixtures("root_required")


@pytest.fixture(scope="module")
def namespace():
    ns = Netns()
    yield ns
    ns.stop()


@pytest.fixture
def ns(namespace):
    yield namespace
    namespace.run("iptables-nft -F INPUT", check=False)
    namespace.run("ipset destroy", check=False)


def addresses(count, prefix="10"):
    return ["%s.%d.%d.%d" % (prefix, i >> 16, (i >> 8) & 255, i & 255) for i in range(1, count + 1)]


def test_sets_are_created_filled_and_trimmed_idempotently(ns):
    ipsets = Ipsets(ns.path)
    writes = [SetWrite("t4", "hash:ip", "inet", ["10.0.0.1", "10.0.0.2"], create=True, maxelem=1048576),
              SetWrite("t6", "hash:ip", "inet6", ["fd00::1", "fd00::a:2"], create=True),
              SetWrite("n4", "hash:net", "inet", ["10.65.0.0/16", "192.168.3.4/32"], create=True)]
    assert ipsets.write(writes) == {}
    assert ipsets.write(writes) == {}                        # again: nothing refused, nothing doubled
    expected = {"t4": ("hash:ip", "inet", {"10.0.0.1", "10.0.0.2"}),
                "t6": ("hash:ip", "inet6", {"fd00::1", "fd00::a:2"}),
                "n4": ("hash:net", "inet", {"10.65.0.0/16", "192.168.3.4"})}
    assert ns.ipsets() == expected
    assert "maxelem 1048576" in ns.run("ipset save t4").stdout
    # Deleting a member that is not there, adding one that is: both fine.
    assert ipsets.write([SetWrite("t4", "hash:ip", "inet", ["10.0.0.2", "10.0.0.3"], ["10.0.0.1", "10.9.9.9"]),
                         SetWrite("t6", "hash:ip", "inet6", dels=["fd00::1"])]) == {}
    assert ns.ipsets()["t4"][2] == {"10.0.0.2", "10.0.0.3"} and ns.ipsets()["t6"][2] == {"fd00::a:2"}
    read = ipsets.read(lambda name: name != "n4")
    assert {name: (info.set_type, info.family, info.members) for name, info in read.items()} == {
        "t4": ("hash:ip", "inet", {"10.0.0.2", "10.0.0.3"}), "t6": ("hash:ip", "inet6", {"fd00::a:2"})}


def test_a_hundred_thousand_members_each_way(ns):
    ipsets = Ipsets(ns.path)
    v4 = addresses(100000)
    v6 = [str(ipaddress.IPv6Address((0xfd00 << 112) + i)) for i in range(1, 100001)]
    assert ipsets.write([SetWrite("big4", "hash:ip", "inet", v4, create=True, maxelem=1048576),
                         SetWrite("big6", "hash:ip", "inet6", v6, create=True, maxelem=1048576)]) == {}
    kernel = ns.ipsets()
    assert kernel["big4"][2] == set(v4) and kernel["big6"][2] == set(v6)
    read = ipsets.read()
    assert read["big4"].members == set(v4) and read["big6"].members == set(v6)
    assert ipsets.write([SetWrite("big4", "hash:ip", "inet", dels=v4[1:]),
                         SetWrite("big6", "hash:ip", "inet6", dels=v6)]) == {}
    kernel = ns.ipsets()
    assert kernel["big4"][2] == {v4[0]} and kernel["big6"][2] == set()


def test_refusals_are_reported_per_set_and_the_other_sets_are_written(ns):
    ns.run("ipset create taken hash:net")                     # another type in the way
    ns.run("ipset create small hash:ip maxelem 2")
    ipsets = Ipsets(ns.path)
    failed = ipsets.write([
        SetWrite("taken", "hash:ip", "inet", ["10.0.0.1"], create=True),
        SetWrite("small", "hash:ip", "inet", ["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
        SetWrite("absent", "hash:ip", "inet", ["10.2.0.1"]),
        SetWrite("wrong", "hash:ip", "inet", ["10.3.0.1", "fd00::1"], create=True),
        SetWrite("fine", "hash:ip", "inet", ["10.4.0.1"], create=True)])
    assert set(failed) == {"taken", "small", "absent", "wrong"}
    assert "another type" in failed["taken"]
    assert "10.1.0.3" in failed["small"] and "full" in failed["small"]
    assert "does not exist" in failed["absent"]
    assert "fd00::1" in failed["wrong"]
    kernel = ns.ipsets()
    assert kernel["taken"] == ("hash:net", "inet", set())
    assert kernel["small"][2] == {"10.1.0.1", "10.1.0.2"}
    assert kernel["fine"][2] == {"10.4.0.1"} and "absent" not in kernel


def test_a_set_a_rule_uses_is_not_destroyed(ns):
    ipsets = Ipsets(ns.path)
    assert ipsets.write([SetWrite(name, "hash:ip", "inet", create=True) for name in ("used", "unused")]) == {}
    ns.run("iptables-nft -A INPUT -m set --match-set used src -j ACCEPT")
    failed = ipsets.destroy(["used", "unused", "never-was"])
    assert list(failed) == ["used"] and "in use" in failed["used"]
    assert set(ns.ipsets()) == {"used"}


def test_replace_swaps_in_new_members_under_a_rule_using_the_set(ns):
    ipsets = Ipsets(ns.path)
    ipsets.replace("pools", "hash:net", "inet", ["10.65.0.0/16", "10.66.0.0/16"])
    ns.run("iptables-nft -A INPUT -m set --match-set pools src -j ACCEPT")
    ipsets.replace("pools", "hash:net", "inet", ["10.67.0.0/16"])
    assert ns.ipsets() == {"pools": ("hash:net", "inet", {"10.67.0.0/16"})}   # no temporary set left
    ns.run("ipset create clash hash:ip")
    with pytest.raises(IpsetError, match="clash"):
        ipsets.replace("clash", "hash:net", "inet", ["10.0.0.0/8"])
    assert set(ns.ipsets()) == {"pools", "clash"}
