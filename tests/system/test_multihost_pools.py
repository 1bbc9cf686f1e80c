"""Pool options across hosts, checked by traffic: ``--vxlan`` (without BGP),
``--ipip`` (where the kernel has it) and ``--nat-outgoing``; the workload
MTU each pool gives (checked with DF pings of the largest size that fits)."""
import subprocess

import pytest

from calicoctl.ops.container_logic import calculate_veth_name
from tests.harness.multihost import link_mtu, parse_link_mtu, route_to, tcp_peer_address
from tests.harness.util import wait_for

VXLAN_OVERHEAD = 50          # outer IPv4, UDP, VXLAN, inner Ethernet
IP_AND_ICMP = 28             # what a ping adds to its data


@pytest.fixture(scope="module")
def pair(make_cluster):
    cluster = make_cluster()
    h1 = cluster.add_host("calico-01", "172.17.8.101")
    h2 = cluster.add_host("calico-02", "172.17.8.102")
    cluster.calicoctl(h1, "profile", "add", "POOLS")
    return cluster, h1, h2


def test_vxlan_pool_works_without_bgp(pair):
    cluster, h1, h2 = pair
    cluster.calicoctl(h1, "pool", "add", "10.65.0.0/16", "--vxlan")
    cluster.calicoctl(h1, "bgp", "node-mesh", "off", "--force")
    try:
        v1 = cluster.add_workload(h1, "V1", "10.65.0.1", ["POOLS"])
        v2 = cluster.add_workload(h2, "V2", "10.65.0.2", ["POOLS"])
        cluster.assert_connectivity([v1, v2])
        for host, far in ((h1, "10.65.0.2"), (h2, "10.65.0.1")):
            line = route_to(host, far)
            assert "dev vxlan.calico" in line and "onlink" in line and "proto bird" not in line
        # No BGP session at all: the tunnel alone carries the traffic.
        assert cluster.status_peers(h1) == {}
    finally:
        cluster.calicoctl(h1, "bgp", "node-mesh", "on")


def kernel_has_ipip(host):
    """Whether ``tunl0`` exists or can be made in ``host``; and the kernel's answer."""
    if host.run(["ip", "link", "show", "tunl0"], cwd="/").returncode == 0:
        return True, ""
    probe = host.run(["ip", "link", "add", "tunl0", "type", "ipip"], cwd="/")
    return probe.returncode == 0, (probe.stderr or probe.stdout).strip().splitlines()[-1:]


def test_ipip_pool_traffic_goes_through_tunl0(pair):
    cluster, h1, h2 = pair
    supported, detail = kernel_has_ipip(h1)
    if not supported:
        pytest.skip("this kernel has no IP-in-IP (ip link add tunl0 type ipip: %s); IPIP pools "
                    "are routed by BGP without encapsulation here" % " ".join(detail))
    cluster.calicoctl(h1, "pool", "add", "10.67.0.0/16", "--ipip")
    i1 = cluster.add_workload(h1, "I1", "10.67.0.1", ["POOLS"])
    i2 = cluster.add_workload(h2, "I2", "10.67.0.2", ["POOLS"])
    cluster.assert_connectivity([i1, i2])
    assert "dev tunl0" in route_to(h1, "10.67.0.2")


def test_ipip_pool_without_kernel_support_is_routed_by_bgp(pair):
    cluster, h1, h2 = pair
    supported, _ = kernel_has_ipip(h1)
    if supported:
        pytest.skip("this kernel has IP-in-IP; the fallback does not apply")
    cluster.calicoctl(h1, "pool", "add", "10.69.0.0/16", "--ipip")
    f1 = cluster.add_workload(h1, "F1", "10.69.0.1", ["POOLS"])
    f2 = cluster.add_workload(h2, "F2", "10.69.0.2", ["POOLS"])
    cluster.assert_connectivity([f1, f2])
    line = route_to(h1, "10.69.0.2")
    assert "via 172.17.8.102 dev eth0" in line and "proto bird" in line
    log = h1.run(["cat", "/var/log/calico/agent.log"], cwd="/").stdout
    assert "this kernel has no IP-in-IP" in log


