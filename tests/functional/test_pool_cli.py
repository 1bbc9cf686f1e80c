"""`calicoctl pool ...` against a real etcd."""
import json

import pytest

from calicoctl.datastore import paths
from tests.functional.clitools import assert_ok, assert_refused, calico_values, dump_etcd, run_cli_process


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def pool_values(etcd):
    return {key: json.loads(value) for key, value in calico_values(etcd.kv()).items()
            if "/ipam/" in key and "/pool/" in key}


def table_rows(text):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_add_writes_reference_json_per_version(etcd):
    out = assert_ok(etcd.env, "pool add 10.0.1.7/24 fed0:8001::/64 --nat-outgoing")
    assert out.strip() == "Added pools 10.0.1.0/24 (nat-outgoing), fed0:8001::/64 (nat-outgoing)."
    assert pool_values(etcd) == {
        "/calico/v1/ipam/v4/pool/10.0.1.0-24": {"cidr": "10.0.1.0/24", "masquerade": True},
        "/calico/v1/ipam/v6/pool/fed0:8001::-64": {"cidr": "fed0:8001::/64", "masquerade": True},
    }


def test_ipv6_first_does_not_misfile_ipv4(etcd):
    assert_ok(etcd.env, "pool add fd00::/64 10.2.0.0/16")
    assert set(pool_values(etcd)) == {"/calico/v1/ipam/v6/pool/fd00::-64", "/calico/v1/ipam/v4/pool/10.2.0.0-16"}


def test_flags(etcd):
    assert_ok(etcd.env, "pool add 10.0.0.0/16 --ipip --nat-outgoing")
    assert pool_values(etcd)["/calico/v1/ipam/v4/pool/10.0.0.0-16"] == {
        "cidr": "10.0.0.0/16", "ipip": "tunl0", "masquerade": True}
    assert_ok(etcd.env, "pool add 10.1.0.0/16 --vxlan")
    assert pool_values(etcd)["/calico/v1/ipam/v4/pool/10.1.0.0-16"] == {"cidr": "10.1.0.0/16", "vxlan": True}


def test_adding_again_updates_flags_or_says_nothing_to_do(etcd):
    assert_ok(etcd.env, "pool add 10.0.0.0/16 --nat-outgoing")
    before = dump_etcd(etcd.kv())
    out = assert_ok(etcd.env, "pool add 10.0.0.0/16 --nat-outgoing")
    assert "already configured" in out and "Nothing to do" in out
    assert dump_etcd(etcd.kv()) == before
    out = assert_ok(etcd.env, "pool add 10.0.0.0/16 --ipip")
    assert out.strip() == "Updated pool 10.0.0.0/16 (ipip)."
    assert pool_values(etcd)["/calico/v1/ipam/v4/pool/10.0.0.0-16"] == {"cidr": "10.0.0.0/16", "ipip": "tunl0"}
    assert_ok(etcd.env, "pool add 10.0.0.0/16")
    assert pool_values(etcd)["/calico/v1/ipam/v4/pool/10.0.0.0-16"] == {"cidr": "10.0.0.0/16"}


def test_show(etcd):
    assert_ok(etcd.env, "pool add 10.0.1.0/24 --ipip --nat-outgoing")
    assert_ok(etcd.env, "pool add 9.0.0.0/8 fed0:8001::/64")
    rows = table_rows(assert_ok(etcd.env, "pool show"))
    assert rows == [["IPv4 CIDR", "Options"], ["9.0.0.0/8", ""], ["10.0.1.0/24", "ipip,nat-outgoing"],
                    ["IPv6 CIDR", "Options"], ["fed0:8001::/64", ""]]
    assert table_rows(assert_ok(etcd.env, "pool show --ipv4")) == rows[:3]
    assert table_rows(assert_ok(etcd.env, "pool show --ipv6")) == rows[3:]


def test_reference_pool_crud(etcd):
    """The reference's test_pool_crud, step by step."""
    assert_ok(etcd.env, "pool add 10.0.1.0/24")
    out = assert_ok(etcd.env, "pool show")
    assert "10.0.1.0/24" in out and "fed0:8001::/64" not in out
    assert_ok(etcd.env, "pool add fed0:8001::/64")
    out = assert_ok(etcd.env, "pool show")
    assert "10.0.1.0/24" in out and "fed0:8001::/64" in out
    assert_ok(etcd.env, "pool remove 10.0.1.0/24")
    assert_ok(etcd.env, "pool remove fed0:8001::/64")
    out = assert_ok(etcd.env, "pool show")
    assert "10.0.1.0/24" not in out and "fed0:8001::/64" not in out
    assert pool_values(etcd) == {}


