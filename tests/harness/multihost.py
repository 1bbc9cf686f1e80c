"""Helpers for the multi-host tests and the multi-host benchmark.

- ``LanEtcdServer``: an etcd running inside a Lan's namespace on the
  gateway address (where the simulated hosts reach it, as calico-01's etcd
  is reached in the seed), published to the test process on loopback.
- ``NetnsWorkload``: a workload without Docker: a named network namespace
  inside a SimHost with a ``cali*`` veth, addressed and routed the way
  ``calicoctl container add`` does it. Cheap enough to make hundreds.
- ``route_to``, ``bird_protocols``, ``tcp_peer_address``: checks that only
  ever target addresses inside namespaces the tests made;
- ``reachable``: many TCP probes at once from one namespace;
- ``start_echo_server``: TCP echo servers on a few ports (IPv4 and IPv6) in
  a namespace the tests made;
- ``write_from_lan``: bulk writes from inside the LAN, for benches.

No pytest import, so bench/ can use this module too.
"""
import json
import subprocess
import sys

from tests.harness.etcd import DATASTORES, EtcdServer, datastore_env, make_kv
from tests.harness.util import free_port


# Writes (key, value) groups given on stdin, one thread each, with calicoctl's
# own key-value store; prints the monotonic clock (system-wide) before the
# first write and once etcd has accepted the last.
LAN_WRITER = """
import json, sys, threading, time
from calicoctl.datastore import etcdconn
env = json.loads(sys.argv[1])
groups = json.load(sys.stdin)
def write(items):
    kv = etcdconn.connect(env)
    for key, value in items:
        kv.put(key, value)
threads = [threading.Thread(target=write, args=(group,)) for group in groups]
print(time.monotonic(), flush=True)
for thread in threads: thread.start()
for thread in threads: thread.join()
print(time.monotonic(), flush=True)
"""


