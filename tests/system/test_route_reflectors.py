"""BGP route reflectors on six simulated hosts, IPv4 and IPv6 (docs/decisions.md,
"Route reflectors").

One cluster for the module; its tests run in order, each starting from
where the one before left it: (1) the mesh off with calico-01 and calico-02
reflecting, (2) calico-01 killed and started again, (3) calico-02 an
ordinary node again and the mesh back on.
"""
import pytest

from calicoctl.identity import RUN_DIR
from calicoctl.host.bird import session_name
from tests.harness.multihost import bird_protocols, routes
from tests.harness.util import wait_for

HOSTS = [("calico-%02d" % n, "172.17.8.1%02d" % n, "fd00:8::1%02d" % n) for n in range(1, 7)]
CLUSTER_ID = "244.0.0.1"
V6 = "fd80:24e2:f998:72d6::"
BIRD_SOCKET = RUN_DIR + "/bird.ctl"
WITH_IPV6 = ("192.168.1.4", "192.168.1.6")


def ipv6_of(workload):
    return V6 + workload.ip.rsplit(".", 1)[1]


@pytest.fixture(scope="module")
def six(make_cluster):
    cluster = make_cluster(subnet6="fd00:8::/64", gateway6="fd00:8::1")
    hosts = [cluster.add_host(name, ip, ip6=ip6) for name, ip, ip6 in HOSTS]
    cluster.calicoctl(hosts[0], "profile", "add", "SIX")
    cluster.calicoctl(hosts[0], "profile", "add", "ALONE")
    workloads = [cluster.add_workload(host, "W%d" % n, "192.168.1.%d" % n, ["SIX"])
                 for n, host in enumerate(hosts, 1)]
    # IPv6 on two clients' workloads: their routes travel over the IPv6 sessions.
    for workload in workloads:
        if workload.ip in WITH_IPV6:
            cluster.calicoctl(workload.host, "container", workload.name, "ip", "add", ipv6_of(workload))
    outsider = cluster.add_workload(hosts[5], "X", "192.168.1.99", ["ALONE"])
    cluster.assert_connectivity(workloads, cut=[outsider])
    return cluster, hosts, workloads, outsider


def reflected(hosts, reflectors):
    """host -> {protocol name} it runs with the mesh off and ``reflectors``."""
    def sessions(host):
        peers = [(other, "Reflector" if other in reflectors else "Client")
                 for other in hosts if other is not host and (other in reflectors or host in reflectors)]
        return {session_name(kind, address) for other, kind in peers for address in (other.ip, other.ip6)}
    return sessions


def bgp_sessions(host):
    """{protocol name: ProtocolRow} of the BGP protocols BIRD runs in ``host``."""
    return {row.name: row for row in bird_protocols(host, BIRD_SOCKET) if row.proto == "BGP"}


def wait_sessions(hosts, expected, timeout=30):
    """Until each host runs exactly ``expected(host)``'s sessions, all Established."""
    def settled():
        return all(set(sessions) == expected(host) and all(row.info.startswith("Established")
                                                          for row in sessions.values())
                   for host in hosts for sessions in [bgp_sessions(host)])
    wait_for(settled, timeout, interval=0.2, message="BGP sessions %s" % {h.name: sorted(expected(h))
                                                                         for h in hosts})


def missing_routes(hosts, workloads):
    """Workload routes a host lacks, or has through another host than the
    workload's own (a reflector passes routes on with their next hop)."""
    missing = []
    for host in hosts:
        table = {4: routes(host, 4), 6: routes(host, 6)}
        for workload in workloads:
            if workload.host is host:
                continue
            wanted = [(4, workload.ip, workload.host.ip)]
            if workload.ip in WITH_IPV6:
                wanted.append((6, ipv6_of(workload), workload.host.ip6))
            for version, address, owner in wanted:
                line = next((line for line in table[version] if line.split()[0] == address), "")
                if "via %s " % owner not in line + " " or "proto bird" not in line:
                    missing.append("%s: %s (%r)" % (host.name, address, line))
    return missing


def wait_routes(hosts, workloads, timeout=30):
    wait_for(lambda: not missing_routes(hosts, workloads), timeout, interval=0.2,
             message="every workload route on every host")


