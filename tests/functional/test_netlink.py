"""calicoctl.host.netlink against the real kernel, in namespaces made here.

Every kernel change happens inside two throwaway network namespaces
("host" and "peer"), each held open by a ``sleep`` started with
``unshare --net``; the test process itself never leaves its own namespace
except through the module's setns helper, which must bring it back.
Results are read with iproute2, independently of the module under test.
"""
import os
import subprocess
import sys

import pytest

from calicoctl.errors import NotRoot
from calicoctl.host import netlink, sysctl
from tests.harness.netns import Netns
from tests.harness.util import REPO_ROOT, netns_inode

pytestmark = pytest.mark.usefixtures("root_required")


@pytest.fixture(scope="module")
def namespaces():
    host, peer = Netns(), Netns()
    yield host, peer
    host.stop()
    peer.stop()


@pytest.fixture
def host(namespaces):
    yield namespaces[0]
    _clean(namespaces)


@pytest.fixture
def peer(namespaces):
    return namespaces[1]


def _clean(namespaces):
    for ns in namespaces:
        for name in ns.links():
            if name != "lo":
                ns.run("ip link del %s" % name, check=False)


def test_veth_peer_is_created_directly_in_the_other_namespace(host, peer):
    own_before = netns_inode(os.getpid())
    with netlink.Session(host.path) as session:
        session.create_veth("calitest00001", "eth1", peer_netns=peer.path)
        info = session.get_link("calitest00001")
    assert netns_inode(os.getpid()) == own_before          # we came back
    assert "calitest00001" in host.links() and "eth1" not in host.links()
    peer_link = peer.links()["eth1"]
    assert peer_link["link_index"] == info.index            # the two ends of one pair
    assert info.kind == "veth" and not info.up
    with netlink.Session(peer.path) as session:
        inside = session.get_link("eth1")
    assert inside.mac == peer_link["address"] and inside.peer_index == info.index


def test_name_taken_in_the_peer_namespace_is_already_present_and_leaves_nothing(host, peer):
    peer.run("ip link add eth1 type veth peer name eth1p")
    with netlink.Session(host.path) as session:
        with pytest.raises(netlink.AlreadyPresent) as error:
            session.create_veth("calitest00002", "eth1", peer_netns=peer.path)
    assert error.value.errno == 17 and "calitest00002" in str(error.value)
    assert "calitest00002" not in host.links()
    assert set(peer.links()) == {"lo", "eth1", "eth1p"}


def test_both_ends_get_the_mtu_and_an_address_tells_its_interface_mtu(host, peer):
    with netlink.Session(host.path) as h, netlink.Session(peer.path) as p:
        h.create_veth("calitest00010", "eth1", peer_netns=peer.path, mtu=1400)
        index = p.get_link("eth1").index
        p.add_address(index, "10.65.0.6")
        p.add_address(index, "fd80::6")
        assert [p.address_mtu(ip) for ip in ("10.65.0.6", "fd80::6", "10.65.0.7")] == [1400, 1400, None]
    assert host.links()["calitest00010"]["mtu"] == 1400 and peer.links()["eth1"]["mtu"] == 1400


def test_find_delete_and_missing_links(host, peer):
    with netlink.Session(host.path) as session:
        assert session.find_link("nosuchlink") is None
        assert session.delete_link("nosuchlink") is False
        with pytest.raises(netlink.LinkNotFound):
            session.get_link("nosuchlink")
        session.create_veth("calitest00003", "tmp3", peer_netns=peer.path)
        assert session.delete_link("calitest00003") is True
    assert "calitest00003" not in host.links()
    assert "tmp3" not in peer.links()                        # the peer went with it
    assert netlink.delete_link("calitest00003", host.path) is False


