"""``make demo``: the seed demonstration, command for command, on two simulated hosts.

What it does (``SEED_STEPS`` below are the demonstration's commands):

1. Makes sure Docker runs (starting a private dockerd if none answers) and
   that a ``busybox`` image exists (built locally from Debian's busybox).
2. Builds the seed's environment: a LAN (a network namespace with a
   bridge) and two hosts ``calico-01`` (172.17.8.101) and ``calico-02``
   (172.17.8.102), each a network/UTS/mount namespace set with its own
   hostname, ``/run`` and default route. etcd runs on calico-01, listening
   on 172.17.8.101:2379 and on 127.0.0.1:2379 there; both hosts have
   ``ETCD_AUTHORITY=172.17.8.101:2379``.
3. Runs the seed's commands verbatim on the right host, printing each one
   after a ``calico-0N$`` prompt with its output, like a transcript. Two
   small shims stand in for the seed's environment:
   - ``sudo`` is a pass-through (``exec "$@"``): the demo already runs as root;
   - ``docker run`` gets ``--label calico-demo=1`` added, so containers a
     crashed demo left behind can be told from anyone else's.
   The seed's ``docker ps`` (which showed its ``calico-node`` container) is
   replaced by ``calicoctl status``: our node is a host daemon, not a container.
4. Shows ``calicoctl policy matrix`` (who may reach whom by the profiles)
   and prints a matrix of who reaches whom (``ping -c1 -W1`` for every pair,
   from the containers) next to what the profiles allow, and exits 1 if
   they differ.

It cleans up after itself (containers, hosts, etcd, agents: only what it
started, by PID) and can be run again, also after an interrupted run: it
removes the labelled ``workload-A..E`` containers and ends the processes
an earlier demo started (they carry ``CALICO_DEMO_RUN`` in their
environment). Exit codes: 0 matrix as expected, 1 a step failed or the
matrix differs, 2 not root.
"""
import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.harness.docker import ensure_busybox_image, ensure_dockerd  # noqa: E402
from tests.harness.etcd import EtcdServer, datastore_env, requested_datastore  # noqa: E402
from tests.harness.simhost import Lan, SimHost  # noqa: E402
from tests.harness.util import pid_alive, terminate_pid  # noqa: E402

STATE_DIR = "/tmp/calico-demo"
LABEL = "calico-demo"
MARKER = "CALICO_DEMO_RUN"
HOSTS = (("calico-01", "172.17.8.101"), ("calico-02", "172.17.8.102"))
ETCD_HOST = "calico-01"
ETCD_AUTHORITY = "172.17.8.101:2379"
# name -> (host, IP, profile), as the seed sets them up
WORKLOADS = {
    "A": ("calico-01", "192.168.0.1", "PROF_A_C_E"),
    "B": ("calico-01", "192.168.0.2", "PROF_B"),
    "C": ("calico-01", "192.168.0.3", "PROF_A_C_E"),
    "D": ("calico-02", "192.168.0.4", "PROF_D"),
    "E": ("calico-02", "192.168.0.5", "PROF_A_C_E"),
}

