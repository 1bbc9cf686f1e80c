"""`calicoctl profile ...` against a real etcd."""
import json
import subprocess
import sys

import pytest

from tests.functional.clitools import (assert_ok, assert_refused, calico_values, dump_etcd, process_env,
                                       run_cli, run_cli_process)
from calicoctl.datastore import paths
from tests.harness.util import REPO_ROOT

RULES = "/calico/v1/policy/profile/%s/rules"
TAGS = "/calico/v1/policy/profile/%s/tags"


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def rules_of(etcd, name):
    return json.loads(etcd.kv().get(RULES % name).value)


def tags_of(etcd, name):
    return json.loads(etcd.kv().get(TAGS % name).value)


def add_endpoint(etcd, endpoint_id, profile_ids, host="host1", workload="wl1"):
    key = "/calico/v1/host/%s/workload/docker/%s/endpoint/%s" % (host, workload, endpoint_id)
    etcd.kv().put(key, json.dumps({
        "state": "active", "name": "cali" + endpoint_id, "mac": "ee:ee:ee:ee:ee:01",
        "profile_ids": profile_ids, "ipv4_nets": ["192.168.0.1/32"], "ipv6_nets": [],
        "ipv4_gateway": None, "ipv6_gateway": None}))


# -- add / show / remove ---------------------------------------------------------------

def test_add_writes_reference_layout(etcd):
    out = assert_ok(etcd.env, "profile add WEB")
    assert out.strip() == "Created profile WEB."
    assert tags_of(etcd, "WEB") == ["WEB"]
    assert rules_of(etcd, "WEB") == {"id": "WEB", "inbound_rules": [{"action": "allow", "src_tag": "WEB"}],
                                     "outbound_rules": [{"action": "allow"}]}


def test_add_existing_says_so_and_changes_nothing(etcd):
    assert_ok(etcd.env, "profile add WEB")
    assert_ok(etcd.env, "profile WEB tag add EXTRA")
    before = dump_etcd(etcd.kv())
    out = assert_ok(etcd.env, "profile add WEB")
    assert "already exists" in out
    assert dump_etcd(etcd.kv()) == before


def test_show_lists_sorted_names(etcd):
    for name in ("b", "C", "a"):
        assert_ok(etcd.env, ["profile", "add", name])
    out = assert_ok(etcd.env, "profile show")
    names = [line.strip("| ").strip() for line in out.splitlines() if line.startswith("| ")]
    assert names == ["Name", "C", "a", "b"]


def test_show_detailed_lists_member_endpoints(etcd):
    assert_ok(etcd.env, "profile add WEB")
    assert_ok(etcd.env, "profile add DB")
    add_endpoint(etcd, "ep1", ["WEB"])
    add_endpoint(etcd, "ep2", ["WEB", "DB"], host="host2")
    out = assert_ok(etcd.env, "profile show --detailed")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ")]
    assert rows[0] == ["Name", "Host", "Orchestrator ID", "Workload ID", "Endpoint ID", "State"]
    assert ["DB", "host2", "docker", "wl1", "ep2", "active"] in rows
    assert ["WEB", "host1", "docker", "wl1", "ep1", "active"] in rows
    assert ["WEB", "host2", "docker", "wl1", "ep2", "active"] in rows
    assert len(rows) == 4


def test_remove(etcd):
    assert_ok(etcd.env, "profile add WEB")
    out = assert_ok(etcd.env, "profile remove WEB")
    assert out.strip() == "Removed profile WEB."
    assert not any("/profile/WEB" in key for key in calico_values(etcd.kv()))
    assert "WEB" not in assert_ok(etcd.env, "profile show")


def test_remove_in_use_refused_unless_no_check(etcd):
    assert_ok(etcd.env, "profile add WEB")
    add_endpoint(etcd, "ep1", ["WEB"])
    add_endpoint(etcd, "ep2", ["WEB"], workload="wl2")
    line = assert_refused(etcd, "profile remove WEB", contains="in use")
    assert "ep1" in line and "ep2" in line and "--no-check" in line
    assert_ok(etcd.env, "profile remove WEB --no-check")
    assert "WEB" not in assert_ok(etcd.env, "profile show")


