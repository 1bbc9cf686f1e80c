"""Pure decisions behind rule, tag, endpoint-profile and pool edits."""
import netaddr
import pytest

from calicoctl import model
from calicoctl.errors import Conflict, NotFound, ValidationError
from calicoctl.ops import policy

A = model.Rule(action="allow", src_tag="A")
B = model.Rule(action="deny", protocol="tcp", dst_ports=(22,))
C = model.Rule(action="allow", protocol="icmp", icmp_type=8)
NEW = model.Rule(action="deny", src_net="10.0.0.0/8")


# -- positions and inserts ----------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("1", 1), ("3", 3), ("10", 10)])
def test_positions(text, expected):
    assert policy.parse_position(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "x", "1.5", "", " 1", "+1"])
def test_bad_positions(text):
    with pytest.raises(ValidationError):
        policy.parse_position(text)


@pytest.mark.parametrize("position,expected", [
    (None, (A, B, C, NEW)),
    (1, (NEW, A, B, C)),
    (2, (A, NEW, B, C)),
    (3, (A, B, NEW, C)),
    (4, (A, B, C, NEW)),
])
def test_insert_at_positions(position, expected):
    change = policy.calculate_rule_insert((A, B, C), NEW, position)
    assert change.rules == expected and change.changed
    assert change.rules[change.position - 1] == NEW


@pytest.mark.parametrize("position", [5, 6, 100])
def test_insert_out_of_range_refused(position):
    with pytest.raises(ValidationError) as error:
        policy.calculate_rule_insert((A, B, C), NEW, position, "outbound")
    assert "use 1 to 4" in str(error.value) and "3 outbound rules" in str(error.value)


def test_insert_into_empty_list():
    assert policy.calculate_rule_insert((), NEW, 1).rules == (NEW,)
    with pytest.raises(ValidationError):
        policy.calculate_rule_insert((), NEW, 2)


def test_insert_duplicate_is_left_in_place():
    change = policy.calculate_rule_insert((A, B, C), B, 1)
    assert not change.changed and change.rules == (A, B, C) and change.position == 2


# -- removes -------------------------------------------------------------------------

def test_remove_at():
    change = policy.calculate_rule_remove_at((A, B, C), 2)
    assert change.rules == (A, C) and change.rule == B
    assert policy.calculate_rule_remove_at((A, B, C), 3).rules == (A, B)


@pytest.mark.parametrize("position", [4, 10])
def test_remove_at_out_of_range_refused(position):
    with pytest.raises(ValidationError):
        policy.calculate_rule_remove_at((A, B, C), position)


def test_remove_at_from_empty_list_refused():
    with pytest.raises(NotFound):
        policy.calculate_rule_remove_at((), 1)


def test_remove_matching_first_only():
    change = policy.calculate_rule_remove_match((A, B, A), A)
    assert change.rules == (B, A) and change.position == 1


def test_remove_matching_missing_refused():
    with pytest.raises(NotFound) as error:
        policy.calculate_rule_remove_match((A, B), C, "inbound")
    assert "allow icmp type 8" in str(error.value)


# -- tags ------------------------------------------------------------------------------

def test_tags():
    assert policy.calculate_tags_add(("P",), "X") == (("P", "X"), True)
    assert policy.calculate_tags_add(("P", "X"), "X") == (("P", "X"), False)
    assert policy.calculate_tags_remove(("P", "X"), "P", "P") == ("X",)
    with pytest.raises(NotFound):
        policy.calculate_tags_remove(("P",), "X", "P")


# -- endpoint profile lists ----------------------------------------------------------------

def test_profile_names_checked():
    assert policy.check_profile_names(["A", "B"]) == ("A", "B")
    with pytest.raises(ValidationError) as error:
        policy.check_profile_names(["A", "B", "A"])
    assert "twice" in str(error.value)
    with pytest.raises(ValidationError):
        policy.check_profile_names(["A", "b/c"])


def test_append_keeps_order_and_reports_already_present():
    change = policy.calculate_profiles_append(("A", "B"), ("C", "A", "D"))
    assert change.profile_ids == ("A", "B", "C", "D")
    assert change.added == ("C", "D") and change.already == ("A",) and change.changed
    same = policy.calculate_profiles_append(("A",), ("A",))
    assert not same.changed and same.profile_ids == ("A",)


