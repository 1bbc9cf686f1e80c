"""System-tier fixtures: simulated clusters running the whole calicoctl + agent.

A ``Cluster`` is a LAN (its own network namespace and bridge), an etcd
inside it on the gateway address, and SimHosts (network/UTS/mount
namespaces with their own hostname and /run) on which tests run the real
``calicoctl`` exactly as a user would: ``calicoctl node`` starts the agent
(and with it BIRD) inside the host; workloads are busybox containers of
the one Docker daemon, networked with ``calicoctl container add``.

Clusters are expensive (a few seconds each), so a test module builds one
with the module-scoped ``make_cluster`` factory and its tests share it;
everything a cluster made (containers, agents, BIRDs, etcd, namespaces) is
removed at the end of the module, by PID / container ID.
"""
import os
import threading
import uuid

import pytest

from calicoctl.identity import RUN_DIR
from tests.harness.dataplanes import agent_args
from tests.harness.simhost import Lan, SimHost
from tests.harness.multihost import LanEtcdServer
from tests.harness.util import wait_for

CONTAINER_LABEL = "calico-system-test"


class Workload:
    """A busybox container with Calico networking on one simulated host."""

    def __init__(self, cluster, host, name, ip, container, endpoint_id):
        self.cluster = cluster
        self.host = host
        self.name = name
        self.ip = ip
        self.container = container
        self.endpoint_id = endpoint_id

    def ping(self, ip, count=1, wait=1):
        """True if ``ip`` answers one ping from inside the container."""
        return self.container.exec_run(["ping", "-c", str(count), "-W", str(wait), ip]).exit_code == 0

    def __repr__(self):
        return "Workload(%s on %s, %s)" % (self.name, self.host.name, self.ip)