def test_two_reflectors_carry_every_route_with_the_mesh_off(six):
    cluster, hosts, workloads, outsider = six
    reflectors = hosts[:2]
    # With the mesh on, a reflector changes nothing.
    result = cluster.start_node(hosts[0], "--rr-cluster-id=%s" % CLUSTER_ID)
    assert "calico-01 is now a route reflector with cluster ID 244.0.0.1." in result.stdout
    assert "mesh is on" in result.stdout
    peers = cluster.status_peers(hosts[0])
    assert {address: kind for address, (kind, _, _) in peers.items()} == {
        address: "node-to-node mesh" for _, ip, ip6 in HOSTS[1:] for address in (ip, ip6)}
    assert "This host is a BGP route reflector (cluster ID 244.0.0.1)." in \
        cluster.calicoctl(hosts[0], "status").stdout

    cluster.calicoctl(hosts[3], "bgp", "node-mesh", "off")
    wait_sessions(hosts, reflected(hosts, reflectors[:1]))
    wait_routes(hosts, workloads)
    birds = {host.name: cluster.bird_pid(host) for host in hosts}
    before = {host.name: bgp_sessions(host) for host in hosts[2:]}

    # A second reflector on a running node: its BGP follows, nobody else's sessions restart.
    result = cluster.calicoctl(hosts[1], "node", "--rr-cluster-id=%s" % CLUSTER_ID)
    assert "calico-02 is now a route reflector with cluster ID 244.0.0.1." in result.stdout
    assert "reconfigures BIRD now" in result.stdout
    wait_sessions(hosts, reflected(hosts, reflectors))
    for host in hosts[2:]:
        for address in (hosts[0].ip, hosts[0].ip6):
            name = session_name("Reflector", address)
            assert bgp_sessions(host)[name].since == before[host.name][name].since, (host.name, name)
    assert {host.name: cluster.bird_pid(host) for host in hosts} == birds      # reconfigured, not restarted

    wait_routes(hosts, workloads)
    cluster.assert_connectivity(workloads, cut=[outsider])
    for source, target in ((workloads[3], V6 + "6"), (workloads[5], V6 + "4")):
        cluster.wait_ping(source, target)

    client = cluster.status_peers(hosts[4])
    assert {address: kind for address, (kind, _, _) in client.items()} == {
        address: "route reflector" for _, ip, ip6 in HOSTS[:2] for address in (ip, ip6)}
    assert all(state.startswith("Established") for _, _, state in client.values())
    reflector = cluster.status_peers(hosts[0])
    assert reflector[hosts[1].ip6][0] == "route reflector"
    assert {reflector[host.ip][0] for host in hosts[2:]} == {"route reflector client"}

    shown = cluster.calicoctl(hosts[4], "bgp", "peer", "show").stdout
    assert "| calico-01       | 172.17.8.101 | fd00:8::101  | 244.0.0.1  |" in shown
    assert "| calico-02       | 172.17.8.102 | fd00:8::102  | 244.0.0.1  |" in shown


def test_routes_stay_through_the_other_reflector_when_one_dies(six):
    cluster, hosts, workloads, outsider = six
    dead, alive = hosts[0], hosts[1:]
    agent = int(dead.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout)
    bird = cluster.bird_pid(dead)
    for pid in (agent, bird):                # the agent first, or it starts BIRD again
        assert dead.run(["kill", "-KILL", str(pid)], cwd="/").returncode == 0

    gone = {session_name("Reflector", dead.ip), session_name("Reflector", dead.ip6)}
    wait_for(lambda: not any(bgp_sessions(host)[name].info.startswith("Established")
                             for host in hosts[2:] for name in gone), 20, message="sessions to calico-01 down")
    # Already now, with no time to re-learn anything: every route of a live host is there.
    assert missing_routes(alive, workloads[1:]) == []
    cluster.assert_connectivity(workloads[1:], cut=[outsider])

    # Back again (as a reflector still: the role is kept in etcd).
    result = cluster.start_node(dead)
    assert "already running" not in result.stdout
    wait_sessions(hosts, reflected(hosts, hosts[:2]))
    wait_routes(hosts, workloads)


def test_reflector_back_to_an_ordinary_node_then_the_mesh_on(six):
    cluster, hosts, workloads, outsider = six
    result = cluster.calicoctl(hosts[1], "node", "--rr-cluster-id=none")
    assert "calico-02 is no longer a route reflector (it was one with cluster ID 244.0.0.1)." in result.stdout
    wait_sessions(hosts, reflected(hosts, hosts[:1]))
    wait_routes(hosts, workloads)

    cluster.calicoctl(hosts[2], "bgp", "node-mesh", "on")
    wait_sessions(hosts, lambda host: {session_name("Mesh", address) for other in hosts if other is not host
                                       for address in (other.ip, other.ip6)})
    wait_routes(hosts, workloads)
    cluster.assert_connectivity(workloads, cut=[outsider])
