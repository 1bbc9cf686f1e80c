"""The real ``calico-agent`` process inside a simulated host, with real etcd.

Covers the process contract (pid file, status file and etcd key with a
TTL, SIGTERM), robustness against bad etcd data, routes that follow
interfaces, and reconciliation of routes after a SIGKILL. What depends on
the policy dataplane runs on both (``dataplane`` parametrized; the other
tests run the default one). Connectivity between Docker containers is
covered in tests/system/test_policy_*.py.
"""
import json
import signal
import subprocess
import time

import pytest

from calicoctl.datastore import paths
from calicoctl.identity import RUN_DIR
from tests.harness import dataplanes
from tests.harness.dataplanes import DATAPLANES, DEFAULT, agent_args, kernel, wipe
from tests.harness.util import wait_for
from tests.harness.multihost import NetnsWorkload
from tests.rule_cases import CASES, stored_rules

HOSTNAME = "dp-agent"
HOST_IP = "172.17.8.62"
LOG_DIR = "/var/log/calico"


@pytest.fixture(scope="module")
def host(make_module_simhost):
    return make_module_simhost(HOSTNAME, HOST_IP)


class AgentProcess:
    def __init__(self, host, env, dataplane, hostname=HOSTNAME):
        self.host = host
        self.env = env
        self.dataplane = dataplane
        self.hostname = hostname
        self.process = None

    def start(self):
        self.process = self.host.popen(
            ["calico-agent", "--hostname=%s" % self.hostname, "--log-dir=%s" % LOG_DIR,
             "--run-dir=%s" % RUN_DIR] + agent_args(self.dataplane), env=self.env, cwd="/",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_in_sync()
        return self

    @property
    def pid(self):
        return self.process.pid

    def status(self):
        result = self.host.run(["cat", RUN_DIR + "/agent-status.json"], cwd="/")
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def wait_in_sync(self, timeout=20):
        def synced():
            assert self.process.poll() is None, "agent exited: %s" % self.process.stderr.read()
            status = self.status()
            return status and status["pid"] == self.pid and status["in_sync"]
        return wait_for(synced, timeout=timeout, message="agent in sync")

    def log(self):
        return self.host.run(["cat", LOG_DIR + "/agent.log"], cwd="/").stdout

    def stop(self, sig=signal.SIGTERM):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)
        return self.process.returncode


@pytest.fixture
def dataplane():
    """The agent's policy dataplane (tests that run on both parametrize it)."""
    return DEFAULT


@pytest.fixture
def agent(host, lan_etcd, dataplane):
    wipe(host)
    host.run(["sh", "-c", "rm -f %s/*" % RUN_DIR], cwd="/")
    process = AgentProcess(host, lan_etcd.env, dataplane).start()
    yield process
    process.stop(signal.SIGKILL)


def put(lan_etcd, key, value):
    lan_etcd.kv().put(key, value)


def endpoint_json(interface, ip, profiles=("p",), mac=None):
    return dataplanes.endpoint_json(HOST_IP, interface, [ip], profiles, mac=mac)


def ep_key(name):
    return dataplanes.endpoint_key(HOSTNAME, name)


def routes(host):
    return host.run(["ip", "route"], cwd="/").stdout


STATUS_KEYS = {"pid", "started", "time", "in_sync", "last_sync", "local_endpoints", "control_plane",
               "docker_plugins", "dataplane", "cni"}
OWN_STATUS_KEYS = {"nftables": {"refused_rules"}, "iptables": set()}
"""What one dataplane alone reports (nftables: the rules the kernel refused)."""


