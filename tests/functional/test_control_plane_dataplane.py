"""Control-plane protection in the policy dataplane, against a real kernel.

``PolicyDataplane`` is driven directly (snapshot, updates, flush) inside one
simulated host, with workloads as network namespaces on ``cali*`` veths and
TCP servers in them and on the host: a workload whose profile allows
everything must still not reach the protected ports on its host (INPUT) or
on a protected address behind it (FORWARD), IPv4 and IPv6, while every
other port and every unprotected address stays open.

Workload ``b`` plays "another Calico host": its address is recorded as a
host address in the test's etcd data, so traffic to it crosses this host's
FORWARD chain exactly as traffic to another host would. ``c`` is not
protected: the control that shows the checks can fail.
"""
import json
import subprocess
import sys
import time

import pytest

from calicoctl.agent.config import AgentConfig
from calicoctl.agent.chain_reconciler import CLEANUP_DELAY
from calicoctl.agent.dataplane import RETRY_INTERVAL, PolicyDataplane
from calicoctl.datastore import paths
from calicoctl.host import run as run_mod
from calicoctl.host.iptables import IptablesTable, parse_save
from tests.harness.feed import feed
from tests.harness.simhost import SimHost
from tests.harness.util import wait_for
from tests.harness.multihost import NetnsWorkload, start_echo_server
from tests.harness.netns import RecordingIpsets, parse_ipset_save

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
def host(lan):
    sim = SimHost(HOSTNAME, HOST_IP, lan, prefixlen=lan.prefixlen, ip6=HOST_IP6 + "/64").start()
    yield sim
    sim.stop()


@pytest.fixture
def world(host):
    """Three workloads with an allow-everything profile and echo servers on
    every port of interest in them and on the host."""
    script = ("for t in iptables-nft ip6tables-nft; do $t -t filter -F; $t -t filter -X; done; "
              "ipset destroy 2>/dev/null; for n in $(ip netns list | cut -d' ' -f1); do ip netns del $n; done; "
              "for l in $(ip -o link show | awk -F': ' '{print $2}' | grep '^cali' | cut -d@ -f1); "
              "do ip link del $l; done; true")
    host.run(["sh", "-c", script], cwd="/")
    loads = {}
    for n, name in enumerate("abc", 1):
        load = NetnsWorkload(host, "cp" + name, "10.70.0.%d" % n, ip6="fd5e:4::%d" % n).create()
        load.mac = load.run(["cat", "/sys/class/net/eth1/address"]).stdout.strip()
        # As "calicoctl container add" does: answer neighbour solicitations at once.
        load.host_sh("echo 0 > /proc/sys/net/ipv6/neigh/%s/proxy_delay" % load.interface)
        loads[name] = load
    servers = [start_echo_server(host, PORTS, prefix=["ip", "netns", "exec", loads[name].name])
               for name in "bc"]
    servers.append(start_echo_server(host, PORTS))
    # No policy yet: wait until every path carries traffic (the veths' IPv6
    # link-local addresses leave DAD only after a second or two).
    for address in (HOST_IP, HOST_IP6, loads["b"].ip, loads["b"].ip6, loads["c"].ip, loads["c"].ip6):
        wait_for(lambda address=address: connects(loads["a"], address, 8080), timeout=15,
                 message="a reaching %s" % address)
    world = type("World", (), {})()
    world.host, world.a, world.b, world.c = host, loads["a"], loads["b"], loads["c"]
    yield world
    for server in servers:
        server.kill()
        server.wait()
    host.run(["sh", "-c", script], cwd="/")


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


class Recorder:
    """Runs commands for real and remembers restore inputs."""

    def __init__(self):
        self.inputs = []

    def __call__(self, args, input_text=None, **kwargs):
        if input_text is not None:
            self.inputs.append((args, input_text))
        return run_mod.run(args, input_text=input_text, **kwargs)

    def take(self):
        inputs, self.inputs = self.inputs, []
        return inputs