def test_remove_all_or_nothing():
    change = policy.calculate_profiles_remove(("A", "B", "C"), ("C", "A"), "ep")
    assert change.profile_ids == ("B",)
    with pytest.raises(NotFound) as error:
        policy.calculate_profiles_remove(("A", "B"), ("A", "X", "Y"), "ep")
    assert "X, Y" in str(error.value) and "ep" in str(error.value)


def test_set():
    change = policy.calculate_profiles_set(("A", "B"), ("B", "C"))
    assert change.profile_ids == ("B", "C") and change.added == ("C",) and change.removed == ("A",)
    assert not policy.calculate_profiles_set(("A", "B"), ("A", "B")).changed
    assert policy.calculate_profiles_set(("A", "B"), ("B", "A")).changed      # order matters
    emptied = policy.calculate_profiles_set(("A",), ())
    assert emptied.profile_ids == () and emptied.changed


# -- pools ---------------------------------------------------------------------------------

def pools(*cidrs):
    return [model.IPPool(c) for c in cidrs]


def test_new_pools_added():
    changes = policy.calculate_pool_changes(pools("10.0.0.0/16"), pools("10.1.0.0/16", "fd00::/64"))
    assert [c.action for c in changes] == ["add", "add"]


def test_same_cidr_updates_flags_or_does_nothing():
    existing = [model.IPPool("10.0.0.0/16", masquerade=True)]
    change, = policy.calculate_pool_changes(existing, [model.IPPool("10.0.0.0/16")])
    assert change.action == "update" and change.previous == existing[0]
    change, = policy.calculate_pool_changes(existing, [model.IPPool("10.0.0.0/16", masquerade=True)])
    assert change.action == "same"


@pytest.mark.parametrize("existing,wanted", [
    ("10.0.0.0/16", "10.0.1.0/24"),       # inside
    ("10.0.1.0/24", "10.0.0.0/16"),       # around
    ("fd00::/64", "fd00::/48"),
])
def test_overlap_with_existing_refused(existing, wanted):
    with pytest.raises(Conflict) as error:
        policy.calculate_pool_changes(pools(existing), pools(wanted))
    assert existing in str(error.value)


def test_overlap_among_given_pools_refused():
    with pytest.raises(Conflict):
        policy.calculate_pool_changes([], pools("10.0.0.0/8", "10.1.0.0/16"))
    with pytest.raises(ValidationError):
        policy.calculate_pool_changes([], pools("10.0.0.0/8", "10.0.0.0/8"))


def test_adjacent_pools_do_not_overlap():
    changes = policy.calculate_pool_changes(pools("10.0.0.0/24"), pools("10.0.1.0/24"))
    assert changes[0].action == "add"


def test_range_cidrs():
    ip = netaddr.IPAddress
    assert [str(c) for c in policy.calculate_range_cidrs(ip("10.0.0.0"), ip("10.0.0.255"))] == ["10.0.0.0/24"]
    assert [str(c) for c in policy.calculate_range_cidrs(ip("10.0.0.5"), ip("10.0.0.8"))] == \
        ["10.0.0.5/32", "10.0.0.6/31", "10.0.0.8/32"]
    assert [str(c) for c in policy.calculate_range_cidrs(ip("10.0.0.7"), ip("10.0.0.7"))] == ["10.0.0.7/32"]
    with pytest.raises(ValidationError):
        policy.calculate_range_cidrs(ip("10.0.0.9"), ip("10.0.0.8"))
    with pytest.raises(ValidationError):
        policy.calculate_range_cidrs(ip("10.0.0.1"), ip("fd00::1"))


def test_pool_flags():
    with pytest.raises(ValidationError):
        policy.check_pool_flags(model.IPPool("fd00::/64", ipip="tunl0"))
    with pytest.raises(ValidationError):
        policy.check_pool_flags(model.IPPool("10.0.0.0/8", ipip="tunl0", vxlan=True))
    assert policy.check_pool_flags(model.IPPool("fd00::/64", vxlan=True, masquerade=True)).vxlan


def test_short_list_rendering():
    assert policy.render_short_list(["a", "b"]) == "a, b"
    assert policy.render_short_list([str(i) for i in range(8)], limit=3) == "0, 1, 2 and 5 more"
