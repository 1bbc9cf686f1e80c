"""The real ``calico-agent`` process inside a simulated host, with real etcd.

Covers the process contract (pid file, status file and etcd key with a
TTL, SIGTERM), robustness against bad etcd data, routes that follow
interfaces, and reconciliation of routes after a SIGKILL. Connectivity
between Docker containers is covered in tests/system/test_policy_*.py.
"""
import json
import signal
import subprocess
import time

import pytest

from calicoctl.datastore import paths
from tests.harness.simhost import SimHost
from tests.harness.util import wait_for
from tests.harness.multihost import NetnsWorkload
from tests.rule_cases import CASES, stored_rules

HOSTNAME = "dp-agent"
HOST_IP = "172.17.8.62"
RUN_DIR = "/run/calico"
LOG_DIR = "/var/log/calico"


@pytest.fixture(scope="module")
def host(lan):
    sim = SimHost(HOSTNAME, HOST_IP, lan, prefixlen=lan.prefixlen).start()
    yield sim
    sim.stop()


class AgentProcess:
    def __init__(self, host, env, hostname=HOSTNAME):
        self.host = host
        self.env = env
        self.hostname = hostname
        self.process = None

    def start(self):
        self.process = self.host.popen(
            ["calico-agent", "--hostname=%s" % self.hostname, "--log-dir=%s" % LOG_DIR,
             "--run-dir=%s" % RUN_DIR], env=self.env, cwd="/",
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
def agent(host, lan_etcd):
    host.run(["sh", "-c", "for t in iptables-nft ip6tables-nft; do $t -F; $t -X; done; ipset destroy; "
                          "rm -f %s/*" % RUN_DIR], cwd="/")
    process = AgentProcess(host, lan_etcd.env).start()
    yield process
    process.stop(signal.SIGKILL)


def put(lan_etcd, key, value):
    lan_etcd.client().write(key, value)


def endpoint_json(interface, ip, profiles=("p",), mac=None):
    return json.dumps({"state": "active", "name": interface, "mac": mac, "profile_ids": list(profiles),
                       "ipv4_nets": ["%s/32" % ip], "ipv6_nets": [], "ipv4_gateway": HOST_IP,
                       "ipv6_gateway": None})


def ep_key(name):
    return paths.endpoint_key(HOSTNAME, "docker", "w-" + name, "ep-" + name)


def chains(host):
    return host.run(["iptables-nft-save", "-t", "filter"], cwd="/").stdout


def routes(host):
    return host.run(["ip", "route"], cwd="/").stdout


def test_status_pid_file_and_clean_stop(agent, host, lan_etcd):
    status = agent.status()
    assert set(status) == {"pid", "started", "time", "in_sync", "last_sync", "local_endpoints",
                           "control_plane", "docker_plugins", "cni"}
    assert status["cni"] == {"socket": RUN_DIR + "/cni.sock", "problem": None}
    assert status["docker_plugins"] == {"sockets": ["/run/docker/plugins/calico.sock",
                                                    "/run/docker/plugins/calico-ipam.sock"], "problem": None}
    # Protection on by default, programmed, the etcd endpoint's address protected.
    assert status["control_plane"] == {"enabled": True, "active": True, "ports": [179, 2379, 2380],
                                       "addresses": {"4": 1, "6": 0}, "problem": None}
    assert status["last_sync"] >= status["started"] > 0
    assert host.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout.strip() == str(agent.pid)
    node = wait_for(lambda: _read(lan_etcd, paths.felix_status(HOSTNAME)), timeout=10)
    assert json.loads(node.value)["pid"] == agent.pid
    assert 0 < node.ttl <= 30
    assert agent.stop(signal.SIGTERM) == 0
    assert "-j felix-FORWARD" in chains(host)          # the dataplane stays
    assert host.run(["test", "-e", RUN_DIR + "/agent.pid"], cwd="/").returncode != 0


def chain_rules(save_text):
    """{chain: [rule text]} of an iptables-save dump (declared chains included)."""
    found = {}
    for line in save_text.splitlines():
        if line.startswith(":"):
            found.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain, _, rule = line[3:].partition(" ")
            found.setdefault(chain, []).append(rule)
    return found


def test_every_rule_case_is_enforced_as_felix_reads_it(agent, host, lan_etcd):
    """Each case of tests/rule_cases.py, stored as another tool would, in its
    own profile: accepted rules are programmed as Felix means them (numeric
    protocols, empty port lists, DROP for what iptables cannot express), a
    rejected one turns its whole profile into a DROP and is logged."""
    names = {"r%02d" % n: case for n, case in enumerate(CASES)}
    for name, case in names.items():
        put(lan_etcd, paths.profile_rules(name), json.dumps(stored_rules(name, case.rule)))
    put(lan_etcd, ep_key("cases"), endpoint_json("calicases", "10.70.3.1", profiles=sorted(names)))

    def programmed():
        v4 = chain_rules(chains(host))
        v6 = chain_rules(host.run(["ip6tables-nft-save", "-t", "filter"], cwd="/").stdout)
        return all("felix-p-%s-i" % name in v4 and "felix-p-%s-i" % name in v6 for name in names) and (v4, v6)
    v4, v6 = wait_for(programmed, timeout=20, message="a profile chain for every case")
    for name, case in names.items():
        drop = ['-m comment --comment "No valid rules for profile %s" -j DROP' % name]
        inbound, outbound = "felix-p-%s-i" % name, "felix-p-%s-o" % name
        if case.accepted:
            expected = (list(case.v4), list(case.v6), ["-g felix-ALLOW"])
        else:
            expected = (drop, drop, drop)
        assert (v4[inbound], v6[inbound], v4[outbound]) == expected, case.id
    log = agent.log()
    for name, case in names.items():
        assert ("Profile %s: invalid rules" % name in log) is (not case.accepted), case.id
    assert "Traceback" not in log and agent.process.poll() is None


def _read(lan_etcd, key):
    import etcd
    try:
        return lan_etcd.client().read(key)
    except etcd.EtcdKeyNotFound:
        return None


def test_a_second_agent_refuses_to_start(agent, host, lan_etcd):
    second = host.run(["calico-agent", "--hostname=%s" % HOSTNAME, "--log-dir=%s" % LOG_DIR,
                       "--run-dir=%s" % RUN_DIR], env=lan_etcd.env, cwd="/", timeout=30)
    assert second.returncode == 1
    assert "Another agent" in second.stderr


def test_bad_data_is_logged_and_treated_as_absent(agent, host, lan_etcd):
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
    wait_for(lambda: "felix-to-good" in chains(host) and "felix-p-q-i" in chains(host), timeout=10)
    time.sleep(0.5)
    assert agent.process.poll() is None
    assert agent.wait_in_sync()
    text = chains(host)
    assert "felix-to-bad" not in text and "felix-to-worse" not in text
    assert '-A felix-p-q-i -m comment --comment "No valid rules for profile q" -j DROP' in text
    log = agent.log()
    assert "Ignoring invalid endpoint" in log and "invalid rules" in log and "Traceback" not in log


def test_routes_follow_the_interface_and_stale_routes_go_after_a_kill(agent, host, lan_etcd):
    put(lan_etcd, paths.profile_rules("p"), json.dumps({"id": "p", "inbound_rules": [],
                                                         "outbound_rules": []}))
    put(lan_etcd, ep_key("late"), endpoint_json("calilate", "10.70.1.1"))
    wait_for(lambda: "felix-to-late" in chains(host), timeout=10)
    # No interface yet: chains only, no route and no dispatch entry.
    assert "10.70.1.1" not in routes(host)
    assert "calilate" not in chains(host)
    workload = NetnsWorkload(host, "late", "10.70.1.1").create(route=False)
    try:
        wait_for(lambda: "10.70.1.1 dev calilate" in routes(host), timeout=10,
                 message="route once the interface exists")
        wait_for(lambda: "-A felix-TO-ENDPOINT -o calilate -g felix-to-late" in chains(host), timeout=10,
                 message="dispatch entry once the interface exists")
        assert host.run(["cat", "/proc/sys/net/ipv4/conf/calilate/proxy_arp"], cwd="/").stdout.strip() == "1"
        # Kill the agent, change etcd behind its back, start it again.
        agent.stop(signal.SIGKILL)
        lan_etcd.client().delete(ep_key("late"))
        host.run(["ip", "route", "add", "10.70.1.99", "dev", "calilate"], cwd="/")   # left by a crash
        restarted = AgentProcess(host, lan_etcd.env).start()
        try:
            wait_for(lambda: "10.70.1." not in routes(host), timeout=10, message="stale routes removed")
            assert "felix-to-late" not in chains(host)
        finally:
            restarted.stop(signal.SIGKILL)
    finally:
        workload.delete()


def test_index_cleared_from_etcd_history_triggers_a_resync(agent, host, lan_etcd):
    """Stop the agent (SIGSTOP) while more than etcd's 1000 remembered events
    happen; once it runs again its watch index is gone (HTTP 401) and it
    must take a fresh snapshot, catching the change it missed."""
    put(lan_etcd, paths.profile_rules("p"), json.dumps({"id": "p", "inbound_rules": [],
                                                         "outbound_rules": []}))
    put(lan_etcd, ep_key("first"), endpoint_json("califirst", "10.70.2.1"))
    wait_for(lambda: "felix-to-first" in chains(host), timeout=10)
    agent.process.send_signal(signal.SIGSTOP)
    try:
        client = lan_etcd.client()
        client.delete(ep_key("first"))
        client.write(ep_key("second"), endpoint_json("calisecond", "10.70.2.2"))
        for n in range(1100):
            client.write("/calico/v1/noise/%d" % (n % 7), str(n))
    finally:
        agent.process.send_signal(signal.SIGCONT)
    wait_for(lambda: "felix-to-second" in chains(host) and "felix-to-first" not in chains(host),
             timeout=20, message="the missed changes applied")
    assert "cleared" in agent.log()
    assert agent.process.poll() is None


@pytest.fixture(scope="module")
def host6(lan):
    sim = SimHost("dp-agent6", "172.17.8.63", lan, prefixlen=lan.prefixlen, ip6="fd5e:1::63/64").start()
    yield sim
    sim.stop()


def test_ipv6_policy_routes_and_proxy_ndp(host6, lan_etcd):
    host = host6
    agent = AgentProcess(host, lan_etcd.env, hostname="dp-agent6")
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
        assert "felix-v6-v6" in host.run(["ipset", "list", "-n"], cwd="/").stdout
    finally:
        for load in loads:
            load.delete()
        agent.stop(signal.SIGKILL)