@pytest.mark.parametrize("dataplane", DATAPLANES)
@pytest.mark.slow
def test_status_pid_file_and_clean_stop(agent, host, lan_etcd, dataplane):
    status = agent.status()
    assert set(status) == STATUS_KEYS | OWN_STATUS_KEYS[dataplane]
    assert status["dataplane"] == dataplane
    assert status["cni"] == {"socket": RUN_DIR + "/cni.sock", "problem": None}
    assert status["docker_plugins"] == {"sockets": ["/run/docker/plugins/calico.sock",
                                                    "/run/docker/plugins/calico-ipam.sock"], "problem": None}
    # Protection on by default, programmed, the etcd endpoint's address protected.
    assert status["control_plane"] == {"enabled": True, "active": True, "ports": [179, 2379, 2380],
                                       "addresses": {"4": 1, "6": 0}, "problem": None}
    assert status["last_sync"] >= status["started"] > 0
    assert host.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout.strip() == str(agent.pid)
    status_entry = wait_for(lambda: lan_etcd.kv().get(paths.felix_status(HOSTNAME)), timeout=10)
    assert json.loads(status_entry.value)["pid"] == agent.pid
    assert status_entry.expires
    assert agent.stop(signal.SIGTERM) == 0
    assert kernel(host, dataplane).present()            # the dataplane stays
    assert host.run(["test", "-e", RUN_DIR + "/agent.pid"], cwd="/").returncode != 0


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_every_rule_case_is_enforced_as_felix_reads_it(agent, host, lan_etcd, dataplane):
    """Each case of tests/rule_cases.py, stored as another tool would, in its
    own profile: accepted rules are programmed as Felix means them (numeric
    protocols, empty port lists, a DROP for what the kernel cannot express),
    a rejected one turns its whole profile into a DROP and is logged. On
    iptables the rules are exactly Felix's; on nftables the kernel takes
    every accepted rule (none is refused and dropping in its place)."""
    names = {"r%02d" % n: case for n, case in enumerate(CASES)}
    for name, case in names.items():
        put(lan_etcd, paths.profile_rules(name), json.dumps(stored_rules(name, case.rule)))
    put(lan_etcd, ep_key("cases"), endpoint_json("calicases", "10.70.3.1", profiles=sorted(names)))
    view = kernel(host, dataplane)

    def programmed():
        found = view.chains()
        return all(view.profile_chain(name, "inbound") in found for name in names) and found
    found = wait_for(programmed, timeout=20, message="a profile chain for every case")
    for name, case in names.items():
        if not case.accepted:
            inbound, outbound = (found[view.profile_chain(name, way)] for way in ("inbound", "outbound"))
            assert inbound == outbound and len(inbound) == 1, case.id
            assert "No valid rules for profile %s" % name in inbound[0], case.id
    if dataplane == "iptables":
        v4 = found
        v6 = wait_for(lambda: all(view.profile_chain(name, "inbound") in view.chains(6) for name in names)
                      and view.chains(6), timeout=10, message="the IPv6 profile chains")
        for name, case in names.items():
            drop = ['-m comment --comment "No valid rules for profile %s" -j DROP' % name]
            inbound, outbound = "felix-p-%s-i" % name, "felix-p-%s-o" % name
            if case.accepted:
                expected = (list(case.v4), list(case.v6), ["-g felix-ALLOW"])
            else:
                expected = (drop, drop, drop)
            assert (v4[inbound], v6[inbound], v4[outbound]) == expected, case.id
    else:
        # One table for both families: a rule for either is there, dropping where Felix's would.
        for name, case in names.items():
            if case.accepted:
                inbound = found[view.profile_chain(name, "inbound")]
                unexpressible = any("Unexpressible rule" in line for line in case.v4 + case.v6)
                assert ("Unexpressible rule" in " ".join(inbound)) is unexpressible, case.id
                assert bool(inbound) is bool(case.v4 or case.v6), case.id
        assert agent.status()["refused_rules"] == []
        assert not [rule for rules in found.values() for rule in rules if "refused by the kernel" in rule]
    log = agent.log()
    for name, case in names.items():
        assert ("Profile %s: invalid rules" % name in log) is (not case.accepted), case.id
    assert "Traceback" not in log and agent.process.poll() is None


def test_a_second_agent_refuses_to_start(agent, host, lan_etcd):
    second = host.run(["calico-agent", "--hostname=%s" % HOSTNAME, "--log-dir=%s" % LOG_DIR,
                       "--run-dir=%s" % RUN_DIR], env=lan_etcd.env, cwd="/", timeout=30)
    assert second.returncode == 1
    assert "Another agent" in second.stderr


