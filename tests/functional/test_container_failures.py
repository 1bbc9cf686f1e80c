"""Every way `container add/remove/ip` can fail leaves nothing behind.

Two kinds of test:

- user mistakes and unreachable services, with the real calicoctl process
  inside a simulated host; each checks the exit code, the one-line message,
  and that the host, the container and etcd hold exactly what they held;
- failures in the middle of a workflow, injected through the workflow's
  ``progress`` observer (an exception, a Ctrl-C, etcd killed, the
  container killed), with the workflow run in this process against the
  simulated host's namespace; then a retry must succeed.
"""
import json
import subprocess
import sys

import pytest

from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
from calicoctl.errors import CalicoError, DatastoreUnavailable, ExitCode
from calicoctl.host.docker import DockerAdapter
from calicoctl.ops import container as ops
from tests.functional.clitools import dump_etcd
from tests.functional.containertools import (V4_POOL, V6_POOL, assert_nothing_left, cali_links, calicoctl,
    claims, endpoints_of, global_addresses, in_container, in_host, links, new_cali_links, ok, refused,
    route_to, workload_keys)
from tests.harness.util import REPO_ROOT

pytestmark = pytest.mark.usefixtures("root_required")

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def unchanged(client, before):
    assert dump_etcd(client) == before, "etcd changed"


# -- user mistakes and refusals (real process) --------------------------------------------

@pytest.mark.parametrize("ip, contains", [
    ("192.168.1.300", "invalid"), ("notanip", "invalid"), ("192.168.1.0/33", "invalid"),
    ("10.9.9.9", "not in any calico ipv4 pool"), ("fd99::1", "not in any calico ipv6 pool"),
])
@pytest.mark.slow
def test_bad_or_unpooled_ip(seeded, host1, make_container, ip, contains):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", c1.name, ip], seeded.env), contains=contains)
    unchanged(client, before)
    assert_nothing_left(client, host1, c1, known)


def test_ip_taken_by_another_container(seeded, host1, make_container):
    client = seeded.kv()
    c0, c1 = make_container(), make_container()
    known = cali_links(host1)
    ok(calicoctl(host1, ["container", "add", c0.name, "192.168.1.80"], seeded.env))
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.80"], seeded.env),
            contains="already assigned")
    unchanged(client, before)
    assert set(links(in_container(c1))) == {"lo"}
    assert len(new_cali_links(host1, known)) == 1          # c0's only
    # ip add of a taken address is refused the same way.
    ok(calicoctl(host1, ["container", "add", c1.name, "192.168.1.81"], seeded.env))
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", c1.name, "ip", "add", "192.168.1.80"], seeded.env),
            contains="already assigned")
    unchanged(client, before)
    assert global_addresses(in_container(c1), "eth1") == ["192.168.1.81/32"]


def test_container_not_running_unknown_or_host_networked(seeded, host1, make_container):
    client = seeded.kv()
    stopped = make_container()
    stopped.stop(timeout=0)
    hostnet = make_container(network_mode="host")
    known = cali_links(host1)
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", stopped.name, "192.168.1.82"], seeded.env),
            contains="not running")
    refused(calicoctl(host1, ["container", "add", hostnet.name, "192.168.1.82"], seeded.env),
            contains="host's network namespace")
    refused(calicoctl(host1, ["container", "add", "no-such-container", "192.168.1.82"], seeded.env),
            contains="not found")
    refused(calicoctl(host1, ["container", "remove", "no-such-container"], seeded.env),
            contains="no calico networking")
    refused(calicoctl(host1, ["container", "no-such-container", "endpoint-id", "show"], seeded.env),
            contains="no calico networking")
    unchanged(client, before)
    assert_nothing_left(client, host1, known=known)


def test_interface_name_taken_in_the_container(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    subprocess.run(in_container(c1) + "ip link add eth1 type veth peer name eth1p".split(), check=True)
    known = cali_links(host1)
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.83"], seeded.env),
            contains="already has an interface named eth1")
    unchanged(client, before)
    assert set(links(in_container(c1))) == {"lo", "eth1", "eth1p"}
    assert new_cali_links(host1, known) == []
    # Another name works.
    ok(calicoctl(host1, ["container", "add", c1.name, "192.168.1.83", "--interface=eth2"], seeded.env))


