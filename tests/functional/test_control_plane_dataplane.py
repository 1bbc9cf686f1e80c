"""Control-plane protection in the policy dataplanes, against a real kernel.

Each policy dataplane (nftables and iptables, ``tests.harness.dataplanes``)
is driven directly (snapshot, updates, flush) inside one simulated host,
with workloads as network namespaces on ``cali*`` veths and TCP servers in
them and on the host: a workload whose profile allows everything must
still not reach the protected ports on its host or on a protected address
behind it, IPv4 and IPv6, while every other port and every unprotected
address stays open. The host and its workloads are made once; each test
starts from a kernel with neither dataplane's state.

Workload ``b`` plays "another Calico host": its address is recorded as a
host address in the test's etcd data, so traffic to it is forwarded by
this host exactly as traffic to another host would be. ``c`` is not
protected: the control that shows the checks can fail.
"""
import json
import subprocess
import sys
import time

import pytest

from calicoctl.agent.config import AgentConfig
from calicoctl.agent.policy.iptables.chain_reconciler import CLEANUP_DELAY
from calicoctl.agent.policy.iptables.dataplane import RETRY_INTERVAL
from calicoctl.agent.policy.nftables import dataplane as nftables_dataplane
from calicoctl.datastore import paths
from tests.harness.dataplanes import DATAPLANES, kernel, make_component, recorder, wipe
from tests.harness.feed import feed
from tests.harness.util import wait_for
from tests.harness.multihost import NetnsWorkload, start_echo_server

pytestmark = pytest.mark.parametrize("dataplane", DATAPLANES)

HOSTNAME = "cp-kernel"
HOST_IP, HOST_IP6 = "172.17.8.64", "fd5e:3::64"
ETCD = ("172.17.8.1", 23790)          # an etcd endpoint outside this host (not listening here)
PORTS = (2379, 2380, 179, 23790, 8080)
# Connects, exchanges one line, then waits for a line on stdin before trying another.
LONG_CLIENT = r"""
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
conn.sendall(b"1"); print("first " + conn.recv(10).decode(), flush=True)
sys.stdin.readline()
try:
    conn.sendall(b"2"); print("second " + (conn.recv(10).decode() or "closed"), flush=True)
except OSError as exc:
    print("second failed: %s" % exc, flush=True)
"""


@pytest.fixture(scope="module")
def host(make_module_simhost):
    return make_module_simhost(HOSTNAME, HOST_IP, ip6=HOST_IP6)


@pytest.fixture(scope="module")
def loads(host):
    """Three workloads with echo servers on every port of interest in them
    and on the host, made once for the module."""
    wipe(host)
    loads = {}
    for n, name in enumerate("abc", 1):
        load = NetnsWorkload(host, "cp" + name, "10.70.0.%d" % n, ip6="fd5e:4::%d" % n).create()
        # As "calicoctl container add" does: answer neighbour solicitations at once.
        load.host_sh("echo 0 > /proc/sys/net/ipv6/neigh/%s/proxy_delay" % load.interface)
        loads[name] = load
    servers = [start_echo_server(host, PORTS, prefix=["ip", "netns", "exec", loads[name].name])
               for name in "bc"]
    servers.append(start_echo_server(host, PORTS))
    # No policy yet: wait until every path carries traffic (the veths' IPv6
    # link-local addresses leave DAD only after a second or two).
    targets = {(address, 8080) for address in (HOST_IP, HOST_IP6, loads["b"].ip, loads["b"].ip6, loads["c"].ip,
                                               loads["c"].ip6)}
    wait_for(lambda: loads["a"].reachable(targets) == targets, timeout=15,
             message="a reaching the host, b and c")
    yield loads
    for server in servers:
        server.kill()
        server.wait()
    for load in loads.values():
        load.delete()


@pytest.fixture
def world(host, loads):
    """The workloads, with neither dataplane's state in the kernel."""
    wipe(host)
    world = type("World", (), {})()
    world.host, world.a, world.b, world.c = host, loads["a"], loads["b"], loads["c"]
    yield world
    wipe(host)


def endpoint_json(load):
    return json.dumps({"state": "active", "name": load.interface, "mac": load.mac, "profile_ids": ["all"],
                       "ipv4_nets": ["%s/32" % load.ip], "ipv6_nets": ["%s/128" % load.ip6],
                       "ipv4_gateway": HOST_IP, "ipv6_gateway": HOST_IP6})


def items(world, setting=None):
    """etcd as the agent would see it: this host and "b" as Calico hosts."""
    found = {paths.profile_rules("all"): json.dumps({"id": "all", "inbound_rules": [{"action": "allow"}],
                                                      "outbound_rules": [{"action": "allow"}]}),
             paths.host_ip_addr(HOSTNAME, 4): HOST_IP, paths.host_ip_addr(HOSTNAME, 6): HOST_IP6,
             paths.host_ip_addr("other", 4): world.b.ip, paths.host_ip_addr("other", 6): world.b.ip6}
    for load in (world.a, world.b, world.c):
        found[paths.endpoint_key(HOSTNAME, "docker", "w" + load.name, "e" + load.name)] = endpoint_json(load)
    if setting is not None:
        found[paths.control_plane_protection()] = setting
    return found