@pytest.mark.parametrize("dataplane", DATAPLANES)
@pytest.mark.slow
def test_bad_data_is_logged_and_treated_as_absent(agent, host, lan_etcd, dataplane):
    put(lan_etcd, paths.profile_rules("p"), json.dumps({"id": "p", "inbound_rules": [{"action": "allow"}],
                                                         "outbound_rules": [{"action": "allow"}]}))
    put(lan_etcd, ep_key("good"), endpoint_json("caligood", "10.70.0.1"))
    put(lan_etcd, ep_key("bad"), "{this is not json")
    put(lan_etcd, ep_key("worse"), json.dumps({"state": "active", "name": 7}))
    put(lan_etcd, paths.profile_rules("q"), json.dumps({"id": "q", "inbound_rules": [{"protocol": "tcp",
                                                                                       "dst_ports": ["x"]}]}))
    put(lan_etcd, paths.profile_tags("q"), "[1, 2")
    put(lan_etcd, paths.global_config("InterfacePrefix"), "not/valid/prefix!")
    put(lan_etcd, paths.global_config("DefaultEndpointToHostAction"), "EXPLODE")
    put(lan_etcd, ep_key("uses-q"), endpoint_json("caliq", "10.70.0.2", profiles=("q",)))
    view = kernel(host, dataplane)
    wait_for(lambda: view.endpoints() == {"caligood", "caliq"} and view.profile_programmed("q"), timeout=10,
             message="the good endpoints and profile q programmed")
    time.sleep(0.5)
    assert agent.process.poll() is None
    assert agent.wait_in_sync()
    assert view.endpoints() == {"caligood", "caliq"}
    assert agent.status()["local_endpoints"] == 2
    rules = view.profile_rules("q", "inbound")
    assert len(rules) == 1 and "No valid rules for profile q" in rules[0]
    log = agent.log()
    assert "Ignoring invalid endpoint" in log and "invalid rules" in log and "Traceback" not in log


@pytest.mark.parametrize("dataplane", DATAPLANES)
@pytest.mark.slow
def test_routes_follow_the_interface_and_stale_routes_go_after_a_kill(agent, host, lan_etcd, dataplane):
    put(lan_etcd, paths.profile_rules("p"), json.dumps({"id": "p", "inbound_rules": [],
                                                         "outbound_rules": []}))
    put(lan_etcd, ep_key("late"), endpoint_json("calilate", "10.70.1.1"))
    view = kernel(host, dataplane)
    wait_for(lambda: view.endpoint_programmed("calilate"), timeout=10, message="the endpoint programmed")
    # No interface yet: its policy is programmed, but no route.
    assert "10.70.1.1" not in routes(host)
    if dataplane == "iptables":        # nor a dispatch entry (nftables has none per interface)
        assert "calilate" not in view.rules_text()
    workload = NetnsWorkload(host, "late", "10.70.1.1").create(route=False)
    try:
        wait_for(lambda: "10.70.1.1 dev calilate" in routes(host), timeout=10,
                 message="route once the interface exists")
        if dataplane == "iptables":
            wait_for(lambda: "-A felix-TO-ENDPOINT -o calilate -g felix-to-late" in view.rules_text(),
                     timeout=10, message="dispatch entry once the interface exists")
        assert host.run(["cat", "/proc/sys/net/ipv4/conf/calilate/proxy_arp"], cwd="/").stdout.strip() == "1"
        # Kill the agent, change etcd behind its back, start it again.
        agent.stop(signal.SIGKILL)
        lan_etcd.kv().delete(ep_key("late"))
        host.run(["ip", "route", "add", "10.70.1.99", "dev", "calilate"], cwd="/")   # left by a crash
        restarted = AgentProcess(host, lan_etcd.env, dataplane).start()
        try:
            wait_for(lambda: "10.70.1." not in routes(host), timeout=10, message="stale routes removed")
            assert not view.endpoint_programmed("calilate")
        finally:
            restarted.stop(signal.SIGKILL)
    finally:
        workload.delete()


