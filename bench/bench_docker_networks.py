"""Docker-native networking: ``docker run -d --net NET busybox`` on a calico
network vs on a Docker bridge network.

Set-up: a simulated host with its own dockerd (``SimHost(own_dockerd=True)``)
and its own etcd (data on tmpfs), ``calicoctl node`` running the agent and
with it the calico and calico-ipam plugins; a calico network and a Docker
bridge network (the bridge lives in the host's own namespace).

Timed inside the host by a driver (this file run as a script there), the
``docker`` CLI each time, alternating the two so drift on a noisy machine
hits both alike; the containers are removed untimed after each pair.
Target: the calico median at most 1.2 times the bridge median.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = max(15, int(os.environ.get("BENCH_RUNS", "20")))
WARMUP = 2
TARGET = 1.2
HOSTNAME = "bench-dnet"
LAN_SUBNET = "172.31.251.0/24"
LAN_GATEWAY = "172.31.251.1"
HOST_IP = "172.31.251.2"


def _docker(args):
    proc = subprocess.run(["docker"] + args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("docker %s failed: %s" % (" ".join(args[:4]), proc.stderr.strip()))
    return proc.stdout.strip()


def _timed_run(network):
    started = time.perf_counter()
    container = _docker(["run", "-d", "--net", network, "busybox", "sleep", "100000"])
    return (time.perf_counter() - started) * 1000.0, container


def drive(config):
    times = {"calico": [], "bridge": []}
    for index in range(WARMUP + config["runs"]):
        order = ("calico", "bridge") if index % 2 else ("bridge", "calico")
        made = []
        for kind in order:
            elapsed, container = _timed_run(config[kind])
            made.append(container)
            if index >= WARMUP:
                times[kind].append(elapsed)
        _docker(["rm", "-f"] + made)
    return times


def run(report):
    from tests.harness.etcd import EtcdServer
    from tests.harness.simhost import Lan, SimHost
    from tests.harness.util import REPO_ROOT, run_bench_driver

    workdir = tempfile.mkdtemp(prefix="bench-dnet-", dir="/dev/shm")
    lan = host = server = None
    try:
        lan = Lan(name="bench-dnet-%d" % os.getpid(), subnet=LAN_SUBNET, gateway=LAN_GATEWAY).create()
        host = SimHost(HOSTNAME, HOST_IP, lan, prefixlen=24, own_dockerd=True).start()
        server = EtcdServer(os.path.join(workdir, "etcd"), runner=host).start()
        env = {"ETCD_AUTHORITY": server.authority}

        def in_host(args, **kwargs):
            result = host.run(args, env=env, cwd="/", timeout=120, **kwargs)
            if result.returncode != 0:
                raise RuntimeError("%s failed: %s%s" % (" ".join(args[:4]), result.stdout, result.stderr))
            return result
        in_host(["calicoctl", "node", "--ip=%s" % HOST_IP])
        in_host(["docker", "network", "create", "--driver", "calico", "--ipam-driver", "calico-ipam",
                 "bench-calico"])
        in_host(["docker", "network", "create", "--driver", "bridge", "bench-bridge"])
        config = {"runs": RUNS, "calico": "bench-calico", "bridge": "bench-bridge"}
        times = run_bench_driver(host, __file__, config, env=dict(env, PYTHONPATH=REPO_ROOT), timeout=1200)
    finally:
        if host is not None:
            host.stop()           # its dockerd (and containers), the agent, etcd: by PID
        if server is not None:
            server.stop()
        if lan is not None:
            lan.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    calico, bridge = statistics.median(times["calico"]), statistics.median(times["bridge"])
    report("docker run -d --net <calico> (median of %d)" % RUNS, calico, "ms",
           "docker run -d --net <bridge>", bridge, target=TARGET)
    report("  fastest / slowest calico run", "%.1f / %.1f" % (min(times["calico"]), max(times["calico"])), "ms")


if __name__ == "__main__":
    # `bench/run.py docker_networks` runs the benchmark; this entry is its driver.
    if len(sys.argv) != 3 or sys.argv[1] != "--driver":
        sys.exit("usage: bench/run.py docker_networks")
    print(json.dumps(drive(json.loads(sys.argv[2]))))
