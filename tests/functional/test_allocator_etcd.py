"""Automatic address assignment against real etcd (both datastores), and through
``calicoctl container add <C> ipv4|ipv6|<CIDR>`` on a simulated host."""
import subprocess
import sys
import threading
import time

import pytest

from calicoctl import model
from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
from calicoctl.errors import Conflict
from calicoctl.ops import allocator
from tests.functional.containertools import (calicoctl, claims, endpoints_of, in_container, ok, refused,
                                             global_addresses)
from tests.harness.util import REPO_ROOT, run_in_threads, wait_for

POOL = model.IPPool("10.50.0.0/16")


def client_for(etcd):
    return DatastoreClient(etcdconn.connect(etcd.env, timeout=10))


def test_fifty_concurrent_assignments_get_fifty_addresses(any_etcd):
    etcd = any_etcd
    client_for(etcd).write_pool(POOL)
    # A /26 has 62 addresses: random picks by 50 threads collide often.
    barrier = threading.Barrier(50)
    results = []

    def one(index):
        datastore = client_for(etcd)
        datastore.list_pools()                  # connected before the start line
        barrier.wait()
        results.append(str(allocator.assign_address(datastore, POOL, "10.50.3.0/26", "t/%d" % index)))
    assert run_in_threads(one, [(i,) for i in range(50)], 60) == []
    assert len(results) == 50 and len(set(results)) == 50
    stored = client_for(etcd).list_claims(POOL.cidr)
    assert sorted(stored) == sorted(results)
    owners = {client_for(etcd).get_claim(POOL.cidr, ip) for ip in results}
    assert owners == {"t/%d" % i for i in range(50)}


ASSIGN_SCRIPT = """
import sys, time
sys.path.insert(0, %(repo)r)
from calicoctl import model
from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
from calicoctl.ops import allocator
client = DatastoreClient(etcdconn.connect(%(env)r))
client.list_pools()
while time.time() < %(start)f:
    time.sleep(0.001)
pool = model.IPPool(%(pool)r)
print(" ".join(str(allocator.assign_address(client, pool, %(range)r, sys.argv[1])) for _ in range(3)))
"""


@pytest.mark.slow
def test_two_processes_filling_a_small_range_never_share_an_address(any_etcd):
    etcd = any_etcd
    """Like two hosts: separate processes and connections; six addresses, six requests."""
    client_for(etcd).write_pool(POOL)
    script = ASSIGN_SCRIPT % {"repo": REPO_ROOT, "env": dict(etcd.env), "start": time.time() + 2,
                              "pool": POOL.cidr, "range": "10.50.9.0/29"}
    procs = [subprocess.Popen([sys.executable, "-c", script, "host%d" % i], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    got = [ip for out, _ in outputs for ip in out.split()]
    assert sorted(got) == ["10.50.9.%d" % i for i in range(1, 7)]
    with pytest.raises(Conflict):
        allocator.assign_address(client_for(etcd), POOL, "10.50.9.0/29", "late")


@pytest.mark.slow
def test_a_leftover_claim_with_a_ttl_expires(any_etcd):
    etcd = any_etcd
    datastore = client_for(etcd)
    datastore.write_pool(POOL)
    ip = allocator.assign_address(datastore, POOL, "10.50.10.0/30", "crashed", ttl=1)
    assert datastore.get_claim(POOL.cidr, str(ip)) == "crashed"
    wait_for(lambda: datastore.get_claim(POOL.cidr, str(ip)) is None, timeout=10, interval=0.1,
             message="the claim expiring")


# -- through the CLI -------------------------------------------------------------------------

@pytest.mark.usefixtures("root_required")
@pytest.mark.parametrize("spec, version, inside", [
    ("ipv4", 4, "192.168.0.0/16"),
    ("ipv6", 6, "fd80:24e2:f998:72d6::/64"),
    ("192.168.77.0/28", 4, "192.168.77.0/28"),
])
@pytest.mark.slow
def test_container_add_assigns_a_free_address(seeded, host1, make_container, spec, version, inside):
    import netaddr
    client = seeded.kv()
    container = make_container()
    out = ok(calicoctl(host1, ["container", "add", container.name, spec], seeded.env))
    container.reload()
    (endpoint,) = endpoints_of(client, host1.name, container.id).values()
    net = endpoint["ipv%d_nets" % version][0]
    ip = net.split("/")[0]
    assert netaddr.IPAddress(ip) in netaddr.IPNetwork(inside)
    assert ip in out
    assert claims(client) == {ip: "%s/docker/%s" % (host1.name, container.id)}
    assert net in global_addresses(in_container(container), "eth1")


@pytest.mark.usefixtures("root_required")
def test_container_add_from_a_cidr_outside_the_pools_is_refused(seeded, host1, make_container):
    container = make_container()
    line = refused(calicoctl(host1, ["container", "add", container.name, "172.30.0.0/24"], seeded.env))
    assert "192.168.0.0/16" in line
    assert claims(seeded.kv()) == {}


@pytest.mark.usefixtures("root_required")
def test_container_add_from_a_full_range_is_refused_and_leaves_nothing(seeded, host1, make_container):
    client = seeded.kv()
    for i in (1, 2):
        client.put("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.78.%d" % i, "other")
    container = make_container()
    refused(calicoctl(host1, ["container", "add", container.name, "192.168.78.0/30"], seeded.env),
            contains="No free address left")
    assert set(claims(client)) == {"192.168.78.1", "192.168.78.2"}