def test_bad_interface_name(seeded, host1, make_container):
    c1 = make_container()
    before = dump_etcd(seeded.kv())
    argv = ["container", "add", c1.name, "192.168.1.84", "--interface=averyveryverylongname"]
    refused(calicoctl(host1, argv, seeded.env), contains="invalid interface name")
    unchanged(seeded.kv(), before)


def test_node_not_configured(lan_etcd, host1, make_container):
    client = lan_etcd.kv()
    c1 = make_container()
    # Pools exist, but `calicoctl node` never recorded this host's addresses.
    for version, cidr in ((4, V4_POOL), (6, V6_POOL)):
        key = "/calico/v1/ipam/v%d/pool/%s" % (version, cidr.replace("/", "-"))
        client.put(key, json.dumps({"cidr": cidr}))
    known = cali_links(host1)
    before = dump_etcd(client)
    line = refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.85"], lan_etcd.env),
                   contains="calicoctl node")
    assert host1.name in line
    unchanged(client, before)
    # IPv4 only node: an IPv6 address needs --ip6.
    client.put("/calico/bgp/v1/host/%s/ip_addr_v4" % host1.name, host1.ip)
    client.put("/calico/bgp/v1/host/%s/ip_addr_v6" % host1.name, "")
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", c1.name, "fd80:24e2:f998:72d6::85"], lan_etcd.env),
            contains="--ip6")
    unchanged(client, before)
    assert_nothing_left(client, host1, c1, known)


def test_already_networked_and_ip_add_without_networking(seeded, host1, make_container):
    client = seeded.kv()
    c1, c2 = make_container(), make_container()
    ok(calicoctl(host1, ["container", "add", c1.name, "192.168.1.86"], seeded.env))
    before = dump_etcd(client)
    refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.87"], seeded.env),
            contains="already has calico networking")
    refused(calicoctl(host1, ["container", c2.name, "ip", "add", "192.168.1.87"], seeded.env),
            contains="add it first")
    refused(calicoctl(host1, ["container", c2.name, "ip", "remove", "192.168.1.86"], seeded.env),
            contains="no calico networking")
    unchanged(client, before)
    assert set(links(in_container(c2))) == {"lo"}


@pytest.mark.parametrize("argv", [
    ["container", "add", "{name}", "192.168.1.88"],
    ["container", "remove", "{name}"],
    ["container", "{name}", "ip", "add", "192.168.1.89"],
    ["container", "{name}", "ip", "remove", "192.168.1.88"],
])
def test_not_root_exits_2(seeded, host1, make_container, argv):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    before = dump_etcd(client)
    argv = [arg.format(name=c1.name) for arg in argv]
    command = AS_NOBODY + [sys.executable, "-m", "calicoctl"]
    result = host1.run(command + argv, env=dict(seeded.env, PYTHONPATH=REPO_ROOT, CALICO_HOSTNAME=None),
                       cwd=REPO_ROOT)
    refused(result, rc=ExitCode.NOT_ROOT, contains="root")
    unchanged(client, before)
    assert_nothing_left(client, host1, c1, known)


