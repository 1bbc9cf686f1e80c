"""Policy enforcement on one simulated host: the real agent, real Docker
containers networked with ``calicoctl container add``, real etcd and
kernel, checked with ping and TCP (busybox ``nc``), on each policy
dataplane (nftables, iptables).

One host and four containers (A, B, C, D) are shared by the module's tests
on one dataplane (built once per dataplane); each test starts from "no
profiles" and sets up the policy it needs with ``calicoctl profile`` /
``calicoctl endpoint`` exactly as a user would.
"""
import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from calicoctl.datastore import paths
from calicoctl.identity import RUN_DIR
from tests.harness.dataplanes import DATAPLANES, agent_args, kernel
from tests.harness.util import wait_for

HOST_IP = "172.17.8.71"
NAME = "policy-host"
PORT = 8080
OTHER_PORT = 9090


class Agent:
    def __init__(self, host, env, dataplane):
        self.host = host
        self.env = env
        self.dataplane = dataplane
        self.process = None

    def start(self):
        self.process = self.host.popen(
            ["calico-agent", "--hostname=%s" % NAME, "--log-dir=/var/log/calico",
             "--run-dir=" + RUN_DIR] + agent_args(self.dataplane), env=self.env, cwd="/",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_status(in_sync=True)
        return self

    def status(self):
        try:
            return json.loads(self.host.run(["cat", RUN_DIR + "/agent-status.json"], cwd="/").stdout)
        except ValueError:
            return None

    def wait_status(self, in_sync, timeout=30):
        def reached():
            assert self.process.poll() is None, "the agent exited"
            status = self.status()
            return status and status["pid"] == self.process.pid and status["in_sync"] is in_sync
        wait_for(reached, timeout=timeout, interval=0.1, message="agent in_sync=%s" % in_sync)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture(scope="module", params=DATAPLANES)
def world(request, make_cluster):
    cluster = make_cluster()
    host = cluster.add_host(NAME, HOST_IP, start_node=False)
    client = cluster.etcd.kv()
    client.put(paths.host_ip_addr(NAME, 4), HOST_IP)
    cluster.calicoctl(host, "pool", "add", "192.168.0.0/16")
    agent = Agent(host, cluster.etcd.env, request.param).start()
    assert agent.status()["dataplane"] == request.param
    loads = {}
    for letter, ip in (("a", "192.168.10.1"), ("b", "192.168.10.2"), ("c", "192.168.10.3"),
                       ("d", "192.168.10.4")):
        loads[letter] = cluster.add_workload(host, letter, ip)
    for load in loads.values():
        # A TCP service on two ports in every container.
        for port in (PORT, OTHER_PORT):
            load.container.exec_run(["nc", "-ll", "-p", str(port), "-e", "echo", "hello"], detach=True)
    world = type("World", (), {})()
    world.cluster, world.host, world.agent, world.client = cluster, host, agent, client
    world.kernel = kernel(host, request.param)
    world.a, world.b, world.c, world.d = (loads[x] for x in "abcd")
    world.all = list(loads.values())
    yield world
    cluster.close()         # before the next dataplane's world is built


@pytest.fixture
def w(world):
    """The shared world, with every profile removed and every endpoint
    profile-less (written to etcd directly: the tests' own changes go
    through calicoctl)."""
    if world.agent.process.poll() is not None:
        world.agent.start()
    for key in _endpoint_keys(world):
        data = json.loads(world.client.get(key).value)
        if data["profile_ids"]:
            world.client.put(key, json.dumps(dict(data, profile_ids=[])))
    world.client.delete_tree(paths.PROFILES_DIR)
    world.client.put(paths.host_config(NAME, "DefaultEndpointToHostAction"), "RETURN")
    return world


def ctl(world, *args, check=True):
    return world.cluster.calicoctl(world.host, *args, check=check)


def tcp(source, target, port=PORT):
    """True if ``source`` opens a TCP connection to ``target``:port (1 s timeout)."""
    ip = target if isinstance(target, str) else target.ip
    result = source.container.exec_run(["nc", "-w", "1", ip, str(port)])
    return result.exit_code == 0 and b"hello" in result.output


def ping(source, target, wait=1, extra=()):
    ip = target if isinstance(target, str) else target.ip
    return source.container.exec_run(["ping", "-c", "1", "-W", str(wait)] + list(extra) + [ip]).exit_code == 0


def eventually(predicate, message, timeout=10):
    wait_for(predicate, timeout=timeout, interval=0.05, message=message)


def none_of(*probes):
    """True if none of ``probes`` (callables) succeeds. They run at once: a
    probe that fails waits out its timeout, and those add up one after another."""
    with ThreadPoolExecutor(len(probes)) as pool:
        return not any(pool.map(lambda probe: probe(), probes))


def never(predicate, message, duration=2.0):
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert not predicate(), message
        time.sleep(0.2)


def netns_of(load):
    load.container.reload()
    return load.container.attrs["State"]["Pid"]


# -- the tests ----------------------------------------------------------------------------------

def test_default_profiles_let_members_reach_each_other_and_nobody_else(w):
    ctl(w, "profile", "add", "GREEN")
    ctl(w, "profile", "add", "BLUE")
    for load, prof in ((w.a, "GREEN"), (w.b, "GREEN"), (w.c, "BLUE")):
        ctl(w, "endpoint", load.endpoint_id, "profile", "append", prof)
    w.cluster.assert_connectivity([w.a, w.b], cut=[w.c, w.d], timeout=10)
    assert tcp(w.a, w.b) and tcp(w.b, w.a)
    assert none_of(lambda: tcp(w.c, w.a), lambda: tcp(w.d, w.b))


def test_tag_rules(w):
    ctl(w, "profile", "add", "WEB")
    ctl(w, "profile", "add", "DB")
    ctl(w, "profile", "add", "OTHER")
    ctl(w, "profile", "DB", "rule", "add", "inbound", "allow", "tcp", "from", "tag", "WEB")
    ctl(w, "endpoint", w.a.endpoint_id, "profile", "set", "WEB")
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "DB")
    ctl(w, "endpoint", w.c.endpoint_id, "profile", "set", "OTHER")
    eventually(lambda: tcp(w.a, w.b), "WEB reaching DB over TCP")
    assert none_of(lambda: tcp(w.c, w.b), lambda: ping(w.a, w.b))       # only TCP, only from WEB
    # Tagging OTHER with WEB lets C in; removing the tag shuts it out again.
    ctl(w, "profile", "OTHER", "tag", "add", "WEB")
    eventually(lambda: tcp(w.c, w.b), "C reaching B once OTHER carries WEB")
    ctl(w, "profile", "OTHER", "tag", "remove", "WEB")
    eventually(lambda: not tcp(w.c, w.b), "C shut out once the tag is gone")