@pytest.mark.parametrize("dataplane", DATAPLANES)
@pytest.mark.slow
def test_an_agent_stopped_through_a_burst_catches_up(agent, host, lan_etcd, dataplane):
    """Stop the agent (SIGSTOP) while 1,100 events happen (more than v2's
    history; v3's open watch keeps them for it); once it runs again it
    applies the change it missed and stays up. A watch whose history is
    gone (v2's cleared index, v3's compaction) resynchronises:
    tests/functional/test_kv.py."""
    put(lan_etcd, paths.profile_rules("p"), json.dumps({"id": "p", "inbound_rules": [],
                                                         "outbound_rules": []}))
    put(lan_etcd, ep_key("first"), endpoint_json("califirst", "10.70.2.1"))
    view = kernel(host, dataplane)
    wait_for(lambda: view.endpoint_programmed("califirst"), timeout=10, message="the first endpoint")
    agent.process.send_signal(signal.SIGSTOP)
    try:
        client = lan_etcd.kv()
        client.delete(ep_key("first"))
        client.put(ep_key("second"), endpoint_json("calisecond", "10.70.2.2"))
        for n in range(1100):
            client.put("/calico/v1/noise/%d" % (n % 7), str(n))
    finally:
        agent.process.send_signal(signal.SIGCONT)
    wait_for(lambda: view.endpoints() == {"calisecond"}, timeout=20, message="the missed changes applied")
    assert agent.process.poll() is None


@pytest.fixture(scope="module")
def host6(make_module_simhost):
    return make_module_simhost("dp-agent6", "172.17.8.63", ip6="fd5e:1::63/64")


@pytest.mark.parametrize("dataplane", DATAPLANES)
@pytest.mark.slow
def test_ipv6_policy_routes_and_proxy_ndp(host6, lan_etcd, dataplane):
    host = host6
    wipe(host)
    agent = AgentProcess(host, lan_etcd.env, dataplane, hostname="dp-agent6")
    agent.start()
    loads = [NetnsWorkload(host, "six%d" % n, "10.71.0.%d" % n, ip6="fd5e:2::%d" % n).create(route=False)
             for n in (1, 2, 3)]
    try:
        profile = json.dumps({"id": "v6", "inbound_rules": [{"action": "allow", "src_tag": "v6"}],
                              "outbound_rules": [{"action": "allow"}]})
        put(lan_etcd, paths.profile_rules("v6"), profile)
        put(lan_etcd, paths.profile_tags("v6"), json.dumps(["v6"]))
        for load, profiles in zip(loads, (["v6"], ["v6"], ["other"])):
            mac = load.run(["cat", "/sys/class/net/eth1/address"]).stdout.strip()
            put(lan_etcd, paths.endpoint_key("dp-agent6", "docker", "w-" + load.name, "ep-" + load.name),
                json.dumps({"state": "active", "name": load.interface, "mac": mac, "profile_ids": profiles,
                            "ipv4_nets": ["%s/32" % load.ip], "ipv6_nets": ["%s/128" % load.ip6],
                            "ipv4_gateway": host.ip, "ipv6_gateway": host.ip6}))
        a, b, c = loads

        def ping6(source, target):
            return source.run(["ping", "-6", "-c", "1", "-W", "1", target.ip6]).returncode == 0
        wait_for(lambda: ping6(a, b) and ping6(b, a), timeout=15, message="IPv6 between members")
        assert not ping6(c, a) and not ping6(a, c)
        routes6 = host.run(["ip", "-6", "route"], cwd="/").stdout
        assert "fd5e:2::1 dev calisix1" in routes6
        assert host.run(["cat", "/proc/sys/net/ipv6/conf/calisix1/proxy_ndp"], cwd="/").stdout.strip() == "1"
        assert kernel(host, dataplane).tag_members("v6", 6) == {a.ip6, b.ip6}
    finally:
        for load in loads:
            load.delete()
        agent.stop(signal.SIGKILL)
