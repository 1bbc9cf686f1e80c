"""BGP between three simulated hosts: the full mesh, mesh off, node peers,
global peers, and BIRD supervision (docs/decisions.md, "BGP").

One cluster for the module; each test leaves BGP configured as it found it
(mesh on, no explicit peers).
"""
import pytest

from tests.harness.multihost import route_to
from tests.harness.util import wait_for

IPS = {"calico-01": "172.17.8.101", "calico-02": "172.17.8.102", "calico-03": "172.17.8.103"}


@pytest.fixture(scope="module")
def trio(make_cluster):
    cluster = make_cluster()
    hosts = [cluster.add_host(name, ip) for name, ip in sorted(IPS.items())]
    cluster.calicoctl(hosts[0], "profile", "add", "TRIO")
    workloads = [cluster.add_workload(host, "W%d" % n, "192.168.1.%d" % n, ["TRIO"])
                 for n, host in enumerate(hosts, 1)]
    cluster.assert_connectivity(workloads)
    return cluster, hosts, workloads


@pytest.fixture
def mesh_restored(trio):
    cluster, hosts, _ = trio
    yield
    for host in hosts:
        for ip in IPS.values():
            cluster.calicoctl(host, "node", "bgp", "peer", "remove", ip, check=False)
        cluster.calicoctl(host, "bgp", "peer", "remove", IPS[host.name], check=False)
    cluster.calicoctl(hosts[0], "bgp", "node-mesh", "on")


def cross_host_routes_gone(cluster, hosts):
    return all(route_to(host, "192.168.1.%d" % n) is None
               for host in hosts for n in (1, 2, 3) if host is not hosts[n - 1])


def test_three_hosts_full_mesh(trio):
    cluster, hosts, workloads = trio
    cluster.assert_connectivity(workloads)
    peers = cluster.status_peers(hosts[0])
    assert set(peers) == {"172.17.8.102", "172.17.8.103"}
    assert all(p[0] == "node-to-node mesh" and p[2].startswith("Established") for p in peers.values())


def test_mesh_off_cuts_cross_host_traffic_and_node_peers_restore_it(trio, mesh_restored):
    cluster, hosts, workloads = trio
    cluster.calicoctl(hosts[1], "bgp", "node-mesh", "off", "--force")
    wait_for(lambda: cross_host_routes_gone(cluster, hosts), 20, message="routes withdrawn")
    assert not any(cluster.connectivity([(workloads[0], workloads[1]), (workloads[2], workloads[0])]).values())

    for host in hosts:
        for name, ip in IPS.items():
            if name != host.name:
                cluster.calicoctl(host, "node", "bgp", "peer", "add", ip, "as", "64511")
    cluster.assert_connectivity(workloads)
    peers = cluster.status_peers(hosts[2])
    assert set(peers) == {"172.17.8.101", "172.17.8.102"}
    assert all(p[0] == "node specific" and p[2].startswith("Established") for p in peers.values())


def test_global_peers_restore_traffic_without_the_mesh(trio, mesh_restored):
    cluster, hosts, workloads = trio
    cluster.calicoctl(hosts[0], "bgp", "node-mesh", "off", "--force")
    wait_for(lambda: cross_host_routes_gone(cluster, hosts), 20, message="routes withdrawn")
    for ip in IPS.values():
        cluster.calicoctl(hosts[0], "bgp", "peer", "add", ip, "as", "64511")
    cluster.assert_connectivity(workloads)
    peers = cluster.status_peers(hosts[0])
    assert {ip: p[0] for ip, p in peers.items()} == {ip: "global" for ip in IPS.values()}
    assert peers["172.17.8.102"][2].startswith("Established")
    # Every node peers with every global peer, itself included: that one never comes up.
    assert not peers["172.17.8.101"][2].startswith("Established")


def test_bird_killed_is_restarted_by_the_agent_with_routes_back(trio):
    cluster, hosts, workloads = trio
    host = hosts[1]
    old_pid = cluster.bird_pid(host)
    assert old_pid
    assert host.run(["kill", "-KILL", str(old_pid)], cwd="/").returncode == 0
    # Its peers notice at once (the TCP sessions close) and withdraw its routes.
    wait_for(lambda: route_to(hosts[0], "192.168.1.2") is None, 20, message="routes withdrawn")
    new_pid = wait_for(lambda: (cluster.bird_pid(host) or old_pid) != old_pid and cluster.bird_pid(host),
                         20, message="a new BIRD")
    assert host.run(["kill", "-0", str(new_pid)], cwd="/").returncode == 0
    cluster.assert_connectivity(workloads)
    assert "proto bird" in route_to(hosts[0], "192.168.1.2")