def test_remove_only_checks_the_named_profile(etcd):
    assert_ok(etcd.env, "profile add WEB")
    assert_ok(etcd.env, "profile add WEBX")
    add_endpoint(etcd, "ep1", ["WEBX"])
    assert_ok(etcd.env, "profile remove WEB")


# -- tags ---------------------------------------------------------------------------------

def test_tags(etcd):
    assert_ok(etcd.env, "profile add WEB")
    assert assert_ok(etcd.env, "profile WEB tag add FRONT").strip() == "Added tag FRONT to profile WEB."
    assert "already has tag FRONT" in assert_ok(etcd.env, "profile WEB tag add FRONT")
    assert tags_of(etcd, "WEB") == ["WEB", "FRONT"]
    assert assert_ok(etcd.env, "profile WEB tag show").splitlines() == ["WEB", "FRONT"]
    assert_ok(etcd.env, "profile WEB tag remove WEB", contains="Removed tag WEB")
    assert tags_of(etcd, "WEB") == ["FRONT"]


# -- rules ----------------------------------------------------------------------------------

def test_rule_add_append_and_positions(etcd):
    assert_ok(etcd.env, "profile add P")
    base = "profile P rule add inbound "
    assert_ok(etcd.env, base + "allow tcp to ports 80", contains="inbound rule 2")
    assert_ok(etcd.env, base + "--at=1 deny tcp from cidr 10.0.0.0/8", contains="inbound rule 1")
    assert_ok(etcd.env, base + "--at=4 allow udp to ports 53", contains="inbound rule 4")
    assert_ok(etcd.env, base + "--at=2 allow icmp type 8 code 0", contains="inbound rule 2")
    assert rules_of(etcd, "P")["inbound_rules"] == [
        {"action": "deny", "protocol": "tcp", "src_net": "10.0.0.0/8"},
        {"action": "allow", "protocol": "icmp", "icmp_type": 8, "icmp_code": 0},
        {"action": "allow", "src_tag": "P"},
        {"action": "allow", "protocol": "tcp", "dst_ports": [80]},
        {"action": "allow", "protocol": "udp", "dst_ports": [53]},
    ]
    assert rules_of(etcd, "P")["outbound_rules"] == [{"action": "allow"}]


def test_rule_add_full_grammar_round_trips_through_show(etcd):
    assert_ok(etcd.env, "profile add P")
    assert_ok(etcd.env, "profile add Q")
    rules = [
        "deny tcp from ports 22,1000:2000 tag Q cidr 10.1.0.0/16 to ports 443 tag P cidr 10.2.0.0/16",
        "allow udp from ports 53",
        "allow icmp type 3 code 4 from tag Q to cidr 192.168.0.0/16",
        "allow icmpv6 type 128 to cidr fd00::/8",
        "deny from cidr 172.16.0.0/12 to tag Q",
        "allow to tag P",
    ]
    for rule in rules:
        assert_ok(etcd.env, "profile P rule add outbound " + rule)
    out = assert_ok(etcd.env, "profile P rule show")
    assert out.splitlines() == (["Inbound rules:", "   1 allow from tag P", "Outbound rules:", "   1 allow"]
                                + ["   %d %s" % (i, r) for i, r in enumerate(rules, 2)])
    # Each shown rule can be removed by repeating its text.
    for rule in rules:
        assert_ok(etcd.env, "profile P rule remove outbound " + rule, contains="Removed outbound rule 2")
    assert rules_of(etcd, "P")["outbound_rules"] == [{"action": "allow"}]


def test_rule_add_duplicate_says_so_and_writes_nothing(etcd):
    assert_ok(etcd.env, "profile add P")
    before = dump_etcd(etcd.kv())
    out = assert_ok(etcd.env, "profile P rule add inbound --at=1 allow from tag P")
    assert "already has this inbound rule (at 1)" in out
    assert dump_etcd(etcd.kv()) == before


