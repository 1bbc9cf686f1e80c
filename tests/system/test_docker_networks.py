"""Docker-native networking: `docker network create --driver calico --ipam-driver
calico-ipam`, `docker run --net`, connect/disconnect, on two simulated hosts
that each run their own dockerd, which finds the plugins its host's agent
serves in the host's /run/docker/plugins, as on real hosts.

Policy is checked by traffic: containers of one network reach each other
across hosts, containers of different networks do not."""
import json
import subprocess
import sys

import pytest

from calicoctl.identity import RUN_DIR
from tests.harness.multihost import link_mtu
from tests.harness.util import run_in_threads, wait_for

HOST_A = ("dn-a", "172.17.8.81", "fd00:8::81")
HOST_B = ("dn-b", "172.17.8.82", "fd00:8::82")
DRIVER = ["--driver", "calico", "--ipam-driver", "calico-ipam"]
RECONCILE = "2"
SOCKETS = ("/run/docker/plugins/calico.sock", "/run/docker/plugins/calico-ipam.sock")
# Stands on the plugins' sockets while the agent is down and answers every
# call with an error at once. Docker then gives up on each call at once:
# on a missing socket it retries each for about 30 s.
FAILING_PLUGINS = r"""
import http.server, os, socketserver, sys, threading
class Refuse(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"Err": "the calico agent is down"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
for path in sys.argv[1:]:
    if os.path.exists(path):
        os.unlink(path)
    threading.Thread(target=Server(path, Refuse).serve_forever, daemon=True).start()
print("serving", flush=True)
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def cluster(make_cluster):
    cluster = make_cluster(subnet6="fd00:8::/64", gateway6="fd00:8::1")
    for name, ip, ip6 in (HOST_A, HOST_B):
        host = cluster.add_host(name, ip, ip6=ip6, start_node=False, own_dockerd=True)
        start_node(cluster, host)
    return cluster


def start_node(cluster, host):
    env = dict(cluster.etcd.env, CALICO_AGENT_PLUGIN_RECONCILE_INTERVAL=RECONCILE)
    result = host.run(["calicoctl", "node", "--ip=%s" % host.ip, "--ip6=%s" % host.ip6], env=env,
                      timeout=90, cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr


def hosts(cluster):
    return cluster.hosts[HOST_A[0]], cluster.hosts[HOST_B[0]]


def docker(host, *args, check=True, timeout=90):
    result = host.run(["docker"] + list(args), timeout=timeout, cwd="/")
    if check:
        assert result.returncode == 0, "docker %s on %s: %s%s" % (" ".join(args), host.name, result.stdout,
                                                                 result.stderr)
    return result


def refused(result, words):
    assert result.returncode != 0, result.stdout
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def run(host, net, name, *extra):
    docker(host, "run", "-d", "--net", net, "--name", name, *extra, "busybox", "sleep", "100000")
    return name


def addresses(host, container, version=4):
    out = docker(host, "exec", container, "ip", "-%d" % version, "-o", "addr", "show", "scope", "global").stdout
    return [line.split()[3] for line in out.splitlines()]


def ping(host, container, ip):
    flag = ["-6"] if ":" in ip else []
    return docker(host, "exec", container, "ping", *flag, "-c", "1", "-W", "1", ip, check=False).returncode == 0


def endpoints(cluster, hostname=None):
    """{endpoint ID: endpoint JSON} of the Docker driver's endpoints."""
    found = {}
    for entry in cluster.etcd.kv().tree("/calico/v1/host").entries:
        parts = entry.key.split("/")
        if len(parts) == 10 and parts[6] == "libnetwork" and (hostname is None or parts[4] == hostname):
            found[parts[9]] = json.loads(entry.value)
    return found


def claims(cluster):
    found = {}
    for version in (4, 6):
        entries = cluster.etcd.kv().tree("/calico/v1/ipam/v%d/assignment" % version).entries
        found.update({entry.key.rsplit("/", 1)[1]: entry.value for entry in entries})
    return found


def profile_rules(cluster, name):
    entry = cluster.etcd.kv().get("/calico/v1/policy/profile/%s/rules" % name)
    return None if entry is None else json.loads(entry.value)


def create_network(cluster, host, name, *extra):
    """Create a calico network; its profile follows within moments (Docker
    tells the driver the name only once the network is stored)."""
    docker(host, "network", "create", *DRIVER, *extra, name)
    wait_for(lambda: _profile_exists(cluster.etcd, name), timeout=5, interval=0.02,
             message="profile %s" % name)


