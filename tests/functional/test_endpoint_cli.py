"""`calicoctl endpoint ...` against a real etcd, including 20 concurrent processes."""
import json
import subprocess

import pytest

from tests.functional.clitools import (assert_ok, assert_refused, cli_command, dump_etcd, process_env,
                                       run_cli_process)
from tests.harness.util import REPO_ROOT

EP_KEY = "/calico/v1/host/%s/workload/%s/%s/endpoint/%s"


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def write_endpoint(etcd, endpoint_id, profile_ids=(), host="host1", orchestrator="docker", workload="wl1",
                   nets=("192.168.0.1/32",), nets6=()):
    key = EP_KEY % (host, orchestrator, workload, endpoint_id)
    etcd.kv().put(key, json.dumps({
        "state": "active", "name": "cali" + endpoint_id[:11], "mac": "ee:ee:ee:ee:ee:01",
        "profile_ids": list(profile_ids), "ipv4_nets": list(nets), "ipv6_nets": list(nets6),
        "ipv4_gateway": "172.17.8.101", "ipv6_gateway": None}))
    return key


def profiles_on(etcd, key):
    return json.loads(etcd.kv().get(key).value)["profile_ids"]


def table_rows(text):
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


@pytest.fixture
def seeded(etcd):
    """Profiles A, B, C; endpoints ep1 (host1, in A) and ep2 (host2, none) and a shared ID 'dup'."""
    for name in ("A", "B", "C"):
        assert_ok(etcd.env, ["profile", "add", name])
    etcd.ep1 = write_endpoint(etcd, "ep1", ["A"])
    etcd.ep2 = write_endpoint(etcd, "ep2", [], host="host2", workload="wl9", nets=("192.168.0.2/32",),
                              nets6=("fd00::2/128",))
    etcd.dup1 = write_endpoint(etcd, "dup", [], host="host1", workload="wl2")
    etcd.dup2 = write_endpoint(etcd, "dup", [], host="host2", workload="wl3")
    return etcd


# -- show ------------------------------------------------------------------------------------

def test_show_summary(seeded):
    out = assert_ok(seeded.env, "endpoint show")
    assert table_rows(out) == [["Hostname", "Orchestrator ID", "Number of Workloads", "Number of Endpoints"],
                               ["host1", "docker", "2", "2"], ["host2", "docker", "2", "2"]]
    assert out.endswith("\n\n")


def test_show_detailed_and_filters(seeded):
    rows = table_rows(assert_ok(seeded.env, "endpoint show --detailed"))
    assert rows[0] == ["Hostname", "Orchestrator ID", "Workload ID", "Endpoint ID", "Addresses", "MAC",
                       "Profiles", "State"]
    assert ["host1", "docker", "wl1", "ep1", "192.168.0.1/32", "ee:ee:ee:ee:ee:01", "A", "active"] in rows
    # Several addresses: one per line inside the row.
    assert ["host2", "docker", "wl9", "ep2", "192.168.0.2/32", "ee:ee:ee:ee:ee:01", "", "active"] in rows
    assert ["", "", "", "", "fd00::2/128", "", "", ""] in rows
    rows = table_rows(assert_ok(seeded.env, "endpoint show --detailed --host=host2"))
    assert sorted(row[3] for row in rows[1:] if row[3]) == ["dup", "ep2"]
    rows = table_rows(assert_ok(seeded.env, "endpoint show --detailed --endpoint=dup"))
    assert sorted(row[0] for row in rows[1:]) == ["host1", "host2"]
    rows = table_rows(assert_ok(seeded.env, "endpoint show --detailed --host=host1 --orchestrator=docker "
                                            "--workload=wl2"))
    assert [row[3] for row in rows[1:]] == ["dup"]
    assert table_rows(assert_ok(seeded.env, "endpoint show --host=nohost")) == [
        ["Hostname", "Orchestrator ID", "Number of Workloads", "Number of Endpoints"]]


def test_profile_show_keeps_evaluation_order(seeded):
    assert_ok(seeded.env, "endpoint ep1 profile set C A B")
    rows = table_rows(assert_ok(seeded.env, "endpoint ep1 profile show"))
    assert rows == [["Name"], ["C"], ["A"], ["B"]]
    assert "has no profiles" in assert_ok(seeded.env, "endpoint ep2 profile show")


# -- append / remove / set ---------------------------------------------------------------------

def test_append_keeps_order(seeded):
    out = assert_ok(seeded.env, "endpoint ep1 profile append C B")
    assert out.strip() == "Appended profiles C, B to endpoint ep1."
    assert profiles_on(seeded, seeded.ep1) == ["A", "C", "B"]


