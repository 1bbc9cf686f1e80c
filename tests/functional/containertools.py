"""Checks and helpers shared by the container tests (test_container_*.py); their
fixtures (``host1``, ``host2``, ``seeded``) are in this directory's conftest.py.

The simulated hosts are module-scoped (starting one costs more than
most tests), on the session LAN; the session etcd is reached from inside
them through the LAN's forward (``lan_etcd``). What a test looks at is
read with iproute2 (``ip -j``), not with our own netlink module, so the
code under test does not grade itself.
"""
import json
import subprocess
import sys

from tests.harness.util import REPO_ROOT

V4_POOL = "192.168.0.0/16"
V6_POOL = "fd80:24e2:f998:72d6::/64"
HOST1 = ("calico-ct1", "172.17.8.201", "fd00:8::201")
HOST2 = ("calico-ct2", "172.17.8.202", "fd00:8::202")


def seed(client, hosts, v4_pool=V4_POOL, v6_pool=V6_POOL, v6=True):
    """What `calicoctl node` and `pool add` would have written: pools, and
    each host's addresses."""
    client.put("/calico/v1/ipam/v4/pool/%s" % v4_pool.replace("/", "-"), json.dumps({"cidr": v4_pool}))
    client.put("/calico/v1/ipam/v6/pool/%s" % v6_pool.replace("/", "-"), json.dumps({"cidr": v6_pool}))
    for host in hosts:
        client.put("/calico/bgp/v1/host/%s/ip_addr_v4" % host.name, host.ip)
        client.put("/calico/bgp/v1/host/%s/ip_addr_v6" % host.name, host.ip6 if v6 else "")


def calicoctl(host, argv, env, timeout=60):
    """The real calicoctl as a process inside the simulated host."""
    child_env = {"PYTHONPATH": REPO_ROOT, "CALICO_HOSTNAME": None, "DOCKER_HOST": None}
    child_env.update(env)
    return host.run([sys.executable, "-m", "calicoctl"] + list(argv), env=child_env, timeout=timeout,
                    cwd=REPO_ROOT)


def ok(result):
    assert result.returncode == 0, "rc %d: out=%r err=%r" % (result.returncode, result.stdout, result.stderr)
    assert result.stderr == "", result.stderr
    return result.stdout


def refused(result, rc=1, contains=None):
    assert result.returncode == rc, "expected rc %d, got %d: out=%r err=%r" % (
        rc, result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one line on stderr, got %r" % (result.stderr,)
    assert "Traceback" not in result.stderr
    if contains is not None:
        assert contains.lower() in lines[0].lower(), "%r not in %r" % (contains, lines[0])
    return lines[0]


# -- looking at the kernel with iproute2 ---------------------------------------

def ip_json(prefix, args):
    """``ip -j <args>`` run through ``prefix`` (an nsenter command), parsed."""
    out = subprocess.run(list(prefix) + ["ip", "-j"] + list(args), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out) if out.strip() else []


def in_container(container):
    container.reload()
    return ["nsenter", "-t", str(container.attrs["State"]["Pid"]), "-n", "--"]


def in_host(host):
    return ["nsenter", "-t", str(host.pid), "-n", "--"]


def links(prefix):
    return {link["ifname"]: link for link in ip_json(prefix, ["link", "show"])}


def addresses(prefix, ifname):
    found = ip_json(prefix, ["addr", "show", "dev", ifname])
    return [(a["local"], a["prefixlen"], a) for a in found[0]["addr_info"]] if found else []


def global_addresses(prefix, ifname):
    return sorted("%s/%d" % (ip, plen) for ip, plen, info in addresses(prefix, ifname)
                  if info.get("scope") == "global")


def routes(prefix, version=4):
    return ip_json(prefix, ["-%d" % version, "route", "show"])


def route_to(prefix, dst, version=4):
    for route in routes(prefix, version):
        if route["dst"] == dst:
            return route
    return None


def cali_links(host):
    return sorted(name for name in links(in_host(host)) if name.startswith("cali"))


def new_cali_links(host, known):
    """cali* links on the host that were not there before (``known``: an
    earlier ``set(cali_links(host))``). Comparing with a snapshot, not with
    "none", because a removed container's veth can outlive it for seconds:
    any namespace created meanwhile (another test's simulated host) keeps a
    copy of Docker's bind mount of the container's namespace."""
    return sorted(set(cali_links(host)) - set(known))


def read_proc(prefix, path):
    return subprocess.run(list(prefix) + ["cat", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def proxy_neighbours(prefix):
    out = subprocess.run(list(prefix) + ["ip", "-6", "neigh", "show", "proxy"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(tuple(line.split()[:3]) for line in out.splitlines() if line.strip())


# -- looking at etcd -------------------------------------------------------------

def calico_leaves(kv, prefix="/calico"):
    """{key: value} of every leaf under ``prefix`` (calicoctl's key-value store ``kv``)."""
    return {entry.key: entry.value for entry in kv.tree(prefix).entries}


def endpoints_of(client, hostname, container_id):
    prefix = "/calico/v1/host/%s/workload/docker/%s/endpoint" % (hostname, container_id)
    return {key.rsplit("/", 1)[1]: json.loads(value) for key, value in calico_leaves(client, prefix).items()}


def claims(client):
    """{ip: owner} of every claim, both versions."""
    found = {}
    for key, value in calico_leaves(client, "/calico/v1/ipam").items():
        if "/assignment/" in key:
            found[key.rsplit("/", 1)[1]] = value
    return found


def workload_keys(client):
    return sorted(key for key in calico_leaves(client, "/calico/v1/host") if "/workload/" in key)


def assert_nothing_left(client, host, container=None, known=(), before_claims=None):
    """No new Calico interface on the host (``known``: the cali links seen
    before), none in the container, no workload keys, no claims beyond
    ``before_claims``."""
    assert new_cali_links(host, known) == [], "veth left on the host"
    if container is not None:
        container.reload()
        if container.status == "running":
            names = set(links(in_container(container)))
            assert names <= {"lo"}, "interfaces left in the container: %s" % names
    assert workload_keys(client) == [], "workload keys left in etcd"
    assert claims(client) == (before_claims or {}), "claims left in etcd"