def _profile_exists(etcd, name):
    return etcd.kv().get("/calico/v1/policy/profile/%s/rules" % name) is not None


def remove(host, *names):
    docker(host, "rm", "-f", *names, check=False)


# -- tests ------------------------------------------------------------------------------------

def test_status_and_checksystem_see_the_plugins(cluster):
    a, _ = hosts(cluster)
    status = cluster.calicoctl(a, "status").stdout
    assert "Docker plugins: network driver calico and IPAM driver calico-ipam on " \
           "/run/docker/plugins/calico.sock, /run/docker/plugins/calico-ipam.sock." in status
    assert "checks" in cluster.calicoctl(a, "checksystem").stdout


def test_checksystem_fails_when_a_plugin_does_not_answer(cluster):
    a, _ = hosts(cluster)
    sock = "/run/docker/plugins/calico-ipam.sock"
    a.run(["mv", sock, sock + ".away"], cwd="/")
    try:
        result = cluster.calicoctl(a, "checksystem", check=False)
        assert result.returncode == 1
        assert "ERROR: Docker plugin calico-ipam: Nothing answers on %s" % sock in result.stderr
    finally:
        a.run(["mv", sock + ".away", sock], cwd="/")
    assert cluster.calicoctl(a, "checksystem").returncode == 0


def test_a_network_is_a_profile_and_one_network_across_hosts(cluster):
    a, b = hosts(cluster)
    for host in (a, b):
        create_network(cluster, host, "netA")
        create_network(cluster, host, "netB")
    rules = profile_rules(cluster, "netA")
    assert rules["inbound_rules"] == [{"action": "allow", "src_tag": "netA"}]
    run(a, "netA", "a1")
    run(b, "netA", "b1")
    run(b, "netB", "b2")
    (a1_ip,), (b1_ip,), (b2_ip,) = addresses(a, "a1"), addresses(b, "b1"), addresses(b, "b2")
    assert a1_ip.endswith("/32") and a1_ip.startswith("192.168.")
    assert len({a1_ip, b1_ip, b2_ip}) == 3
    # The gateway and routes of `container add`: the host's address, a link route to it.
    routes = docker(a, "exec", "a1", "ip", "route").stdout
    assert "default via %s dev eth0" % a.ip in routes and "%s dev eth0 scope link" % a.ip in routes
    wait_for(lambda: ping(a, "a1", b1_ip.split("/")[0]), timeout=40, interval=0.5, message="a1 -> b1")
    assert ping(b, "b1", a1_ip.split("/")[0])
    assert not ping(a, "a1", b2_ip.split("/")[0])
    assert not ping(b, "b2", a1_ip.split("/")[0])
    # The endpoint is a Calico endpoint like any other: shown, found, edited.
    (endpoint_id,) = cluster.calicoctl(a, "container", "a1", "endpoint-id", "show").stdout.split()
    assert endpoints(cluster, a.name)[endpoint_id]["profile_ids"] == ["netA"]
    cluster.calicoctl(a, "endpoint", endpoint_id, "profile", "append", "netB")
    wait_for(lambda: ping(b, "b2", a1_ip.split("/")[0]), timeout=20, interval=0.5, message="b2 -> a1 via netB")
    remove(a, "a1")
    remove(b, "b1", "b2")
    wait_for(lambda: endpoints(cluster) == {}, timeout=10, interval=0.2, message="endpoints released")
    assert claims(cluster) == {}


def test_ip_and_subnet(cluster):
    a, _ = hosts(cluster)
    create_network(cluster, a, "netS", "--subnet", "192.168.50.0/24")
    run(a, "netS", "s1", "--ip", "192.168.50.7")
    run(a, "netS", "s2")
    assert addresses(a, "s1") == ["192.168.50.7/32"]
    (s2,) = addresses(a, "s2")
    assert s2.startswith("192.168.50.")
    assert claims(cluster)["192.168.50.7"] == "%s/libnetwork/ipam" % a.name
    refused(docker(a, "run", "-d", "--net", "netS", "--ip", "192.168.50.7", "busybox", check=False),
            "192.168.50.7 is already assigned")
    refused(docker(a, "network", "create", *DRIVER, "--subnet", "10.99.0.0/24", "netOut", check=False),
            "10.99.0.0/24 is not inside a Calico IPv4 pool (pools: 192.168.0.0/16)")
    # Restart keeps a given address, and the endpoint comes back with the network's profile.
    docker(a, "restart", "-t", "0", "s1")
    assert addresses(a, "s1") == ["192.168.50.7/32"]
    assert [ep["profile_ids"] for ep in endpoints(cluster, a.name).values()] == [["netS"], ["netS"]]
    remove(a, "s1", "s2")
    assert endpoints(cluster) == {} and claims(cluster) == {}
    docker(a, "network", "rm", "netS")


