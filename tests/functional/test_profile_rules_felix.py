"""Profile rules both ways against a real etcd, case by case from
tests/rule_cases.py (derived from Felix's rule validation):

- through the CLI into etcd: what ``rule update`` and ``rule add`` store,
  and what they refuse (one line, exit 1, etcd byte-identical);
- written straight into etcd by "another tool", then shown (``rule show``,
  ``rule json``), edited (``rule add``/``rule remove``) and replaced
  (``rule update``). The agent's side is in test_dataplane_agent.py.
"""
import json

import pytest

from calicoctl.rulemodel import Rule
from tests.functional.clitools import assert_ok, assert_refused, dump_etcd, run_cli
from tests.rule_cases import ACCEPTED, CASES, REJECTED, SAME, Refused, case_ids, stored_rules

RULES = "/calico/v1/policy/profile/%s/rules"
TAGS = "/calico/v1/policy/profile/%s/tags"
REPLACEMENT = {"id": "P", "inbound_rules": [{"action": "allow", "protocol": "tcp", "dst_ports": [22]}],
               "outbound_rules": [{"action": "allow"}]}


def stored(etcd, name="P"):
    return json.loads(etcd.kv().get(RULES % name).value)


def write_as_another_tool(etcd, rules_value, name="P"):
    """A profile as another tool writes it: tags plus the given rules value."""
    client = etcd.kv()
    client.put(TAGS % name, json.dumps([name]))
    client.put(RULES % name, rules_value if isinstance(rules_value, str) else json.dumps(rules_value))


# -- through the CLI into etcd -------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_rule_update_stores_calicoctls_form_or_refuses(etcd, case):
    assert_ok(etcd.env, "profile add P")
    text = json.dumps({"id": "P", "inbound_rules": [case.rule], "outbound_rules": []})
    if isinstance(case.written, Refused):
        line = assert_refused(etcd, "profile P rule update", stdin=text, contains=case.written.words)
        assert line.startswith("inbound rule 1: ")
        return
    assert_ok(etcd.env, "profile P rule update", stdin=text, contains="Updated the rules of profile P")
    expected = case.rule if case.written == SAME else case.written
    assert stored(etcd) == {"id": "P", "inbound_rules": [expected], "outbound_rules": []}


@pytest.mark.parametrize("words,expected", [
    ("tcp to ports 8080:8080", {"action": "allow", "protocol": "tcp", "dst_ports": [8080]}),
    ("udp from ports 53-53", {"action": "allow", "protocol": "udp", "src_ports": [53]}),
    ("tcp to ports 22,8000:8000,9000-9100", {"action": "allow", "protocol": "tcp",
                                              "dst_ports": [22, 8000, "9000:9100"]}),
    ("icmp type 3 code 255", {"action": "allow", "protocol": "icmp", "icmp_type": 3, "icmp_code": 255}),
])
def test_rule_add_stores_one_port_ranges_as_the_port(etcd, words, expected):
    assert_ok(etcd.env, "profile add P")
    assert_ok(etcd.env, "profile P rule add inbound allow " + words, contains="Added inbound rule 2")
    assert stored(etcd)["inbound_rules"][1] == expected


@pytest.mark.parametrize("argv,contains", [
    ("profile P rule add inbound allow icmp type 255", "ICMP type"),
    ("profile P rule add inbound allow icmp type 3 code 256", "0 to 255"),
    ("profile P rule add inbound allow tcp to ports 81:80", "Invalid ports"),
    ("profile P rule add inbound allow icmpv6 to cidr 10.0.0.0/8", "use icmp for IPv4"),
])
def test_rule_add_refuses_what_calicoctl_does_not_write(etcd, argv, contains):
    assert_ok(etcd.env, "profile add P")
    assert_refused(etcd, argv, contains=contains)


# -- written by another tool, then shown, edited and replaced ---------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_rule_show_and_json_read_what_another_tool_stored(etcd, case):
    data = stored_rules("P", case.rule)
    write_as_another_tool(etcd, data)
    lines = assert_ok(etcd.env, "profile P rule show").splitlines()
    if case.accepted:
        assert lines == ["Inbound rules:", "   1 " + Rule.from_dict(case.rule).describe(),
                         "Outbound rules:", "   1 allow"]
        assert "INVALID" not in lines[1]
    else:
        assert len(lines) == 5
        assert lines[0].startswith("Felix rejects these rules (inbound rule 1: ")
        assert case.rejects in lines[0] and "drops all traffic" in lines[0]
        assert lines[2].startswith("   1 INVALID %s: " % json.dumps(case.rule)) and case.rejects in lines[2]
        assert lines[1::2] == ["Inbound rules:", "Outbound rules:"] and lines[4] == "   1 allow"
    assert json.loads(assert_ok(etcd.env, "profile P rule json")) == data


