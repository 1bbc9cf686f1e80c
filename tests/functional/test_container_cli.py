"""`calicoctl container ...` end to end: real Docker containers, real etcd,
calicoctl running inside a simulated host (its own network namespace).

Checks what the kernel and etcd hold afterwards, inside the container and
on the host, and that two containers reach each other through the host.
"""
import json
import sys

import pytest

from tests.functional.containertools import (cali_links, calicoctl, claims, endpoints_of, global_addresses,
    in_container, in_host, links, ok, proxy_neighbours, read_proc, refused, route_to, routes, workload_keys)
from tests.harness.util import REPO_ROOT

pytestmark = pytest.mark.usefixtures("root_required")


def add(host, env, container, ip, *extra):
    return ok(calicoctl(host, ["container", "add", container.name, ip] + list(extra), env))


def the_endpoint(client, host, container):
    container.reload()
    eps = endpoints_of(client, host.name, container.id)
    assert len(eps) == 1, eps
    return next(iter(eps.items()))


def ping(container, ip, count=1, attempts=3):
    """True once a ping gets through; a few attempts, as the reference's tests
    made, because the first IPv6 packet can be lost while neighbour discovery
    settles on a freshly added address."""
    flag = "-6 " if ":" in ip else ""
    for _ in range(attempts):
        code, output = container.exec_run("ping %s-c %d -W 2 %s" % (flag, count, ip))
        if code == 0:
            return True
    return False


