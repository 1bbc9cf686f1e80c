"""Multi-host convergence: how soon workloads on different hosts can talk.

Simulated hosts on a simulated LAN (tests/harness), etcd inside the LAN,
workloads as network namespaces with ``cali*`` veths registered in etcd
(what ``calicoctl container add`` leaves behind, without Docker's cost).

Figures, each against a reference measured in the same run on the same
hosts: the same topology with bare BIRD daemons running the configuration
our agent renders, routes installed by hand. That reference is the floor
BGP itself sets (session set-up, BIRD's kernel scan), so the ratio is what
the agent adds on top of it.

a. Two hosts: from the second host's ``calicoctl node`` returning (its
   workload was registered before) to the first successful ping from a
   workload on the first host to it. Reference: a BIRD on the second host
   started at t0, the first host's BIRD already running, until the same ping.
b. Twenty hosts (``BENCH_HOSTS``), 25 workloads each (``BENCH_WORKLOADS``):
   every node running and meshed, their veths made; all endpoints are
   written to etcd in one burst (from inside the LAN, one writer per host,
   as the hosts' calicoctl would) and the clock starts at the first write;
   it stops when every host has a route to every other host's workloads.
   Reference: the same with bare BIRDs, the clock starting when the first
   host's device routes are added by hand (host after host). Absolute
   target (issue 5): under 10 s; against bare BIRD (issue 18): at most 2
   times. Also shown: how long etcd took to accept the burst (part of the
   agents' figure, none of bare BIRD's). The difference is the agents
   taking in the burst and programming their local routes (on 2 cores,
   twenty agents at once); BGP adds about what it adds for bare BIRD.

On the datastore ``DATASTORE_TYPE`` names; the other sizes of docs/scale.md::

    DATASTORE_TYPE=etcdv2 bench/run.py multihost
    BENCH_HOSTS=30 BENCH_WORKLOADS=25 bench/run.py multihost
    BENCH_HOSTS=40 BENCH_WORKLOADS=10 bench/run.py multihost

``BENCH_RR=<n>`` runs both sides with the node-to-node mesh off and the
first n hosts route reflectors (issue 23), the bare BIRDs with the
configuration our agent renders for that topology::

    BENCH_RR=2 BENCH_HOSTS=40 BENCH_WORKLOADS=10 bench/run.py multihost
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

HOSTS = int(os.environ.get("BENCH_HOSTS", "20"))
WORKLOADS = int(os.environ.get("BENCH_WORKLOADS", "25"))
REFLECTORS = int(os.environ.get("BENCH_RR", "0"))      # 0: the node-to-node mesh
CLUSTER_ID = "244.0.0.1"
POOL = "10.100.0.0/16"
ABSOLUTE_TARGET_B = 10.0      # seconds, issue 5
TARGET_RATIO = 2.0
TIMEOUT = 120.0


def host_ip(index):
    return "172.17.8.%d" % (101 + index)


def workload_ip(host_index, number):
    return "10.100.%d.%d" % (host_index + 1, number + 1)


class Bench:
    def __init__(self, workdir):
        from tests.harness.simhost import Lan, SimHost
        from tests.harness.etcd import requested_datastore
        from tests.harness.multihost import LanEtcdServer
        self.workdir = workdir
        self.lan = Lan(name="calico-bench-mh").create()
        self.etcd = LanEtcdServer(self.lan, os.path.join(workdir, "etcd", "data"),
                                  datastore=requested_datastore()).start()
        self.hosts = [SimHost("calico-%02d" % (i + 1), host_ip(i), self.lan).start()
                      for i in range(HOSTS)]
        self.client = self.etcd.kv()
        self.workloads = {}       # host index -> [NetnsWorkload]

    def close(self):
        for host in self.hosts:
            host.stop()
        self.etcd.stop()
        self.lan.destroy()

    # -- workloads --------------------------------------------------------------------
    def make_workloads(self, index, count, first=0):
        """veth + netns for ``count`` workloads of host ``index``, in one shell script."""
        from tests.harness.multihost import NetnsWorkload
        host = self.hosts[index]
        made = [NetnsWorkload(host, "b%dw%d" % (index, n), workload_ip(index, n))
                for n in range(first, first + count)]
        script = []
        for workload in made:
            script.append(
                "ip netns add {n}\n"
                "ip link add {i} type veth peer name eth1 netns {n}\n"
                "ip link set {i} up\n"
                "ip netns exec {n} sh -c 'ip link set lo up; ip link set eth1 up; "
                "ip addr add {ip}/32 dev eth1; ip route add {gw} dev eth1 scope link; "
                "ip route add default via {gw} dev eth1'".format(
                    n=workload.name, i=workload.interface, ip=workload.ip, gw=host.ip))
        made[0].host_sh("\n".join(script))
        self.workloads.setdefault(index, []).extend(made)
        return made

    def endpoint_key(self, workload):
        from calicoctl.datastore import paths
        return paths.endpoint_key(workload.host.name, "docker", "wl-" + workload.name,
                                  "ep" + workload.name)

    def register(self, workloads):
        """Write the workloads' endpoints to etcd from inside the LAN, one
        writer per host as the hosts' calicoctl would; returns the
        ``time.monotonic()`` of the first write and of etcd having accepted
        the last (the clock is system-wide)."""
        from tests.harness.multihost import write_from_lan
        groups = {}
        for workload in workloads:
            groups.setdefault(workload.host.name, []).append(
                (self.endpoint_key(workload), workload.endpoint_json(["BENCH"])))
        return write_from_lan(self.etcd, groups.values(), timeout=120)

    # -- observation -------------------------------------------------------------------
    def remote_route_counts(self):
        """How many other hosts' workload routes each host has (in one pass)."""
        counts = []
        for host in self.hosts:
            lines = host.run(["ip", "-4", "route", "show", "proto", "bird"], cwd="/").stdout.splitlines()
            counts.append(sum(1 for line in lines if line.startswith("10.100.")))
        return counts

    def wait_routes(self, expected, started):
        """Until host i has expected[i] remote workload routes; seconds since ``started``."""
        while time.monotonic() - started < TIMEOUT:
            if self.remote_route_counts() == expected:
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError("hosts did not get their %s remote routes within %.0f s: %s"
                           % (expected, TIMEOUT, self.remote_route_counts()))

    @staticmethod
    def wait_ping(source, ip, started):
        while time.monotonic() - started < TIMEOUT:
            if source.ping(ip, wait=1):
                return time.monotonic() - started
            time.sleep(0.02)
        raise RuntimeError("%s never reached %s" % (source.name, ip))

    # -- reference: bare BIRD ---------------------------------------------------------
    def bgp_hosts(self):
        from calicoctl.model import BgpHost
        return [BgpHost(host.name, ipv4=host_ip(i), rr_cluster_id=CLUSTER_ID if i < REFLECTORS else None)
                for i, host in enumerate(self.hosts)]

    def peers(self, index):
        """The sessions of host ``index`` in the topology under test (the mesh or reflectors)."""
        from calicoctl.agent.bgp.bird_config import calculate_topology_peers
        hosts = self.bgp_hosts()
        return calculate_topology_peers(hosts[index], hosts, node_mesh=not REFLECTORS, default_as=64511)

    def bird_config(self, index):
        from calicoctl.agent.bgp.bird_config import BirdInputs, render_bird_config
        return render_bird_config(BirdInputs(
            hostname=self.hosts[index].name, router_id=host_ip(index), ipv6=None, local_as=64511,
            peers=tuple(self.peers(index)), pools_v4=(POOL,), pools_v6=()))

    def start_bird(self, index):
        directory = os.path.join(self.workdir, "bird-%d" % index)
        os.makedirs(directory, exist_ok=True)
        config = os.path.join(directory, "bird.cfg")
        with open(config, "w") as handle:
            handle.write(self.bird_config(index))
        log = open(os.path.join(directory, "bird.log"), "ab")
        return self.hosts[index].popen(["bird", "-f", "-c", config, "-s", os.path.join(directory, "bird.ctl")],
                                       stdout=log, stderr=subprocess.STDOUT, cwd="/")

    def established(self, index):
        from calicoctl.host.bird import parse_protocols
        socket = os.path.join(self.workdir, "bird-%d" % index, "bird.ctl")
        rows = parse_protocols(self.hosts[index].run(["birdc", "-s", socket, "show", "protocols"],
                                                     cwd="/").stdout) or []
        return sum(1 for row in rows if row.proto == "BGP" and row.info.startswith("Established"))

    @staticmethod
    def stop(process):
        from tests.harness.util import terminate_pid
        terminate_pid(process.pid, popen=process)