@pytest.mark.parametrize("case", ACCEPTED, ids=case_ids(ACCEPTED))
def test_rule_add_and_remove_keep_other_tools_rules_as_stored(etcd, case):
    write_as_another_tool(etcd, stored_rules("P", case.rule))
    assert_ok(etcd.env, "profile P rule add inbound deny udp", contains="Added inbound rule 2")
    assert stored(etcd) == {"id": "P", "inbound_rules": [case.rule, {"action": "deny", "protocol": "udp"}],
                            "outbound_rules": [{"action": "allow"}]}
    assert_ok(etcd.env, "profile P rule remove inbound deny udp", contains="Removed inbound rule 2")
    assert stored(etcd) == stored_rules("P", case.rule)


@pytest.mark.parametrize("case", REJECTED, ids=case_ids(REJECTED))
def test_rules_felix_rejects_block_rule_add_but_can_be_removed(etcd, case):
    write_as_another_tool(etcd, stored_rules("P", case.rule))
    line = assert_refused(etcd, "profile P rule add outbound deny udp", contains="Felix rejects")
    assert "inbound rule 1" in line and "rule update" in line
    assert_ok(etcd.env, "profile P rule remove inbound --at=1", contains="Removed inbound rule 1")
    assert stored(etcd) == {"id": "P", "inbound_rules": [], "outbound_rules": [{"action": "allow"}]}
    assert "Felix rejects" not in assert_ok(etcd.env, "profile P rule show")


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_rule_update_replaces_whatever_is_stored(etcd, case):
    write_as_another_tool(etcd, stored_rules("P", case.rule))
    assert_ok(etcd.env, "profile P rule update", stdin=json.dumps(REPLACEMENT), contains="Updated the rules")
    assert stored(etcd) == REPLACEMENT


@pytest.mark.parametrize("value,problem", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"id": "P", "inbound_rules": {"action": "allow"}, "outbound_rules": []}', "inbound_rules is not a list"),
])
def test_values_that_are_not_rules_are_shown_refused_for_edits_and_replaced(etcd, value, problem):
    write_as_another_tool(etcd, value)
    out = assert_ok(etcd.env, "profile P rule show")
    assert out.startswith("Felix rejects these rules (%s" % problem)
    assert "(unreadable: %s" % problem in out
    if value.startswith("{not"):
        assert assert_ok(etcd.env, "profile P rule json") == value + "\n\n"
    assert_refused(etcd, "profile P rule add inbound allow", contains="rule update")
    assert_refused(etcd, "profile P rule remove inbound --at=1", contains="rule update")
    assert assert_ok(etcd.env, "profile P tag show").splitlines() == ["P"]
    assert_ok(etcd.env, "profile P rule update", stdin=json.dumps(REPLACEMENT))
    assert stored(etcd) == REPLACEMENT


def test_removing_one_of_several_bad_rules_says_the_rest_still_block(etcd):
    data = {"id": "P", "inbound_rules": [{"action": "nope"}, {"protocol": "tcp", "dst_ports": ["80:80"]}],
            "outbound_rules": []}
    write_as_another_tool(etcd, data)
    out = assert_ok(etcd.env, "profile P rule remove inbound --at=1")
    assert out.splitlines()[0] == 'Removed inbound rule 1 from profile P: INVALID {"action": "nope"}: ' \
                                  'action "nope" is neither allow nor deny'
    assert "Felix rejects these rules (inbound rule 1: dst_ports" in out.splitlines()[1]


def test_an_equivalent_stored_rule_counts_as_already_there(etcd):
    # No "action" and a null field: the same rule to Felix as calicoctl's form.
    write_as_another_tool(etcd, {"id": "P", "inbound_rules": [{"src_tag": "P", "dst_net": None}],
                                 "outbound_rules": []})
    before = dump_etcd(etcd.kv())
    assert "already has this inbound rule (at 1)" in assert_ok(etcd.env, "profile P rule add inbound allow from tag P")
    assert dump_etcd(etcd.kv()) == before
    assert_ok(etcd.env, "profile P rule remove inbound allow from tag P")
    assert stored(etcd)["inbound_rules"] == []


def test_rule_update_refuses_icmp_with_the_other_ip_version_in_one_line(etcd):
    assert_ok(etcd.env, "profile add P")
    for protocol, version in (("icmp", 6), ("icmpv6", 4)):
        text = json.dumps({"id": "P", "inbound_rules": [], "outbound_rules": [
            {"action": "allow", "protocol": protocol, "ip_version": version}]})
        result = run_cli(etcd.env, "profile P rule update", stdin=text)
        assert result.rc == 1 and result.out == ""
        assert result.err_lines == ["outbound rule 1: Invalid rule: protocol %s cannot be used with "
                                    "ip_version %d." % (protocol, version)]
        assert_refused(etcd, "profile P rule update", stdin=text)
