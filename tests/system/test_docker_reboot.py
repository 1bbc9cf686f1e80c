"""After a power cut, containers on calico Docker networks come back
(issue 17), on two simulated hosts with a dockerd each.

Host A is powered off (SimHost.power_off: agent, BIRD, dockerd and its
containers killed, the dataplane and /run gone) and boots twice: first in
the order systemd/calico-node.service declares (`calicoctl node
--detach=false` reports ready to a stand-in for systemd, then Docker
starts), then the other way round (Docker first: it looks for the plugins
for about 15 s per container and gives up; then the agent, which starts
what Docker gave up on). Host B stays up.

Network netR, on A:
  al   --restart=always --ip 192.168.90.10
  us   --restart=unless-stopped --ip 192.168.90.11
  usx  --restart=unless-stopped, stopped by the user before the power cut
  no   no restart policy, running at the power cut
and on B: peer (--restart=always).
"""
import json
import os
import socket

import pytest

from tests.harness.util import wait_for

HOST_A, HOST_B = ("rb-a", "172.17.8.85"), ("rb-b", "172.17.8.86")
DRIVER = ["--driver", "calico", "--ipam-driver", "calico-ipam"]
SOCKETS = ("/run/docker/plugins/calico.sock", "/run/docker/plugins/calico-ipam.sock")
AGENT_LOG = "/var/log/calico/agent.log"
AL_IP, US_IP = "192.168.90.10", "192.168.90.11"
GAVE_UP = 'plugin "calico-ipam" not found'
# Docker restores its containers before it answers its API; failing, that
# takes about 15 s per container it cleans up or restarts.
DOCKER_FIRST_BOOT_TIMEOUT = 180


class NotifySocket:
    """systemd's end of a Type=notify unit: where the unit's process sends READY=1."""

    def __init__(self, path):
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(path)

    def wait_ready(self, timeout):
        self._socket.settimeout(timeout)
        while b"READY=1" not in self._socket.recv(4096).split(b"\n"):
            pass

    def close(self):
        self._socket.close()
        os.unlink(self.path)


class World:
    def __init__(self, cluster, notify_path):
        self.cluster = cluster
        self.notify_path = notify_path
        self.env = dict(cluster.etcd.env, CALICO_AGENT_PLUGIN_RECONCILE_INTERVAL="2")
        self.a, self.b = [cluster.add_host(name, ip, start_node=False, own_dockerd=True)
                          for name, ip in (HOST_A, HOST_B)]
        for host in (self.a, self.b):
            result = host.run(["calicoctl", "node", "--ip=%s" % host.ip], env=self.env, timeout=90, cwd="/")
            assert result.returncode == 0, result.stdout + result.stderr
            self.docker(host, "network", "create", *DRIVER, "--subnet", "192.168.90.0/24", "netR")
        self.run(self.a, "al", "--restart=always", "--ip", AL_IP)
        self.run(self.a, "us", "--restart=unless-stopped", "--ip", US_IP)
        self.run(self.a, "usx", "--restart=unless-stopped")
        self.run(self.a, "no")
        self.run(self.b, "peer", "--restart=always")
        self.docker(self.a, "stop", "-t", "0", "usx")

    def docker(self, host, *args):
        result = host.run(["docker"] + list(args), timeout=60, cwd="/")
        assert result.returncode == 0, "docker %s: %s%s" % (" ".join(args), result.stdout, result.stderr)
        return result.stdout

    def run(self, host, name, *options):
        self.docker(host, "run", "-d", "--net", "netR", "--name", name, *options, "busybox", "sleep", "100000")

    def container(self, host, name):
        return self.cluster.docker(host).containers.get(name)

    def state(self, host, name):
        return self.container(host, name).attrs["State"]

    def address(self, host, name):
        return self.container(host, name).attrs["NetworkSettings"]["Networks"]["netR"]["IPAddress"]

    def ping(self, host, name, ip):
        return self.container(host, name).exec_run(["ping", "-c", "1", "-W", "1", ip]).exit_code == 0

    def wait_running(self, host, *names):
        for name in names:
            wait_for(lambda name=name: self.state(host, name)["Running"], timeout=30, interval=0.1,
                     message="%s running" % name)

    def assert_reach(self, members):
        """Every (host, name) of ``members`` reaches every other one."""
        pending = {(source, target) for source in members for target in members if source != target}
        addresses = {member: self.address(*member) for member in members}

        def reached():
            for source, target in list(pending):
                if self.ping(source[0], source[1], addresses[target]):
                    pending.discard((source, target))
            return not pending
        wait_for(reached, timeout=40, interval=0.2, message="the containers of netR reaching each other")

    def agent_log(self):
        return self.a.run(["cat", AGENT_LOG], cwd="/").stdout

    def start_unit(self):
        """What systemd does with calico-node.service: run `calicoctl node
        --detach=false` and wait for its READY=1 (True once received)."""
        notify = NotifySocket(self.notify_path)
        try:
            self.a.popen(["calicoctl", "node", "--ip=%s" % self.a.ip, "--detach=false"], cwd="/",
                         env=dict(self.env, NOTIFY_SOCKET=self.notify_path))
            notify.wait_ready(timeout=30)
        finally:
            notify.close()

    def assert_no_dead_endpoints_and_claims_kept(self):
        """The endpoints of A's containers before the power cut are gone from
        etcd; the addresses of those running are still claimed."""
        kv = self.cluster.etcd.kv()

        def endpoint_ips():
            entries = kv.tree("/calico/v1/host/%s/workload/libnetwork" % self.a.name).entries
            return sorted(ip for entry in entries if "/endpoint/" in entry.key
                          for ip in json.loads(entry.value)["ipv4_nets"])
        wait_for(lambda: endpoint_ips() == ["%s/32" % AL_IP, "%s/32" % US_IP], timeout=20, interval=0.2,
                 message="only the endpoints of al and us on %s" % self.a.name)
        claims = kv.tree("/calico/v1/ipam/v4/assignment").entries
        held = sorted(entry.key.rsplit("/", 1)[1] for entry in claims)
        assert held == sorted([AL_IP, US_IP, self.address(self.b, "peer")]), held