def test_port_rules(w):
    ctl(w, "profile", "add", "SVC")
    ctl(w, "profile", "add", "CLIENT")
    ctl(w, "profile", "SVC", "rule", "add", "inbound", "allow", "tcp", "to", "ports", "%d,7000:7010" % PORT)
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "SVC")
    ctl(w, "endpoint", w.a.endpoint_id, "profile", "set", "CLIENT")
    eventually(lambda: tcp(w.a, w.b, PORT), "allowed port")
    assert none_of(lambda: tcp(w.a, w.b, OTHER_PORT), lambda: ping(w.a, w.b))


def test_numeric_protocol_rule_written_by_another_tool(w):
    """Felix reads protocol "6" as tcp: so does the agent. The same rule with
    a one-port range "8080:8080", which Felix rejects, shuts the profile;
    ``rule update`` repairs it."""
    ctl(w, "profile", "add", "SVC")
    ctl(w, "profile", "add", "CLIENT")

    def store_inbound(rule):
        w.client.put(paths.profile_rules("SVC"), json.dumps(
            {"id": "SVC", "inbound_rules": [rule], "outbound_rules": [{"action": "allow"}]}))
    store_inbound({"action": "allow", "protocol": "6", "dst_ports": [PORT]})
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "SVC")
    ctl(w, "endpoint", w.a.endpoint_id, "profile", "set", "CLIENT")
    eventually(lambda: tcp(w.a, w.b, PORT), "protocol 6 letting TCP in on the port")
    assert none_of(lambda: tcp(w.a, w.b, OTHER_PORT), lambda: ping(w.a, w.b))
    assert "allow protocol 6 to ports %d" % PORT in ctl(w, "profile", "SVC", "rule", "show").stdout
    store_inbound({"action": "allow", "protocol": "6", "dst_ports": ["%d:%d" % (PORT, PORT)]})
    eventually(lambda: not tcp(w.a, w.b, PORT), "a rule Felix rejects closing the profile")
    assert "Felix rejects these rules" in ctl(w, "profile", "SVC", "rule", "show").stdout
    text = ctl(w, "profile", "SVC", "rule", "json").stdout
    w.cluster.calicoctl(w.host, "profile", "SVC", "rule", "update", input=text)
    assert json.loads(w.client.get(paths.profile_rules("SVC")).value)["inbound_rules"] == [
        {"action": "allow", "protocol": 6, "dst_ports": [PORT]}]
    eventually(lambda: tcp(w.a, w.b, PORT), "the rule repaired by rule update")
    assert not tcp(w.a, w.b, OTHER_PORT)