class Cluster:
    """A LAN with etcd and simulated hosts; see the module docstring.

    :ivar hosts: name -> SimHost, in creation order.
    :ivar etcd: the LanEtcdServer (``env`` for commands in hosts,
        ``kv()`` for the test process).
    :ivar dataplane: the policy dataplane ``start_node`` asks for
        (tests.harness.dataplanes), None: ``calicoctl node``'s default.
    """

    def __init__(self, base_dir, docker_client, tag, subnet6=None, gateway6=None, datastore="etcdv3",
                 dataplane=None):
        self.base_dir = base_dir
        self.dataplane = dataplane
        self.docker_client = docker_client
        self._host_clients = {}
        self.tag = tag
        self.lan = Lan(name="calico-st-%s" % tag, subnet6=subnet6, gateway6=gateway6).create()
        self.etcd = LanEtcdServer(self.lan, os.path.join(base_dir, "etcd", "data"), datastore=datastore).start()
        self.hosts = {}
        self.workloads = []
        self.closed = False

    # -- hosts -----------------------------------------------------------------------
    def add_host(self, name, ip, ip6=None, start_node=True, node_args=(), own_dockerd=False,
                 docker_iptables=False, podman=False):
        """A SimHost on the LAN; ``own_dockerd``: with a dockerd of its own
        (``docker(host)`` is then a client of it), which finds the plugins its
        agent serves, as on a real host; ``docker_iptables``: that dockerd
        manages iptables and a default bridge, as a stock Docker does;
        ``podman``: with Podman (``host.podman``, tests/harness/podman.py)."""
        host = SimHost(name, ip, self.lan, prefixlen=self.lan.prefixlen, ip6=ip6,
                       own_dockerd=own_dockerd, docker_iptables=docker_iptables, podman=podman).start()
        self.hosts[name] = host
        if start_node:
            self.start_node(host, *node_args)
        return host

    def docker(self, host):
        """A docker-py client of the daemon ``host`` uses."""
        if host.dockerd is None:
            return self.docker_client
        client = self._host_clients.get(host.name)
        if client is None:
            client = self._host_clients[host.name] = host.dockerd.client()
        return client

    def start_node(self, host, *args):
        ip_args = ["--ip=%s" % host.ip] + (["--ip6=%s" % host.ip6] if host.ip6 else [])
        if self.dataplane is not None:
            ip_args += agent_args(self.dataplane)
        return self.calicoctl(host, "node", *(ip_args + list(args)))

    def calicoctl(self, host, *args, check=True, input=None, timeout=90):
        """Run ``calicoctl <args>`` inside ``host``; CompletedProcess (text)."""
        result = host.run(["calicoctl"] + list(args), env=self.etcd.env, input=input,
                          timeout=timeout, cwd="/")
        if check and result.returncode != 0:
            raise AssertionError("calicoctl %s on %s failed (exit %d):\n%s%s" % (
                " ".join(args), host.name, result.returncode, result.stdout, result.stderr))
        return result

    def sh(self, host, script, check=True, timeout=60):
        result = host.run(["sh", "-c", script], env=self.etcd.env, timeout=timeout, cwd="/")
        if check and result.returncode != 0:
            raise AssertionError("%s on %s failed (exit %d):\n%s%s" % (
                script, host.name, result.returncode, result.stdout, result.stderr))
        return result

    def bird_pid(self, host):
        """PID of the BIRD the agent runs in ``host`` (from its pid file), or None."""
        result = host.run(["cat", RUN_DIR + "/bird.pid"], cwd="/")
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else None

    def status_peers(self, host):
        """{peer address: (peer type, state, info)} read from ``calicoctl status``."""
        peers = {}
        for line in self.calicoctl(host, "status").stdout.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) == 5 and cells[0] != "Peer address":
                peers[cells[0]] = (cells[1], cells[2], cells[4])
        return peers

    # -- workloads ---------------------------------------------------------------------
    def add_workload(self, host, letter, ip, profiles=(), add_args=(), **run_options):
        """A busybox container on ``host`` with ``ip`` and ``profiles`` appended
        (``add_args`` go to ``container add``, ``run_options`` to docker-py's run)."""
        name = "st-%s-%s" % (self.tag, letter)
        options = dict(name=name, detach=True, tty=True, stdin_open=True,
                       network_mode="none", labels={CONTAINER_LABEL: self.tag})
        options.update(run_options)
        container = self.docker(host).containers.run("busybox:latest", **options)
        workload = Workload(self, host, name, ip, container, None)
        self.workloads.append(workload)
        self.calicoctl(host, "container", "add", name, ip, *add_args)
        workload.endpoint_id = self.calicoctl(host, "container", name, "endpoint-id", "show").stdout.strip()
        if profiles:
            self.calicoctl(host, "endpoint", workload.endpoint_id, "profile", "append", *profiles)
        return workload

    def remove_workload(self, workload):
        self.calicoctl(workload.host, "container", "remove", workload.name, check=False)
        workload.container.remove(force=True)
        self.workloads.remove(workload)

    # -- connectivity --------------------------------------------------------------------
    def wait_ping(self, source, ip, timeout=30.0):
        """Wait until ``source`` reaches ``ip`` (BGP and policy converge)."""
        wait_for(lambda: source.ping(ip), timeout=timeout, interval=0.2,
                   message="%s reaching %s" % (source.name, ip))

    def connectivity(self, pairs):
        """{(source, target): reached?} for (Workload, Workload) pairs, pinged in parallel."""
        results = {}

        def probe(source, target):
            results[source, target] = source.ping(target.ip)

        threads = [threading.Thread(target=probe, args=pair) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def assert_connectivity(self, reach, cut=(), timeout=30.0):
        """Every member of ``reach`` reaches every other one (waiting for
        convergence); then nobody in ``cut`` reaches or is reached by anyone.
        """
        pending = {(a, b) for a in reach for b in reach if a is not b}

        def converged():
            for pair, ok in self.connectivity(list(pending)).items():
                if ok:
                    pending.discard(pair)
            return not pending
        try:
            wait_for(converged, timeout=timeout, interval=0.1, message="full connectivity")
        except TimeoutError:
            raise AssertionError("still unreachable after %.0f s: %s" % (
                timeout, sorted("%s -> %s" % (a.name, b.name) for a, b in pending))) from None
        everyone = list(reach) + list(cut)
        blocked = [(a, b) for a in everyone for b in everyone
                   if a is not b and (a in cut or b in cut)]
        leaks = sorted("%s -> %s" % (a.name, b.name)
                       for (a, b), ok in self.connectivity(blocked).items() if ok)
        assert not leaks, "reached although the profiles forbid it: %s" % leaks

    def close(self):
        """Remove everything the cluster made; safe to call again."""
        if self.closed:
            return
        self.closed = True
        for workload in list(self.workloads):
            try:
                workload.container.remove(force=True)
            except Exception:  # noqa: BLE001 - gone already, or dockerd trouble: clean up the rest
                pass
        for client in self._host_clients.values():
            client.close()
        for host in self.hosts.values():
            host.stop()             # agents, BIRDs and anything else we ran there, by PID
        self.etcd.stop()
        self.lan.destroy()


@pytest.fixture(scope="module")
def make_cluster(root_required, docker_daemon, tmp_path_factory):
    """Factory: ``make_cluster()`` -> an empty Cluster (add hosts with
    ``add_host``); ``make_cluster(subnet6=..., gateway6=...)`` gives its LAN
    IPv6 too. Its etcd serves only the v3 API (the default);
    ``make_cluster(datastore="etcdv2")`` enables v2 and runs every command
    and agent with DATASTORE_TYPE=etcdv2; ``make_cluster(dataplane="iptables")``
    starts every node with that policy dataplane. All clusters of the module
    are removed at its end (or sooner, by ``close``)."""
    made = []

    def factory(subnet6=None, gateway6=None, datastore="etcdv3", dataplane=None):
        tag = uuid.uuid4().hex[:6]
        cluster = Cluster(str(tmp_path_factory.mktemp("cluster-" + tag)), docker_daemon, tag,
                          subnet6=subnet6, gateway6=gateway6, datastore=datastore, dataplane=dataplane)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        cluster.close()