@pytest.fixture(scope="module")
def world(make_cluster, tmp_path_factory):
    return World(make_cluster(), str(tmp_path_factory.mktemp("systemd") / "notify"))


def test_boot_in_the_units_order(world):
    a = world.a
    a.power_off()
    log_offset = len(world.agent_log())
    world.start_unit()
    # Ready means the plugin sockets exist: Docker, started now, finds them.
    for path in SOCKETS:
        assert a.run(["test", "-S", path], cwd="/").returncode == 0, path
    a.dockerd.start()
    world.wait_running(a, "al", "us")
    assert (world.address(a, "al"), world.address(a, "us")) == (AL_IP, US_IP)
    world.assert_reach([(a, "al"), (a, "us"), (world.b, "peer")])
    assert world.agent_log()[log_offset:].count("(bound by calicoctl node)") == 2
    wait_for(lambda: "No container was waiting for the calico plugins" in world.agent_log()[log_offset:],
             timeout=20, interval=0.2, message="the agent's check for containers Docker gave up on")
    for name in ("usx", "no"):
        assert world.state(a, name)["Status"] == "exited", name
    world.assert_no_dead_endpoints_and_claims_kept()


def test_boot_with_docker_first(world):
    """Docker gives up on al and us; the agent, started after it, starts
    them (and only them) and logs each."""
    a = world.a
    world.docker(a, "start", "no")          # running at the power cut, as in the first boot
    a.power_off()
    log_offset = len(world.agent_log())
    a.dockerd.timeout = DOCKER_FIRST_BOOT_TIMEOUT
    a.dockerd.start()
    for name in ("al", "us"):
        state = world.state(a, name)
        assert (state["Status"], state["Error"]) == ("exited", GAVE_UP), (name, state)
    world.start_unit()
    world.wait_running(a, "al", "us")
    assert (world.address(a, "al"), world.address(a, "us")) == (AL_IP, US_IP)
    world.assert_reach([(a, "al"), (a, "us"), (world.b, "peer")])
    said = world.agent_log()[log_offset:]
    for name in ("al", "us"):
        assert said.count("Started container %s (" % name) == 1, said
    for name in ("usx", "no"):
        assert world.state(a, name)["Status"] == "exited", name
        assert "container %s (" % name not in said, said
    world.assert_no_dead_endpoints_and_claims_kept()