def make_dataplane(dataplane, host, recorder=None, etcd_endpoints=(ETCD,), resolve=None):
    config = AgentConfig(hostname=HOSTNAME, etcd_endpoints=etcd_endpoints)
    return make_component(dataplane, host, config, recorder=recorder, resolve=resolve)


def start(world, dataplane, setting=None, **kwargs):
    component = make_dataplane(dataplane, world.host, **kwargs)
    feed(component).snapshot(items(world, setting))
    component.flush()
    return component


def update(component, key, value):
    feed(component).update(key, value)
    component.flush()


def connects(source, ip, port):
    return source.run(["busybox", "nc", "-w", "1", ip, str(port)], input="", timeout=10).returncode == 0


def reach(world, version):
    """{(target, port): connected?} from workload a, for one IP family (probed at once)."""
    a, b, c = world.a, world.b, world.c
    own = HOST_IP if version == 4 else HOST_IP6
    ip = (lambda load: load.ip) if version == 4 else (lambda load: load.ip6)
    probes = [("host", own, 2379), ("host", own, 179), ("host", own, 23790), ("host", own, 8080),
              ("b", ip(b), 2379), ("b", ip(b), 2380), ("b", ip(b), 179), ("b", ip(b), 8080),
              ("c", ip(c), 2379), ("c", ip(c), 179)]
    reached = a.reachable({(address, port) for _, address, port in probes})
    return {(name, port): (address, port) in reached for name, address, port in probes}


OPEN = {("host", 8080): True, ("b", 8080): True, ("c", 2379): True, ("c", 179): True}
CLOSED = {("host", 2379): False, ("host", 179): False, ("host", 23790): False,
          ("b", 2379): False, ("b", 2380): False, ("b", 179): False}
LATER = max(CLEANUP_DELAY, RETRY_INTERVAL, nftables_dataplane.RETRY_INTERVAL) + 1
"""Seconds ahead at which ``tick`` is past either dataplane's retry and cleanup delays."""

# How each dataplane writes an address joining the protected ones: one set element, no rule
# (iptables: set members over netlink, no process at all).
MEMBER_WRITES = {
    "iptables": lambda c: [("felix-cp-v4", [c.ip], []), ("felix-cp-v6", [c.ip6], [])],
    "nftables": lambda c: ["add element inet calico cp4 { %s }\n" % c.ip,
                           "add element inet calico cp6 { %s }\n" % c.ip6],
}
# A write the kernel refuses in test_a_set_that_cannot_be_created_fails_closed_and_is_retried
# (iptables: the set's netlink writes are refused instead, through the recording ipsets).
SET_CREATION = {"iptables": None, "nftables": "add set inet calico cp4 "}


def member_writes(dataplane, component, writes):
    """What the component wrote since the last ``writes.take()``, in MEMBER_WRITES' form."""
    if dataplane == "nftables":
        return writes.take()
    assert writes.take() == []                        # no iptables-restore
    return [(write.name, list(write.adds), list(write.dels)) for write in component.sets.ipsets.calls]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.slow
def test_workloads_reach_no_protected_port_on_their_host_or_a_protected_address(world, dataplane, version):
    component = start(world, dataplane)
    assert reach(world, version) == {**OPEN, **CLOSED}
    view = kernel(world.host, dataplane)
    assert view.protected_addresses(4) == {HOST_IP, world.b.ip, ETCD[0]}
    assert view.protected_addresses(6) == {HOST_IP6, world.b.ip6}
    # One rule per family matches the set; the etcd endpoint's own port is protected too.
    assert len(view.protection_rules(version)) == 1
    assert "179,2379,2380,23790" in view.protection_rules(version)[0].replace(" ", "").replace("{", "")
    if dataplane == "iptables":         # exactly the rendered rules, in Felix's layout
        chains = view.chains(version)
        assert chains["felix-INPUT"][1] == "-p tcp -m multiport --dports 179,2379,2380,23790 -j DROP"
        assert chains["felix-FORWARD"][0] == ("-i cali+ -p tcp -m multiport --dports 179,2379,2380,23790 "
                                              "-m set --match-set felix-cp-v%d dst -j DROP" % version)
    report = component.status()["control_plane"]
    assert report == {"enabled": True, "active": True, "ports": [179, 2379, 2380, 23790],
                      "addresses": {"4": 3, "6": 2}, "problem": None}


