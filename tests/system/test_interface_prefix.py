"""A host's own InterfacePrefix, end to end: the names ``container add``
gives host interfaces, the policy dataplane (nftables on calico-01,
iptables on calico-02), the agent's workload routes and BIRD's export
filter all follow it (docs/etcd-layout.md, "Per host").

calico-01 uses ``wl``, calico-02 ``tap``; the global value stays ``cali``.
A on calico-01 and B on calico-02 share a profile, C on calico-02 has its
own: A and B reach each other across the hosts, over routes BIRD exports
only for interfaces named with its host's prefix, and nobody reaches C.
"""
import json

import pytest

from calicoctl.datastore import paths
from tests.harness.dataplanes import agent_args, kernel
from tests.harness.multihost import route_to
from tests.harness.util import wait_for

PREFIXES = {"calico-01": "wl", "calico-02": "tap"}
DATAPLANES = {"calico-01": "nftables", "calico-02": "iptables"}


@pytest.fixture(scope="module")
def world(make_cluster):
    cluster = make_cluster()
    kv = cluster.etcd.kv()
    hosts = {}
    for name, ip in (("calico-01", "172.17.8.101"), ("calico-02", "172.17.8.102")):
        hosts[name] = cluster.add_host(name, ip, start_node=False)
        kv.put(paths.host_config(name, "InterfacePrefix"), PREFIXES[name])
        cluster.start_node(hosts[name], *agent_args(DATAPLANES[name]))
    h1, h2 = hosts["calico-01"], hosts["calico-02"]
    for profile in ("PROF_A_B", "PROF_C"):
        cluster.calicoctl(h1, "profile", "add", profile)
    workloads = {"A": cluster.add_workload(h1, "A", "192.168.0.1", ["PROF_A_B"]),
                 "B": cluster.add_workload(h2, "B", "192.168.0.2", ["PROF_A_B"]),
                 "C": cluster.add_workload(h2, "C", "192.168.0.3", ["PROF_C"])}
    yield cluster, workloads
    cluster.close()


def veth(cluster, workload):
    """The host interface etcd records for ``workload``'s endpoint."""
    endpoints = cluster.etcd.kv().tree(paths.host_dir(workload.host.name) + "/workload").entries
    names = [entry.value for entry in endpoints if entry.key.endswith(workload.endpoint_id)]
    assert len(names) == 1, names
    return json.loads(names[0])["name"]


def test_host_interfaces_are_named_with_the_host_prefix(world):
    cluster, w = world
    for workload in w.values():
        name = veth(cluster, workload)
        prefix = PREFIXES[workload.host.name]
        assert name == prefix + workload.endpoint_id[:15 - len(prefix)]
        assert workload.host.run(["ip", "link", "show", name], cwd="/").returncode == 0


def test_policy_follows_the_host_prefix_on_both_dataplanes(world):
    cluster, w = world
    cluster.assert_connectivity([w["A"], w["B"]], cut=[w["C"]])
    wl_kernel, tap_kernel = kernel(w["A"].host, "nftables"), kernel(w["B"].host, "iptables")
    assert wl_kernel.endpoint_programmed(veth(cluster, w["A"]))
    assert tap_kernel.endpoints(prefix="tap") == {veth(cluster, w["B"]), veth(cluster, w["C"])}
    # The workload interfaces are matched by the host's prefix, not the global one.
    assert '"wl*"' in wl_kernel.rules_text() and '"cali*"' not in wl_kernel.rules_text()
    assert "-i tap+" in tap_kernel.rules_text() and "cali+" not in tap_kernel.rules_text()


def test_routes_and_bird_export_follow_the_host_prefix(world):
    cluster, w = world
    h1, h2 = w["A"].host, w["B"].host
    # The agent's device routes to its own workloads...
    assert route_to(h1, "192.168.0.1").startswith("192.168.0.1 dev %s " % veth(cluster, w["A"]))
    assert route_to(h2, "192.168.0.2").startswith("192.168.0.2 dev %s " % veth(cluster, w["B"]))
    # ... are exported by BIRD, whose filter takes the host's prefix, to the other host.
    for host, prefix in ((h1, "wl"), (h2, "tap")):
        config = host.run(["cat", "/run/calico/bird.cfg"], cwd="/").stdout
        assert 'ifname ~ "%s*" then accept;' % prefix in config and '"cali*"' not in config
    wait_for(lambda: route_to(h2, "192.168.0.1") is not None, 30, message="calico-02 learning A's route")
    to_a = route_to(h2, "192.168.0.1")
    assert "via 172.17.8.101" in to_a and "proto bird" in to_a
    to_b = route_to(h1, "192.168.0.2")
    assert to_b is not None and "via 172.17.8.102" in to_b and "proto bird" in to_b