def test_etcd_unreachable_exits_3(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    before = dump_etcd(client)
    env = {"ETCD_AUTHORITY": "127.0.0.1:1"}
    refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.90"], env), rc=3, contains="etcd")
    refused(calicoctl(host1, ["container", "remove", c1.name], env), rc=3, contains="etcd")
    unchanged(client, before)
    assert_nothing_left(client, host1, c1, known)


def test_docker_unreachable_exits_3(seeded, host1, make_container):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    before = dump_etcd(client)
    env = dict(seeded.env, DOCKER_HOST="unix:///run/no-docker-here.sock")
    refused(calicoctl(host1, ["container", "add", c1.name, "192.168.1.91"], env), rc=3, contains="docker")
    unchanged(client, before)
    assert_nothing_left(client, host1, c1, known)


# -- failures in the middle (in-process, injected) ------------------------------------------

class Injected(Exception):
    pass


def fail_at(step, exc=None):
    def progress(name):
        if name == step:
            raise exc if exc is not None else Injected("injected at %s" % step)
    return progress


@pytest.fixture
def local(etcd):
    """A DatastoreClient and DockerAdapter for running workflows in this process."""
    datastore = DatastoreClient(etcdconn.connect(etcd.env))
    docker = DockerAdapter({})
    yield datastore, docker
    docker.close()


def run_add(local, host, container, ip, **kwargs):
    datastore, docker = local
    return ops.add_container(datastore, docker, host.name, container.name, ip, host_netns=host.netns_path,
                             **kwargs)


@pytest.mark.parametrize("step", ["claimed", "veth", "configured", "confirmed", "named"])
def test_add_failing_after_each_step_rolls_back_and_retry_succeeds(seeded, host1, make_container, local,
                                                                   step):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    with pytest.raises(Injected):
        run_add(local, host1, c1, "192.168.1.100", progress=fail_at(step))
    assert_nothing_left(client, host1, c1, known)
    result = run_add(local, host1, c1, "192.168.1.100")
    assert global_addresses(in_container(c1), "eth1") == ["192.168.1.100/32"]
    assert list(endpoints_of(client, host1.name, c1.id)) == [result.endpoint.endpoint_id]


def test_add_interrupted_by_ctrl_c_rolls_back(seeded, host1, make_container, local):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    with pytest.raises(KeyboardInterrupt):
        run_add(local, host1, c1, "fd80:24e2:f998:72d6::100", progress=fail_at("named", KeyboardInterrupt()))
    assert_nothing_left(client, host1, c1, known)


def test_add_with_etcd_gone_midway_leaves_no_interface_and_a_retry_succeeds(seeded, host1, make_container,
                                                                             local, etcd_server):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)
    server = etcd_server          # the session's; restarted below

    def kill_etcd(name):
        if name == "configured":
            server.kill()
    try:
        with pytest.raises(DatastoreUnavailable) as error:
            run_add(local, host1, c1, "192.168.1.101", progress=kill_etcd)
        # The kernel part was undone at once, etcd or not.
        assert new_cali_links(host1, known) == []
        assert set(links(in_container(c1))) == {"lo"}
        assert "could not release the claim" in str(error.value)
        assert error.value.exit_code == 3
    finally:
        server.start()
    # No endpoint; the claim it could not release is this container's and
    # expires by itself (TTL), or a retry adopts it.
    assert workload_keys(client) == []
    claim = client.get("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.1.101")
    assert claim.value == "%s/docker/%s" % (host1.name, c1.id) and claim.expires
    run_add(local, host1, c1, "192.168.1.101")
    assert not client.get("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.1.101").expires  # made permanent
    assert len(endpoints_of(client, host1.name, c1.id)) == 1


@pytest.mark.parametrize("step", ["claimed", "configured"])
def test_add_with_container_killed_midway(seeded, host1, make_container, local, step):
    client = seeded.kv()
    c1 = make_container()
    known = cali_links(host1)

    def kill_container(name):
        if name == step:
            c1.kill()
            c1.wait()
    with pytest.raises(CalicoError) as error:
        run_add(local, host1, c1, "192.168.1.102", progress=kill_container)
    assert "stopped" in str(error.value) or "not running" in str(error.value)
    assert_nothing_left(client, host1, known=known)


def test_remove_with_etcd_gone_midway_then_retry(seeded, host1, make_container, local, etcd_server):
    client = seeded.kv()
    datastore, docker = local
    c1 = make_container()
    known = cali_links(host1)
    run_add(local, host1, c1, "192.168.1.103")
    server = etcd_server          # the session's; restarted below

    def kill_etcd(name):
        if name == "veth":
            server.kill()
    try:
        with pytest.raises(DatastoreUnavailable):
            ops.remove_container(datastore, docker, host1.name, c1.name, host_netns=host1.netns_path,
                                 progress=kill_etcd)
    finally:
        server.start()
    assert set(links(in_container(c1))) == {"lo"}          # the interface went first
    assert workload_keys(client) != []                     # the record could not go yet
    result = ops.remove_container(datastore, docker, host1.name, c1.name, host_netns=host1.netns_path)
    assert result.released == ("192.168.1.103",)
    assert_nothing_left(client, host1, c1, known)