def write_from_lan(etcd, groups, timeout=600):
    """Write each group of (key, value) pairs in a thread of its own, from
    inside ``etcd``'s LAN (no port forwarder in the way, as a host's calicoctl
    writes); returns the ``time.monotonic()`` of the start and of etcd
    having accepted every write."""
    result = etcd.lan.run([sys.executable, "-c", LAN_WRITER, json.dumps(etcd.env)],
                          input=json.dumps([list(group) for group in groups]), cwd="/", timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError("writing to etcd from the LAN failed: %s" % result.stderr.strip())
    started, finished = result.stdout.strip().splitlines()[:2]
    return float(started), float(finished)


class LanEtcdServer:
    """etcd inside ``lan`` on ``lan.gateway:<port>``.

    :ivar authority: what simulated hosts use (``ETCD_AUTHORITY``).
    :ivar local_authority: the same etcd from the test process (forwarded).
    :ivar datastore: "etcdv3" or "etcdv2" (see tests.harness.etcd).
    """

    def __init__(self, lan, data_dir, port=None, datastore=DATASTORES[0]):
        self.lan = lan
        self.datastore = datastore
        self.server = EtcdServer(data_dir, host=lan.gateway, client_port=port or free_port(),
                                 peer_port=free_port(), runner=lan, datastore=datastore)
        self._forward = None

    def start(self):
        self.server.start()
        self._forward = self.lan.publish(self.server.client_port, host=self.lan.gateway)
        return self

    @property
    def authority(self):
        return self.server.authority

    @property
    def env(self):
        return dict(datastore_env(self.datastore), ETCD_AUTHORITY=self.authority)

    @property
    def local_env(self):
        """The environment reaching this etcd from the test process."""
        return dict(datastore_env(self.datastore), ETCD_AUTHORITY=self.local_authority)

    @property
    def local_authority(self):
        return self._forward.authority

    def kv(self):
        """calicoctl's key-value store for this etcd, from the test process."""
        return make_kv(self.local_env)

    def wipe(self, prefix="/calico"):
        self.kv().delete_tree(prefix)

    def stop(self):
        if self._forward is not None:
            self._forward.stop()
            self._forward = None
        self.server.stop()


class NetnsWorkload:
    """A workload as a named netns in ``host`` with veth ``cali<name>``/``eth1``.

    Addressing like ``calicoctl container add``: ``<ip>/32`` on eth1, a
    link route to the host's IP and the default route via it; on the host,
    proxy ARP on the veth and ``<ip> dev cali<name>``.
    """

    def __init__(self, host, name, ip, host_ip=None, ip6=None):
        self.host = host
        self.name = name
        self.ip = ip
        self.ip6 = ip6
        self.host_ip = host_ip or host.ip
        self.interface = ("cali" + name)[:15]
        self.mac = None
        """The MAC address of its eth1, once created."""

    def create(self, route=True):
        script = [
            "ip netns add {n}",
            "ip link add {i} type veth peer name eth1 netns {n}",
            "ip link set {i} up",
            "echo 1 > /proc/sys/net/ipv4/conf/{i}/proxy_arp",
            "echo 0 > /proc/sys/net/ipv4/neigh/{i}/proxy_delay",
            "ip netns exec {n} ip link set lo up",
            "ip netns exec {n} ip link set eth1 up",
            "ip netns exec {n} ip addr add {ip}/32 dev eth1",
            "ip netns exec {n} ip route add {gw} dev eth1 scope link",
            "ip netns exec {n} ip route add default via {gw} dev eth1",
        ]
        if route:
            script.append("ip route replace {ip} dev {i}")
        if self.ip6:
            # As for IPv4, the host answers for its own address on the veth (proxy NDP).
            script += [
                "echo 1 > /proc/sys/net/ipv6/conf/{i}/proxy_ndp",
                "ip -6 neigh add proxy {gw6} dev {i}",
                "ip netns exec {n} ip -6 addr add {ip6}/128 dev eth1 nodad",
                "ip netns exec {n} ip -6 route add {gw6} dev eth1",
                "ip netns exec {n} ip -6 route add default via {gw6} dev eth1",
            ]
            if route:
                script.append("ip -6 route replace {ip6} dev {i}")
        script.append("ip netns exec {n} cat /sys/class/net/eth1/address")
        self.mac = self.host_sh("\n".join(script).format(n=self.name, i=self.interface, ip=self.ip,
                                                         gw=self.host_ip, ip6=self.ip6, gw6=self.host.ip6)).strip()
        return self

    def host_sh(self, script):
        result = self.host.run(["sh", "-ec", script], cwd="/", timeout=30)
        if result.returncode != 0:
            raise RuntimeError("%s: %s" % (self.host.name, (result.stderr or result.stdout).strip()))
        return result.stdout

    def run(self, args, timeout=30, input=None):
        return self.host.run(["ip", "netns", "exec", self.name] + list(args), cwd="/",
                             timeout=timeout, input=input)

    def ping(self, ip, count=1, wait=1):
        result = self.run(["busybox", "ping", "-c", str(count), "-W", str(wait), ip],
                          timeout=count * wait + 10)
        return result.returncode == 0

    def reachable(self, targets, wait=1):
        """The (address, port) of ``targets`` this workload connects to, probed at once."""
        return reachable(lambda args: self.run(args, timeout=wait + 30).stdout, targets, wait=wait)

    def connects(self, ip, port):
        """True if a TCP connection from here to ``ip``:``port`` is accepted (``nc``, 1 s)."""
        return self.run(["busybox", "nc", "-w", "1", ip, str(port)], input="", timeout=10).returncode == 0

    def serve(self, port):
        """A TCP echo server on ``port`` in here (until the host stops), listening
        when this returns; it hangs up on a client quiet for 0.3 s (so ``nc``
        with nothing to say returns)."""
        return start_echo_server(self.host, [port], prefix=["ip", "netns", "exec", self.name], idle_timeout=0.3)

    def endpoint_json(self, profiles=()):
        import json
        return json.dumps({"state": "active", "name": self.interface, "mac": None,
                           "profile_ids": list(profiles), "ipv4_nets": ["%s/32" % self.ip],
                           "ipv6_nets": [], "ipv4_gateway": self.host_ip, "ipv6_gateway": None})

    def delete(self):
        self.host.run(["sh", "-c", "ip link del %s; ip netns del %s" % (self.interface, self.name)],
                      cwd="/")


REMOVE_NETNS_WORKLOADS = (
    "for n in $(ip netns list | cut -d' ' -f1); do ip netns del $n; done; "
    "for l in $(ip -o link show | awk -F': ' '{print $2}' | grep '^cali' | cut -d@ -f1); do ip link del $l; done; true")


def remove_netns_workloads(host):
    """No NetnsWorkload (nor any other named netns or ``cali*`` link) left in ``host``."""
    host.run(["sh", "-c", REMOVE_NETNS_WORKLOADS], cwd="/")


def routes(host, version=4):
    """``ip route`` lines inside ``host``."""
    return host.run(["ip", "-%d" % version, "route"], cwd="/").stdout.splitlines()


def route_to(host, dst, version=4):
    """The ``ip route`` line for exactly ``dst`` in ``host``, or None."""
    for line in routes(host, version):
        if line.split()[0] == dst:
            return line
    return None


def parse_link_mtu(output):
    """The MTU in ``ip -o link show <device>`` output."""
    return int(output.split(" mtu ", 1)[1].split()[0])


def link_mtu(host, device):
    """MTU of ``device`` inside ``host``."""
    return parse_link_mtu(host.run(["ip", "-o", "link", "show", device], cwd="/").stdout)


def bird_protocols(host, socket_path):
    """``birdc show protocols`` inside ``host`` as parsed rows (host.bird.ProtocolRow)."""
    from calicoctl.host.bird import parse_protocols
    result = host.run(["birdc", "-s", socket_path, "show", "protocols"], cwd="/", timeout=10)
    return parse_protocols(result.stdout) or []


def tcp_peer_address(listener_host, listen_ip, port, connect, timeout=10.0, netns_of_pid=None):
    """Start a one-connection TCP server in ``listener_host`` (a Lan, SimHost
    or NetnsWorkload; with ``netns_of_pid``, in that process's network
    namespace, e.g. a container's) on listen_ip:port, call ``connect()``
    (which must make one connection to it), and return the peer address the
    server saw (or None if nobody connected in time)."""
    import sys
    server_code = (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(float(sys.argv[3]))\n"
        "print('listening', flush=True)\n"
        "try:\n    c, a = s.accept(); print(a[0], flush=True)\nexcept OSError:\n    print('none', flush=True)\n")
    args = [sys.executable, "-c", server_code, listen_ip, str(port), str(timeout)]
    if isinstance(listener_host, NetnsWorkload):
        args = ["ip", "netns", "exec", listener_host.name] + args
        runner = listener_host.host
    else:
        runner = listener_host
    if netns_of_pid is not None:
        args = ["nsenter", "-t", str(netns_of_pid), "-n", "--"] + args
    process = runner.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd="/")
    try:
        first = process.stdout.readline().strip()
        if first != "listening":
            raise RuntimeError("listener failed: %s %s" % (first, process.stderr.read()))
        connect()
        answer = process.stdout.readline().strip()
        return None if answer in ("", "none") else answer
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def reachable(run, targets, nc="busybox nc", wait=1):
    """The (address, port) pairs of ``targets`` that accept a TCP connection,
    probed all at once (each ``nc`` in the background of one shell), so that
    the dropped ones cost ``wait`` seconds together, not one after another.

    :param run: ``run(args)`` runs a command where the probes start from
        (a workload) and returns its standard output as text.
    """
    script = "".join("(%s -w %d %s %d </dev/null >/dev/null 2>&1 && echo %s %d) & " % (nc, wait, ip, port, ip, port)
                     for ip, port in targets) + "wait"
    return {(line.split()[0], int(line.split()[1])) for line in run(["sh", "-c", script]).splitlines()
            if line.strip()}