def test_ipv6(cluster):
    a, b = hosts(cluster)
    create_network(cluster, a, "net6", "--ipv6")
    create_network(cluster, b, "net6", "--ipv6")
    run(a, "net6", "v6a")
    run(b, "net6", "v6b")
    (v6,) = addresses(a, "v6a", version=6)
    assert v6.startswith("fd80:24e2:f998:72d6:") and v6.endswith("/128")
    assert addresses(a, "v6a", version=4)
    assert "default via %s dev eth0" % a.ip6 in docker(a, "exec", "v6a", "ip", "-6", "route").stdout
    (other,) = addresses(b, "v6b", version=6)
    wait_for(lambda: ping(a, "v6a", other.split("/")[0]), timeout=40, interval=0.5, message="v6a -> v6b")
    remove(a, "v6a")
    remove(b, "v6b")
    for host in (a, b):
        docker(host, "network", "rm", "net6")
    assert claims(cluster) == {}


@pytest.mark.parametrize("args, words", [
    (["network", "create", *DRIVER, "-o", "mtu=1400", "netX"], "takes no driver options (-o): mtu"),
    (["network", "create", *DRIVER, "--internal", "netX"], "--internal is not supported"),
    (["network", "create", "--driver", "calico", "netX"], "--ipam-driver calico-ipam"),
    (["network", "create", *DRIVER, "--subnet", "192.168.60.0/24", "--gateway", "192.168.60.1", "netX"],
     "--gateway is not supported"),
    (["network", "create", *DRIVER, "--ipam-opt", "a=b", "netX"], "takes no options (--ipam-opt)"),
])
def test_options_the_driver_cannot_honour_are_refused(cluster, args, words):
    a, _ = hosts(cluster)
    refused(docker(a, *args, check=False), words)
    assert "netX" not in docker(a, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert profile_rules(cluster, "netX") is None


def test_publishing_ports_is_refused_and_leaves_nothing(cluster):
    a, _ = hosts(cluster)
    refused(docker(a, "run", "-d", "--net", "netA", "-p", "8080:80", "--name", "p1", "busybox", check=False),
            "Publishing ports (-p) is not supported")
    remove(a, "p1")
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_connect_and_disconnect(cluster):
    a, _ = hosts(cluster)
    run(a, "netA", "c1")
    docker(a, "network", "connect", "netB", "c1")
    assert len(addresses(a, "c1")) == 2
    assert sorted(ep["profile_ids"][0] for ep in endpoints(cluster, a.name).values()) == ["netA", "netB"]
    assert len(cluster.calicoctl(a, "container", "c1", "endpoint-id", "show").stdout.split()) == 2
    docker(a, "network", "disconnect", "netB", "c1")
    assert len(addresses(a, "c1")) == 1
    assert [ep["profile_ids"] for ep in endpoints(cluster, a.name).values()] == [["netA"]]
    assert len(claims(cluster)) == 1
    remove(a, "c1")
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_network_rm_removes_only_a_profile_the_driver_created_and_nobody_uses(cluster):
    a, b = hosts(cluster)
    create_network(cluster, a, "netR")
    assert profile_rules(cluster, "netR") is not None
    docker(a, "network", "rm", "netR")
    wait_for(lambda: profile_rules(cluster, "netR") is None, timeout=5, interval=0.1, message="netR removed")
    cluster.calicoctl(a, "profile", "add", "netP")
    create_network(cluster, a, "netP")
    docker(a, "network", "rm", "netP")
    assert profile_rules(cluster, "netP") is not None
    # netA still exists on host B: removing it on A keeps the profile.
    docker(a, "network", "rm", "netA")
    assert profile_rules(cluster, "netA") is not None
    create_network(cluster, a, "netA")


def test_fifty_containers_started_at_once_get_fifty_addresses(cluster):
    a, _ = hosts(cluster)
    names = ["many%d" % i for i in range(50)]
    procs = [a.popen(["docker", "run", "-d", "--net", "netA", "--name", name, "busybox", "sleep", "100000"],
                     cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 50, [err for _, err in outputs if err]
    found = endpoints(cluster, a.name)
    ips = [ep["ipv4_nets"][0] for ep in found.values()]
    assert len(ips) == 50 and len(set(ips)) == 50
    assert len(claims(cluster)) == 50
    remove(a, *names)
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_no_orphan_after_a_container_is_removed_while_the_agent_is_down(cluster):
    """Docker cannot tell a dead plugin that a container went (here its calls
    fail at once, FAILING_PLUGINS); the agent, back, finds out from Docker and
    releases what it held."""
    a, _ = hosts(cluster)
    run(a, "netA", "o1")
    run(a, "netA", "o2")
    (o2_ip,) = addresses(a, "o2")
    pid = int(a.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout)
    a.run(["kill", "-9", str(pid)], cwd="/")
    failing = a.popen([sys.executable, "-c", FAILING_PLUGINS, *SOCKETS], cwd="/", stdout=subprocess.PIPE,
                      text=True)
    try:
        assert failing.stdout.readline().strip() == "serving"
        docker(a, "rm", "-f", "o1")  # Docker's calls to the plugins fail: nothing is released
    finally:
        failing.kill()
        failing.wait()
    a.run(["rm", "-f", *SOCKETS], cwd="/")
    assert len(endpoints(cluster, a.name)) == 2
    start_node(cluster, a)
    wait_for(lambda: len(endpoints(cluster, a.name)) == 1, timeout=30, interval=0.5, message="orphan released")
    assert set(claims(cluster)) == {o2_ip.split("/")[0]}
    # The running container kept its networking; new ones get theirs.
    run(a, "netA", "o3")
    (o3_ip,) = addresses(a, "o3")
    wait_for(lambda: ping(a, "o3", o2_ip.split("/")[0]), timeout=20, interval=0.5, message="o3 -> o2")
    assert ping(a, "o2", o3_ip.split("/")[0])
    remove(a, "o2", "o3")
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_dockerd_restart_leaves_no_orphan_and_restarts_containers(cluster):
    a, _ = hosts(cluster)
    create_network(cluster, a, "netD", "--subnet", "192.168.70.0/24")
    run(a, "netD", "d1", "--restart", "always", "--ip", "192.168.70.5")
    run(a, "netD", "d2")
    a.dockerd.restart()
    wait_for(lambda: docker(a, "inspect", "-f", "{{.State.Running}}", "d1", check=False).stdout.strip() == "true",
             timeout=60, interval=0.5, message="d1 restarted")
    assert addresses(a, "d1") == ["192.168.70.5/32"]
    # d2 was stopped with the daemon: its endpoint and address go with it, d1's stay.
    wait_for(lambda: [ep["ipv4_nets"] for ep in endpoints(cluster, a.name).values()] == [["192.168.70.5/32"]]
             and set(claims(cluster)) == {"192.168.70.5"}, timeout=2 * int(RECONCILE) + 10, interval=0.2,
             message="only d1's endpoint and address left")
    remove(a, "d1", "d2")
    docker(a, "network", "rm", "netD")
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_concurrent_runs_on_two_hosts_never_share_an_address(cluster):
    a, b = hosts(cluster)
    create_network(cluster, a, "netC", "--subnet", "192.168.80.0/28")
    create_network(cluster, b, "netC", "--subnet", "192.168.80.0/28")
    results = {}

    def start(host, index):
        results[host.name, index] = docker(host, "run", "-d", "--net", "netC", "--name", "cc%d" % index,
                                           "busybox", "sleep", "100000", check=False).returncode
    assert run_in_threads(start, [(host, i) for i in range(7) for host in (a, b)], 120) == []
    assert list(results.values()) == [0] * 14
    ips = [ep["ipv4_nets"][0] for ep in endpoints(cluster).values()]
    assert len(ips) == 14 and len(set(ips)) == 14
    for host in (a, b):
        remove(host, *["cc%d" % i for i in range(7)])
    assert endpoints(cluster) == {} and claims(cluster) == {}


def test_a_network_in_a_vxlan_pool_gives_its_containers_an_mtu_that_fits_the_tunnel(cluster):
    a, _ = hosts(cluster)
    cluster.calicoctl(a, "pool", "add", "10.70.0.0/16", "--vxlan")
    try:
        create_network(cluster, a, "netV", "--subnet", "10.70.0.0/24")
        run(a, "netV", "v1")
        mtu = link_mtu(a, "eth0") - 50
        assert docker(a, "exec", "v1", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == str(mtu)
        (endpoint,) = endpoints(cluster, a.name).values()
        assert link_mtu(a, endpoint["name"]) == mtu
        remove(a, "v1")
        docker(a, "network", "rm", "netV")
    finally:
        cluster.calicoctl(a, "pool", "remove", "10.70.0.0/16")
