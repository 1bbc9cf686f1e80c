"""Profile rules (calicoctl.rulemodel): Felix's verdict when reading what
another tool stored, the iptables the agent renders for it, and the
stricter form calicoctl writes. The table is tests/rule_cases.py."""
import json

import pytest

from calicoctl import rulemodel
from calicoctl.agent.policy.iptables import rules as render
from calicoctl.agent.policy.iptables.chaintree import TagKind
from calicoctl.errors import ValidationError
from calicoctl.rulemodel import Rule, Rules, StoredRule, StoredRules
from tests.rule_cases import ACCEPTED, CASES, SAME, Refused, case_ids, stored_rules


def set_resolver(tag, version, side):
    return render.TagPlacement(TagKind.SET, render.tag_set_name(tag, version))


def read_case(case):
    return StoredRules.read("P", json.dumps(stored_rules("P", case.rule)))


def update_json(*inbound):
    return json.dumps({"id": "P", "inbound_rules": list(inbound), "outbound_rules": []})


# -- the table: reading, enforcing, writing -----------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_felix_verdict_when_reading(case):
    stored = read_case(case)
    assert stored.accepted is case.accepted, stored.problems
    if case.accepted:
        assert stored.rules.inbound_rules == (Rule.from_dict(case.rule),)
        assert stored.inbound[0].problem is None
    else:
        assert stored.rules is None
        assert len(stored.problems) == 1
        assert stored.problems[0].startswith("inbound rule 1: ")
        assert case.rejects in stored.problems[0]
        assert stored.inbound[0].rule is None and stored.inbound[0].data == case.rule


@pytest.mark.parametrize("case", ACCEPTED, ids=case_ids(ACCEPTED))
def test_accepted_rules_render_as_felix_means_them(case):
    rules_obj = read_case(case).rules
    for version, expected in ((4, case.v4), (6, case.v6)):
        chains = render.render_profile_chains("P", rules_obj, version, set_resolver)
        assert chains["felix-p-P-i"] == tuple(expected), version
        assert chains["felix-p-P-o"] == ("-g felix-ALLOW",)


def test_rejected_rules_make_the_profile_drop_everything():
    chains = render.render_profile_chains("P", None, 4, set_resolver)
    assert chains["felix-p-P-i"] == ('-m comment --comment "No valid rules for profile P" -j DROP',)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_what_rule_update_writes(case):
    if isinstance(case.written, Refused):
        with pytest.raises(ValidationError) as error:
            Rules.from_user_json(update_json(case.rule), "P")
        assert str(error.value).startswith("inbound rule 1: ")
        assert case.written.words in str(error.value)
        return
    written = Rules.from_user_json(update_json(case.rule), "P").to_dict()["inbound_rules"]
    assert written == [case.rule if case.written == SAME else case.written]
    # What calicoctl writes, Felix accepts, and writing it again changes nothing.
    again = StoredRules.read("P", json.dumps(stored_rules("P", written[0])))
    assert again.accepted
    assert Rules.from_user_json(update_json(written[0]), "P").to_dict()["inbound_rules"] == written


def test_the_table_covers_every_rule_field():
    covered = {key for case in CASES if isinstance(case.rule, dict) for key in case.rule}
    assert set(rulemodel.RULE_KEYS) <= covered


# -- stored rules: lossless, with a verdict -------------------------------------------------

def test_an_edit_keeps_every_other_rule_and_field_as_stored():
    data = {"inbound_rules": [{"protocol": "6", "dst_ports": [80], "src_net": None}],
            "outbound_rules": [{"action": "allow"}], "id": "other-id", "comment": "made by a tool"}
    stored = StoredRules.read("P", json.dumps(data))
    assert stored.accepted
    entries = stored.entries("outbound") + (StoredRule.of(Rule(action="deny")),)
    written = json.loads(stored.replaced("outbound", entries))
    assert written == dict(data, outbound_rules=[{"action": "allow"}, {"action": "deny"}])
    assert list(written) == list(data)


def test_rules_without_a_key_get_the_default_layout_on_first_edit():
    stored = StoredRules.read("P", None)
    assert stored.accepted and stored.rules == Rules(id="P")
    written = json.loads(stored.replaced("inbound", (StoredRule.of(Rule(src_tag="P")),)))
    assert written == {"id": "P", "inbound_rules": [{"action": "allow", "src_tag": "P"}], "outbound_rules": []}