def test_rule_remove_by_position(etcd):
    assert_ok(etcd.env, "profile add P")
    assert_ok(etcd.env, "profile P rule add inbound deny tcp")
    assert_ok(etcd.env, "profile P rule remove inbound --at=1", contains="allow from tag P")
    assert rules_of(etcd, "P")["inbound_rules"] == [{"action": "deny", "protocol": "tcp"}]


def test_rule_json_and_update(etcd):
    assert_ok(etcd.env, "profile add P")
    out = assert_ok(etcd.env, "profile P rule json")
    assert out.endswith("}\n\n")
    data = json.loads(out)
    assert data == rules_of(etcd, "P")
    data["outbound_rules"] = [{"action": "deny", "protocol": "tcp", "dst_ports": [25, "6000:6010"]},
                              {"action": "allow", "protocol": "sctp"}, {"action": "allow", "ip_version": 6}]
    out = assert_ok(etcd.env, "profile P rule update", stdin=json.dumps(data))
    assert "Updated the rules of profile P" in out
    assert rules_of(etcd, "P") == data
    assert "already as given" in assert_ok(etcd.env, "profile P rule update", stdin=json.dumps(data))


# -- every mistake: one line, non-zero, etcd untouched ---------------------------------------

@pytest.fixture
def two_profiles(etcd):
    assert_ok(etcd.env, "profile add P")
    assert_ok(etcd.env, "profile add Q")
    assert_ok(etcd.env, "profile P rule add inbound deny tcp to ports 22")
    return etcd


@pytest.mark.parametrize("argv,contains", [
    ("profile add bad/name", "Invalid profile name"),
    ("profile add bad!name", "Invalid profile name"),
    ("profile add ..", "Invalid profile name"),         # etcd would read it as the parent dir
    ("profile remove .. --no-check", "Invalid profile name"),
    ("profile P tag add ..", "Invalid tag"),
    ("profile remove NOPE", "not found"),
    ("profile remove bad/name", "Invalid profile name"),
    ("profile NOPE tag show", "not found"),
    ("profile NOPE tag add T", "not found"),
    ("profile P tag add bad!tag", "Invalid tag"),
    ("profile P tag remove NOTATAG", "not on profile P"),
    ("profile NOPE rule show", "not found"),
    ("profile NOPE rule json", "not found"),
    ("profile NOPE rule add inbound allow", "not found"),
    ("profile P rule add inbound --at=0 allow", "Invalid position"),
    ("profile P rule add inbound --at=x allow", "Invalid position"),
    ("profile P rule add inbound --at=4 allow tcp", "out of range"),
    ("profile P rule add outbound --at=3 allow tcp", "out of range"),
    ("profile P rule add inbound allow tcp to ports 65536", "Invalid ports"),
    ("profile P rule add inbound allow tcp to ports 90:80", "Invalid ports"),
    ("profile P rule add inbound allow udp from ports a,b", "Invalid ports"),
    ("profile P rule add inbound allow icmp type 255", "ICMP type"),
    ("profile P rule add inbound allow icmp type 8 code 300", "ICMP code"),
    ("profile P rule add inbound allow from tag bad!tag", "Invalid tag"),
    ("profile P rule add inbound allow from cidr 10.0.0.0/40", "Invalid CIDR"),
    ("profile P rule add inbound allow from cidr 10.0.0.0/8 to cidr fd00::/8", "IPv4 and an IPv6"),
    ("profile P rule add inbound allow icmp to cidr fd00::/8", "icmpv6"),
    ("profile P rule remove inbound --at=3", "out of range"),
    ("profile P rule remove outbound --at=2", "out of range"),
    ("profile P rule remove inbound allow udp", "No inbound rule"),
    ("profile P rule remove outbound deny tcp to ports 22", "No outbound rule"),
    ("profile bad/name rule show", "Invalid profile name"),
])
def test_mistakes_leave_etcd_unchanged(two_profiles, argv, contains):
    assert_refused(two_profiles, argv, contains=contains)


