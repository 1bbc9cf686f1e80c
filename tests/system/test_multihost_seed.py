"""The seed demonstration's 5x5 matrix across two simulated hosts (the one ``make demo`` runs).

calico-01 runs workloads A, B, C and calico-02 runs D and E; A, C and E
share PROF_A_C_E, B and D each have a profile of their own. With the
default profile rules (members accept traffic from members), A, C and E
reach each other -- across hosts, over the BGP routes BIRD installs -- and
B and D reach nobody and nobody reaches them.

The whole module runs twice: as the demonstration does (etcd v3 with no
v2 API, the default policy dataplane, nftables: ``calicoctl node`` without
options), and on etcd v2 with ``calicoctl node --dataplane=iptables``. The
dataplane does not depend on the datastore (the agent hands both the same
model), so these two cases cover each datastore and each dataplane.
"""
import pytest

from tests.harness.dataplanes import DEFAULT
from tests.harness.multihost import route_to
from tests.harness.util import wait_for

PROFILES = {"A": "PROF_A_C_E", "B": "PROF_B", "C": "PROF_A_C_E", "D": "PROF_D", "E": "PROF_A_C_E"}


CASES = [("etcdv3", DEFAULT), ("etcdv2", "iptables")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(case) for case in CASES])
def seed(request, make_cluster):
    datastore, dataplane = request.param
    cluster = make_cluster(datastore=datastore, dataplane=None if dataplane == DEFAULT else dataplane)
    h1 = cluster.add_host("calico-01", "172.17.8.101")
    h2 = cluster.add_host("calico-02", "172.17.8.102")
    for profile in sorted(set(PROFILES.values())):
        cluster.calicoctl(h1, "profile", "add", profile)
    workloads = {}
    for number, letter in enumerate("ABCDE", 1):
        host = h1 if letter in "ABC" else h2
        workloads[letter] = cluster.add_workload(host, letter, "192.168.0.%d" % number,
                                                 [PROFILES[letter]])
    yield cluster, workloads
    cluster.close()         # before the next case builds its own


def test_seed_matrix_across_two_hosts(seed):
    cluster, w = seed
    cluster.assert_connectivity([w["A"], w["C"], w["E"]], cut=[w["B"], w["D"]])


def test_cross_host_routes_come_from_bgp(seed):
    cluster, w = seed
    h1, h2 = cluster.hosts["calico-01"], cluster.hosts["calico-02"]
    to_e = route_to(h1, "192.168.0.5")
    assert to_e is not None and "via 172.17.8.102" in to_e and "proto bird" in to_e
    to_a = route_to(h2, "192.168.0.1")
    assert to_a is not None and "via 172.17.8.101" in to_a and "proto bird" in to_a
    # A local workload's route is the agent's device route, not BGP's.
    assert "proto bird" not in route_to(h1, "192.168.0.1")


def test_status_shows_each_host_the_other_as_an_established_mesh_peer(seed):
    cluster, _ = seed
    for host, other in (("calico-01", "172.17.8.102"), ("calico-02", "172.17.8.101")):
        status = cluster.calicoctl(cluster.hosts[host], "status").stdout
        assert "Dataplane (%s): in sync" % (cluster.dataplane or DEFAULT) in status
        peers = cluster.status_peers(cluster.hosts[host])
        assert set(peers) == {other}
        peer_type, state, info = peers[other]
        assert peer_type == "node-to-node mesh" and state == "up" and info.startswith("Established")


def test_node_stop_stops_bird_and_the_peers_drop_its_routes(seed):
    # Last in this module: it takes calico-02 down.
    cluster, w = seed
    h1, h2 = cluster.hosts["calico-01"], cluster.hosts["calico-02"]
    bird_pid = cluster.bird_pid(h2)
    assert bird_pid and h2.run(["kill", "-0", str(bird_pid)], cwd="/").returncode == 0
    cluster.calicoctl(h2, "node", "stop", "--force")
    assert h2.run(["kill", "-0", str(bird_pid)], cwd="/").returncode != 0
    wait_for(lambda: route_to(h1, "192.168.0.5") is None, 15, message="calico-01 dropping E's route")
    assert cluster.status_peers(h1) == {}