def test_deny_rules_and_rule_order(w):
    ctl(w, "profile", "add", "P")
    for load in (w.a, w.b, w.c):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.a, w.b) and ping(w.c, w.b), "default profile")
    # A deny before the allow wins for A only.
    ctl(w, "profile", "P", "rule", "add", "inbound", "--at=1", "deny", "from", "cidr", "%s/32" % w.a.ip)
    eventually(lambda: not ping(w.a, w.b), "A denied")
    assert ping(w.c, w.b)
    # An allow inserted in front of the deny takes precedence.
    ctl(w, "profile", "P", "rule", "add", "inbound", "--at=1", "allow", "icmp", "from", "cidr",
        "%s/32" % w.a.ip)
    eventually(lambda: ping(w.a, w.b), "A allowed by the earlier rule")
    assert not tcp(w.a, w.b)                               # TCP still meets the deny


def test_several_profiles_on_one_endpoint_run_in_order(w):
    ctl(w, "profile", "add", "ALLOW_ALL")
    ctl(w, "profile", "ALLOW_ALL", "rule", "add", "inbound", "allow")
    ctl(w, "profile", "add", "NO_A")
    ctl(w, "profile", "NO_A", "rule", "add", "inbound", "deny", "from", "cidr", "%s/32" % w.a.ip)
    for load in (w.a, w.c):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "ALLOW_ALL")
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "NO_A", "ALLOW_ALL")
    eventually(lambda: ping(w.c, w.b), "C allowed by the second profile")
    assert not ping(w.a, w.b)                              # the first profile's deny wins
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "ALLOW_ALL", "NO_A")
    eventually(lambda: ping(w.a, w.b), "the first profile now accepts A")


def test_profile_removal(w):
    ctl(w, "profile", "add", "P")
    for load in (w.a, w.b):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.a, w.b), "both in P")
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "remove", "P")
    eventually(lambda: not ping(w.b, w.a) and not ping(w.a, w.b), "B out of P")
    ctl(w, "endpoint", w.b.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.a, w.b), "B back in P")
    ctl(w, "profile", "remove", "P", "--no-check")
    eventually(lambda: not ping(w.a, w.b), "profile deleted while in use")


def test_spoofed_source_address_or_mac_is_dropped(w):
    ctl(w, "profile", "add", "P")
    for load in (w.a, w.b):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.a, w.b), "A reaching B")
    spoofed = "192.168.10.99"
    pid = str(netns_of(w.a))
    w.host.run(["nsenter", "-t", pid, "-n", "ip", "addr", "add", spoofed + "/32", "dev", "eth1"], cwd="/")
    interface = "cali" + w.a.endpoint_id[:11]
    # The host could route the answer back: only policy can stop this ping.
    w.host.run(["ip", "route", "replace", spoofed, "dev", interface], cwd="/")
    try:
        never(lambda: ping(w.a, w.b, extra=("-I", spoofed)), "spoofed source address got through")
        # Control: once the address is A's in etcd, the same ping passes.
        key = [k for k in _endpoint_keys(w) if k.endswith("/" + w.a.endpoint_id)][0]
        data = json.loads(w.client.get(key).value)
        data["ipv4_nets"].append(spoofed + "/32")
        w.client.put(key, json.dumps(data))
        eventually(lambda: ping(w.a, w.b, extra=("-I", spoofed)), "registered second address")
        data["ipv4_nets"].remove(spoofed + "/32")
        w.client.put(key, json.dumps(data))
        # A different MAC on A's interface is dropped too, even from A's own address.
        original_mac = data["mac"]
        assert original_mac
        w.host.run(["nsenter", "-t", pid, "-n", "ip", "link", "set", "eth1", "address",
                    "02:00:00:00:be:ef"], cwd="/")
        # Let the host learn the new MAC, so only policy can stop the ping.
        w.host.run(["ip", "neigh", "flush", "dev", interface], cwd="/")
        never(lambda: ping(w.a, w.b), "spoofed MAC got through")
        w.host.run(["nsenter", "-t", pid, "-n", "ip", "link", "set", "eth1", "address", original_mac],
                   cwd="/")
        eventually(lambda: ping(w.a, w.b), "A with its own MAC again")
    finally:
        w.host.run(["nsenter", "-t", pid, "-n", "ip", "addr", "del", spoofed + "/32", "dev", "eth1"],
                   cwd="/")
        w.host.run(["ip", "route", "del", spoofed], cwd="/")