def test_add_ipv4_builds_both_ends_and_the_record(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    out = add(host1, seeded.env, c1, "192.168.1.10")
    endpoint_id, ep = the_endpoint(client, host1, c1)
    assert endpoint_id in out and "192.168.1.10" in out
    assert len(endpoint_id) == 32 and int(endpoint_id, 16) >= 0
    veth = "cali" + endpoint_id[:11]

    # The reference's JSON, all fields present, and the inside name (our extension).
    assert ep == {"state": "active", "name": veth, "mac": ep["mac"], "profile_ids": [],
                  "ipv4_nets": ["192.168.1.10/32"], "ipv6_nets": [],
                  "ipv4_gateway": host1.ip, "ipv6_gateway": None, "container_interface": "eth1"}
    # Inside the container: eth1 up, the /32, link route to the host, default via it.
    cont = in_container(c1)
    eth1 = links(cont)["eth1"]
    assert "UP" in eth1["flags"]
    assert eth1["address"] == ep["mac"]
    assert global_addresses(cont, "eth1") == ["192.168.1.10/32"]
    gw = route_to(cont, host1.ip)
    assert gw["dev"] == "eth1" and gw["scope"] == "link"
    default = route_to(cont, "default")
    assert default["gateway"] == host1.ip and default["dev"] == "eth1"
    # On the host: the veth, up, proxy ARP without delay, a scope-link route.
    host = in_host(host1)
    host_link = links(host)[veth]
    assert "UP" in host_link["flags"]
    assert read_proc(host, "/proc/sys/net/ipv4/conf/%s/proxy_arp" % veth) == "1"
    assert read_proc(host, "/proc/sys/net/ipv4/neigh/%s/proxy_delay" % veth) == "0"
    route = route_to(host, "192.168.1.10")
    assert route["dev"] == veth and route["scope"] == "link"
    # The pair really is one veth across the two namespaces.
    assert eth1["link_index"] == host_link["ifindex"]
    # The claim, owned by this container on this host; the name beside the endpoint.
    assert claims(client) == {"192.168.1.10": "%s/docker/%s" % (host1.name, c1.id)}
    assert client.get("/calico/v1/host/%s/workload/docker/%s/name" % (host1.name, c1.id)).value == c1.name

    # endpoint-id show prints just the ID (no root needed, by name or short ID).
    for ref in (c1.name, c1.id[:12]):
        shown = ok(calicoctl(host1, ["container", ref, "endpoint-id", "show"], seeded.env))
        assert shown == endpoint_id + "\n"


def test_add_ipv6_uses_proxy_ndp_and_v6_default_route(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "fd80:24e2:f998:72d6::a", "--interface=cal0")
    endpoint_id, ep = the_endpoint(client, host1, c1)
    veth = "cali" + endpoint_id[:11]
    assert ep["ipv6_nets"] == ["fd80:24e2:f998:72d6::a/128"] and ep["ipv4_nets"] == []
    assert ep["ipv6_gateway"] == host1.ip6 and ep["ipv4_gateway"] is None
    cont = in_container(c1)
    assert "eth1" not in links(cont)
    assert links(cont)["cal0"]["address"] == ep["mac"]
    assert global_addresses(cont, "cal0") == ["fd80:24e2:f998:72d6::a/128"]
    default = route_to(cont, "default", 6)
    assert default["gateway"] == host1.ip6 and default["dev"] == "cal0"
    assert route_to(cont, host1.ip6, 6)["dev"] == "cal0"
    host = in_host(host1)
    assert read_proc(host, "/proc/sys/net/ipv6/conf/%s/proxy_ndp" % veth) == "1"
    assert (host1.ip6, "dev", veth) in proxy_neighbours(host)
    assert route_to(host, "fd80:24e2:f998:72d6::a", 6)["dev"] == veth
    assert claims(client) == {"fd80:24e2:f998:72d6::a": "%s/docker/%s" % (host1.name, c1.id)}


@pytest.mark.slow
def test_two_containers_ping_each_other_through_the_host(seeded, host1, make_container):
    c1, c2 = make_container(), make_container()
    add(host1, seeded.env, c1, "192.168.1.21")
    add(host1, seeded.env, c2, "192.168.1.22")
    assert ping(c1, "192.168.1.22") and ping(c2, "192.168.1.21")
    # ... and the host itself (the gateway).
    assert ping(c1, host1.ip)
    ok(calicoctl(host1, ["container", c1.name, "ip", "add", "fd80:24e2:f998:72d6::21"], seeded.env))
    ok(calicoctl(host1, ["container", c2.name, "ip", "add", "fd80:24e2:f998:72d6::22"], seeded.env))
    assert ping(c1, "fd80:24e2:f998:72d6::22") and ping(c2, "fd80:24e2:f998:72d6::21")
    ok(calicoctl(host1, ["container", "remove", c2.name], seeded.env))
    assert not ping(c1, "192.168.1.22", attempts=1)


def test_ipv6_only_containers_ping_at_once(seeded, host1, make_container):
    # No waiting for duplicate address detection: the first ping must work.
    c1, c2 = make_container(), make_container()
    add(host1, seeded.env, c1, "fd80:24e2:f998:72d6::31")
    add(host1, seeded.env, c2, "fd80:24e2:f998:72d6::32")
    assert ping(c1, "fd80:24e2:f998:72d6::32", attempts=1)


def test_replaces_an_existing_default_route(seeded, host1, make_container):
    c1 = make_container()
    cont = in_container(c1)
    # Give the container a "Docker bridge" interface and default route first.
    import subprocess
    for command in ("ip link add eth0 type veth peer name eth0p", "ip addr add 10.99.0.2/24 dev eth0",
                    "ip link set eth0 up", "ip link set eth0p up", "ip route add default via 10.99.0.1"):
        subprocess.run(cont + command.split(), check=True)
    add(host1, seeded.env, c1, "192.168.1.40")
    defaults = [r for r in routes(cont) if r["dst"] == "default"]
    assert defaults == [dict(defaults[0], gateway=host1.ip, dev="eth1")]
    assert route_to(cont, "10.99.0.0/24")["dev"] == "eth0"   # Docker's subnet route stays


@pytest.mark.slow
def test_ip_add_and_remove(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.50")
    endpoint_id, _ = the_endpoint(client, host1, c1)
    veth = "cali" + endpoint_id[:11]
    cont, host = in_container(c1), in_host(host1)

    out = ok(calicoctl(host1, ["container", c1.name, "ip", "add", "192.168.1.51"], seeded.env))
    assert "192.168.1.51" in out
    # First IPv6 address on a v4 container: gateway and v6 default route come with it.
    ok(calicoctl(host1, ["container", c1.name, "ip", "add", "fd80:24e2:f998:72d6::51"], seeded.env))
    _, ep = the_endpoint(client, host1, c1)
    assert ep["ipv4_nets"] == ["192.168.1.50/32", "192.168.1.51/32"]
    assert ep["ipv6_nets"] == ["fd80:24e2:f998:72d6::51/128"] and ep["ipv6_gateway"] == host1.ip6
    assert global_addresses(cont, "eth1") == ["192.168.1.50/32", "192.168.1.51/32",
                                               "fd80:24e2:f998:72d6::51/128"]
    assert route_to(cont, "default", 6)["gateway"] == host1.ip6
    assert route_to(host, "192.168.1.51")["dev"] == veth
    assert route_to(host, "fd80:24e2:f998:72d6::51", 6)["dev"] == veth
    assert (host1.ip6, "dev", veth) in proxy_neighbours(host)
    assert set(claims(client)) == {"192.168.1.50", "192.168.1.51", "fd80:24e2:f998:72d6::51"}

    # Adding it again: nothing to do, said so, exit 0.
    again = ok(calicoctl(host1, ["container", c1.name, "ip", "add", "192.168.1.51"], seeded.env))
    assert "already" in again

    ok(calicoctl(host1, ["container", c1.name, "ip", "remove", "192.168.1.51"], seeded.env))
    ok(calicoctl(host1, ["container", c1.id[:10], "ip", "remove", "fd80:24e2:f998:72d6::51"], seeded.env))
    _, ep = the_endpoint(client, host1, c1)
    assert ep["ipv4_nets"] == ["192.168.1.50/32"] and ep["ipv6_nets"] == []
    assert global_addresses(cont, "eth1") == ["192.168.1.50/32"]
    assert route_to(host, "192.168.1.51") is None
    assert route_to(host, "fd80:24e2:f998:72d6::51", 6) is None
    assert set(claims(client)) == {"192.168.1.50"}
    refused(calicoctl(host1, ["container", c1.name, "ip", "remove", "192.168.1.51"], seeded.env),
            contains="not on container")


def test_both_ends_fit_the_pool_and_an_address_in_a_vxlan_pool_shrinks_them(seeded, host1, make_container):
    client = seeded.kv()
    client.put("/calico/v1/ipam/v4/pool/10.65.0.0-16", json.dumps({"cidr": "10.65.0.0/16", "vxlan": True}))
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.70")
    endpoint_id, _ = the_endpoint(client, host1, c1)
    host = in_host(host1)
    lan = links(host)["eth0"]["mtu"]

    def mtus():
        return links(host)["cali" + endpoint_id[:11]]["mtu"], links(in_container(c1))["eth1"]["mtu"]
    assert mtus() == (lan, lan)                      # no encapsulation: the LAN's MTU
    ok(calicoctl(host1, ["container", c1.name, "ip", "add", "10.65.0.70"], seeded.env))
    assert mtus() == (lan - 50, lan - 50)            # VXLAN over IPv4 adds 50 bytes


def test_remove_takes_everything_away(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.60")
    ok(calicoctl(host1, ["container", c1.name, "ip", "add", "fd80:24e2:f998:72d6::60"], seeded.env))
    veth = "cali" + the_endpoint(client, host1, c1)[0][:11]
    out = ok(calicoctl(host1, ["container", "remove", c1.name], seeded.env))
    assert "192.168.1.60" in out
    assert veth not in cali_links(host1)
    assert set(links(in_container(c1))) == {"lo"}
    assert route_to(in_host(host1), "192.168.1.60") is None
    assert workload_keys(client) == [] and claims(client) == {}
    # Again: nothing of it is left, so it is refused, and nothing changes.
    refused(calicoctl(host1, ["container", "remove", c1.name], seeded.env), contains="no calico networking")
    # And the container can be networked again with the same address.
    add(host1, seeded.env, c1, "192.168.1.60")


@pytest.mark.parametrize("how", ["name", "short-id"])
def test_remove_after_docker_forgot_the_container(seeded, host1, make_container, how):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.70")
    veth = "cali" + the_endpoint(client, host1, c1)[0][:11]
    ref = c1.name if how == "name" else c1.id[:8]
    c1.remove(force=True)
    out = ok(calicoctl(host1, ["container", "remove", ref], seeded.env))
    assert "192.168.1.70" in out
    assert workload_keys(client) == [] and claims(client) == {}
    assert veth not in cali_links(host1)


def test_remove_finds_a_renamed_container_through_docker(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.75")
    c1.rename(c1.name + "-renamed")
    ok(calicoctl(host1, ["container", "remove", c1.name + "-renamed"], seeded.env))
    assert workload_keys(client) == [] and claims(client) == {}


def test_help_and_usage(seeded, host1):
    result = calicoctl(host1, ["container", "--help"], seeded.env)
    assert result.returncode == 0 and "calicoctl container add <CONTAINER> <IP>" in result.stdout
    result = calicoctl(host1, ["container", "add"], seeded.env)
    assert result.returncode == 1 and "Usage" in result.stderr


def test_remove_and_endpoint_id_need_no_docker_when_etcd_knows_the_name(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    add(host1, seeded.env, c1, "192.168.1.80")
    endpoint_id, _ = the_endpoint(client, host1, c1)
    no_docker = dict(seeded.env, DOCKER_HOST="unix:///run/no-docker-here.sock")
    shown = ok(calicoctl(host1, ["container", c1.name, "endpoint-id", "show"], no_docker))
    assert shown == endpoint_id + "\n"
    ok(calicoctl(host1, ["container", "remove", c1.name], no_docker))
    assert workload_keys(client) == [] and claims(client) == {}
    assert set(links(in_container(c1))) == {"lo"}


def test_add_imports_only_what_it_needs(seeded, host1, make_container):
    # The import diet: the five libraries, and of our own code only what
    # `container add` uses (no agent, no other command).
    c1 = make_container()
    script = ("import sys, json\nfrom calicoctl.cli import main\n"
              "rc = main(['container', 'add', %r, '192.168.1.81'])\n"
              "print(json.dumps([rc, sorted(sys.modules)]))\n" % c1.name)
    env = dict(seeded.env, PYTHONPATH=REPO_ROOT, CALICO_HOSTNAME=None)
    result = host1.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT)
    rc, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert rc == 0, result.stderr
    top = {name.split(".")[0] for name in modules}
    assert {"docker", "pyroute2", "netaddr", "docopt"} <= top and not {"etcd", "etcd3gw"} & top
    ours = {name for name in modules if name.startswith("calicoctl.")}
    assert ours == {"calicoctl.cli", "calicoctl.cli.context", "calicoctl.cli.container", "calicoctl.errors",
                    "calicoctl.identity",
                    "calicoctl.validate", "calicoctl.model", "calicoctl.rulemodel", "calicoctl.ops",
                    "calicoctl.ops.container", "calicoctl.host.locks", "calicoctl.ops.allocator",
                    "calicoctl.ops.container_logic", "calicoctl.ops.interfaces", "calicoctl.ops.rollback",
                    "calicoctl.datastore", "calicoctl.datastore.paths", "calicoctl.datastore.etcdconn",
                    "calicoctl.datastore.kv", "calicoctl.datastore.kv_v3", "calicoctl.datastore.etcdhttp",
                    "calicoctl.datastore.client", "calicoctl.datastore.store", "calicoctl.datastore.profiles",
                    "calicoctl.datastore.workloads", "calicoctl.datastore.ipam", "calicoctl.datastore.hosts",
                    "calicoctl.host", "calicoctl.host.netlink",
                    "calicoctl.host.netlink.errors", "calicoctl.host.netlink.links",
                    "calicoctl.host.netlink.monitor", "calicoctl.host.netlink.netns",
                    "calicoctl.host.netlink.routing", "calicoctl.host.netlink.session",
                    "calicoctl.host.netlink.tunnels", "calicoctl.host.sysctl", "calicoctl.host.docker"}
    # `endpoint-id show` resolved from etcd loads neither docker-py nor pyroute2.
    script = ("import sys\nfrom calicoctl.cli import main\n"
              "rc = main(['container', %r, 'endpoint-id', 'show'])\n"
              "print(rc, 'docker' in sys.modules, 'pyroute2' in sys.modules)\n" % c1.name)
    result = host1.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT)
    assert result.stdout.strip().splitlines()[-1] == "0 False False", result.stderr