def make_dataplane(host, runner=None, etcd_endpoints=(ETCD,), resolve=None):
    prefix = ["nsenter", "-t", str(host.pid), "-n", "--"]
    config = AgentConfig(hostname=HOSTNAME, etcd_endpoints=etcd_endpoints)
    tables = {v: IptablesTable(v, prefix=prefix, runner=runner) for v in (4, 6)}
    return PolicyDataplane(config, tables=tables, ipsets=RecordingIpsets("/proc/%d/ns/net" % host.pid),
                           resolve=resolve)


def start(world, setting=None, **kwargs):
    dataplane = make_dataplane(world.host, **kwargs)
    feed(dataplane).snapshot(items(world, setting))
    dataplane.flush()
    return dataplane


def update(dataplane, key, value):
    feed(dataplane).update(key, value)
    dataplane.flush()


def connects(source, ip, port):
    return source.run(["busybox", "nc", "-w", "1", ip, str(port)], input="", timeout=10).returncode == 0


def kernel_sets(host):
    """{name: set of members}, as ``ipset save`` shows them."""
    return {name: members for name, (_, _, members) in
            parse_ipset_save(host.run(["ipset", "save"], cwd="/").stdout).items()}


def kernel_chains(host, version=4):
    save = "iptables-nft-save" if version == 4 else "ip6tables-nft-save"
    return parse_save(host.run([save, "-t", "filter"], cwd="/").stdout)


def reach(world, version):
    """{(target, port): connected?} from workload a, for one IP family."""
    a, b, c = world.a, world.b, world.c
    own = HOST_IP if version == 4 else HOST_IP6
    ip = (lambda load: load.ip) if version == 4 else (lambda load: load.ip6)
    probes = [("host", own, 2379), ("host", own, 179), ("host", own, 23790), ("host", own, 8080),
              ("b", ip(b), 2379), ("b", ip(b), 2380), ("b", ip(b), 179), ("b", ip(b), 8080),
              ("c", ip(c), 2379), ("c", ip(c), 179)]
    return {(name, port): connects(a, address, port) for name, address, port in probes}


OPEN = {("host", 8080): True, ("b", 8080): True, ("c", 2379): True, ("c", 179): True}
CLOSED = {("host", 2379): False, ("host", 179): False, ("host", 23790): False,
          ("b", 2379): False, ("b", 2380): False, ("b", 179): False}


@pytest.mark.parametrize("version", [4, 6])
def test_workloads_reach_no_protected_port_on_their_host_or_a_protected_address(world, version):
    dataplane = start(world)
    assert reach(world, version) == {**OPEN, **CLOSED}
    sets = kernel_sets(world.host)
    assert sets["felix-cp-v4"] == {HOST_IP, world.b.ip, ETCD[0]}
    assert sets["felix-cp-v6"] == {HOST_IP6, world.b.ip6}
    # Exactly the rendered rules; the etcd endpoint's own port is protected too.
    chains = kernel_chains(world.host, version)
    assert chains["felix-INPUT"][1] == "-p tcp -m multiport --dports 179,2379,2380,23790 -j DROP"
    assert chains["felix-FORWARD"][0] == ("-i cali+ -p tcp -m multiport --dports 179,2379,2380,23790 "
                                          "-m set --match-set felix-cp-v%d dst -j DROP" % version)
    report = dataplane.status()["control_plane"]
    assert report == {"enabled": True, "active": True, "ports": [179, 2379, 2380, 23790],
                      "addresses": {"4": 3, "6": 2}, "problem": None}


def test_hosts_joining_and_leaving_change_set_members_and_no_rule(world):
    recorder = Recorder()
    dataplane = start(world, runner=recorder)
    assert connects(world.a, world.c.ip, 2379) and connects(world.a, world.c.ip6, 179)
    recorder.take()
    ipsets = dataplane.sets.ipsets
    ipsets.calls = []
    # c's addresses become a Calico host's ("calicoctl node" on it).
    update(dataplane, paths.host_ip_addr("late", 4), world.c.ip)
    update(dataplane, paths.host_ip_addr("late", 6), world.c.ip6)
    assert not connects(world.a, world.c.ip, 2379) and not connects(world.a, world.c.ip6, 179)
    assert connects(world.a, world.c.ip, 8080)
    assert recorder.take() == []                   # no rule, no process
    assert [(write.name, list(write.adds), list(write.dels)) for write in ipsets.calls] == [
        ("felix-cp-v4", [world.c.ip], []), ("felix-cp-v6", [world.c.ip6], [])]
    # It leaves ("calicoctl node stop" removes its BGP directory).
    update(dataplane, paths.bgp_host_dir("late"), None)
    assert connects(world.a, world.c.ip, 2379) and connects(world.a, world.c.ip6, 179)
    assert world.c.ip not in kernel_sets(world.host)["felix-cp-v4"]