def add_device_routes(workloads):
    script = "\n".join("ip route replace %s dev %s" % (w.ip, w.interface) for w in workloads)
    workloads[0].host_sh(script)


def delete_device_routes(workloads):
    script = "\n".join("ip route del %s dev %s || true" % (w.ip, w.interface) for w in workloads)
    workloads[0].host_sh(script)


def run(report):
    from calicoctl.datastore import paths
    workdir = tempfile.mkdtemp(prefix="bench-multihost-")
    bench = None
    try:
        bench = Bench(workdir)
        pair = [bench.make_workloads(0, 1, first=WORKLOADS)[0], bench.make_workloads(1, 1, first=WORKLOADS)[0]]
        fleet = {i: bench.make_workloads(i, WORKLOADS) for i in range(HOSTS)}
        # Remote routes each host ends up with: the fleet's, plus the pair's.
        pair_routes = [1, 1] + [2] * (HOSTS - 2)
        full = [(HOSTS - 1) * WORKLOADS + extra for extra in pair_routes]

        # -- reference a: bare BIRD, second host's BIRD starts at t0.
        add_device_routes([pair[0]])
        add_device_routes([pair[1]])
        first = bench.start_bird(0)
        time.sleep(1.0)
        started = time.monotonic()
        second = bench.start_bird(1)
        ref_a = bench.wait_ping(pair[0], pair[1].ip, started)
        bench.stop(first)
        bench.stop(second)

        # -- reference b: bare BIRDs meshed, all device routes added at t0.
        birds = [bench.start_bird(i) for i in range(HOSTS)]
        deadline = time.monotonic() + TIMEOUT
        while not all(bench.established(i) == len(bench.peers(i)) for i in range(HOSTS)):
            if time.monotonic() > deadline:
                raise RuntimeError("bare BIRD sessions never established")
            time.sleep(0.2)
        started = time.monotonic()
        for i in range(HOSTS):
            add_device_routes(fleet[i])
        ref_b = bench.wait_routes(full, started)
        for process in birds:
            bench.stop(process)
        for i in range(HOSTS):
            delete_device_routes(fleet[i])
        delete_device_routes([pair[0]])
        delete_device_routes([pair[1]])

        # -- a: calicoctl node on the second host, then the first cross-host ping.
        env = bench.etcd.env
        bench.client.put("/calico/v1/policy/profile/BENCH/tags", json.dumps(["BENCH"]))
        bench.client.put("/calico/v1/policy/profile/BENCH/rules", json.dumps(
            {"id": "BENCH", "inbound_rules": [{"action": "allow", "src_tag": "BENCH"}],
             "outbound_rules": [{"action": "allow"}]}))

        if REFLECTORS:
            bench.client.put(paths.BGP_NODE_MESH, json.dumps({"enabled": False}))

        def node(host):
            reflector = ["--rr-cluster-id=%s" % CLUSTER_ID] if bench.hosts.index(host) < REFLECTORS else []
            return host.run(["calicoctl", "node", "--ip=%s" % host.ip] + reflector, env=env, cwd="/", timeout=120)

        result = node(bench.hosts[0])
        if result.returncode != 0:
            raise RuntimeError("calicoctl node failed: %s" % (result.stderr or result.stdout))
        bench.client.put(paths.pool_key(POOL), json.dumps({"cidr": POOL}))
        bench.register(pair)
        time.sleep(1.0)
        result = node(bench.hosts[1])
        started = time.monotonic()
        if result.returncode != 0:
            raise RuntimeError("calicoctl node failed: %s" % (result.stderr or result.stdout))
        calico_a = bench.wait_ping(pair[0], pair[1].ip, started)
        report("2 hosts: node start -> first cross-host ping", calico_a, "s",
               "bare BIRD start -> same ping", ref_a, target=TARGET_RATIO)

        # -- b: every node up and meshed, then all workloads registered at t0.
        for host in bench.hosts[2:]:
            result = node(host)
            if result.returncode != 0:
                raise RuntimeError("calicoctl node failed on %s: %s" % (host.name, result.stderr))
        # The pair's routes everywhere: the mesh is up on every host.
        bench.wait_routes(pair_routes, time.monotonic())
        registered, accepted = bench.register([w for i in range(HOSTS) for w in fleet[i]])
        calico_b = bench.wait_routes(full, registered)
        figure = "%d hosts x %d workloads%s: every route everywhere" % (
            HOSTS, WORKLOADS, ", %d RR" % REFLECTORS if REFLECTORS else "")
        report(figure, calico_b, "s", "absolute target (issue 5)", ABSOLUTE_TARGET_B, target=1.0)
        # What the agents add on top of BGP itself (issues 13, 18, 23).
        report(figure, calico_b, "s", "bare BIRD, routes added by hand", ref_b, target=TARGET_RATIO)
        report("   of which etcd accepting the %d writes" % (HOSTS * WORKLOADS), accepted - registered, "s")
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