def test_range_add(etcd):
    out = assert_ok(etcd.env, "pool range add 10.1.0.5 10.1.0.20 --nat-outgoing")
    assert out.startswith("Added pools 10.1.0.5/32 (nat-outgoing), 10.1.0.6/31 (nat-outgoing)")
    cidrs = sorted(v["cidr"] for v in pool_values(etcd).values())
    assert cidrs == sorted(["10.1.0.5/32", "10.1.0.6/31", "10.1.0.8/29", "10.1.0.16/30", "10.1.0.20/32"])
    assert_ok(etcd.env, "pool range add fd00::0 fd00::ff")
    assert "/calico/v1/ipam/v6/pool/fd00::-120" in pool_values(etcd)
    # The same range again is an update of the same pools, not a conflict.
    assert "already configured" in assert_ok(etcd.env, "pool range add 10.1.0.5 10.1.0.20 --nat-outgoing")


def test_remove_releases_nothing_else(etcd):
    assert_ok(etcd.env, "pool add 10.0.0.0/16 10.1.0.0/16")
    client = etcd.kv()
    client.put(paths.claim_key("10.1.0.0/16", "10.1.0.9"), "")
    assert assert_ok(etcd.env, "pool remove 10.0.0.0/16").strip() == "Removed pool 10.0.0.0/16."
    assert set(pool_values(etcd)) == {"/calico/v1/ipam/v4/pool/10.1.0.0-16"}
    assert paths.claim_key("10.1.0.0/16", "10.1.0.9") in calico_values(client)


def test_remove_refused_while_ips_claimed_names_them(etcd):
    assert_ok(etcd.env, "pool add 10.0.0.0/16 10.1.0.0/16")
    client = etcd.kv()
    for ip in ("10.0.0.3", "10.0.0.1"):
        client.put(paths.claim_key("10.0.0.0/16", ip), "")
    line = assert_refused(etcd, "pool remove 10.1.0.0/16 10.0.0.0/16", contains="still has addresses in use")
    assert "10.0.0.1, 10.0.0.3" in line and "10.0.0.0/16" in line
    # Once released, the pool goes (and its empty claims directory with it).
    for ip in ("10.0.0.3", "10.0.0.1"):
        client.delete(paths.claim_key("10.0.0.0/16", ip))
    assert_ok(etcd.env, "pool remove 10.0.0.0/16 10.1.0.0/16")
    keys = dump_etcd(client)[1]
    assert paths.claims_dir("10.0.0.0/16") not in keys
    assert not any("/pool/" in key for key in keys)


@pytest.fixture
def with_pools(etcd):
    assert_ok(etcd.env, "pool add 10.0.0.0/16 fd00::/64")
    return etcd


@pytest.mark.parametrize("argv,contains", [
    ("pool add 10.0.0.0/33", "Invalid CIDR"),
    ("pool add 10.5.0.0/16 nonsense", "Invalid CIDR"),      # nothing of the valid one written either
    ("pool add 10.0.1.0/24", "overlaps the existing pool 10.0.0.0/16"),
    ("pool add 10.0.0.0/8", "overlaps the existing pool 10.0.0.0/16"),
    ("pool add 10.9.0.0/16 fd00::/48", "overlaps the existing pool fd00::/64"),
    ("pool add 10.7.0.0/16 10.7.1.0/24", "overlap"),
    ("pool add 10.7.0.0/16 10.7.0.0/16", "given twice"),
    ("pool add fd01::/64 --ipip", "IPv6"),
    ("pool add 10.8.0.0/16 fd01::/64 --ipip", "IPv6"),
    ("pool add 10.8.0.0/16 --ipip --vxlan", "not both"),
    ("pool remove 10.9.0.0/16", "not a configured pool"),
    ("pool remove 10.0.0.0/16 10.9.0.0/16", "not a configured pool"),
    ("pool remove 10.0.0.0/24", "not a configured pool"),
    ("pool remove bad", "Invalid CIDR"),
    ("pool range add 10.9.0.1 10.9.0.0", "above its end"),
    ("pool range add 10.9.0.1 fd09::1", "same IP version"),
    ("pool range add 10.9.0.x 10.9.0.9", "range start"),
    ("pool range add 10.9.0.1 10.9.0", "range end"),
    ("pool range add 10.0.255.250 10.1.0.5", "overlaps the existing pool 10.0.0.0/16"),
    ("pool range add 9.255.255.0 10.0.0.0", "overlaps the existing pool 10.0.0.0/16"),
])
def test_mistakes_leave_etcd_unchanged(with_pools, argv, contains):
    assert_refused(with_pools, argv, contains=contains)


def test_real_process_pool_add_and_show(etcd):
    result = run_cli_process(etcd.env, "pool add 192.168.0.0/16")
    assert result.rc == 0 and result.out.strip() == "Added pool 192.168.0.0/16."
    result = run_cli_process(etcd.env, "pool add 192.168.1.0/24")
    assert result.rc == 1 and len(result.err.strip().splitlines()) == 1 and "overlaps" in result.err
    assert "192.168.0.0/16" in run_cli_process(etcd.env, "pool show --ipv4").out