def test_missing_lists_are_empty_and_the_id_is_not_checked():
    # Felix names the profile by its etcd key, not by "id".
    stored = StoredRules.read("P", '{"inbound_rules": [{"action": "deny"}]}')
    assert stored.accepted
    assert stored.rules == Rules(id="P", inbound_rules=(Rule(action="deny"),))


@pytest.mark.parametrize("text,problem,unreadable", [
    ("{not json", "not JSON", ("inbound", "outbound")),
    ("", "not JSON", ("inbound", "outbound")),
    ("[]", "not a JSON object", ("inbound", "outbound")),
    ('{"inbound_rules": {}, "outbound_rules": []}', "inbound_rules is not a list", ("inbound",)),
    ('{"inbound_rules": [], "outbound_rules": null}', "outbound_rules is not a list", ("outbound",)),
])
def test_values_felix_cannot_read_as_rules(text, problem, unreadable):
    stored = StoredRules.read("P", text)
    assert not stored.accepted and stored.rules is None
    assert problem in stored.problems[0]
    assert stored.unreadable == unreadable
    with pytest.raises(ValidationError) as error:
        stored.replaced(unreadable[0], ())
    assert "rule update" in str(error.value)


def test_every_rejected_rule_is_named():
    text = json.dumps({"inbound_rules": [{"action": "allow"}, {"action": "nope"}],
                       "outbound_rules": [{"protocol": "tcp", "dst_ports": ["80:80"]}]})
    stored = StoredRules.read("P", text)
    assert [p.split(":")[0] for p in stored.problems] == ["inbound rule 2", "outbound rule 1"]
    assert stored.inbound[0].rule == Rule(action="allow")


def test_stored_rules_are_equal_by_meaning_when_felix_accepts_them():
    assert StoredRule.read({"src_tag": "P"}) == StoredRule.of(Rule(src_tag="P"))
    assert StoredRule.read({"action": "allow", "src_tag": "P", "protocol": None}) == StoredRule.read({"src_tag": "P"})
    assert StoredRule.read({"protocol": "6"}) != StoredRule.read({"protocol": 6})
    assert StoredRule.read({"action": "x"}) == StoredRule.read({"action": "x"})
    assert StoredRule.read({"action": "x"}) != StoredRule.read({"action": "y"})
    assert StoredRule.read({"action": "x"}) != StoredRule.of(Rule())


def test_rule_json_prints_what_is_stored():
    text = '{"outbound_rules": [], "inbound_rules": [{"protocol": 6.0}], "id": "P"}'
    assert json.loads(StoredRules.read("P", text).pretty_text()) == json.loads(text)
    assert StoredRules.read("P", text).pretty_text().startswith('{\n  "outbound_rules"')
    assert StoredRules.read("P", "{oops").pretty_text() == "{oops"
    assert json.loads(StoredRules.read("P", None).pretty_text()) == Rules(id="P").to_dict()


# -- describing ------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,text", [
    ({"action": "allow", "src_tag": "WEB"}, "allow from tag WEB"),
    ({"action": "allow", "protocol": "tcp", "dst_ports": [80, 443]}, "allow tcp to ports 80,443"),
    ({"action": "allow", "protocol": "icmp", "icmp_type": 8}, "allow icmp type 8"),
    ({"action": "deny", "protocol": "icmp", "icmp_type": 3, "icmp_code": 1, "dst_net": "10.0.0.0/8"},
     "deny icmp type 3 code 1 to cidr 10.0.0.0/8"),
    ({"action": "deny", "protocol": "udp", "src_ports": ["1:2"], "src_tag": "A", "src_net": "1.0.0.0/8",
      "dst_ports": [53], "dst_tag": "B", "dst_net": "2.0.0.0/8"},
     "deny udp from ports 1:2 tag A cidr 1.0.0.0/8 to ports 53 tag B cidr 2.0.0.0/8"),
    ({"action": "allow"}, "allow"),
    ({}, "allow"),
    ({"protocol": 6, "dst_ports": [80]}, "allow protocol 6 to ports 80"),
    ({"protocol": "6"}, "allow protocol 6"),
    ({"protocol": "tcp", "src_ports": []}, "allow tcp from ports [] (any port)"),
    ({"src_net": "10.1.2.3/16", "ip_version": 4}, "allow from cidr 10.1.2.3/16 (IPv4 only)"),
    ({"protocol": "icmp", "icmp_type": 255},
     "allow icmp type 255 (the agent drops all traffic at this rule: the kernel cannot match ICMP type 255)"),
    ({"action": "deny", "protocol": "tcp", "icmp_type": 8},
     "deny tcp type 8 (the agent drops all traffic at this rule: an ICMP type needs protocol icmp or icmpv6)"),
])
def test_rule_describe(rule, text):
    assert Rule.from_dict(rule).describe() == text


