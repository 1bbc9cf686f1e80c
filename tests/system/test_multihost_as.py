"""AS numbers: the global default, ``--as`` per node, and eBGP between nodes
of different AS (an acceptance test of the original, and beyond it)."""
import pytest

from calicoctl.identity import RUN_DIR


@pytest.fixture(scope="module")
def as_cluster(make_cluster):
    cluster = make_cluster()
    h1 = cluster.add_host("calico-01", "172.17.8.101", start_node=False)
    # The default is set before any node starts; calico-01 inherits it.
    cluster.calicoctl(h1, "bgp", "default-node-as", "64512")
    cluster.start_node(h1)
    h2 = cluster.add_host("calico-02", "172.17.8.102", node_args=["--as=64512"])
    h3 = cluster.add_host("calico-03", "172.17.8.103", node_args=["--as=64699"])
    cluster.calicoctl(h1, "profile", "add", "ASP")
    workloads = [cluster.add_workload(host, "A%d" % n, "192.168.2.%d" % n, ["ASP"])
                 for n, host in enumerate((h1, h2, h3), 1)]
    return cluster, (h1, h2, h3), workloads


def test_nodes_peer_with_their_as_numbers(as_cluster):
    cluster, (h1, h2, h3), _ = as_cluster
    assert cluster.calicoctl(h1, "bgp", "default-node-as").stdout.strip() == "64512"
    config = h1.run(["cat", RUN_DIR + "/bird.cfg"], cwd="/").stdout
    assert "local 172.17.8.101 as 64512;" in config
    assert "neighbor 172.17.8.102 as 64512;" in config
    assert "neighbor 172.17.8.103 as 64699;" in config
    assert "local 172.17.8.103 as 64699;" in h3.run(["cat", RUN_DIR + "/bird.cfg"], cwd="/").stdout


def test_ibgp_and_ebgp_sessions_carry_traffic(as_cluster):
    cluster, (h1, h2, h3), workloads = as_cluster
    cluster.assert_connectivity(workloads)
    for host in (h1, h2, h3):
        peers = cluster.status_peers(host)
        assert len(peers) == 2
        assert all(p[2].startswith("Established") for p in peers.values()), peers
