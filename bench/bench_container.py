"""Container networking: whole ``calicoctl container add`` / ``remove`` processes.

Set-up: a simulated host (own network/UTS/mount namespaces) with its own
etcd listening inside it (so no port forwarder sits between calicoctl and
etcd; data on tmpfs so we time calicoctl, not the disk's fsync), the real
dockerd and one ``--net=none`` busybox container.

Timed inside that namespace by a driver (this file run as a script there,
so no nsenter start-up is counted), alternating every run so drift on a
noisy machine hits all alike:

- ``calicoctl container add <C> <IP>`` and ``container remove <C>``;
- (a) ``python -c "import docker, pyroute2, netaddr, docopt"``, the import
  floor of the libraries the command needs (etcd is reached with the
  standard library's http.client, which docker-py imports too). Target
  ratio <= 1.2.
  calicoctl runs with the cyclic garbage collector off (and frozen before
  exit), so the same imports run that way are shown too: against those, the ratio is what the
  work itself costs;
- (b) the Debian CNI ``ptp`` plugin with ``host-local`` IPAM (Go) adding,
  then deleting, the same kind of interface (eth1) to the same container.
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
FLOOR_IMPORTS = "import docker, pyroute2, netaddr, docopt"
CNI_DIR = "/usr/lib/cni"
HOSTNAME = "bench-ctr"
LAN_SUBNET = "172.31.250.0/24"
LAN_GATEWAY = "172.31.250.1"
HOST_IP = "172.31.250.2"
POOL = "192.168.0.0/16"
WORKLOAD_IP = "192.168.7.7"
CNI_SUBNET = "10.77.0.0/16"


def calicoctl_command():
    """The installed console script next to this interpreter, else ``python -m calicoctl``."""
    script = os.path.join(os.path.dirname(sys.executable), "calicoctl")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "calicoctl"]


def render_cni_config(data_dir):
    return json.dumps({
        "cniVersion": "0.4.0", "name": "bench", "type": "ptp", "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": CNI_SUBNET, "dataDir": data_dir},
    })


# -- the driver (runs inside the simulated host) ------------------------------------------

def _timed(args, env, stdin=None):
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True)
    elapsed = (time.perf_counter() - started) * 1000.0
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d): %s" % (" ".join(args[:4]), proc.returncode,
                                                      (proc.stderr or proc.stdout).strip()))
    return elapsed


def drive(config):
    """Alternate the five commands; return their times (ms) as lists."""
    env = dict(config["etcd_env"], PATH=os.environ.get("PATH", os.defpath), PYTHONPATH=config["repo"],
               CALICO_HOSTNAME=HOSTNAME)
    floor_imports = FLOOR_IMPORTS
    cni_env = {"PATH": env["PATH"], "CNI_CONTAINERID": config["container_id"],
               "CNI_NETNS": "/proc/%d/ns/net" % config["container_pid"], "CNI_IFNAME": "eth1",
               "CNI_PATH": CNI_DIR}
    cni_config = render_cni_config(config["cni_data"])
    command = calicoctl_command()
    times = {"floor": [], "floor_nogc": [], "add": [], "remove": [], "cni_add": [], "cni_del": []}
    for index in range(WARMUP + config["runs"]):
        sample = {
            "floor": _timed([sys.executable, "-c", floor_imports], env),
            "floor_nogc": _timed([sys.executable, "-c", "import gc; gc.disable(); " + floor_imports
                                  + "; gc.freeze()"], env),
            "add": _timed(command + ["container", "add", config["container"], WORKLOAD_IP], env),
            "remove": _timed(command + ["container", "remove", config["container"]], env),
            "cni_add": _timed([os.path.join(CNI_DIR, "ptp")], dict(cni_env, CNI_COMMAND="ADD"), cni_config),
            "cni_del": _timed([os.path.join(CNI_DIR, "ptp")], dict(cni_env, CNI_COMMAND="DEL"), cni_config),
        }
        if index >= WARMUP:
            for key, value in sample.items():
                times[key].append(value)
    return times


SEED_SCRIPT = """
import json, sys
sys.path.insert(0, %(repo)r)
from tests.harness.etcd import make_kv
kv = make_kv(%(etcd_env)r)
kv.put("/calico/v1/ipam/v4/pool/%(pool_key)s", json.dumps({"cidr": %(pool)r}))
kv.put("/calico/bgp/v1/host/%(hostname)s/ip_addr_v4", %(host_ip)r)
"""


# -- set-up, run, report (in the caller's namespace) ----------------------------------------

def run(report):
    from tests.harness.docker import ensure_busybox_image, ensure_dockerd
    from tests.harness.etcd import EtcdServer, requested_datastore
    from tests.harness.simhost import Lan, SimHost
    from tests.harness.util import REPO_ROOT, run_bench_driver

    if not os.path.exists(os.path.join(CNI_DIR, "ptp")):
        raise RuntimeError("%s/ptp missing: install containernetworking-plugins" % CNI_DIR)
    workdir = tempfile.mkdtemp(prefix="bench-container-", dir="/dev/shm")
    daemon = ensure_dockerd()
    docker_client = daemon.client()
    lan = host = server = container = None
    try:
        ensure_busybox_image(docker_client)
        lan = Lan(name="bench-lan-%d" % os.getpid(), subnet=LAN_SUBNET, gateway=LAN_GATEWAY).create()
        host = SimHost(HOSTNAME, HOST_IP, lan, prefixlen=24).start()
        server = EtcdServer(os.path.join(workdir, "etcd"), runner=host, datastore=requested_datastore()).start()
        seeded = host.run([sys.executable, "-c", SEED_SCRIPT % {
            "repo": REPO_ROOT, "etcd_env": server.env, "pool": POOL, "pool_key": POOL.replace("/", "-"),
            "hostname": HOSTNAME, "host_ip": HOST_IP}], cwd=REPO_ROOT)
        if seeded.returncode != 0:
            raise RuntimeError("seeding etcd failed: %s" % seeded.stderr.strip())
        container = docker_client.containers.run(
            "busybox:latest", detach=True, tty=True, stdin_open=True, network_mode="none",
            name="bench-container-%d" % os.getpid())
        container.reload()
        config = {"repo": REPO_ROOT, "etcd_env": server.env, "runs": RUNS, "container": container.name,
                  "container_id": container.id, "container_pid": container.attrs["State"]["Pid"],
                  "cni_data": os.path.join(workdir, "cni-ipam")}
        times = run_bench_driver(host, __file__, config, timeout=600)
    finally:
        if container is not None:
            container.remove(force=True)
        if server is not None:
            server.stop()
        if host is not None:
            host.stop()
        if lan is not None:
            lan.destroy()
        docker_client.close()
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {key: statistics.median(values) for key, values in times.items()}
    floor_name = 'python -c "import docker, pyroute2, ..."'
    report("calicoctl container add (median of %d)" % RUNS, median["add"], "ms",
           floor_name, median["floor"], target=TARGET)
    report("calicoctl container remove (median of %d)" % RUNS, median["remove"], "ms",
           floor_name, median["floor"], target=TARGET)
    report("calicoctl container add", median["add"], "ms", "CNI ptp + host-local ADD", median["cni_add"])
    report("calicoctl container remove", median["remove"], "ms", "CNI ptp + host-local DEL",
           median["cni_del"])
    # calicoctl runs with the cyclic GC off (calicoctl/__main__.py); the same
    # imports without it show what the work itself costs.
    report("calicoctl container add", median["add"], "ms", "same imports, gc off as calicoctl",
           median["floor_nogc"])
    report("calicoctl container remove", median["remove"], "ms", "same imports, gc off as calicoctl",
           median["floor_nogc"])
    report("  fastest / slowest add", "%.1f / %.1f" % (min(times["add"]), max(times["add"])), "ms")
    report("  fastest / slowest import floor",
           "%.1f / %.1f" % (min(times["floor"]), max(times["floor"])), "ms")


if __name__ == "__main__":
    # `bench/run.py container` runs the benchmark; this entry is its driver.
    if len(sys.argv) != 3 or sys.argv[1] != "--driver":
        sys.exit("usage: bench/run.py container")
    print(json.dumps(drive(json.loads(sys.argv[2]))))