def test_append_already_present_says_so(seeded):
    before = dump_etcd(seeded.kv())
    out = assert_ok(seeded.env, "endpoint ep1 profile append A")
    assert "already has profile A" in out
    assert dump_etcd(seeded.kv()) == before
    out = assert_ok(seeded.env, "endpoint ep1 profile append A B")
    assert "Appended profile B" in out and "A already there" in out
    assert profiles_on(seeded, seeded.ep1) == ["A", "B"]


def test_remove(seeded):
    assert_ok(seeded.env, "endpoint ep1 profile append B C")
    assert_ok(seeded.env, "endpoint ep1 profile remove A C", contains="Removed profiles A, C from endpoint ep1")
    assert profiles_on(seeded, seeded.ep1) == ["B"]


def test_set_replaces_and_may_empty(seeded):
    assert_ok(seeded.env, "endpoint ep2 profile set B A", contains="Set the profiles of endpoint ep2 to B, A")
    assert profiles_on(seeded, seeded.ep2) == ["B", "A"]
    assert "already has exactly" in assert_ok(seeded.env, "endpoint ep2 profile set B A")
    assert_ok(seeded.env, "endpoint ep2 profile set A B")
    assert profiles_on(seeded, seeded.ep2) == ["A", "B"]
    assert_ok(seeded.env, "endpoint ep2 profile set", contains="no profiles")
    assert profiles_on(seeded, seeded.ep2) == []


def test_filters_pick_one_of_duplicate_ids(seeded):
    assert_ok(seeded.env, "endpoint dup profile append --host=host2 B")
    assert profiles_on(seeded, seeded.dup2) == ["B"]
    assert profiles_on(seeded, seeded.dup1) == []
    assert_ok(seeded.env, "endpoint dup profile set --workload=wl2 C")
    assert profiles_on(seeded, seeded.dup1) == ["C"]


def test_update_keeps_the_other_fields(seeded):
    before = json.loads(seeded.kv().get(seeded.ep2).value)
    assert_ok(seeded.env, "endpoint ep2 profile append A")
    after = json.loads(seeded.kv().get(seeded.ep2).value)
    assert after == dict(before, profile_ids=["A"])


@pytest.mark.parametrize("argv,contains", [
    ("endpoint nope profile append A", "Endpoint nope not found"),
    ("endpoint nope profile show", "Endpoint nope not found"),
    ("endpoint ep1 profile append --host=host2 B", "not found"),
    ("endpoint ep1 profile append NOPE", "Profile NOPE not found"),
    ("endpoint ep1 profile append B NOPE", "Profile NOPE not found"),
    ("endpoint ep1 profile set B NOPE", "Profile NOPE not found"),
    ("endpoint ep1 profile append B B", "given twice"),
    ("endpoint ep1 profile append bad/name", "Invalid profile name"),
    ("endpoint ep1 profile append", "at least one profile"),
    ("endpoint ep1 profile remove", "at least one profile"),
    ("endpoint ep1 profile remove B", "not on endpoint ep1"),
    ("endpoint ep1 profile remove A B", "not on endpoint ep1"),
    ("endpoint ep1 profile remove NOPE", "Profile NOPE not found"),
    ("endpoint dup profile append A", "More than one endpoint"),
    ("endpoint dup profile set A", "More than one endpoint"),
    ("endpoint dup profile show", "More than one endpoint"),
    ("endpoint bad!id profile show", "Invalid endpoint ID"),
    ("endpoint .. profile set", "Invalid endpoint ID"),
    ("endpoint show --host=bad/host", "Invalid hostname"),
    ("endpoint show --endpoint=bad/ep", "Invalid endpoint ID"),
])
def test_mistakes_leave_etcd_unchanged(seeded, argv, contains):
    assert_refused(seeded, argv, contains=contains)


# -- concurrency --------------------------------------------------------------------------------

def test_twenty_concurrent_appends_all_land(etcd):
    """Twenty real calicoctl processes append different profiles to one endpoint at once."""
    names = ["CONC%02d" % i for i in range(20)]
    client = etcd.kv()
    for name in names:
        client.put("/calico/v1/policy/profile/%s/tags" % name, json.dumps([name]))
        client.put("/calico/v1/policy/profile/%s/rules" % name,
                   json.dumps({"id": name, "inbound_rules": [], "outbound_rules": []}))
    key = write_endpoint(etcd, "busy", [])
    env = process_env(etcd.env)
    procs = [subprocess.Popen(cli_command() + ["endpoint", "busy", "profile", "append", name], env=env,
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in names]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    assert [rc for rc, _, _ in results] == [0] * 20, [r for r in results if r[0] != 0]
    assert all(out.startswith("Appended profile CONC") for _, out, _ in results)
    landed = profiles_on(etcd, key)
    assert sorted(landed) == names
    assert len(landed) == 20


def test_real_process_endpoint_show(seeded):
    result = run_cli_process(seeded.env, "endpoint ep1 profile show")
    assert result.rc == 0 and table_rows(result.out) == [["Name"], ["A"]]