# The seed's commands, verbatim, with the host each runs on and whether the
# seed expects it to succeed (its last two pings must fail).
SEED_STEPS = [
    ("Starting Calico services", [
        ("calico-01", "sudo calicoctl node", True),
        ("calico-02", "sudo calicoctl node", True),
    ]),
    ("Checking they are running (the seed's `docker ps`: our node is a host daemon, "
     "so we ask `calicoctl status`)", [
        ("calico-01", "calicoctl status", True),
        ("calico-02", "calicoctl status", True),
    ]),
    ("Starting containers", [
        ("calico-01", "docker run --net=none --name workload-A -tid busybox", True),
        ("calico-01", "docker run --net=none --name workload-B -tid busybox", True),
        ("calico-01", "docker run --net=none --name workload-C -tid busybox", True),
        ("calico-02", "docker run --net=none --name workload-D -tid busybox", True),
        ("calico-02", "docker run --net=none --name workload-E -tid busybox", True),
    ]),
    ("Adding Calico networking", [
        ("calico-01", "sudo calicoctl container add workload-A 192.168.0.1", True),
        ("calico-01", "sudo calicoctl container add workload-B 192.168.0.2", True),
        ("calico-01", "sudo calicoctl container add workload-C 192.168.0.3", True),
        ("calico-02", "sudo calicoctl container add workload-D 192.168.0.4", True),
        ("calico-02", "sudo calicoctl container add workload-E 192.168.0.5", True),
    ]),
    ("Creating profiles", [
        ("calico-01", "calicoctl profile add PROF_A_C_E", True),
        ("calico-01", "calicoctl profile add PROF_B", True),
        ("calico-01", "calicoctl profile add PROF_D", True),
    ]),
    ("Assigning profiles to endpoints", [
        ("calico-01", "calicoctl endpoint $(calicoctl container workload-A endpoint-id show) "
                      "profile append PROF_A_C_E", True),
        ("calico-01", "calicoctl endpoint $(calicoctl container workload-B endpoint-id show) "
                      "profile append PROF_B", True),
        ("calico-01", "calicoctl endpoint $(calicoctl container workload-C endpoint-id show) "
                      "profile append PROF_A_C_E", True),
        ("calico-02", "calicoctl endpoint $(calicoctl container workload-D endpoint-id show) "
                      "profile append PROF_D", True),
        ("calico-02", "calicoctl endpoint $(calicoctl container workload-E endpoint-id show) "
                      "profile append PROF_A_C_E", True),
    ]),
    ("Testing it: A reaches C and E, not B or D", [
        ("calico-01", "docker exec workload-A ping -c 4 192.168.0.3", True),
        ("calico-01", "docker exec workload-A ping -c 4 192.168.0.5", True),
        ("calico-01", "docker exec workload-A ping -c 4 192.168.0.2", False),
        ("calico-01", "docker exec workload-A ping -c 4 192.168.0.4", False),
    ]),
]

SHIMS = {
    "sudo": '#!/bin/sh\n# calico demo: already root, so sudo just runs the command.\nexec "$@"\n',
    "docker": ('#!/bin/sh\n# calico demo: label the containers this demo starts.\n'
               'if [ "$1" = run ]; then shift; exec {docker} run --label {label}=1 "$@"; fi\n'
               'exec {docker} "$@"\n'),
}


class DemoError(Exception):
    """A step of the demo failed; the message says which."""


class Transcript:
    """Prints commands and their output the way a terminal session reads."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream

    def section(self, title):
        self.stream.write("\n## %s\n\n" % title)
        self.stream.flush()

    def note(self, text):
        self.stream.write(textwrap.fill(text, 78) + "\n")
        self.stream.flush()

    def command(self, host, command):
        self.stream.write("%s$ %s\n" % (host, command))
        self.stream.flush()

    def output(self, text, returncode=0):
        for line in text.rstrip("\n").splitlines():
            self.stream.write("    %s\n" % line)
        if returncode:
            self.stream.write("    (exit status %d)\n" % returncode)
        self.stream.flush()


class DemoEtcd(EtcdServer):
    """The seed's etcd on calico-01: its host address and loopback, port 2379."""

    def command(self):
        args = super().command()
        urls = "%s,http://127.0.0.1:%d" % (self.url, self.client_port)
        args[args.index("--listen-client-urls") + 1] = urls
        return args


# -- leftovers of an earlier run -------------------------------------------------

