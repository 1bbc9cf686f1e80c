"""The CNI plugins: ``calico`` with ``calico-ipam`` ADD and DEL, against
the CNI project's ``ptp`` with ``host-local`` (Go, Debian's
containernetworking-plugins) doing the same to the same kind of container.

Set-up: a simulated host with its own etcd (data on tmpfs), ``calicoctl
node`` running the agent (which serves the plugins' socket), ``calicoctl
cni install`` into the host's own directories, and a bare network
namespace as the container.

Timed inside the host by a driver (this file run as a script there): each
plugin binary as a runtime runs it (a process, the CNI environment, the
configuration on stdin), ADD then DEL of ``eth0``, the two plugins
alternating every run so drift on a noisy machine hits both alike.
Target: calico's ADD + DEL median at most 4 times ptp's (issue 20). The
figures for ADD and DEL apart, and for the plugin binary's start alone
(VERSION, answered without the agent), say where the time goes.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = max(15, int(os.environ.get("BENCH_RUNS", "30")))
WARMUP = 3
TARGET = 4.0
CNI_DIR = "/usr/lib/cni"
HOSTNAME = "bench-cni"
LAN_SUBNET = "172.31.252.0/24"
LAN_GATEWAY = "172.31.252.1"
HOST_IP = "172.31.252.2"
CONF_DIR = "/var/lib/calico/cni/net.d"
BIN_DIR = "/var/lib/calico/cni/bin"


def _timed(args, env, stdin):
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, input=stdin, capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000.0
    if proc.returncode != 0:
        raise RuntimeError("%s %s failed (rc %d): %s" % (args[0], env.get("CNI_COMMAND"), proc.returncode,
                                                        (proc.stdout + proc.stderr).decode().strip()))
    return elapsed


def drive(config):
    """Alternate calico and ptp ADD/DEL; return their times (ms) as lists."""
    base = {"PATH": os.environ.get("PATH", os.defpath), "CNI_CONTAINERID": "bench-container",
            "CNI_NETNS": config["netns"], "CNI_IFNAME": "eth0"}
    plugins = {
        "calico": ([os.path.join(BIN_DIR, "calico")], dict(base, CNI_PATH=BIN_DIR), json.dumps({
            "cniVersion": "1.0.0", "name": "bench", "type": "calico", "ipam": {"type": "calico-ipam"}}).encode()),
        "ptp": ([os.path.join(CNI_DIR, "ptp")], dict(base, CNI_PATH=CNI_DIR), json.dumps({
            "cniVersion": "1.0.0", "name": "bench", "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/16", "dataDir": config["ipam_dir"]}}).encode()),
    }
    times = {"calico_add": [], "calico_del": [], "ptp_add": [], "ptp_del": [], "calico_start": []}
    for index in range(WARMUP + config["runs"]):
        order = ("calico", "ptp") if index % 2 else ("ptp", "calico")
        sample = {}
        for name in order:
            args, env, stdin = plugins[name]
            sample[name + "_add"] = _timed(args, dict(env, CNI_COMMAND="ADD"), stdin)
            sample[name + "_del"] = _timed(args, dict(env, CNI_COMMAND="DEL"), stdin)
        args, env, stdin = plugins["calico"]
        sample["calico_start"] = _timed(args, dict(env, CNI_COMMAND="VERSION"), stdin)
        if index >= WARMUP:
            for key, value in sample.items():
                times[key].append(value)
    return times


def run(report):
    from tests.harness.etcd import EtcdServer, requested_datastore
    from tests.harness.simhost import Lan, Sandbox, SimHost
    from tests.harness.util import REPO_ROOT, run_bench_driver

    if not os.path.exists(os.path.join(CNI_DIR, "ptp")):
        raise RuntimeError("%s/ptp missing: install containernetworking-plugins" % CNI_DIR)
    workdir = tempfile.mkdtemp(prefix="bench-cni-", dir="/dev/shm")
    lan = host = server = sandbox = None
    try:
        lan = Lan(name="bench-cni-%d" % os.getpid(), subnet=LAN_SUBNET, gateway=LAN_GATEWAY).create()
        host = SimHost(HOSTNAME, HOST_IP, lan, prefixlen=24).start()
        server = EtcdServer(os.path.join(workdir, "etcd"), runner=host, datastore=requested_datastore()).start()
        env = dict(server.env)

        def in_host(args):
            result = host.run(args, env=env, cwd="/", timeout=120)
            if result.returncode != 0:
                raise RuntimeError("%s failed: %s%s" % (" ".join(args[:4]), result.stdout, result.stderr))
        in_host(["calicoctl", "node", "--ip=%s" % HOST_IP])
        in_host(["calicoctl", "cni", "install", "bench", "--conf-dir", CONF_DIR, "--bin-dir", BIN_DIR])
        sandbox = Sandbox("bench-cni-container").start()
        config = {"runs": RUNS, "netns": sandbox.netns_path, "ipam_dir": os.path.join(workdir, "host-local")}
        times = run_bench_driver(host, __file__, config, env=dict(env, PYTHONPATH=REPO_ROOT), timeout=1200)
    finally:
        if sandbox is not None:
            sandbox.destroy()
        if host is not None:
            host.stop()           # the agent and BIRD, by PID
        if server is not None:
            server.stop()
        if lan is not None:
            lan.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    both = statistics.median([add + remove for add, remove in zip(times["calico_add"], times["calico_del"])])
    reference = statistics.median([add + remove for add, remove in zip(times["ptp_add"], times["ptp_del"])])
    report("calico + calico-ipam ADD + DEL (median of %d)" % RUNS, both, "ms",
           "ptp + host-local ADD + DEL", reference, target=TARGET)
    report("  calico + calico-ipam ADD", median["calico_add"], "ms", "ptp + host-local ADD", median["ptp_add"])
    report("  calico + calico-ipam DEL", median["calico_del"], "ms", "ptp + host-local DEL", median["ptp_del"])
    report("  calico binary start (VERSION)", median["calico_start"], "ms")


if __name__ == "__main__":
    # `bench/run.py cni` runs the benchmark; this entry is its driver.
    if len(sys.argv) != 3 or sys.argv[1] != "--driver":
        sys.exit("usage: bench/run.py cni")
    print(json.dumps(drive(json.loads(sys.argv[2]))))