ECHO_SERVER = r"""
import socket, sys, threading
idle_timeout = float(sys.argv[1]) or None
def echo(conn):
    conn.settimeout(idle_timeout)
    try:
        while True:
            data = conn.recv(100)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    conn.close()
def serve(listener):
    while True:
        threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
for port in sys.argv[2:]:
    listener = socket.socket(socket.AF_INET6)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::", int(port)))
    listener.listen(16)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
print("serving", flush=True)
threading.Event().wait()
"""


def start_echo_server(runner, ports, prefix=(), idle_timeout=0):
    """TCP echo servers on ``ports`` (every address, IPv4 and IPv6) inside
    ``runner`` (a SimHost or Lan; ``prefix``, e.g. ``ip netns exec <n>``,
    narrows it down), listening when this returns; ``idle_timeout``: hang up
    on a client quiet that long (0: never). Returns the process: kill it when done."""
    import sys
    server = runner.popen(list(prefix) + [sys.executable, "-c", ECHO_SERVER, str(idle_timeout)]
                          + [str(p) for p in ports],
                          cwd="/", stdout=subprocess.PIPE, text=True)
    if server.stdout.readline().strip() != "serving":
        server.kill()
        server.wait()
        raise RuntimeError("echo server on %s failed to start" % (ports,))
    return server