def acquire_lock():
    """Hold STATE_DIR/lock for the whole run; None if another demo holds it."""
    os.makedirs(STATE_DIR, exist_ok=True)
    handle = open(os.path.join(STATE_DIR, "lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def find_marked_processes(exclude_run=None):
    """PIDs whose environment carries MARKER (from another run than ``exclude_run``)."""
    found = []
    needle = (MARKER + "=").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                variables = handle.read().split(b"\0")
        except OSError:
            continue
        for variable in variables:
            if variable.startswith(needle):
                if exclude_run is None or variable[len(needle):].decode() != exclude_run:
                    found.append(int(entry))
                break
    return found


def remove_leftovers(client, transcript):
    """End processes and remove containers an earlier (interrupted) demo left."""
    pids = find_marked_processes()
    for pid in pids:
        terminate_pid(pid, timeout=5.0)
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        container.remove(force=True)
        removed.append(container.name)
    if pids or removed:
        transcript.note("Cleaned up after an earlier demo run: %d process(es), container(s) %s."
                        % (len(pids), ", ".join(removed) or "none"))
    # A workload-X we did not label is someone else's: refuse rather than remove it.
    import docker
    for letter in WORKLOADS:
        name = "workload-%s" % letter
        try:
            client.containers.get(name)
        except docker.errors.NotFound:
            continue
        raise DemoError("A container named %s exists that this demo did not create; remove or "
                        "rename it (docker rm -f %s) and run the demo again." % (name, name))


# -- the demo ---------------------------------------------------------------------

class Demo:
    def __init__(self, transcript, docker_client):
        self.transcript = transcript
        self.docker = docker_client
        self.run_id = uuid.uuid4().hex
        self.lan = None
        self.hosts = {}
        self.etcd = None
        self.shim_dir = os.path.join(STATE_DIR, "bin")
        self.env = {}

    # -- environment ------------------------------------------------------------
    def build(self):
        os.environ[MARKER] = self.run_id      # every process we start carries it
        shutil.rmtree(os.path.join(STATE_DIR, "etcd"), ignore_errors=True)
        self._write_shims()
        self.lan = Lan(name="calico-demo-lan").create()
        for name, ip in HOSTS:
            self.hosts[name] = SimHost(name, ip, self.lan).start()
        self.etcd = DemoEtcd(os.path.join(STATE_DIR, "etcd", "data"), host=HOSTS[0][1],
                             client_port=2379, peer_port=2380, runner=self.hosts[ETCD_HOST],
                             datastore=requested_datastore())
        self.etcd.start()
        self.env = dict(datastore_env(self.etcd.datastore), ETCD_AUTHORITY=ETCD_AUTHORITY,
                        PATH=self.shim_dir + os.pathsep + os.environ.get("PATH", os.defpath))

    def _write_shims(self):
        os.makedirs(self.shim_dir, exist_ok=True)
        docker = shutil.which("docker")
        if docker is None:
            raise DemoError("The docker command is not installed (Debian package docker.io).")
        for name, text in SHIMS.items():
            path = os.path.join(self.shim_dir, name)
            with open(path, "w") as handle:
                handle.write(text.format(docker=docker, label=LABEL))
            os.chmod(path, 0o755)

    def destroy(self):
        for container in self.docker.containers.list(all=True, filters={"label": LABEL}):
            try:
                container.remove(force=True)
            except Exception as exc:  # noqa: BLE001 - already gone, or dockerd trouble: report, go on
                print("demo: could not remove container %s: %s" % (container.name, exc),
                      file=sys.stderr)
        for host in self.hosts.values():
            host.stop()              # ends the agent, BIRD and etcd in it, by PID
        if self.etcd is not None:
            self.etcd.stop()
        if self.lan is not None:
            self.lan.destroy()
        for pid in find_marked_processes():
            if pid_alive(pid):
                terminate_pid(pid, timeout=5.0)

    # -- steps -------------------------------------------------------------------
    def sh(self, host, command, timeout=120):
        return self.hosts[host].run(["sh", "-c", command], env=self.env, timeout=timeout,
                                    cwd="/")

    def run_seed(self):
        """Every seed command; returns the list of steps that did not go as the seed says."""
        surprises = []
        for title, steps in SEED_STEPS:
            self.transcript.section(title)
            for host, command, should_succeed in steps:
                self.transcript.command(host, command)
                result = self.sh(host, command)
                self.transcript.output(result.stdout + result.stderr, result.returncode)
                if (result.returncode == 0) != should_succeed:
                    if should_succeed and not command.startswith("docker exec"):
                        raise DemoError("%s on %s failed (exit %d); the demo cannot go on."
                                        % (command, host, result.returncode))
                    surprises.append("%s: %s (exit %d)" % (host, command, result.returncode))
        return surprises

    def allowed_matrix(self):
        """Who may reach whom by the profiles in etcd, as ``calicoctl policy
        matrix`` says (the evaluator behind ``policy explain``); its table is
        shown in the transcript."""
        host = HOSTS[0][0]
        for command in ("calicoctl policy matrix", "calicoctl policy matrix -o json"):
            result = self.sh(host, command)
            if result.returncode != 0:
                raise DemoError("%s on %s failed (exit %d): %s" % (command, host, result.returncode,
                                                                     result.stderr.strip()))
            if "-o json" not in command:
                self.transcript.command(host, command)
                self.transcript.output(result.stdout)
        answer = json.loads(result.stdout)
        letters = {party["endpoint"]: party["name"][len("workload-"):] for party in answer["endpoints"]}
        return {(letters[cell["from"]], letters[cell["to"]]): cell["verdict"] == "allowed"
                for cell in answer["cells"]}

    def observed_matrix(self):
        """Ping every pair (``ping -c1 -W1``, a second try if the first fails)."""
        results = {}

        def probe(src, dst, ip):
            container = self.docker.containers.get("workload-%s" % src)
            for _ in range(2):
                if container.exec_run(["ping", "-c", "1", "-W", "1", ip]).exit_code == 0:
                    results[src, dst] = True
                    return
            results[src, dst] = False

        threads = []
        for src in WORKLOADS:
            for dst, (_, ip, _) in WORKLOADS.items():
                if src != dst:
                    thread = threading.Thread(target=probe, args=(src, dst, ip))
                    thread.start()
                    threads.append(thread)
        for thread in threads:
            thread.join()
        return results


def render_matrix(observed, allowed):
    """The matrix as text lines, and the number of cells that differ (pure)."""
    letters = sorted(WORKLOADS)
    width, label_width = 12, 36
    lines = ["Each cell: observed / allowed by the profiles (ping -c1 -W1; ! marks a difference).",
             "",
             " " * label_width + "".join(("to %s" % letter).ljust(width) for letter in letters).rstrip()]
    differences = 0
    for src in letters:
        host, ip, profile = WORKLOADS[src]
        cells = []
        for dst in letters:
            if src == dst:
                cells.append("-".ljust(width))
                continue
            seen, ok = observed[src, dst], allowed[src, dst]
            differences += seen != ok
            cell = "%s / %s%s" % ("yes" if seen else "no", "yes" if ok else "no",
                                  "" if seen == ok else " !")
            cells.append(cell.ljust(width))
        label = "from %s (%s, %s)" % (src, ip, host)
        lines.append(("  " + label).ljust(label_width) + "".join(cells).rstrip())
    lines += ["", "Profiles: " + ", ".join("%s %s" % (letter, WORKLOADS[letter][2]) for letter in letters)]
    return lines, differences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (it builds network namespaces and runs Docker).", file=sys.stderr)
        return 2
    transcript = Transcript()
    lock = acquire_lock()
    if lock is None:
        print("demo: another demo is running (%s/lock is held)." % STATE_DIR, file=sys.stderr)
        return 1
    daemon = ensure_dockerd()
    client = daemon.client()
    demo = None
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        remove_leftovers(client, transcript)
        ensure_busybox_image(client)
        transcript.note("Building the seed's environment: a LAN, hosts calico-01 (172.17.8.101) "
                        "and calico-02 (172.17.8.102) as network/UTS/mount namespaces, etcd on "
                        "calico-01 (172.17.8.101:2379). `sudo` is a pass-through here (we run as "
                        "root) and `docker run` adds the label %s=1." % LABEL)
        started = time.monotonic()
        demo = Demo(transcript, client)
        demo.build()
        surprises = demo.run_seed()
        transcript.section("Who reaches whom")
        allowed = demo.allowed_matrix()
        lines, differences = render_matrix(demo.observed_matrix(), allowed)
        for line in lines:
            print(line)
        print()
        for surprise in surprises:
            print("Not as the seed says: %s" % surprise)
        if differences:
            print("RESULT: %d pair(s) differ from what the profiles allow." % differences)
            return 1
        print("RESULT: connectivity matches the profiles exactly (%.0f s)." % (time.monotonic() - started))
        return 1 if surprises else 0
    except DemoError as exc:
        print("demo: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted; cleaning up.", file=sys.stderr)
        return 130 if not interrupted else 128 + interrupted[0]
    finally:
        if demo is not None:
            demo.destroy()
        client.close()
        daemon.stop()
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