def _endpoint_keys(w):
    return [entry.key for entry in w.client.tree(paths.host_workloads_dir(NAME)).entries
            if "/endpoint/" in entry.key]


def test_workloads_reach_their_own_host(w):
    ctl(w, "profile", "add", "P")
    ctl(w, "endpoint", w.a.endpoint_id, "profile", "set", "P")
    server = w.host.popen(["busybox", "nc", "-ll", "-p", "7070", "-e", "echo", "hello"], cwd="/")
    try:
        eventually(lambda: ping(w.a, HOST_IP), "A reaching its host")
        assert tcp(w.a, HOST_IP, 7070)
        assert not ping(w.d, HOST_IP)                      # no profile: no outbound at all
        w.client.put(paths.host_config(NAME, "DefaultEndpointToHostAction"), "DROP")
        eventually(lambda: not ping(w.a, HOST_IP), "host action DROP")
    finally:
        server.kill()
        server.wait()


def test_sigkill_and_restart_keeps_allowed_flows_and_removes_stale_state(w):
    ctl(w, "profile", "add", "P")
    ctl(w, "profile", "add", "GONE")
    ctl(w, "profile", "GONE", "rule", "add", "inbound", "allow", "from", "tag", "SOON_UNUSED")
    for load in (w.a, w.b):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "P")
    ctl(w, "endpoint", w.c.endpoint_id, "profile", "set", "P", "GONE")
    eventually(lambda: ping(w.a, w.b) and ping(w.c, w.a), "initial policy")
    assert w.kernel.tag_members("SOON_UNUSED") is not None and w.kernel.profile_programmed("GONE")
    # A steady stream of pings across the kill and the restart.
    results = {}

    def stream():
        results["out"] = w.a.container.exec_run(["ping", "-q", "-c", "60", "-i", "0.1", "-W", "1", w.b.ip])
    pinger = threading.Thread(target=stream)
    pinger.start()
    time.sleep(1)
    w.agent.kill()
    # While the agent is dead: C leaves P, GONE is deleted.
    ctl(w, "endpoint", w.c.endpoint_id, "profile", "set")
    ctl(w, "profile", "remove", "GONE", "--no-check")
    time.sleep(1)
    assert ping(w.c, w.a)                                   # nobody enforces the change yet
    w.agent.start()
    pinger.join()
    output = results["out"].output.decode()
    assert " 0% packet loss" in output, output
    eventually(lambda: not ping(w.c, w.a), "C's stale policy removed")
    assert not w.kernel.profile_programmed("GONE")
    assert w.kernel.tag_members("SOON_UNUSED") is None


def test_etcd_restart_keeps_the_dataplane_and_resyncs(w):
    ctl(w, "profile", "add", "P")
    for load in (w.a, w.b):
        ctl(w, "endpoint", load.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.a, w.b), "initial policy")
    server = w.cluster.etcd.server
    server.stop()
    try:
        w.agent.wait_status(in_sync=False, timeout=20)
        assert ping(w.a, w.b) and not ping(w.c, w.b)        # dataplane untouched
    finally:
        server.start()
    w.agent.wait_status(in_sync=True, timeout=30)
    ctl(w, "endpoint", w.c.endpoint_id, "profile", "set", "P")
    eventually(lambda: ping(w.c, w.b), "a change after etcd came back")