@pytest.mark.slow
def test_hosts_joining_and_leaving_change_set_members_and_no_rule(world, dataplane):
    writes = recorder(dataplane)
    component = start(world, dataplane, recorder=writes)
    assert connects(world.a, world.c.ip, 2379) and connects(world.a, world.c.ip6, 179)
    writes.take()
    if dataplane == "iptables":
        component.sets.ipsets.calls = []
    # c's addresses become a Calico host's ("calicoctl node" on it).
    update(component, paths.host_ip_addr("late", 4), world.c.ip)
    update(component, paths.host_ip_addr("late", 6), world.c.ip6)
    assert not connects(world.a, world.c.ip, 2379) and not connects(world.a, world.c.ip6, 179)
    assert connects(world.a, world.c.ip, 8080)
    assert member_writes(dataplane, component, writes) == MEMBER_WRITES[dataplane](world.c)
    # It leaves ("calicoctl node stop" removes its BGP directory).
    update(component, paths.bgp_host_dir("late"), None)
    assert connects(world.a, world.c.ip, 2379) and connects(world.a, world.c.ip6, 179)
    assert world.c.ip not in kernel(world.host, dataplane).protected_addresses(4)


@pytest.mark.slow
def test_switching_off_opens_everything_and_on_cuts_open_connections(world, dataplane):
    component = start(world, dataplane)
    view = kernel(world.host, dataplane)
    update(component, paths.control_plane_protection(), json.dumps({"enabled": False}))
    assert all(reach(world, 4).values()) and all(reach(world, 6).values())
    assert component.status()["control_plane"]["active"] is False
    if dataplane == "iptables":
        # The sets go once the old rules behind the prepended ones are cleaned out.
        assert view.protected_addresses(4)
    component.tick(time.monotonic() + LATER)
    component.tick(time.monotonic() + LATER + 1)
    assert view.protected_addresses(4) == set() and view.protected_addresses(6) == set()
    assert view.protection_rules(4) == [] and view.protection_rules(6) == []
    if dataplane == "iptables":
        assert view.chains()["felix-FORWARD"] == list(component.families[4].desired["felix-FORWARD"])
    # A connection opened while it was off does not survive it coming back on.
    client = world.host.popen(["ip", "netns", "exec", world.a.name, sys.executable, "-c", LONG_CLIENT,
                               world.b.ip, "2379"], cwd="/", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "first 1"
        update(component, paths.control_plane_protection(), json.dumps({"enabled": True}))
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().startswith("second failed")
    finally:
        client.kill()
        client.wait()
    assert reach(world, 4) == {**OPEN, **CLOSED}


@pytest.mark.slow
def test_ports_follow_the_setting_and_bad_data_keeps_the_defaults(world, dataplane):
    component = start(world, dataplane, setting=json.dumps({"enabled": True, "ports": [8080]}))
    result = reach(world, 4)
    assert result[("host", 8080)] is False and result[("b", 8080)] is False
    assert result[("host", 23790)] is False                 # the etcd endpoint's port, always
    assert result[("host", 2379)] is True and result[("b", 179)] is True
    update(component, paths.control_plane_protection(), json.dumps({"enabled": False, "ports": [0]}))
    assert reach(world, 4) == {**OPEN, **CLOSED}
    report = component.status()["control_plane"]
    assert report["active"] is True and "Invalid control-plane port 0" in report["problem"]


@pytest.mark.slow
def test_etcd_endpoints_given_by_name_are_resolved_off_the_loop(world, dataplane):
    queued = []
    component = make_dataplane(dataplane, world.host, etcd_endpoints=(("etcd.example", 23790),),
                               resolve=lambda name: (world.c.ip, world.c.ip6) if name == "etcd.example" else ())
    component.start(queued.append)
    try:
        feed(component).snapshot(items(world))
        component.flush()
        assert connects(world.a, world.c.ip, 23790)           # the answer is queued, not applied yet
        wait_for(lambda: queued, timeout=10, message="the resolver's answer")
        queued.pop()()
        component.flush()
        reached = world.a.reachable({(world.c.ip, 23790), (world.c.ip6, 2379), (world.c.ip, 8080)})
        assert reached == {(world.c.ip, 8080)}
    finally:
        component.close()


@pytest.mark.slow
def test_a_set_that_cannot_be_created_fails_closed_and_is_retried(world, dataplane):
    writes = recorder(dataplane, refuse=SET_CREATION[dataplane])
    component = make_dataplane(dataplane, world.host, recorder=writes)
    if dataplane == "iptables":
        component.sets.ipsets.refuse = {"felix-cp-v4"}
    feed(component).snapshot(items(world))
    component.flush()
    if dataplane == "iptables":
        # felix-FORWARD cannot refer to a set that is not there: it is stubbed (drops).
        assert kernel(world.host, dataplane).chains()["felix-FORWARD"] == [
            '-m comment --comment "calico: failed to program" -j DROP']
    assert world.a.reachable({(world.b.ip, 8080), (world.b.ip, 2379)}) == set()
    assert component.status()["control_plane"]["active"] is False
    writes.refuse = None
    if dataplane == "iptables":
        component.sets.ipsets.refuse = set()
    component.tick(time.monotonic() + LATER)
    assert component.status()["control_plane"]["active"] is True
    assert reach(world, 4) == {**OPEN, **CLOSED}