def test_nat_outgoing_pool_reaches_outside_with_the_host_address(pair):
    cluster, h1, h2 = pair
    cluster.calicoctl(h1, "pool", "add", "10.66.0.0/16", "--nat-outgoing")
    n1 = cluster.add_workload(h1, "N1", "10.66.0.1", ["POOLS"])
    lan = cluster.lan

    def connect(port):
        return lambda: n1.container.exec_run(["sh", "-c", "echo hi | nc -w 1 %s %d" % (lan.gateway, port)])

    # The LAN gateway is outside every pool and has no route to 10.66/16:
    # only NAT lets the workload talk to it, and it sees calico-01's address.
    seen = wait_for(lambda: tcp_peer_address(lan, lan.gateway, 7101, connect(7101), timeout=3),
                      20, message="a connection from the workload")
    assert seen == h1.ip

    # Between pools nothing is rewritten: a workload on calico-02 sees 10.66.0.1.
    other = cluster.add_workload(h2, "N2", "192.168.3.2", ["POOLS"])
    cluster.assert_connectivity([n1, other])
    other.container.reload()
    pid = other.container.attrs["State"]["Pid"]
    seen = tcp_peer_address(h2, "192.168.3.2", 7102,
                            lambda: n1.container.exec_run(["sh", "-c", "echo hi | nc -w 1 192.168.3.2 7102"]),
                            timeout=5, netns_of_pid=pid)
    assert seen == "10.66.0.1"


# -- workload MTU -----------------------------------------------------------------------

def in_workload(workload, *command):
    """Run ``command`` (this machine's binaries) in the workload's network namespace."""
    workload.container.reload()
    pid = workload.container.attrs["State"]["Pid"]
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "--"] + list(command),
                          capture_output=True, text=True, timeout=20)


def veth_mtus(workload):
    """(host end, container end) MTUs of the workload's veth."""
    return (link_mtu(workload.host, calculate_veth_name(workload.endpoint_id, "cali")),
            parse_link_mtu(in_workload(workload, "ip", "-o", "link", "show", "eth1").stdout))


def df_ping(source, ip, size):
    """One ping with ``size`` data bytes and Don't Fragment set (iputils, not busybox)."""
    return in_workload(source, "ping", "-M", "do", "-s", str(size), "-c", "1", "-W", "2", ip)


def test_a_vxlan_workload_mtu_fits_the_tunnel_also_after_a_restart(pair):
    cluster, h1, h2 = pair
    cluster.calicoctl(h1, "pool", "add", "10.68.0.0/16", "--vxlan")
    m1 = cluster.add_workload(h1, "M1", "10.68.0.1", ["POOLS"])
    m2 = cluster.add_workload(h2, "M2", "10.68.0.2", ["POOLS"])
    mtu = link_mtu(h1, "eth0") - VXLAN_OVERHEAD
    assert veth_mtus(m1) == veth_mtus(m2) == (mtu, mtu)
    cluster.assert_connectivity([m1, m2])
    largest = mtu - IP_AND_ICMP
    for source, target in ((m1, m2), (m2, m1)):
        passed = df_ping(source, target.ip, largest)
        assert passed.returncode == 0, passed.stdout + passed.stderr
    too_big = df_ping(m1, m2.ip, largest + 1)
    assert too_big.returncode != 0 and "message too long" in too_big.stdout + too_big.stderr
    # The agent re-creates the endpoint in the restarted container's namespace: same MTU.
    m1.container.restart(timeout=1)
    wait_for(lambda: veth_mtus(m1) == (mtu, mtu), timeout=20, interval=0.1, message="M1 re-created")
    cluster.wait_ping(m1, m2.ip)
    passed = df_ping(m1, m2.ip, largest)
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_a_workload_mtu_without_encapsulation_is_the_lan_mtu(pair):
    cluster, h1, h2 = pair
    p1 = cluster.add_workload(h1, "P1", "192.168.5.1", ["POOLS"])
    p2 = cluster.add_workload(h2, "P2", "192.168.5.2", ["POOLS"])
    lan = link_mtu(h1, "eth0")
    assert veth_mtus(p1) == veth_mtus(p2) == (lan, lan)
    cluster.assert_connectivity([p1, p2])
    passed = df_ping(p1, p2.ip, lan - IP_AND_ICMP)
    assert passed.returncode == 0, passed.stdout + passed.stderr