def test_switching_off_opens_everything_and_on_cuts_open_connections(world):
    dataplane = start(world)
    update(dataplane, paths.control_plane_protection(), json.dumps({"enabled": False}))
    assert all(reach(world, 4).values()) and all(reach(world, 6).values())
    assert dataplane.status()["control_plane"]["active"] is False
    # The sets go once the old rules behind the prepended ones are cleaned out.
    assert "felix-cp-v4" in kernel_sets(world.host)
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 1)
    dataplane.tick(time.monotonic() + CLEANUP_DELAY + 2)
    assert not [name for name in kernel_sets(world.host) if name.startswith("felix-cp-")]
    assert kernel_chains(world.host)["felix-FORWARD"] == list(dataplane.families[4].desired["felix-FORWARD"])
    # A connection opened while it was off does not survive it coming back on.
    client = world.host.popen(["ip", "netns", "exec", world.a.name, sys.executable, "-c", LONG_CLIENT,
                               world.b.ip, "2379"], cwd="/", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "first 1"
        update(dataplane, paths.control_plane_protection(), json.dumps({"enabled": True}))
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().startswith("second failed")
    finally:
        client.kill()
        client.wait()
    assert reach(world, 4) == {**OPEN, **CLOSED}


def test_ports_follow_the_setting_and_bad_data_keeps_the_defaults(world):
    dataplane = start(world, setting=json.dumps({"enabled": True, "ports": [8080]}))
    result = reach(world, 4)
    assert result[("host", 8080)] is False and result[("b", 8080)] is False
    assert result[("host", 23790)] is False                 # the etcd endpoint's port, always
    assert result[("host", 2379)] is True and result[("b", 179)] is True
    update(dataplane, paths.control_plane_protection(), json.dumps({"enabled": False, "ports": [0]}))
    assert reach(world, 4) == {**OPEN, **CLOSED}
    report = dataplane.status()["control_plane"]
    assert report["active"] is True and "Invalid control-plane port 0" in report["problem"]


def test_etcd_endpoints_given_by_name_are_resolved_off_the_loop(world):
    queued = []
    dataplane = make_dataplane(world.host, etcd_endpoints=(("etcd.example", 23790),),
                               resolve=lambda name: (world.c.ip, world.c.ip6) if name == "etcd.example" else ())
    dataplane.start(queued.append)
    try:
        feed(dataplane).snapshot(items(world))
        dataplane.flush()
        assert connects(world.a, world.c.ip, 23790)           # the answer is queued, not applied yet
        wait_for(lambda: queued, timeout=10, message="the resolver's answer")
        queued.pop()()
        dataplane.flush()
        assert not connects(world.a, world.c.ip, 23790) and not connects(world.a, world.c.ip6, 2379)
        assert connects(world.a, world.c.ip, 8080)
    finally:
        dataplane.close()


def test_a_set_that_cannot_be_created_fails_closed_and_is_retried(world):
    dataplane = make_dataplane(world.host)
    dataplane.sets.ipsets.refuse = {"felix-cp-v4"}
    feed(dataplane).snapshot(items(world))
    dataplane.flush()
    # felix-FORWARD cannot refer to a set that is not there: it is stubbed (drops).
    assert kernel_chains(world.host)["felix-FORWARD"] == ['-m comment --comment "calico: failed to program" -j DROP']
    assert not connects(world.a, world.b.ip, 8080) and not connects(world.a, world.b.ip, 2379)
    assert dataplane.status()["control_plane"]["active"] is False
    dataplane.sets.ipsets.refuse = set()
    dataplane.tick(time.monotonic() + RETRY_INTERVAL + 1)
    assert dataplane.status()["control_plane"]["active"] is True
    assert reach(world, 4) == {**OPEN, **CLOSED}