def test_addresses_routes_and_up(host, peer):
    with netlink.Session(host.path) as h, netlink.Session(peer.path) as p:
        h.create_veth("calitest00004", "eth1", peer_netns=peer.path)
        link = p.get_link("eth1")
        p.set_link_up(link.index)
        h.set_link_up(h.get_link("calitest00004").index)
        p.add_address(link.index, "10.65.0.5")
        p.add_address(link.index, "fd80::5")
        with pytest.raises(netlink.AlreadyPresent):
            p.add_address(link.index, "10.65.0.5")
        p.replace_route("172.17.8.9/32", link.index, scope_link=True)
        p.replace_route("default", link.index, gateway="172.17.8.9")
        p.replace_route("fd00::9/128", link.index, scope_link=True)
        p.replace_route("::/0", link.index, gateway="fd00::9")
        assert p.get_link("eth1").up
        listed = {(a.ip, a.prefixlen) for a in p.list_addresses(index=link.index)}
        assert {("10.65.0.5", 32), ("fd80::5", 128)} <= listed
        assert ("default", "172.17.8.9", "eth1") in [(r.dst, r.gateway, r.ifname) for r in p.list_routes(4)]

    addr = {a["local"]: a for a in peer.ip_json("addr show dev eth1")[0]["addr_info"]}
    assert addr["10.65.0.5"]["prefixlen"] == 32
    assert addr["fd80::5"]["prefixlen"] == 128 and not addr["fd80::5"].get("tentative")  # no DAD wait
    routes4 = {r["dst"]: r for r in peer.ip_json("-4 route show")}
    assert routes4["default"]["gateway"] == "172.17.8.9" and routes4["default"]["dev"] == "eth1"
    assert routes4["172.17.8.9"]["scope"] == "link"
    routes6 = {r["dst"]: r for r in peer.ip_json("-6 route show")}
    assert routes6["default"]["gateway"] == "fd00::9"

    with netlink.Session(peer.path) as p:
        index = p.get_link("eth1").index
        assert p.delete_route("default", index) is True
        assert p.delete_route("default", index) is False
        assert p.delete_route("172.17.8.9/32", index) is True
        assert p.delete_route("::/0", index) is True
        assert p.delete_address(index, "10.65.0.5") is True
        assert p.delete_address(index, "10.65.0.5") is False
    assert "default" not in {r["dst"] for r in peer.ip_json("-4 route show")}
    assert "10.65.0.5" not in {a["local"] for a in peer.ip_json("addr show dev eth1")[0]["addr_info"]}


def test_proxy_neighbour_and_sysctls(host, peer):
    with netlink.Session(host.path) as h:
        h.create_veth("calitest00005", "eth1", peer_netns=peer.path)
        index = h.get_link("calitest00005").index
        h.add_proxy_neighbour("fd00::1", index)
        h.add_proxy_neighbour("fd00::1", index)              # replace: no error the second time
    shown = host.run("ip -6 neigh show proxy").stdout
    assert "fd00::1 dev calitest00005 proxy" in shown

    sysctl.write("net/ipv4/conf/calitest00005/proxy_arp", 1, host.path)
    sysctl.write("net/ipv4/neigh/calitest00005/proxy_delay", 0, host.path)
    assert host.run("cat /proc/sys/net/ipv4/conf/calitest00005/proxy_arp").stdout.strip() == "1"
    assert host.run("cat /proc/sys/net/ipv4/neigh/calitest00005/proxy_delay").stdout.strip() == "0"
    assert sysctl.read("net/ipv4/conf/calitest00005/proxy_arp", host.path) == "1"
    # Our own namespace has no such interface: the write went where we asked.
    assert not os.path.exists("/proc/sys/net/ipv4/conf/calitest00005")
    with pytest.raises(netlink.NotPresent):
        sysctl.write("net/ipv4/conf/nosuchlink/proxy_arp", 1, host.path)
    assert sysctl.read("net/ipv4/conf/nosuchlink/proxy_arp", host.path) is None


def test_missing_namespace_is_named():
    with pytest.raises(netlink.NamespaceNotFound) as error:
        netlink.Session("/proc/999999999/ns/net")
    assert "/proc/999999999/ns/net" in str(error.value)


def test_back_in_own_namespace_after_a_failure_inside(host):
    own = netns_inode(os.getpid())
    with pytest.raises(RuntimeError):
        with netlink.entered_netns(host.path):
            assert os.stat("/proc/thread-self/ns/net").st_ino == netns_inode(host.process.pid) != own
            raise RuntimeError("boom")
    assert os.stat("/proc/thread-self/ns/net").st_ino == own


def test_without_cap_net_admin_it_is_not_root(host, peer):
    # An unprivileged user inside the host namespace may not create links.
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from calicoctl.host import netlink\n"
              "from calicoctl.errors import NotRoot\n"
              "try:\n"
              "    with netlink.Session() as s: s.create_veth('calitest00009', 'x9')\n"
              "except netlink.NetlinkPermissionDenied as e:\n"
              "    print('denied', isinstance(e, NotRoot), e.exit_code)\n" % REPO_ROOT)
    result = subprocess.run(["nsenter", "-t", str(host.process.pid), "-n", "--", "setpriv", "--reuid=65534",
                             "--regid=65534", "--clear-groups", sys.executable, "-c", script],
                            capture_output=True, text=True)
    assert result.stdout.strip() == "denied True 2", result.stderr
    assert "calitest00009" not in host.links()
    assert issubclass(netlink.NetlinkPermissionDenied, NotRoot)
