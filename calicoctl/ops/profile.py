"""Profiles, their tags and their rules (``calicoctl profile``).

Each workflow takes the datastore and already-parsed values, and returns
what it did; the decisions (what the new tag list or rule list is, what is
refused) are the pure functions of ``calicoctl.ops.policy``. Edits are
compare-and-swap updates: the decision is made again from whatever another
writer left, and the result is the decision made from the value the write
started from (``Update.old``). The decisions are pure, so making one again
from that value gives exactly the one that was stored.
"""
from dataclasses import dataclass

from calicoctl import model
from calicoctl.errors import Conflict, NotFound, ValidationError
from calicoctl.ops import policy


@dataclass(frozen=True)
class ProfileMembers:
    """A profile and (when asked for) the endpoints that use it, in listing order."""
    name: str
    endpoints: tuple = ()


@dataclass(frozen=True)
class ProfileChange:
    profile: str
    changed: bool           # False: it was already as asked


@dataclass(frozen=True)
class TagChange:
    profile: str
    tag: str
    changed: bool


@dataclass(frozen=True)
class RuleEdit:
    """One rule added to or removed from a profile's list for one direction.

    :ivar position: 1-based position of the rule added, found already there, or removed.
    :ivar rule: the rule concerned (a model.StoredRule).
    :ivar stored: the profile's rules as stored now, with Felix's verdict.
    """
    profile: str
    direction: str
    position: int
    rule: object
    changed: bool
    stored: model.StoredRules


@dataclass(frozen=True)
class RulesReplacement:
    profile: str
    rules: model.Rules      # the rules now stored
    changed: bool


# -- profiles ---------------------------------------------------------------------

def list_profiles(datastore, with_endpoints=False):
    """Every profile by name, each with the endpoints using it when ``with_endpoints``."""
    names = datastore.list_profile_names()
    if not with_endpoints:
        return [ProfileMembers(name) for name in names]
    members = {name: [] for name in names}
    for endpoint in datastore.list_endpoints():
        for profile_id in endpoint.profile_ids:
            if profile_id in members:
                members[profile_id].append(endpoint)
    return [ProfileMembers(name, tuple(members[name])) for name in names]


def add_profile(datastore, name):
    """Create profile ``name`` with the default tag and rules (changed=False if it exists)."""
    return ProfileChange(name, changed=datastore.create_profile(model.Profile.new(name)))


def remove_profile(datastore, name, check_in_use=True):
    """Delete a profile; refused (Conflict) while endpoints use it, unless not ``check_in_use``."""
    if not datastore.profile_exists(name):
        raise NotFound("Profile %s not found." % name)
    if check_in_use:
        users = [ep.endpoint_id for ep in datastore.list_endpoints() if name in ep.profile_ids]
        if users:
            raise Conflict("Profile %s is in use by endpoint%s %s; remove it from them first, or use --no-check."
                           % (name, "s" if len(users) > 1 else "", policy.render_short_list(users)))
    if not datastore.remove_profile(name):
        raise NotFound("Profile %s not found." % name)
    return ProfileChange(name, changed=True)


# -- tags ---------------------------------------------------------------------------

def read_tags(datastore, name):
    """The profile's tags, in their stored order (NotFound if it is absent)."""
    return datastore.get_profile_tags(name)


def add_tag(datastore, name, tag):
    update = datastore.update_profile_tags(name, lambda tags: policy.calculate_tags_add(tags, tag)[0])
    return TagChange(name, tag, changed=update.changed)


def remove_tag(datastore, name, tag):
    """NotFound (nothing written) when the profile does not have ``tag``."""
    datastore.update_profile_tags(name, lambda tags: policy.calculate_tags_remove(tags, tag, name))
    return TagChange(name, tag, changed=True)


# -- rules ----------------------------------------------------------------------------

def read_rules(datastore, name):
    """The profile's rules as stored (model.StoredRules, with Felix's verdict)."""
    return datastore.get_profile_rules(name)


def add_rule(datastore, name, direction, rule, position=None):
    """Insert ``rule`` (a model.Rule) at 1-based ``position`` (default: last).

    Refused while Felix rejects the profile's rules: they must be repaired first.
    """
    entry = model.StoredRule.of(rule)
    return _edit_rules(datastore, name, direction, refuse_rejected=True,
                       decide=lambda entries: policy.calculate_rule_insert(entries, entry, position, direction))


def remove_rule_at(datastore, name, direction, position):
    return _edit_rules(datastore, name, direction,
                       decide=lambda entries: policy.calculate_rule_remove_at(entries, position, direction))


def remove_rule_matching(datastore, name, direction, rule):
    """Remove the first rule that means the same as ``rule`` (a model.Rule)."""
    entry = model.StoredRule.of(rule)
    return _edit_rules(datastore, name, direction,
                       decide=lambda entries: policy.calculate_rule_remove_match(entries, entry, direction))


def _edit_rules(datastore, name, direction, decide, refuse_rejected=False):
    """CAS-edit one direction's rule list, leaving every other stored field
    as it was; ``decide(tuple of StoredRule) -> policy.RuleChange``."""
    def change_of(stored):
        stored.check_editable(direction)
        if refuse_rejected and not stored.accepted:
            raise ValidationError("Felix rejects the rules of profile %s (%s); fix them with 'rule remove --at' "
                                  "or 'rule update' first." % (name, "; ".join(stored.problems)))
        return decide(stored.entries(direction))

    def compute(stored):
        change = change_of(stored)
        return stored.replaced(direction, change.rules) if change.changed else stored.text
    update = datastore.update_profile_rules(name, compute)
    change = change_of(update.old)
    return RuleEdit(name, direction, change.position, change.rule, change.changed, update.new)


def replace_rules(datastore, name, rules):
    """Store ``rules`` (model.Rules, already checked) in place of whatever is
    stored, even rules Felix rejects."""
    update = datastore.update_profile_rules(
        name, lambda stored: rules.to_json() if stored.rules != rules else stored.text)
    return RulesReplacement(name, rules, changed=update.changed)
