"""The node agent's policy dataplanes: convergence, cold start, cost of a change, data plane.

Two simulated hosts (tests/harness) on one simulated LAN with etcd inside
the LAN; the real ``calico-agent`` runs inside each. "small" carries two
workloads (A, B) and at most 100 endpoints; "large" the same two workloads
plus 10,000 bulk endpoints. Workloads are network namespaces with ``cali*``
veths (what ``calicoctl container add`` leaves, without Docker's cost);
bulk endpoints are etcd entries for the host, first without interfaces,
later with a veth pair each. A third workload C has a veth but, until
figure h writes one, no endpoint. The machine is noisy (other work shifts
timings by tens of percent from minute to minute), so every small-vs-large
comparison alternates between the two hosts run by run, and both sides see
the same noise; medians are printed with the spread of the runs.

Figures a-f and h run once per policy dataplane (``BENCH_DATAPLANES``,
default ``nftables,iptables``: the default dataplane, then the other beside
it), on the datastore ``DATASTORE_TYPE`` names (etcd v3 by default).

a. Policy convergence (small host): A (profile Q1) cannot reach B (profile
   P1); ``calicoctl endpoint <A> profile append P1`` inside the host; the
   figure is the time from that command returning to the first echo reply
   A gets (a prober in A sends an echo request every millisecond). Median
   of RUNS; absolute target 100 ms. Also shown: from the command's start,
   and from an etcd write of the same change made by the bench (what the
   agent alone costs; the command usually returns after the first reply).
b. Cold start (large host): 1,000 and 10,000 endpoints in etcd, an empty
   kernel; from starting ``calico-agent`` to its status file saying in_sync
   (everything programmed). Then a restart after SIGKILL with the state in
   the kernel (at most the cold start). At the end the same two once all
   10,000 have interfaces: targets 1.5 s (nftables) and 2.5 s (iptables).
c. Cost of a change: the host's P profile gains "allow icmp" (so A, outside
   P's tag, may now ping B), written to etcd by the bench; from etcd's
   acknowledgement of the write to the first echo reply (the same from the
   write's start is shown too: etcd's commit, a disk sync, alone moves by
   40 ms from write to write here, on both sides). Median of RUNS on the large host (10,000 endpoints
   using P) divided by the same on the small one (100). Measured twice:
   bulk endpoints without interfaces, then with a veth pair each. Target
   with interfaces: 1.2 (nftables: endpoints are set elements, so the
   kernel's validation at each commit does not grow with them), 2
   (iptables: every dispatched endpoint is chains the kernel re-validates).
h. An endpoint added: C's endpoint (profile P, which B admits) written to
   etcd, from the write's acknowledgement to C's first echo reply from B,
   then removed again;
   10,000 endpoints with interfaces vs 100, same targets as c.
d. Data plane: iperf3 TCP throughput from A to B (2 s) on the large host
   with its 10,000 endpoints, divided by the same on the small host once
   only A and B are left there; best of 5 each, alternating (and the median
   of the five per-round ratios). Target: at least 0.95 (nftables), 0.9
   (iptables), shown as its inverse. Both hosts protect the control plane
   (on by default). Then the protection's own cost: the large host with
   1,000 Calico hosts' addresses protected, protection on vs off,
   alternating (target 0.9).
e. A host joining: from the etcd write of a new host's address (what
   ``calicoctl node`` records first) to that address being protected on
   the large host, with 1,000 hosts there already. Median of RUNS;
   absolute target 1 s.
f. Memory: the large host's agent's resident set (VmRSS) once in sync with
   its 10,000 endpoints. Absolute target 150 MB.
g. CPU per remote endpoint update (``EVENT_CASES``: each datastore on the
   default dataplane, and etcd v3 on the other): 1,000 endpoints of another
   host, in the small host's tag P1 (so its tag set takes them), written in
   one burst from eight writers inside the LAN, then deleted (one directory
   delete); each agent's user + system CPU time from the first write until
   the small host's set has (no longer has) all of them, per update, on the
   small agent and on the large one, to which they are irrelevant. Targets
   (issue 18): 100 us on etcd v3, 300 us on etcd v2.

Every figure but g runs on the datastore ``DATASTORE_TYPE`` names (etcdv3 by
default): ``DATASTORE_TYPE=etcdv2 bench/run.py agent`` for the other.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from calicoctl.identity import RUN_DIR

RUNS = int(os.environ.get("BENCH_AGENT_RUNS", "11"))
DATAPLANES = tuple(os.environ.get("BENCH_DATAPLANES", "nftables,iptables").split(","))
EVENT_CASES = (("nftables", "etcdv3"), ("nftables", "etcdv2"), ("iptables", "etcdv3"))
EVENTS = 1000
# The agents see the bench's CALICO_AGENT_* settings (CALICO_AGENT_LOG_LEVEL=DEBUG logs each cycle).
AGENT_TUNABLES = {name: value for name, value in os.environ.items() if name.startswith("CALICO_AGENT_")}
G_TARGET = {"etcdv3": 100.0, "etcdv2": 300.0}          # us of agent CPU per event (issue 18)
C_TARGET = {"nftables": 1.2, "iptables": 2.0}          # a change with 10,000 endpoints vs 100
D_TARGET = {"nftables": 0.95, "iptables": 0.9}         # throughput with 10,000 endpoints vs 2
COLD_TARGET = {"nftables": 1.5, "iptables": 2.5}       # s, cold start with 10,000 endpoints and interfaces
BULK = int(os.environ.get("BENCH_AGENT_ENDPOINTS", "10000"))
IPERF_ROUNDS = 5
PROTECTED_HOSTS = 1000
LOG_DIR = "/var/log/calico"

PROBER = r"""
import os, select, socket, struct, sys, time

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff

