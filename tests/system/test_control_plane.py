"""Workloads cannot reach the control plane: two simulated hosts, real Docker
workloads, the real agent, BIRD and etcd (issue 8).

calico-01 runs workloads A and B, calico-02 runs E; A and E share OPEN (the
default rules: members accept members, outbound allows everything), B has
a profile of its own. etcd runs in the LAN's own namespace, a third
address (172.17.8.1, on a port of its own, not 2379), as a cluster's etcd
may run outside its Calico hosts; the workloads' pool has NAT-outgoing
(the LAN has no route to them), so what reaches etcd from a workload
carries its host's address. Each host runs a TCP echo server on 2379, 2380,
etcd's port and a control port, IPv4 and IPv6; BIRD listens on 179.

Whatever OPEN allows, A must reach none of the protected ports on either
host or on etcd, while the control port, its own host's other services
and OPEN's workload-to-workload traffic (on those very ports, too) still
flow. Switching the protection off is the control that shows each check
can fail. The module runs on each policy dataplane (a cluster each).
"""
import base64
import json

import pytest

from tests.harness.dataplanes import DATAPLANES, kernel
from tests.harness.multihost import reachable, start_echo_server
from tests.harness.util import wait_for

H1, H2, H3 = ("calico-01", "172.17.8.101", "fd00:8::101"), ("calico-02", "172.17.8.102", "fd00:8::102"), \
    ("calico-03", "172.17.8.103", "fd00:8::103")
ECHO_PORTS = (2379, 2380, 7070)
CONTROL = 7070
ATTACK_KEY = "/calico/v1/workload-was-here"


@pytest.fixture(scope="module", params=DATAPLANES)
def world(request, make_cluster):
    cluster = make_cluster(subnet6="fd00:8::/64", gateway6="fd00:8::1", dataplane=request.param)
    hosts = [cluster.add_host(name, ip, ip6=ip6) for name, ip, ip6 in (H1, H2)]
    etcd_port = cluster.etcd.server.client_port
    servers = [start_echo_server(host, ECHO_PORTS + (etcd_port,)) for host in hosts]
    cluster.calicoctl(hosts[0], "pool", "add", "192.168.0.0/16", "--nat-outgoing")
    cluster.calicoctl(hosts[0], "profile", "add", "OPEN")
    cluster.calicoctl(hosts[0], "profile", "add", "ALONE")
    a = cluster.add_workload(hosts[0], "A", "192.168.0.1", ["OPEN"])
    b = cluster.add_workload(hosts[0], "B", "192.168.0.2", ["ALONE"])
    e = cluster.add_workload(hosts[1], "E", "192.168.0.5", ["OPEN"])
    for load, ip6 in ((a, "fd80:24e2:f998:72d6::1"), (e, "fd80:24e2:f998:72d6::5")):
        cluster.calicoctl(load.host, "container", load.name, "ip", "add", ip6)
        load.ip6 = ip6
    # E serves on the protected ports too: workload-to-workload traffic on them must flow.
    for port in (2379, 179):
        e.container.exec_run(["nc", "-ll", "-p", str(port), "-e", "echo", "hello"], detach=True)
    cluster.assert_connectivity([a, e], cut=[b])
    w = type("World", (), {})()
    w.cluster, w.h1, w.h2, w.a, w.b, w.e = cluster, hosts[0], hosts[1], a, b, e
    w.etcd_ip, w.etcd_port = cluster.etcd.server.host, etcd_port
    w.dataplane = request.param
    yield w
    for server in servers:
        server.kill()
        server.wait()
    cluster.close()         # before the next dataplane's cluster is built


@pytest.fixture
def w(world):
    """The world with the protection on (a test that switches it off leaves it so on failure)."""
    world.cluster.calicoctl(world.h1, "control-plane", "protection", "on")
    world.cluster.calicoctl(world.h1, "control-plane", "ports", "--default")
    return world


def connects(load, ip, port, wait=1):
    """True if ``load`` opens a TCP connection to ip:port (busybox nc, ``wait`` s)."""
    return load.container.exec_run(["nc", "-w", str(wait), ip, str(port)]).exit_code == 0


def etcd_write_from(load, w):
    """A workload's attempt to write into etcd with its v3 API's HTTP gateway."""
    url = "http://%s:%d/v3/kv/put" % (w.etcd_ip, w.etcd_port)
    body = json.dumps({"key": base64.b64encode(ATTACK_KEY.encode()).decode(), "value": "eA=="})
    return load.container.exec_run(["timeout", "3", "wget", "-q", "-O-", "--post-data=" + body, url])


def remove_attack(w):
    w.cluster.etcd.kv().delete(ATTACK_KEY)


def attack_landed(w):
    return w.cluster.etcd.kv().get(ATTACK_KEY) is not None


def protected_targets(w, version=4):
    """(what, address, port) of every control-plane port A must not reach."""
    if version == 6:
        return [(H1[0], H1[2], 2379), (H1[0], H1[2], 2380), (H1[0], H1[2], 179),
                (H2[0], H2[2], 2379), (H2[0], H2[2], 179)]
    return [(H1[0], H1[1], 2379), (H1[0], H1[1], 2380), (H1[0], H1[1], 179), (H1[0], H1[1], w.etcd_port),
            (H2[0], H2[1], 2379), (H2[0], H2[1], 2380), (H2[0], H2[1], 179), (H2[0], H2[1], w.etcd_port),
            ("etcd", w.etcd_ip, w.etcd_port)]


