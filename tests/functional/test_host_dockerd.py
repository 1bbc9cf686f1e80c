"""Simulated hosts with a dockerd of their own (``SimHost(own_dockerd=True)``).

Each such host's daemon answers on /run/docker.sock inside the host only,
holds its own containers and busybox image, finds plugin sockets in the
host's own /run/docker/plugins/, and can be restarted and stopped by PID
without touching any other daemon.
"""
import os
import socket

import pytest

from tests.harness.docker import docker_answers
from tests.harness.simhost import SimHost
from tests.harness.util import pid_alive, wait_for

pytestmark = pytest.mark.usefixtures("root_required")


@pytest.fixture(scope="module")
def own_hosts(lan):
    hosts = [SimHost("dockerd-a", "172.17.8.71", lan, own_dockerd=True),
             SimHost("dockerd-b", "172.17.8.72", lan, own_dockerd=True)]
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()


def _docker(host, *args):
    result = host.run(["docker"] + list(args), cwd="/", timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_each_host_has_its_own_daemon_and_containers(own_hosts):
    a, b = own_hosts
    assert a.dockerd.pid != b.dockerd.pid and pid_alive(a.dockerd.pid) and pid_alive(b.dockerd.pid)
    # Inside each host, plain `docker` (default /run/docker.sock) reaches its own daemon.
    assert _docker(a, "info", "--format", "{{.Name}}") == "dockerd-a"
    assert _docker(b, "info", "--format", "{{.Name}}") == "dockerd-b"
    client = a.dockerd.client()
    try:
        container = client.containers.run("busybox:latest", detach=True, tty=True,
                                          network_mode="none", name="only-on-a")
        assert "only-on-a" in _docker(a, "ps", "--format", "{{.Names}}")
        assert "only-on-a" not in _docker(b, "ps", "-a", "--format", "{{.Names}}")
        container.remove(force=True)
    finally:
        client.close()


def test_plugin_directory_is_the_hosts_own(own_hosts):
    a, b = own_hosts
    a.run(["mkdir", "-p", "/run/docker/plugins"], cwd="/")
    path = "/proc/%d/root/run/docker/plugins/probe.sock" % a.pid
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(path)
        assert a.run(["test", "-S", "/run/docker/plugins/probe.sock"], cwd="/").returncode == 0
        assert b.run(["test", "-e", "/run/docker/plugins/probe.sock"], cwd="/").returncode != 0
        assert not os.path.exists("/run/docker/plugins/probe.sock")
    finally:
        listener.close()
        os.unlink(path)


@pytest.mark.slow
def test_restart_brings_back_restart_always_containers(own_hosts):
    a, b = own_hosts
    client = a.dockerd.client()
    try:
        kept = client.containers.run("busybox:latest", detach=True, tty=True, network_mode="none",
                                     name="kept", restart_policy={"Name": "always"})
        plain = client.containers.run("busybox:latest", detach=True, tty=True, network_mode="none",
                                      name="plain")
        kept.reload()
        old_pid, old_daemon, other_daemon = kept.attrs["State"]["Pid"], a.dockerd.pid, b.dockerd.pid
    finally:
        client.close()
    a.dockerd.restart()
    assert a.dockerd.pid != old_daemon and not pid_alive(old_daemon)
    assert b.dockerd.pid == other_daemon and pid_alive(other_daemon)
    client = a.dockerd.client()
    try:
        def running(name):
            container = client.containers.get(name)
            return container.attrs["State"]["Running"] and container
        kept = wait_for(lambda: running("kept"), timeout=30, message="kept restarted")
        assert kept.attrs["State"]["Pid"] != old_pid
        assert client.containers.get(plain.id).attrs["State"]["Running"] is False
    finally:
        client.close()
        a.dockerd.remove_containers()


@pytest.mark.slow
def test_stop_ends_only_that_daemon(lan):
    host = SimHost("dockerd-c", "172.17.8.73", lan, own_dockerd=True).start()
    try:
        pid, socket_path, state_dir = host.dockerd.pid, host.dockerd.socket_path, host.dockerd.state_dir
        host.dockerd.stop()
        assert not pid_alive(pid) and not docker_answers(socket_path)
        host.dockerd.start()
        assert docker_answers(host.dockerd.socket_path)
    finally:
        host.stop()
    assert not pid_alive(pid) and not os.path.exists(state_dir)
