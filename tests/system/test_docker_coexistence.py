"""Calico workloads beside a stock Docker that manages iptables.

A Docker that manages iptables sets the FORWARD policy to DROP when it is
the one to enable forwarding, and adds its own chains and MASQUERADE. On
such a host (a simulated host whose own dockerd runs with its default
bridge and ``--iptables=true``; forwarding is on in simulated hosts before
Docker starts, so the fixture sets the policy as Docker would have), on
each policy dataplane:

- workloads on a calico Docker network reach each other, and not those of
  another network (nftables: our table's accepts alone would still meet
  Docker's DROP; the agent keeps accepts for workload interfaces in
  iptables' FORWARD);
- Docker's own containers on its bridge still reach each other and, through
  Docker's MASQUERADE, the LAN.
"""
import pytest

from tests.harness.dataplanes import DATAPLANES
from tests.system.test_docker_networks import DRIVER, docker, ping, run

HOST = ("coexist", "172.17.8.86")


@pytest.fixture(scope="module", params=DATAPLANES)
def world(request, make_cluster):
    cluster = make_cluster(dataplane=request.param)
    name, ip = HOST
    host = cluster.add_host("%s-%s" % (name, request.param[:3]), ip, start_node=False, own_dockerd=True,
                            docker_iptables=True)
    assert host.run(["iptables-nft", "-P", "FORWARD", "DROP"], cwd="/").returncode == 0
    cluster.start_node(host)
    docker(host, "network", "create", *DRIVER, "front")
    docker(host, "network", "create", *DRIVER, "back")
    for container, network in (("f1", "front"), ("f2", "front"), ("b1", "back"), ("d1", "bridge"),
                               ("d2", "bridge")):
        run(host, network, container)
    yield cluster, host
    for container in ("f1", "f2", "b1", "d1", "d2"):
        docker(host, "rm", "-f", container, check=False)
    for network in ("front", "back"):
        docker(host, "network", "rm", network, check=False)
    cluster.close()         # before the next dataplane's cluster is built


def address(host, container, network):
    return docker(host, "inspect", "-f", "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % network,
                  container).stdout.strip()


def test_docker_owns_forward_and_drops_what_it_does_not_know(world):
    _, host = world
    rules = host.run(["iptables-nft", "-S", "FORWARD"], cwd="/").stdout
    assert "-P FORWARD DROP" in rules and "-j DOCKER-USER" in rules and "-o docker0 -j DOCKER" in rules


def test_calico_networks_keep_their_policy_beside_dockers_drop(world):
    _, host = world
    assert ping(host, "f1", address(host, "f2", "front"))
    assert ping(host, "f2", address(host, "f1", "front"))
    assert not ping(host, "f1", address(host, "b1", "back"))
    assert not ping(host, "b1", address(host, "f1", "front"))


def test_dockers_bridge_containers_still_work(world):
    cluster, host = world
    assert ping(host, "d1", address(host, "d2", "bridge"))
    assert ping(host, "d1", cluster.lan.gateway)          # out through Docker's MASQUERADE