def a_reaches(w, targets):
    """The (address, port) of ``targets`` A connects to, probed all at once."""
    return reachable(lambda args: w.a.container.exec_run(args).output.decode(), targets, nc="nc")


def reached(w, version=4):
    """The protected targets A connects to."""
    targets = protected_targets(w, version)
    found = a_reaches(w, {(ip, port) for _, ip, port in targets})
    return sorted("%s:%d" % (what, port) for what, ip, port in targets if (ip, port) in found)


@pytest.mark.parametrize("version", [4, 6])
def test_a_workload_reaches_no_control_plane_port_on_any_host(w, version):
    h1, h2 = (H1[1], H2[1]) if version == 4 else (H1[2], H2[2])
    # Controls first: the paths work, and other ports of both hosts are open.
    wait_for(lambda: connects(w.a, h1, CONTROL) and connects(w.a, h2, CONTROL), 20,
               message="A reaching both hosts' control port over IPv%d" % version)
    assert reached(w, version) == []
    # Workloads of the profile still reach each other, on those ports too.
    peer = w.e.ip if version == 4 else w.e.ip6
    assert w.a.ping(peer)
    assert connects(w.a, peer, 2379) and connects(w.a, peer, 179)
    assert not w.b.ping(w.a.ip)


def test_an_etcd_write_from_a_workload_does_not_land(w):
    result = etcd_write_from(w.a, w)
    assert result.exit_code != 0
    assert not attack_landed(w)


def test_status_says_the_protection_is_active(w):
    for host in (w.h1, w.h2):
        out = w.cluster.calicoctl(host, "status").stdout
        assert ("Control-plane protection: active (TCP 179, 2379, 2380, %d closed to workloads on this host "
                "and on 3 IPv4 and 2 IPv6 protected addresses)." % w.etcd_port) in out, out


def test_switching_it_off_opens_the_control_plane_and_on_closes_it(w):
    cluster = w.cluster
    cluster.calicoctl(w.h2, "control-plane", "protection", "off")
    try:
        everything = sorted("%s:%d" % (what, port) for what, _, port in protected_targets(w))
        wait_for(lambda: reached(w) == everything, 20,
                   message="every control-plane port open with the protection off")
        assert len(reached(w, 6)) == len(protected_targets(w, 6))
        assert etcd_write_from(w.a, w).exit_code == 0 and attack_landed(w)
        assert "Control-plane protection: OFF" in cluster.calicoctl(w.h1, "status").stdout
    finally:
        remove_attack(w)
        cluster.calicoctl(w.h2, "control-plane", "protection", "on")
    wait_for(lambda: reached(w) == [], 20, message="the control plane closed again")
    assert etcd_write_from(w.a, w).exit_code != 0 and not attack_landed(w)


def test_ports_can_be_changed(w):
    w.cluster.calicoctl(w.h1, "control-plane", "ports", "%d" % CONTROL)
    wait_for(lambda: not connects(w.a, H2[1], CONTROL), 20, message="the control port closed")
    # 2379 stays closed on etcd's address: the port of the agents' etcd is always protected.
    assert connects(w.a, H2[1], 2379) and not connects(w.a, w.etcd_ip, w.etcd_port)


def test_a_host_joining_later_is_protected_when_its_node_returns(w):
    cluster = w.cluster
    h1, h2 = kernel(w.h1, w.dataplane), kernel(w.h2, w.dataplane)
    h3 = cluster.add_host(H3[0], H3[1], ip6=H3[2], start_node=False)
    server = start_echo_server(h3, ECHO_PORTS)
    try:
        # Not a Calico host yet: nothing protects it (the control). IPv4 comes
        # back through NAT-outgoing; IPv6 needs a route to the workloads.
        cluster.sh(h3, "ip -6 route add fd80:24e2:f998:72d6::/64 via %s" % H1[2])
        wait_for(lambda: connects(w.a, H3[1], 2379) and connects(w.a, H3[2], 2380), 20,
                   message="A reaching calico-03 before it joins")
        # (Once any rules an earlier change left behind are cleaned out.)
        rules_before = wait_for(lambda: len(h1.protection_rules(4)) == 1 and h1.protection_rules(4), 40,
                                  message="one IPv4 protection rule on calico-01")
        cluster.start_node(h3)
        # At once, without waiting: the other hosts have it in their sets already.
        probes = {(H3[1], 2379), (H3[2], 2380), (H3[1], 179), (H3[1], CONTROL)}
        assert a_reaches(w, probes) == {(H3[1], CONTROL)}
        assert H3[1] in h1.protected_addresses(4) and H3[2] in h2.protected_addresses(6)
        # Members, not rules: no rule names it, the set's rules are as they were.
        assert h1.protection_rules(4) == rules_before and H3[1] not in h1.rules_text()
        # It leaves: open again.
        cluster.calicoctl(h3, "node", "stop")
        wait_for(lambda: connects(w.a, H3[1], 2379), 20, message="calico-03 unprotected once it left")
        assert H3[1] not in h1.protected_addresses(4)
    finally:
        server.kill()
        server.wait()
        cluster.calicoctl(h3, "node", "stop", "--force", check=False)


def test_bad_data_in_etcd_keeps_the_protection(w):
    from calicoctl.datastore import paths
    client = w.cluster.etcd.kv()
    client.put(paths.control_plane_protection(), json.dumps({"enabled": False, "ports": "none"}))
    try:
        wait_for(lambda: "not valid" in w.cluster.calicoctl(w.h1, "status").stdout, 20,
                   message="status showing the bad setting")
        assert reached(w) == []
    finally:
        client.delete(paths.control_plane_protection())