@pytest.mark.parametrize("stdin,contains", [
    ("", "No rules JSON"),
    ("{not json", "Invalid JSON"),
    ("[]", "expected a JSON object"),
    ('{"id": "Q", "inbound_rules": [], "outbound_rules": []}', "does not match"),
    ('{"inbound_rules": [], "outbound_rules": []}', "does not match"),
    ('{"id": "P", "inbound_rules": [{"action": "allow"}, {"action": "maybe"}], "outbound_rules": []}',
     "inbound rule 2"),
    ('{"id": "P", "inbound_rules": [], "outbound_rules": [{"protocol": "icmp", "src_ports": [1]}]}',
     "outbound rule 1"),
    ('{"id": "P", "inbound_rules": [], "outbound_rules": [{"protocol": "tcp", "dst_ports": [70000]}]}',
     "Invalid ports"),
    ('{"id": "P", "inbound_rules": [{"src_net": "10.0.0.0/8", "dst_net": "fd00::/8"}], "outbound_rules": []}',
     "inbound rule 1"),
    ('{"id": "P", "inbound_rules": [{"frobnicate": 1}], "outbound_rules": []}', "unknown field"),
    ('{"id": "P", "inbound_rules": {}, "outbound_rules": []}', "must be a list"),
])
def test_rule_update_mistakes_leave_etcd_unchanged(two_profiles, stdin, contains):
    assert_refused(two_profiles, "profile P rule update", stdin=stdin, contains=contains)


def test_rule_update_of_missing_profile_refused(etcd):
    assert_refused(etcd, "profile NOPE rule update", contains="not found",
                   stdin='{"id": "NOPE", "inbound_rules": [], "outbound_rules": []}')


# -- the real process ---------------------------------------------------------------------------

def test_real_process_add_show_and_error(etcd):
    result = run_cli_process(etcd.env, "profile add PROC")
    assert result.rc == 0 and result.out.strip() == "Created profile PROC." and result.err == ""
    result = run_cli_process(etcd.env, "profile PROC rule add inbound --at=9 allow")
    assert result.rc == 1 and result.out == ""
    assert result.err.strip().splitlines() == ["Position 9 is out of range: there are 1 inbound rules, "
                                               "so use 1 to 2."]
    result = run_cli_process(etcd.env, "profile PROC rule update",
                             stdin='{"id": "PROC", "inbound_rules": [], "outbound_rules": []}')
    assert result.rc == 0, result.err
    assert rules_of(etcd, "PROC") == {"id": "PROC", "inbound_rules": [], "outbound_rules": []}


def test_real_process_usage_error(etcd):
    result = run_cli_process(etcd.env, "profile add")
    assert result.rc == 1 and result.err.startswith("Usage:") and "Traceback" not in result.err


IMPORT_CHECK = r"""
import io, json, sys
from calicoctl.cli import main
env = json.loads(sys.argv[1])
out = io.StringIO()
for argv in (["profile", "add", "IMPORTS"], ["profile", "IMPORTS", "rule", "add", "inbound", "allow", "tcp"],
             ["profile", "show"], ["endpoint", "show"], ["pool", "show"], ["bgp", "peer", "show"]):
    rc = main(argv, env=env, stdout=out, stderr=sys.stderr)
    assert rc == 0, (argv, rc)
heavy = ("docker", "pyroute2", "requests", "urllib3", "etcd", "etcd3gw")
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)) or "none")
print(",".join(sorted(m for m in sys.modules if m.startswith("calicoctl.datastore.kv_"))))
"""


def test_policy_commands_import_neither_docker_nor_pyroute2(etcd):
    """...nor any HTTP or etcd library: only our own key-value store of the
    datastore in use (its API holds /calico, so the API check never asks the
    other one)."""
    etcd.kv().put(paths.READY, "true")
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK, json.dumps(etcd.env)], capture_output=True,
                          text=True, env=process_env({}), cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["none", "calicoctl.datastore.kv_v%s" % etcd.datastore[-1]]
    assert "IMPORTS" in run_cli(etcd.env, "profile show").out