target, limit = sys.argv[1], float(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
print("ready", flush=True)
deadline = time.time() + limit
seq = 0
while time.time() < deadline:
    seq = (seq + 1) & 0xffff
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"calico-bench...."
    packet = struct.pack("!BBHHH", 8, 0, checksum(header), ident, seq) + b"calico-bench...."
    sock.sendto(packet, (target, 0))
    until = time.time() + 0.001
    while True:
        left = until - time.time()
        if left <= 0:
            break
        if not select.select([sock], [], [], left)[0]:
            break
        data = sock.recv(2048)
        offset = (data[0] & 0x0f) * 4
        kind, _, _, got_ident, _ = struct.unpack("!BBHHH", data[offset:offset + 8])
        if kind == 0 and got_ident == ident:
            print("%.6f" % time.time(), flush=True)
            sys.exit(0)
print("timeout", flush=True)
"""


def endpoint_json(interface, ip, profiles, gateway, mac="02:00:00:00:00:01"):
    return json.dumps({"state": "active", "name": interface, "mac": mac, "profile_ids": list(profiles),
                       "ipv4_nets": ["%s/32" % ip], "ipv6_nets": [], "ipv4_gateway": gateway,
                       "ipv6_gateway": None})


def bulk_suffix(n):
    return ("%032x" % (n * 7919 + 1))[-11:]


def bulk_ip(site_number, n):
    return "10.%d.%d.%d" % (128 + site_number, n // 250, n % 250 + 1)


class IptablesView:
    """What the iptables dataplane programmed in a host, as the bench polls it."""
    name = "iptables"

    def __init__(self, host):
        self.host = host

    def has_endpoint(self, n, interface_needed=False):
        """Bulk endpoint ``n`` is programmed (with ``interface_needed``: dispatched to its interface)."""
        if interface_needed:
            saved = self.host.run(["iptables-nft-save", "-t", "filter"], cwd="/", timeout=120).stdout
            return "-o cali%s -g felix-to-%s" % (bulk_suffix(n), bulk_suffix(n)) in saved
        return self.host.run(["iptables-nft", "-S", "felix-to-" + bulk_suffix(n)], cwd="/").returncode == 0

    def tag_size(self, tag):
        from calicoctl.agent.policy.iptables.rules import tag_set_name
        return self._ipset_size(tag_set_name(tag, 4))

    def protected_count(self):
        return self._ipset_size("felix-cp-v4")

    def protects(self, ip):
        return self.host.run(["ipset", "test", "felix-cp-v4", ip], cwd="/").returncode == 0

    def protection_on(self):
        rules = self.host.run(["iptables-nft", "-S", "felix-FORWARD"], cwd="/").stdout.splitlines()
        return len(rules) > 1 and "felix-cp-v4" in rules[1]

    def _ipset_size(self, name):
        listed = self.host.run(["ipset", "list", "-t", name], cwd="/").stdout
        for line in listed.splitlines():
            if line.startswith("Number of entries:"):
                return int(line.split(":")[1])
        return None


class NftablesView:
    """What the nftables dataplane programmed in a host (table inet calico)."""
    name = "nftables"

    def __init__(self, host):
        self.host = host

    def has_endpoint(self, n, interface_needed=False):
        """Endpoints are elements, whether their interface exists or not."""
        return self._has("ep-mac", '"cali%s" . 02:00:00:00:00:01' % bulk_suffix(n))

    def tag_size(self, tag):
        return self._size("t4-" + tag)

    def protected_count(self):
        return self._size("cp4")

    def protects(self, ip):
        return self._has("cp4", ip)

    def protection_on(self):
        listed = self.host.run(["nft", "list", "chain", "inet", "calico", "wl-forward-out"], cwd="/").stdout
        return "@cp4" in listed

    def _has(self, name, element):
        return self.host.run(["nft", "get", "element", "inet", "calico", name, "{ %s }" % element],
                             cwd="/").returncode == 0

    def _size(self, name):
        result = self.host.run(["nft", "-j", "list", "set", "inet", "calico", name], cwd="/")
        if result.returncode != 0:
            return None
        found = [item["set"] for item in json.loads(result.stdout)["nftables"] if "set" in item]
        return len(found[0].get("elem", ())) if found else None


VIEWS = {view.name: view for view in (NftablesView, IptablesView)}


class Site:
    """One simulated host with its agent, workloads A and B, and bulk endpoints."""

    def __init__(self, bench, number, name, ip, dataplane):
        from tests.harness.simhost import SimHost
        self.bench = bench
        self.number = number
        self.name = name
        self.ip = ip
        self.host = SimHost(name, ip, bench.lan).start()
        self.dataplane = dataplane
        self.view = VIEWS[dataplane](self.host)
        self.agent = None
        self.bulk = 0
        self.p = "P%d" % number
        self.q = "Q%d" % number
        self.a = self.b = None
        self.a_key = None

    @property
    def paths(self):
        return self.bench.paths

    # -- etcd ---------------------------------------------------------------------------
    def setup(self):
        client = self.bench.client
        for name in (self.p, self.q):
            client.put(self.paths.profile_rules(name), json.dumps(
                {"id": name, "inbound_rules": [{"action": "allow", "src_tag": name},
                                               {"action": "allow", "protocol": "tcp", "dst_ports": [5201]}],
                 "outbound_rules": [{"action": "allow"}]}))
            client.put(self.paths.profile_tags(name), json.dumps([name]))
        self.a = self.make_workload("w%da" % self.number, "10.%d.0.1" % (120 + self.number), [self.q])
        self.b = self.make_workload("w%db" % self.number, "10.%d.0.2" % (120 + self.number), [self.p])
        from tests.harness.multihost import NetnsWorkload
        self.c = NetnsWorkload(self.host, "w%dc" % self.number, "10.%d.0.3" % (120 + self.number)).create()
        self.c_mac = self.c.run(["cat", "/sys/class/net/eth1/address"]).stdout.strip()
        return self

    def make_workload(self, name, ip, profiles):
        from tests.harness.multihost import NetnsWorkload
        workload = NetnsWorkload(self.host, name, ip).create()
        mac = workload.run(["cat", "/sys/class/net/eth1/address"]).stdout.strip()
        key = self.paths.endpoint_key(self.name, "docker", "wl-" + name, "ep-" + name)
        self.bench.client.put(key, endpoint_json(workload.interface, ip, profiles, self.ip, mac=mac))
        if self.a_key is None:
            self.a_key = key
        return workload

    def bulk_key(self, n):
        return self.paths.endpoint_key(self.name, "bulk", "w%05d" % n, "%032x" % (n * 7919 + 1))

    def add_bulk(self, total):
        """Bulk endpoints (no interface) for this host up to ``total``, all in profile P."""
        items = [(self.bulk_key(n), endpoint_json("cali" + bulk_suffix(n), bulk_ip(self.number, n),
                                                  [self.p], self.ip))
                 for n in range(self.bulk, total)]
        self.bench.write_many(items)
        self.bulk = total

    def delete_bulk(self):
        self.bench.client.delete_tree(self.paths.orchestrator_dir(self.name, "bulk"))
        self.bulk = 0

    def make_bulk_veths(self):
        """A veth pair per bulk endpoint (both ends in the host, left down:
        dummy interfaces do not exist on this kernel)."""
        lines = ["link add cali%s type veth peer name t%s" % (bulk_suffix(n), bulk_suffix(n))
                 for n in range(self.bulk)]
        result = self.host.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", cwd="/", timeout=600)
        if result.returncode != 0:
            raise RuntimeError("creating veths failed: %s" % result.stderr.strip()[:300])

    def wait_endpoint(self, n, present=True, interface_needed=False, timeout=240):
        """Until bulk endpoint ``n`` is (or is no longer) programmed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.view.has_endpoint(n, interface_needed) == present:
                return
            time.sleep(0.2)
        raise RuntimeError("%s: bulk endpoint %d still %s" % (self.name, n, "absent" if present else "there"))

    def calicoctl(self, *args):
        started = time.time()
        result = self.host.run(["calicoctl"] + list(args), env=self.bench.etcd.env, cwd="/", timeout=120)
        if result.returncode != 0:
            raise RuntimeError("calicoctl %s: %s" % (" ".join(args), result.stderr.strip()))
        return started, time.time()

    # -- the agent -----------------------------------------------------------------------
    def clean_kernel(self):
        self.host.run(["sh", "-c", "nft flush ruleset; for t in iptables-nft ip6tables-nft; do $t -F; $t -X; done; "
                                   "ipset destroy; rm -f %s/agent-status.json" % RUN_DIR], cwd="/")

    def status(self):
        try:
            return json.loads(self.host.run(["cat", RUN_DIR + "/agent-status.json"], cwd="/").stdout)
        except ValueError:
            return None

    def start_agent(self, timeout=180):
        """Start the agent; seconds until it reports in sync."""
        started = time.monotonic()
        self.agent = self.host.popen(["calico-agent", "--hostname=%s" % self.name, "--log-dir=%s" % LOG_DIR,
                                      "--run-dir=%s" % RUN_DIR, "--dataplane=%s" % self.dataplane],
                                     env=dict(self.bench.etcd.env, **AGENT_TUNABLES), cwd="/",
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.monotonic() - started < timeout:
            status = self.status()
            if status and status.get("pid") == self.agent.pid and status.get("in_sync"):
                return time.monotonic() - started
            if self.agent.poll() is not None:
                raise RuntimeError("%s: the agent exited with %s" % (self.name, self.agent.returncode))
            time.sleep(0.02)
        raise RuntimeError("%s: the agent did not sync within %.0f s" % (self.name, timeout))

    def agent_rss_mb(self):
        with open("/proc/%d/status" % self.agent.pid) as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["VmRSS"].split()[0]) / 1024.0

    def agent_cpu_seconds(self):
        """The agent's user + system CPU time so far."""
        with open("/proc/%d/stat" % self.agent.pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_tag_size(self, tag, count, timeout=120):
        deadline = time.monotonic() + timeout
        while self.view.tag_size(tag) != count:
            if time.monotonic() > deadline:
                raise RuntimeError("%s: tag %s never held %d addresses (%s)" % (self.name, tag, count,
                                                                               self.view.tag_size(tag)))
            time.sleep(0.05)

    def stop_agent(self, sig=signal.SIGTERM):
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(sig)
            self.agent.wait(timeout=30)
        self.agent = None

    # -- traffic ----------------------------------------------------------------------------
    def probe(self, limit=10.0, source=None):
        """A prober in A (or ``source``) pinging B; ``wait()`` gives the wall-clock time of the first reply."""
        source = source or self.a
        process = self.host.popen(["ip", "netns", "exec", source.name, sys.executable, "-c", PROBER,
                                   self.b.ip, str(limit)], cwd="/", stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("prober failed: %s" % process.stderr.read())

        class Handle:
            @staticmethod
            def wait():
                line = process.stdout.readline().strip()
                process.wait(timeout=limit + 5)
                return float(line) if line and line != "timeout" else None
        return Handle()

    def reachable(self, limit=0.3, source=None):
        return self.probe(limit, source).wait() is not None

    def converge(self, change, undo, source=None):
        """(ms from the change's end, ms from its start) to A's (``source``'s) first reply from B."""
        if self.reachable(source=source):
            raise RuntimeError("%s: reachable before the change" % self.name)
        handle = self.probe(source=source)
        started, done = change()
        reply = handle.wait()
        if reply is None:
            raise RuntimeError("%s: no reply within the prober's limit" % self.name)
        undo()
        deadline = time.monotonic() + 10
        while self.reachable(source=source):
            if time.monotonic() > deadline:
                raise RuntimeError("%s: still reachable after undoing the change" % self.name)
        return (reply - done) * 1000, (reply - started) * 1000

    def endpoint_added(self):
        """(ms from etcd acknowledging, ms from starting) the write of workload
        C's endpoint (profile P, which B admits) to C's first reply from B."""
        key = self.paths.endpoint_key(self.name, "docker", "wl-" + self.c.name, "ep-" + self.c.name)
        value = endpoint_json(self.c.interface, self.c.ip, [self.p], self.ip, mac=self.c_mac)
        return self.converge(lambda: self.bench.write(key, value), lambda: self.bench.client.delete(key),
                             source=self.c)

    def profile_change(self):
        """(ms from etcd acknowledging, ms from starting) the write of "allow
        icmp" into P's rules to the first reply."""
        client = self.bench.client
        key = self.paths.profile_rules(self.p)
        plain = client.get(key).value
        icmp = json.loads(plain)
        icmp["inbound_rules"].append({"action": "allow", "protocol": "icmp"})
        return self.converge(lambda: self.bench.write(key, json.dumps(icmp)),
                             lambda: self.bench.write(key, plain))

    def wait_protection(self, on, timeout=30):
        """Until the control-plane rules are (no longer) in force."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.view.protection_on() == on:
                return
            time.sleep(0.1)
        raise RuntimeError("%s: control-plane protection still %s" % (self.name, "off" if on else "on"))

    def wait_protected_addresses(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.view.protected_count() == count:
                return
            time.sleep(0.2)
        raise RuntimeError("%s: never %d protected addresses" % (self.name, count))

    def protected_after_join(self, n):
        """ms from writing a new host's address to etcd to it being protected here."""
        ip = "10.251.%d.%d" % (n // 250, n % 250 + 1)
        started, _ = self.bench.write(self.paths.host_ip_addr("bench-joiner-%d" % n, 4), ip)
        deadline = time.monotonic() + 10
        while not self.view.protects(ip):
            if time.monotonic() > deadline:
                raise RuntimeError("%s: %s never protected" % (self.name, ip))
        return (time.time() - started) * 1000

    def iperf(self):
        server = self.host.popen(["ip", "netns", "exec", self.b.name, "iperf3", "-s", "-1"], cwd="/",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        try:
            result = self.a.run(["iperf3", "-c", self.b.ip, "-t", "2", "-J"], timeout=30)
            return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
        finally:
            server.wait(timeout=10)


class Bench:
    def __init__(self, workdir, dataplane, datastore):
        from calicoctl.datastore import paths
        from tests.harness.simhost import Lan
        from tests.harness.multihost import LanEtcdServer
        self.paths = paths
        self.datastore = datastore
        self.lan = Lan(name="calico-bench-agent").create()
        self.etcd = LanEtcdServer(self.lan, os.path.join(workdir, "etcd-%s" % datastore, "data"),
                                  datastore=datastore).start()
        self.client = self.etcd.kv()
        self.small = Site(self, 1, "bench-small", "172.17.8.40", dataplane).setup()
        self.large = Site(self, 2, "bench-large", "172.17.8.41", dataplane).setup()

    def close(self):
        for site in (self.small, self.large):
            site.stop_agent(signal.SIGKILL)
            site.host.stop()
        self.etcd.stop()
        self.lan.destroy()

    def write(self, key, value):
        """One etcd write from the bench process: (started, done) wall-clock."""
        started = time.time()
        self.client.put(key, value)
        return started, time.time()

    def write_many(self, items):
        """Write (key, value) pairs from inside the LAN with a few threads."""
        from tests.harness.multihost import write_from_lan
        items = list(items)
        write_from_lan(self.etcd, [items[i::8] for i in range(8)])

    def remote_updates_cpu(self, count):
        """CPU microseconds per update of each agent (small, large) while
        ``count`` endpoints of another host in the small host's tag P1 are
        written, and then while they are deleted (see g)."""
        paths, small, large = self.paths, self.small, self.large
        before = small.view.tag_size(small.p)
        items = [(paths.endpoint_key("bench-remote", "bulk", "r%05d" % n, "r%031x" % n),
                  endpoint_json("calir%010x" % n, "10.200.%d.%d" % (n // 250, n % 250 + 1), [small.p],
                                "172.17.8.99")) for n in range(count)]
        figures = []
        for change, wanted in ((lambda: self.write_many(items), before + count),
                               (lambda: self.client.delete_tree(paths.host_dir("bench-remote")), before)):
            cpu = (small.agent_cpu_seconds(), large.agent_cpu_seconds())
            change()
            small.wait_tag_size(small.p, wanted)
            time.sleep(0.5)       # the large agent has nothing to wait for; let it finish
            figures.append(tuple((site.agent_cpu_seconds() - spent) * 1e6 / count
                                 for site, spent in zip((small, large), cpu)))
        return figures

    def alternate(self, measure, runs):
        """{site: [values]}: ``measure(site)`` on small, large, small, large, ..."""
        values = {self.small: [], self.large: []}
        for _ in range(runs):
            for site in (self.small, self.large):
                values[site].append(measure(site))
        return values[self.small], values[self.large]


def report_latency(report, name, large, reference, small, target):
    """A c/h figure from (ms from etcd's acknowledgement, ms from the
    write's start) pairs: medians from the acknowledgement (what the agent
    and the kernel take), with their spread, then the same from the write's
    start (plus etcd's commit, a disk sync that alone moves by 40 ms here)."""
    acked_large, acked_small = [pair[0] for pair in large], [pair[0] for pair in small]
    whole_large, whole_small = [pair[1] for pair in large], [pair[1] for pair in small]
    report(name, statistics.median(acked_large), "ms", reference, statistics.median(acked_small), target=target)
    report("   spread of the %d runs: %s vs %s" % (len(large), spread(acked_large), spread(acked_small)), "", "")
    report("   from the write's start: %.1f vs %.1f ms (spread %s vs %s)"
           % (statistics.median(whole_large), statistics.median(whole_small),
              spread(whole_large), spread(whole_small)), "", "")


def spread(values):
    """'min..max' of a list of milliseconds (the machine's noise, shown beside medians)."""
    return "%.1f..%.1f ms" % (min(values), max(values))


def run(report):
    from tests.harness.etcd import requested_datastore
    workdir = tempfile.mkdtemp(prefix="calico-bench-agent-")
    try:
        datastore = requested_datastore()
        for dataplane in DATAPLANES:
            report("-- %s dataplane, %s" % (dataplane, datastore), "", "")
            with_bench(workdir, dataplane, datastore, lambda bench: measure_dataplane(report, bench))
        for dataplane, datastore in EVENT_CASES:
            report("-- g on the %s dataplane, %s" % (dataplane, datastore), "", "")
            with_bench(workdir, dataplane, datastore, lambda bench: measure_events(report, bench))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def with_bench(workdir, dataplane, datastore, measure):
    bench = None
    try:
        bench = Bench(workdir, dataplane, datastore)
        measure(bench)
    finally:
        if bench is not None:
            bench.close()


def measure_events(report, bench):
    """g. CPU per remote endpoint added and deleted, on an agent whose tag
    they join (small) and one they do not concern (large)."""
    for site in (bench.small, bench.large):
        site.start_agent()
    (add_small, add_large), (del_small, del_large) = bench.remote_updates_cpu(EVENTS)
    report("g. agent CPU per remote endpoint added", add_small, "us", "absolute target", G_TARGET[bench.datastore],
           target=1.0)
    report("   on an agent they do not concern", add_large, "us", "absolute target", G_TARGET[bench.datastore],
           target=1.0)
    report("g. agent CPU per remote endpoint deleted", del_small, "us", "absolute target", G_TARGET[bench.datastore],
           target=1.0)
    report("   on an agent they do not concern", del_large, "us", "absolute target", G_TARGET[bench.datastore],
           target=1.0)


def measure_dataplane(report, bench):
    small, large = bench.small, bench.large
    small.start_agent()

    # a. policy convergence on the small host (A and B only)
    a_id = small.a_key.rsplit("/", 1)[-1]
    results = [small.converge(lambda: small.calicoctl("endpoint", a_id, "profile", "append", small.p),
                              lambda: small.calicoctl("endpoint", a_id, "profile", "remove", small.p))
               for _ in range(RUNS)]
    report("a. profile append returned -> first allowed ping", statistics.median(max(0.0, r[0]) for r in results),
           "ms", "absolute target", 100.0, target=1.0)
    report("   (median of %d; reply before the command exited in %d runs)"
           % (RUNS, sum(1 for r in results if r[0] <= 0)), "", "")
    report("   calicoctl started -> first allowed ping", statistics.median(r[1] for r in results), "ms")
    plain = bench.client.get(small.a_key).value
    joined = json.loads(plain)
    joined["profile_ids"] = [small.q, small.p]
    writes = [small.converge(lambda: bench.write(small.a_key, json.dumps(joined)),
                             lambda: bench.write(small.a_key, plain))[1] for _ in range(RUNS)]
    report("   etcd write of the same change -> first ping", statistics.median(writes), "ms",
           "absolute target", 100.0, target=1.0)

    # b. cold start on the large host: 1,000 then 10,000 endpoints
    large.add_bulk(1000)
    cold_1k = large.start_agent()
    large.stop_agent()
    large.add_bulk(BULK)
    large.clean_kernel()
    cold_10k = large.start_agent()
    large.stop_agent(signal.SIGKILL)
    warm_10k = large.start_agent()
    report("b. cold start, %d endpoints" % BULK, cold_10k, "s", "cold start, 1000 endpoints", cold_1k)
    report("   restart after SIGKILL, %d in the kernel" % BULK, warm_10k, "s",
           "cold start, %d endpoints" % BULK, cold_10k, target=1.0)

    # f. memory with 10,000 endpoints
    report("f. agent resident memory, %d endpoints" % BULK, large.agent_rss_mb(), "MB",
           "absolute target", 150.0, target=1.0)

    # c. cost of a change: 100 endpoints (small) vs 10,002 (large), alternating
    small.add_bulk(98)
    small.wait_endpoint(97)
    c_small, c_large = bench.alternate(Site.profile_change, RUNS)
    report_latency(report, "c. profile rules written -> ping, %d endpoints" % (BULK + 2), c_large,
                   "same with 100 endpoints", c_small, 2.0)

    # The same with an interface per bulk endpoint (all dispatched, on iptables).
    started = time.monotonic()
    for site in (small, large):
        site.make_bulk_veths()
    small.wait_endpoint(97, interface_needed=True)
    large.wait_endpoint(BULK - 1, interface_needed=True)
    report("   (veths made and programmed in %.0f s)" % (time.monotonic() - started), "", "")
    c_small_if, c_large_if = bench.alternate(Site.profile_change, RUNS)
    report_latency(report, "c. same, %d endpoints with interfaces" % BULK, c_large_if,
                   "same with 100 with interfaces", c_small_if, C_TARGET[small.dataplane])

    # h. an endpoint added: its etcd write -> its first allowed packet
    h_small, h_large = bench.alternate(Site.endpoint_added, RUNS)
    report_latency(report, "h. endpoint written -> first packet, %d with interfaces" % BULK, h_large,
                   "same with 100 with interfaces", h_small, C_TARGET[small.dataplane])

    # d. throughput: A -> B next to 10,000 endpoints with interfaces vs A and B alone
    small.delete_bulk()
    small.wait_endpoint(97, present=False)
    d_small, d_large = bench.alternate(Site.iperf, IPERF_ROUNDS)
    report("d. iperf3 A->B, only A and B (inverse ratio)", max(d_small), "Gbit/s",
           "with %d endpoints and interfaces" % BULK, max(d_large), target=1 / D_TARGET[small.dataplane])
    report("   throughput ratio with/without, best of %d" % IPERF_ROUNDS,
           "%.2f" % (max(d_large) / max(d_small)), "(target >= %.2f)" % D_TARGET[small.dataplane])
    report("   median of the per-round ratios",
           "%.2f" % statistics.median(big / alone for big, alone in zip(d_large, d_small)), "")

    # The protection's own cost, with 1,000 Calico hosts' addresses in its set.
    paths = bench.paths
    setting = paths.control_plane_protection()
    peers = ["bench-peer-%04d" % n for n in range(PROTECTED_HOSTS)]
    bench.write_many([(paths.host_ip_addr(peer, 4), "10.250.%d.%d" % (n // 250, n % 250 + 1))
                      for n, peer in enumerate(peers)])
    large.wait_protected_addresses(PROTECTED_HOSTS + 1)          # and etcd's own address
    on, off = [], []
    for _ in range(IPERF_ROUNDS):
        for enabled, values in ((True, on), (False, off)):
            bench.write(setting, json.dumps({"enabled": enabled}))
            large.wait_protection(enabled)
            values.append(large.iperf())
    bench.client.delete(setting)
    report("d. iperf3 A->B, protection off (inverse ratio)", max(off), "Gbit/s",
           "on, %d hosts protected" % PROTECTED_HOSTS, max(on), target=1 / 0.9)
    report("   throughput ratio on/off, best of %d" % IPERF_ROUNDS, "%.2f" % (max(on) / max(off)),
           "(target >= 0.90); median of the per-round ratios %.2f"
           % statistics.median(a / b for a, b in zip(on, off)))

    # e. a host joining: its address in etcd -> protected on another host
    large.wait_protection(True)
    joins = [large.protected_after_join(n) for n in range(RUNS)]
    report("e. host address written -> protected here", statistics.median(joins), "ms",
           "absolute target", 1000.0, target=1.0)
    peers += ["bench-joiner-%d" % n for n in range(RUNS)]
    for peer in peers:
        bench.client.delete_tree(paths.bgp_host_dir(peer))

    # b. with interfaces: a cold start, then a restart after SIGKILL with all of it in the kernel
    large.stop_agent()
    large.clean_kernel()
    cold_if = large.start_agent()
    large.stop_agent(signal.SIGKILL)
    warm_if = large.start_agent()
    report("b. cold start, %d endpoints with interfaces" % BULK, cold_if, "s", "absolute target",
           COLD_TARGET[small.dataplane], target=1.0)
    report("   restart after SIGKILL, with interfaces", warm_if, "s", "that cold start", cold_if, target=1.0)
