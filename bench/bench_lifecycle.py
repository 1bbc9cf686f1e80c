"""Workload lifecycle: how soon a restarted container is reachable again.

Set-up: a simulated host with a dockerd of its own, etcd inside it (data on
tmpfs), ``calicoctl node`` (the real agent and BIRD), profile OPEN, and two
busybox containers networked by ``calicoctl container add`` in it: P (the
pinger) and T (the target).

A pinger in P's network namespace sends an ICMP echo to T every 2 ms and
reports the first reply, so every figure is a real packet allowed by
policy (P's outbound and T's inbound profile rules). Alternating, each run:

- T is killed (``docker stop -t 0``), then started: time from ``docker
  start`` returning to the first reply (the agent re-creates T's endpoint
  in its new namespace). Target: at most 200 ms (issue 11, item 8).
- reference, same run: T's networking removed, then ``calicoctl container
  add``: time from it returning to the first reply, which needs the
  profile too (``endpoint profile append OPEN``, run at once, as a user
  or orchestrator would).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = max(10, int(os.environ.get("BENCH_RUNS", "12")))
WARMUP = 1
TARGET_MS = 200.0
HOSTNAME = "bench-life"
LAN_SUBNET = "172.31.251.0/24"
LAN_GATEWAY = "172.31.251.1"
HOST_IP = "172.31.251.2"
PINGER_IP = "192.168.9.1"
TARGET_IP = "192.168.9.2"

# Runs in P's network namespace: for each line "<ip>" on stdin, ping it
# every 2 ms until a reply to one of this round's echoes comes, then print
# CLOCK_MONOTONIC of that reply.
PINGER = r"""
import os, select, socket, struct, sys, time
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
seq = 0
print("ready", flush=True)
for line in sys.stdin:
    target = line.strip()
    while select.select([sock], [], [], 0)[0]:
        sock.recvfrom(2048)                       # late replies of the last round
    sent = set()
    deadline = time.monotonic() + 30
    answered = None
    while answered is None and time.monotonic() < deadline:
        seq = (seq + 1) & 0xffff
        sent.add(seq)
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + b"benchpad"), ident, seq) + b"benchpad"
        try:
            sock.sendto(packet, (target, 0))
        except OSError:
            pass
        until = time.monotonic() + 0.002
        while answered is None:
            left = until - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data, source = sock.recvfrom(2048)
            offset = (data[0] & 0x0f) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[offset:offset + 8])
            if kind == 0 and rid == ident and rseq in sent and source[0] == target:
                answered = time.monotonic()
    print(answered if answered is not None else "timeout", flush=True)
"""


class Rig:
    """The host, its etcd and agent, and the two containers."""

    def __init__(self, workdir):
        from tests.harness.etcd import EtcdServer
        from tests.harness.simhost import Lan, SimHost
        self.lan = Lan(name="bench-life-%d" % os.getpid(), subnet=LAN_SUBNET, gateway=LAN_GATEWAY).create()
        self.host = SimHost(HOSTNAME, HOST_IP, self.lan, prefixlen=24, own_dockerd=True).start()
        self.etcd = EtcdServer(os.path.join(workdir, "etcd"), runner=self.host).start()
        self.env = {"ETCD_AUTHORITY": self.etcd.authority}
        self.client = self.host.dockerd.client()
        self.pinger = None
        self.calicoctl("node", "--ip=%s" % HOST_IP)
        self.calicoctl("profile", "add", "OPEN")
        self.p = self._workload("bench-life-p", PINGER_IP)
        self.t = self._workload("bench-life-t", TARGET_IP)

    def calicoctl(self, *args):
        result = self.host.run(["calicoctl"] + list(args), env=self.env, cwd="/", timeout=120)
        if result.returncode != 0:
            raise RuntimeError("calicoctl %s: %s" % (" ".join(args), (result.stderr or result.stdout).strip()))
        return result.stdout

    def _workload(self, name, ip):
        container = self.client.containers.run("busybox:latest", name=name, detach=True, tty=True,
                                               stdin_open=True, network_mode="none")
        self.network(container, ip)
        return container

    def network(self, container, ip):
        """``container add``, then the profile; returns when the add returned (monotonic)."""
        self.calicoctl("container", "add", container.name, ip)
        added = time.monotonic()
        endpoint = self.calicoctl("container", container.name, "endpoint-id", "show").strip()
        self.calicoctl("endpoint", endpoint, "profile", "append", "OPEN")
        return added

    def start_pinger(self):
        self.p.reload()
        self.pinger = self.host.popen(["nsenter", "-t", str(self.p.attrs["State"]["Pid"]), "-n", "--",
                                       sys.executable, "-c", PINGER], cwd="/", stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        if self.pinger.stdout.readline().strip() != "ready":
            raise RuntimeError("pinger did not start")

    def first_reply(self, ip):
        """Ask the pinger; CLOCK_MONOTONIC of the first reply from ip."""
        self.pinger.stdin.write(ip + "\n")
        self.pinger.stdin.flush()
        answer = self.pinger.stdout.readline().strip()
        if answer in ("", "timeout"):
            raise RuntimeError("no reply from %s within 30 s" % ip)
        return float(answer)

    def close(self):
        if self.pinger is not None and self.pinger.poll() is None:
            self.pinger.kill()
            self.pinger.wait()
        self.client.close()
        self.etcd.stop()
        self.host.stop()
        self.lan.destroy()


def measure(rig):
    """(restart ms, add ms) lists, alternating."""
    restart, add = [], []
    for index in range(WARMUP + RUNS):
        rig.t.stop(timeout=0)
        rig.t.start()
        started = time.monotonic()
        restart_ms = (rig.first_reply(TARGET_IP) - started) * 1000.0
        rig.calicoctl("container", "remove", rig.t.name)
        added = rig.network(rig.t, TARGET_IP)
        add_ms = (rig.first_reply(TARGET_IP) - added) * 1000.0
        if index >= WARMUP:
            restart.append(restart_ms)
            add.append(add_ms)
    return restart, add


def run(report):
    workdir = tempfile.mkdtemp(prefix="bench-lifecycle-", dir="/dev/shm")
    rig = None
    try:
        rig = Rig(workdir)
        rig.start_pinger()
        rig.first_reply(TARGET_IP)         # policy in place before the first run
        restart, add = measure(rig)
    finally:
        if rig is not None:
            rig.close()
        shutil.rmtree(workdir, ignore_errors=True)
    restart_median, add_median = statistics.median(restart), statistics.median(add)
    report("docker start -> first allowed ping (median of %d)" % RUNS, restart_median, "ms",
           "container add -> first allowed ping", add_median)
    report("  target: at most %.0f ms" % TARGET_MS, "ok" if restart_median <= TARGET_MS else "OVER", "")
    report("  fastest / slowest after docker start", "%.1f / %.1f" % (min(restart), max(restart)), "ms")
    report("  fastest / slowest after container add", "%.1f / %.1f" % (min(add), max(add)), "ms")
