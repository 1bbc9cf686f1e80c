"""`calicoctl ipam show` against a real etcd holding the seed demonstration's
cluster (tests/functional/seedworld.py) and a few claims of other owners."""
import json

import pytest

from calicoctl.datastore import paths
from tests.functional import seedworld
from tests.functional.clitools import assert_ok, assert_refused


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    kv = any_etcd.kv()
    seedworld.write(kv)
    # The calico-ipam driver's claim and endpoint on calico-02, the original
    # calicoctl's unnamed claim, and a claim left in a pool removed since.
    kv.put(paths.claim_key("192.168.0.0/16", "192.168.0.50"), "calico-02/libnetwork/ipam")
    kv.put(paths.endpoint_key("calico-02", "libnetwork", "net-ep", "net-ep"), json.dumps({
        "state": "active", "name": "calinet-ep", "mac": "ee:ee:ee:ee:ee:50", "profile_ids": ["net1"],
        "ipv4_nets": ["192.168.0.50/32"], "ipv6_nets": []}))
    kv.put(paths.claim_key("192.168.0.0/16", "192.168.0.60"), "")
    kv.put(paths.claim_key("10.9.0.0/24", "10.9.0.7"), "calico-01/docker/" + "f" * 64)
    return any_etcd


def table_rows(text):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_each_pool_with_its_size_claims_and_free_addresses(etcd):
    assert table_rows(assert_ok(etcd.env, "ipam show")) == [
        ["IPv4 pool", "Size", "Claimed", "Free"],
        ["192.168.0.0/16", "65534", "7", "65527"],
        ["10.9.0.0/24 (removed)", "254", "1", "253"],
        ["IPv6 pool", "Size", "Claimed", "Free"],
        ["fd80:24e2:f998:72d6::/64", str(2 ** 64 - 1), "2", str(2 ** 64 - 3)]]


@pytest.mark.parametrize("ip,lines", [
    ("192.168.0.1", ["192.168.0.1 is in pool 192.168.0.0/16.",
                     "Claimed by container %s on host calico-01." % seedworld.container_id("A"),
                     "Endpoint %s of docker workload %s (workload-A) on host calico-01 has it (profiles: PROF_A_C_E)."
                     % (seedworld.endpoint_id("A"), seedworld.container_id("A"))]),
    ("fd80:24e2:f998:72d6::5", ["fd80:24e2:f998:72d6::5 is in pool fd80:24e2:f998:72d6::/64.",
                                "Claimed by container %s on host calico-02." % seedworld.container_id("E"),
                                "Endpoint %s of docker workload %s (workload-E) on host calico-02 has it "
                                "(profiles: PROF_A_C_E)." % (seedworld.endpoint_id("E"), seedworld.container_id("E"))]),
    ("192.168.0.50", ["192.168.0.50 is in pool 192.168.0.0/16.",
                      "Claimed by the calico-ipam Docker driver on host calico-02.",
                      "Endpoint net-ep of libnetwork workload net-ep on host calico-02 has it (network net1)."]),
    ("192.168.0.60", ["192.168.0.60 is in pool 192.168.0.0/16.",
                      "Claimed by an unnamed owner (the original calicoctl's claim)."]),
    ("10.9.0.7", ["10.9.0.7 is in no Calico pool.",
                  "Claimed by container %s on host calico-01." % ("f" * 64)]),
    ("172.17.8.102", ["172.17.8.102 is in no Calico pool.", "It is host calico-02's address."]),
    ("192.168.7.7", ["192.168.7.7 is in pool 192.168.0.0/16 and free."]),
])
def test_who_holds_an_address(etcd, ip, lines):
    assert assert_ok(etcd.env, ["ipam", "show", "--ip=" + ip]).splitlines() == lines


def test_who_holds_an_address_in_json(etcd):
    answer = json.loads(assert_ok(etcd.env, "ipam show --ip=192.168.0.50 -o json"))
    assert answer["free"] is False and answer["pool"] == "192.168.0.0/16"
    assert answer["claim"] == {"kind": "docker network", "owner": "calico-02/libnetwork/ipam", "host": "calico-02",
                               "orchestrator": "libnetwork", "workload": None}
    assert [(e["endpoint"], e["network"]) for e in answer["endpoints"]] == [("net-ep", "net1")]
    free = json.loads(assert_ok(etcd.env, "ipam show --ip=192.168.7.7 -o json"))
    assert (free["free"], free["claim"], free["endpoints"], free["hosts"]) == (True, None, [], [])


def test_a_bad_address_is_refused(etcd):
    assert_refused(etcd, "ipam show --ip=192.168.0", contains="Invalid IP address")