def test_ip_add_failing_midway_restores_everything(seeded, host1, make_container, local):
    client = seeded.kv()
    datastore, docker = local
    c1 = make_container()
    run_add(local, host1, c1, "192.168.1.104")
    before_ep = endpoints_of(client, host1.name, c1.id)
    before_claims = claims(client)
    for step, ip in (("configured", "192.168.1.105"), ("configured", "fd80:24e2:f998:72d6::105"),
                     ("claimed", "192.168.1.105")):
        with pytest.raises(Injected):
            ops.add_ip(datastore, docker, host1.name, c1.name, ip, host_netns=host1.netns_path,
                       progress=fail_at(step))
        assert endpoints_of(client, host1.name, c1.id) == before_ep
        assert claims(client) == before_claims
        assert global_addresses(in_container(c1), "eth1") == ["192.168.1.104/32"]
        assert route_to(in_host(host1), ip, 6 if ":" in ip else 4) is None
        assert route_to(in_container(c1), "default", 6) is None
    ops.add_ip(datastore, docker, host1.name, c1.name, "192.168.1.105", host_netns=host1.netns_path)
    assert global_addresses(in_container(c1), "eth1") == ["192.168.1.104/32", "192.168.1.105/32"]


@pytest.mark.parametrize("step", ["updated", "address", "kernel"])
def test_ip_remove_failing_midway_restores_everything(seeded, host1, make_container, local, step):
    client = seeded.kv()
    datastore, docker = local
    c1 = make_container()
    run_add(local, host1, c1, "192.168.1.106")
    ops.add_ip(datastore, docker, host1.name, c1.name, "192.168.1.107", host_netns=host1.netns_path)
    before_ep = endpoints_of(client, host1.name, c1.id)
    before_claims = claims(client)
    with pytest.raises(Injected):
        ops.remove_ip(datastore, docker, host1.name, c1.name, "192.168.1.107", host_netns=host1.netns_path,
                      progress=fail_at(step))
    assert endpoints_of(client, host1.name, c1.id) == before_ep
    assert claims(client) == before_claims
    assert global_addresses(in_container(c1), "eth1") == ["192.168.1.106/32", "192.168.1.107/32"]
    ops.remove_ip(datastore, docker, host1.name, c1.name, "192.168.1.107", host_netns=host1.netns_path)
    assert global_addresses(in_container(c1), "eth1") == ["192.168.1.106/32"]
    assert set(claims(client)) == {"192.168.1.106"}


def test_ip_remove_gives_back_a_leftover_claim(seeded, host1, make_container, local):
    client = seeded.kv()
    datastore, docker = local
    c1 = make_container()
    run_add(local, host1, c1, "192.168.1.108")
    owner = "%s/docker/%s" % (host1.name, c1.id)
    client.put("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.1.109", owner)
    client.put("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.1.110", "")   # someone else's
    result = ops.remove_ip(datastore, docker, host1.name, c1.name, "192.168.1.109",
                           host_netns=host1.netns_path)
    assert result.note
    assert set(claims(client)) == {"192.168.1.108", "192.168.1.110"}
    with pytest.raises(CalicoError):
        ops.remove_ip(datastore, docker, host1.name, c1.name, "192.168.1.110", host_netns=host1.netns_path)
    assert set(claims(client)) == {"192.168.1.108", "192.168.1.110"}


def test_docker_socket_permission_denied_says_how_to_fix(seeded, host1, make_container):
    # endpoint-id show needs no root; as an unprivileged user the Docker
    # socket (root:docker 0660) refuses us: exit 2 and a hint, no traceback.
    c1 = make_container()
    command = AS_NOBODY + [sys.executable, "-m", "calicoctl", "container", c1.name, "endpoint-id", "show"]
    env = dict(seeded.env, PYTHONPATH=REPO_ROOT, CALICO_HOSTNAME=None)
    result = host1.run(command, env=env, cwd=REPO_ROOT)
    line = refused(result, rc=ExitCode.NOT_ROOT, contains="permission denied on the docker socket")
    assert "docker group" in line