def test_rejected_rules_are_described_with_their_json_and_reason():
    entry = StoredRule.read({"protocol": "tcp", "dst_ports": ["80:80"]})
    assert entry.describe() == ('INVALID {"protocol": "tcp", "dst_ports": ["80:80"]}: '
                                'dst_ports: port range "80:80" must run upwards within 0-65535')


# -- what calicoctl writes ---------------------------------------------------------------------

def test_new_profile_default_rules():
    assert Rules.default_for("P").to_dict() == {
        "id": "P", "inbound_rules": [{"action": "allow", "src_tag": "P"}], "outbound_rules": [{"action": "allow"}]}


def test_update_json_round_trips_every_field():
    data = {
        "id": "WEB",
        "inbound_rules": [
            {"action": "deny", "protocol": "tcp", "src_tag": "DB", "src_net": "10.0.0.0/8",
             "src_ports": [22, "1000:2000"], "dst_ports": [5432]},
            {"action": "allow", "protocol": "icmp", "icmp_type": 8, "icmp_code": 0, "src_tag": "WEB"},
            {"action": "allow", "protocol": "icmpv6", "ip_version": 6, "icmp_type": 128},
            {"action": "allow", "protocol": 47},
        ],
        "outbound_rules": [{"action": "allow", "dst_net": "fd00::/8"}],
    }
    rules = Rules.from_user_json(json.dumps(data), "WEB")
    assert rules.to_dict() == data
    assert StoredRules.read("WEB", rules.to_json()).rules == rules


@pytest.mark.parametrize("text,words", [
    ("{not json", "Invalid JSON"),
    ("[]", "expected a JSON object"),
    ('{"id": "Q", "inbound_rules": []}', "does not match"),
    ('{"inbound_rules": []}', "does not match"),
    ('{"id": "P", "extra": 1}', "unknown field"),
    ('{"id": "P", "inbound_rules": {}}', "must be a list"),
    ('{"id": "P", "outbound_rules": [{"action": "allow"}, {"action": "nope"}]}', "outbound rule 2"),
])
def test_update_json_refused(text, words):
    with pytest.raises(ValidationError) as error:
        Rules.from_user_json(text, "P")
    assert words in str(error.value)


@pytest.mark.parametrize("rule,words", [
    (Rule(src_net="10.0.0.0/8", dst_net="fd00::/8"), "mixes an IPv4 and an IPv6"),
    (Rule(protocol="icmp", dst_net="fd00::/8"), "use icmpv6"),
    (Rule(protocol="icmpv6", src_net="10.0.0.0/8"), "use icmp"),
    (Rule(protocol=58, ip_version=4), "IPv6 only"),
    (Rule(protocol="tcp", dst_ports=()), "empty"),
    (Rule(protocol="icmp", icmp_type=255), "255"),
    (Rule(protocol="udp", icmp_type=3), "only valid with protocol icmp"),
])
def test_rules_calicoctl_does_not_write(rule, words):
    with pytest.raises(ValidationError) as error:
        rule.check_writable()
    assert words in str(error.value)


def test_rules_calicoctl_writes():
    for rule in (Rule(src_net="fd00::/8", dst_net="fd01::/16", protocol="icmpv6"),
                 Rule(protocol=1, icmp_type=8, icmp_code=255), Rule(protocol=33, dst_ports=(1, "2:3"))):
        assert rule.check_writable() is rule


@pytest.mark.parametrize("value,number", [("tcp", 6), ("icmpv6", 58), (6, 6), ("6", 6), ("255", 255), (1, 1),
                                          ("06", None), (0, None), ("", None), (True, None), (6.0, None),
                                          ("gre", None), (None, None), ([6], None)])
def test_protocol_numbers(value, number):
    assert rulemodel.protocol_number(value) == number
