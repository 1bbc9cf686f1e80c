"""Workloads keep their networking through docker restart, dockerd restart,
Docker down, host reboot and docker rm (issue 11), on two simulated hosts
that each run a dockerd of their own (so Docker can be restarted, stopped
and rebooted per host), the real agent, BIRD, etcd and kernel.

The module's tests run in order on one cluster; after each, traffic shows
that policy holds: the workloads of profile OPEN reach each other (IPv4 and
IPv6, on one host and across), those of profiles ALONE and ALONE2 reach nobody.
"""
import json
import os
import signal
import time

import pytest

from calicoctl.identity import RUN_DIR
from tests.harness.util import pid_alive, wait_for
from tests.system.conftest import Workload

H1, H2 = ("calico-01", "172.17.8.101", "fd00:8::101"), ("calico-02", "172.17.8.102", "fd00:8::102")
V6 = "fd80:24e2:f998:72d6::"
ALWAYS = {"Name": "always"}
AGENT_LOG = "/var/log/calico/agent.log"


class World:
    """The cluster, its hosts and workloads, and checks on them."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.h1, self.h2 = [cluster.add_host(name, ip, ip6=ip6, own_dockerd=True) for name, ip, ip6 in (H1, H2)]
        cluster.calicoctl(self.h1, "profile", "add", "OPEN")
        cluster.calicoctl(self.h1, "profile", "add", "ALONE")
        cluster.calicoctl(self.h1, "profile", "add", "ALONE2")
        # a: two IPv4 addresses, one IPv6, a custom inside name, restarted by Docker.
        self.a = cluster.add_workload(self.h1, "A", "192.168.0.1", ["OPEN"], add_args=["--interface=data0"],
                                      restart_policy=ALWAYS)
        for extra in ("192.168.0.11", V6 + "1"):
            cluster.calicoctl(self.h1, "container", self.a.name, "ip", "add", extra, "--interface=data0")
        self.b = cluster.add_workload(self.h1, "B", "192.168.0.2", ["OPEN"])
        self.c = cluster.add_workload(self.h2, "C", "192.168.0.3", ["OPEN"], restart_policy=ALWAYS)
        cluster.calicoctl(self.h2, "container", self.c.name, "ip", "add", V6 + "3")
        self.x = cluster.add_workload(self.h1, "X", "192.168.0.9", ["ALONE"])
        self.y = cluster.add_workload(self.h2, "Y", "192.168.0.8", ["ALONE2"])

    # -- state -------------------------------------------------------------------------
    def host_keys(self, host):
        """Every workload leaf of ``host`` and every IP claim, as {key: value}."""
        kv = self.cluster.etcd.kv()
        found = {}
        for prefix in ("/calico/v1/host/%s/workload" % host.name, "/calico/v1/ipam"):
            for entry in kv.tree(prefix).entries:
                if prefix.endswith("workload") or "assignment" in entry.key:
                    found[entry.key] = entry.value
        return found

    def endpoint(self, workload):
        for key, value in self.host_keys(workload.host).items():
            if "/%s/endpoint/" % workload.container.id in key:
                return json.loads(value)
        return None

    def inside(self, workload):
        """{interface: (mac, sorted addresses)} inside the container, lo excluded."""
        workload.container.reload()
        pid = workload.container.attrs["State"]["Pid"]
        result = workload.host.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "addr"], cwd="/")
        assert result.returncode == 0, result.stderr
        return {link["ifname"]: (link.get("address"),
                                 sorted(a["local"] for a in link.get("addr_info", ()) if a.get("scope") == "global"))
                for link in json.loads(result.stdout) if link["ifname"] != "lo"}

    def cali_links(self, host):
        text = host.run(["ip", "-o", "link", "show"], cwd="/").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in text.splitlines()
                      if line.split(":")[1].strip().startswith("cali"))

    def endpoint_veths(self, host):
        return sorted(json.loads(value)["name"] for key, value in self.host_keys(host).items()
                      if "/endpoint/" in key)

    def agent_log(self, host):
        return host.run(["cat", AGENT_LOG], cwd="/").stdout

    def agent_pid(self, host):
        text = host.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout.strip()
        return int(text) if text.isdigit() else None

    def wait_retries(self, host, log_offset):
        """Until the agent has said Docker is not reachable and retried
        twice more (every RETRY_INTERVAL, 1 s, in calicoctl/agent/lifecycle.py)."""
        wait_for(lambda: "Docker is not reachable" in self.agent_log(host)[log_offset:], timeout=15,
                 interval=0.1, message="the agent finding Docker unreachable")
        time.sleep(2.2)

    def power_off(self, host):
        """A power cut while agent and BIRD run (SimHost.power_off)."""
        assert self.agent_pid(host) is not None and self.cluster.bird_pid(host) is not None
        host.power_off()

    # -- checks ------------------------------------------------------------------------
    def assert_policy(self, reach=None, cut=None, timeout=30.0):
        reach = reach if reach is not None else [self.a, self.b, self.c]
        cut = cut if cut is not None else [w for w in (self.x, self.y) if w in self.cluster.workloads]
        self.cluster.assert_connectivity(reach, cut=cut, timeout=timeout)
        # IPv6, across hosts, both ways.
        for source, target in ((self.a, V6 + "3"), (self.c, V6 + "1")):
            if source in reach:
                self.cluster.wait_ping(source, target, timeout=timeout)

    def wait_running(self, workload, old_pid=None, timeout=30.0):
        def running():
            workload.container.reload()
            state = workload.container.attrs["State"]
            return state["Running"] and state["Pid"] != old_pid and state["Pid"]
        return wait_for(running, timeout=timeout, interval=0.1, message="%s running" % workload.name)


@pytest.fixture(scope="module")
def world(make_cluster):
    world = World(make_cluster(subnet6="fd00:8::/64", gateway6="fd00:8::1"))
    world.assert_policy()
    return world


def test_endpoint_records_the_inside_interface(world):
    assert world.endpoint(world.a)["container_interface"] == "data0"
    assert world.endpoint(world.b)["container_interface"] == "eth1"
    assert set(world.inside(world.a)) == {"data0"}


def test_docker_restart_recreates_every_address_mac_and_name(world):
    before_keys = world.host_keys(world.h1)
    before_inside = world.inside(world.a)
    assert before_inside["data0"][1] == sorted(["192.168.0.1", "192.168.0.11", V6 + "1"])
    assert before_inside["data0"][0] == world.endpoint(world.a)["mac"]
    world.a.container.restart(timeout=1)
    wait_for(lambda: world.inside(world.a) == before_inside, timeout=10, interval=0.05,
             message="a's interface re-created")
    world.assert_policy()
    assert world.host_keys(world.h1) == before_keys      # endpoint ID, profiles, claims unchanged
    assert "re-created endpoint" in world.agent_log(world.h1)


def test_stop_keeps_everything_and_start_restores(world):
    before = world.host_keys(world.h1)
    world.b.container.stop(timeout=1)
    time.sleep(2)                                        # the agent has seen the die event
    assert world.host_keys(world.h1) == before
    world.b.container.start()
    world.assert_policy()
    assert world.host_keys(world.h1) == before


def test_process_killed_and_restarted_by_policy(world):
    before = world.host_keys(world.h1)
    pid = world.wait_running(world.a)
    os.kill(pid, signal.SIGKILL)           # the container's own process: ours, by PID
    world.wait_running(world.a, old_pid=pid)
    world.assert_policy()
    assert world.host_keys(world.h1) == before


def test_dockerd_restart(world):
    before = world.host_keys(world.h1)
    world.h1.dockerd.restart()
    world.wait_running(world.a)            # restart policy: Docker starts it again itself
    for load in (world.b, world.x):        # no policy: stopped with the daemon, started by hand
        load.container.start()
    world.assert_policy()
    assert world.host_keys(world.h1) == before


def test_docker_down_releases_nothing(world):
    before = world.host_keys(world.h1)
    log_offset = len(world.agent_log(world.h1))
    world.h1.dockerd.stop()
    world.wait_retries(world.h1, log_offset)
    assert world.host_keys(world.h1) == before
    assert world.agent_pid(world.h1) is not None and pid_alive(world.agent_pid(world.h1))
    said = world.agent_log(world.h1)[log_offset:]
    assert said.count("Docker is not reachable") == 1, said
    world.h1.dockerd.start()
    world.wait_running(world.a)
    for load in (world.b, world.x):
        load.container.start()
    world.assert_policy()
    assert world.host_keys(world.h1) == before
    assert "Docker at " in world.agent_log(world.h1)[log_offset:]


def test_reboot(world):
    """A power cut (agent, BIRD, dockerd and the containers killed, the
    dataplane and /run wiped); Docker starts again (restart policy), then
    `calicoctl node`."""
    h2, cluster = world.h2, world.cluster
    before = world.host_keys(h2)
    other_host = world.host_keys(world.h1)
    world.power_off(h2)
    h2.dockerd.start()
    world.wait_running(world.c)
    world.y.container.start()              # no restart policy: started after the boot
    cluster.start_node(h2)
    world.assert_policy()
    assert world.host_keys(h2) == before
    # The other host's workloads (which h2's Docker knows nothing of) are untouched.
    assert world.host_keys(world.h1) == other_host


def test_docker_rm_with_agent_up(world):
    h1, cluster = world.h1, world.cluster
    x_id = world.x.container.id
    world.x.container.remove(force=True)
    cluster.workloads.remove(world.x)
    wait_for(lambda: not any(x_id in key or x_id in value for key, value in world.host_keys(h1).items()),
             timeout=10, interval=0.1, message="x's endpoint, record and claim gone")
    assert "was removed from Docker: released 192.168.0.9" in world.agent_log(h1)
    # container remove afterwards: the state asked for holds already (by name or ID).
    for ref in (world.x.name, x_id[:12]):
        out = cluster.calicoctl(h1, "container", "remove", ref).stdout
        assert out == ("Container %s is gone: its Calico networking was released when Docker removed it.\n"
                       % ref)
    refused = cluster.calicoctl(h1, "container", "remove", world.x.name + "-typo", check=False)
    assert refused.returncode == 1 and "has no Calico networking" in refused.stderr
    # The address is free again.
    z = cluster.add_workload(h1, "Z", "192.168.0.9", ["ALONE"])
    world.x = z
    world.assert_policy()


def test_docker_run_rm_exiting(world):
    h1, cluster = world.h1, world.cluster
    quick = cluster.add_workload(h1, "Q", "192.168.0.12", ["OPEN"], command=["sleep", "3"],
                                 tty=False, stdin_open=False, auto_remove=True)
    quick_id = quick.container.id
    cluster.workloads.remove(quick)
    wait_for(lambda: not any(quick_id in key or quick_id in value for key, value in world.host_keys(h1).items()),
             timeout=20, interval=0.2, message="the --rm container's networking released")


def test_docker_rm_with_agent_down(world):
    h1, cluster = world.h1, world.cluster
    veth = world.endpoint(world.a)["name"]
    ifindex = cluster.sh(h1, "cat /sys/class/net/%s/ifindex" % veth).stdout
    agent = world.agent_pid(h1)
    os.kill(agent, signal.SIGTERM)         # the agent stops BIRD and exits
    wait_for(lambda: not pid_alive(agent), timeout=15, message="agent stopped")
    b_id = world.b.container.id
    world.b.container.remove(force=True)
    cluster.workloads.remove(world.b)
    assert any(b_id in key for key in world.host_keys(h1))   # nobody released it
    cluster.start_node(h1)
    wait_for(lambda: not any(b_id in key or b_id in value for key, value in world.host_keys(h1).items()),
             timeout=15, interval=0.1, message="b released at the agent's start")
    world.assert_policy(reach=[world.a, world.c])
    # a's interface, in place all along, was left alone by the start-up check.
    assert cluster.sh(h1, "cat /sys/class/net/%s/ifindex" % veth).stdout == ifindex


def test_add_racing_a_restart_leaves_a_working_endpoint_or_nothing(world):
    import subprocess
    import threading
    h1, cluster = world.h1, world.cluster
    container = cluster.docker(h1).containers.run(
        "busybox:latest", name="st-%s-R" % cluster.tag, detach=True, tty=True, stdin_open=True,
        network_mode="none")
    try:
        outcomes = []
        # The restart starts before, with and after the add's own start-up (~0.2 s).
        for attempt, head_start in enumerate((-0.1, 0.0, 0.15, 0.3)):
            ip = "192.168.0.%d" % (40 + attempt)
            restart = threading.Thread(target=container.restart, kwargs={"timeout": 0})
            if head_start > 0:
                restart.start()
                time.sleep(head_start)
            add = h1.popen(["calicoctl", "container", "add", container.name, ip], env=cluster.etcd.env,
                           cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if head_start <= 0:
                time.sleep(-head_start)
                restart.start()
            _out, err = add.communicate(timeout=60)
            restart.join()
            keys = world.host_keys(h1)
            mine = {key: value for key, value in keys.items() if container.id in key or container.id in value}
            if add.returncode == 0:
                outcomes.append("added")
                endpoint_id = cluster.calicoctl(h1, "container", container.name, "endpoint-id",
                                                "show").stdout.strip()
                cluster.calicoctl(h1, "endpoint", endpoint_id, "profile", "append", "OPEN")
                probe = Workload(cluster, h1, container.name, ip, container, endpoint_id)
                # The agent re-creates it in the new namespace if the restart came after the add.
                wait_for(lambda probe=probe: world.a.ping(probe.ip) and probe.ping(world.a.ip),
                         timeout=15, interval=0.1, message="the raced endpoint working")
            else:
                outcomes.append("refused")
                assert err.count("\n") == 1, err
                assert mine == {}, mine
            # Nothing half-done either way: one host veth per endpoint in etcd.
            wait_for(lambda: world.cali_links(h1) == world.endpoint_veths(h1), timeout=10, interval=0.1,
                     message="host veths matching the endpoints")
            if add.returncode == 0:
                cluster.calicoctl(h1, "container", "remove", container.name)
        assert len(outcomes) == 4
    finally:
        container.remove(force=True)


def test_reboot_with_docker_after_the_agent(world):
    """A reboot where the agent comes up first, Docker not (yet) running: it
    says so once, and restores the workloads when Docker starts them."""
    h1, cluster = world.h1, world.cluster
    before = world.host_keys(h1)
    world.power_off(h1)
    log_offset = len(world.agent_log(h1))
    cluster.start_node(h1)
    world.wait_retries(h1, log_offset)
    said = world.agent_log(h1)[log_offset:]
    assert said.count("Docker is not reachable") == 1, said
    assert world.host_keys(h1) == before
    h1.dockerd.start()
    world.wait_running(world.a)
    world.x.container.start()
    world.assert_policy(reach=[world.a, world.c])
    assert "answers again" in world.agent_log(h1)[log_offset:]
    assert world.host_keys(h1) == before
