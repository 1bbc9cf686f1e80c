"""Pure decisions behind the configuration commands.

The workflows (``ops.profile``, ``ops.endpoint``, ``ops.pool``) read the
current state from etcd, ask these functions what the new state should be,
and write it back (inside a compare-and-swap where the value is shared). Nothing here does I/O, so every
refusal is decided before anything is written, and each decision can be unit
tested on plain values.

Functions return the new value together with what happened, so the caller
can say so ("added", "already there"); refusals raise CalicoError subclasses
whose message is the line the user sees.
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl import validate
from calicoctl.errors import Conflict, NotFound, ValidationError


# -- rule lists -------------------------------------------------------------------

def parse_position(text):
    """``--at`` value: a 1-based position (1 = first rule)."""
    if not isinstance(text, str) or not validate.DIGITS_RE.match(text) or int(text) < 1:
        raise ValidationError("Invalid position %r: expected a whole number from 1 (the first rule)." % (text,))
    return int(text)


@dataclass(frozen=True)
class RuleChange:
    """The outcome of editing one rule list."""
    rules: tuple            # the new list (unchanged when nothing was done)
    position: int           # 1-based position of the rule added / removed / found
    changed: bool
    rule: object = None     # the rule concerned (a model.StoredRule, like the list's items)


def calculate_rule_insert(rules, rule, position=None, direction="inbound"):
    """Insert ``rule`` at 1-based ``position`` (default: at the end).

    An identical rule already in the list is left where it is (changed=False).
    Positions run from 1 to len+1; anything else is refused.
    """
    rules = tuple(rules)
    if rule in rules:
        return RuleChange(rules, rules.index(rule) + 1, False, rule)
    if position is None:
        position = len(rules) + 1
    if not 1 <= position <= len(rules) + 1:
        raise ValidationError(
            "Position %d is out of range: there are %d %s rules, so use 1 to %d."
            % (position, len(rules), direction, len(rules) + 1))
    index = position - 1
    return RuleChange(rules[:index] + (rule,) + rules[index:], position, True, rule)


def calculate_rule_remove_at(rules, position, direction="inbound"):
    """Remove the rule at 1-based ``position``."""
    rules = tuple(rules)
    if not rules:
        raise NotFound("There are no %s rules to remove." % direction)
    if not 1 <= position <= len(rules):
        raise ValidationError("Position %d is out of range: there are %d %s rules, so use 1 to %d."
                              % (position, len(rules), direction, len(rules)))
    index = position - 1
    return RuleChange(rules[:index] + rules[index + 1:], position, True, rules[index])


def calculate_rule_remove_match(rules, rule, direction="inbound"):
    """Remove the first rule equal to ``rule``."""
    rules = tuple(rules)
    if rule not in rules:
        raise NotFound("No %s rule '%s' to remove." % (direction, rule.describe()))
    index = rules.index(rule)
    return RuleChange(rules[:index] + rules[index + 1:], index + 1, True, rule)


# -- tags -------------------------------------------------------------------------

def calculate_tags_add(tags, tag):
    """-> (new tags, changed). Order is kept; a new tag goes last."""
    tags = tuple(tags)
    if tag in tags:
        return tags, False
    return tags + (tag,), True


def calculate_tags_remove(tags, tag, profile_name):
    tags = tuple(tags)
    if tag not in tags:
        raise NotFound("Tag %s is not on profile %s." % (tag, profile_name))
    return tuple(t for t in tags if t != tag)


# -- endpoint profile lists ------------------------------------------------------

def check_profile_names(names):
    """Validate a list of profile names given on the command line; refuse repeats."""
    seen = []
    for name in names:
        validate.parse_name(name, "profile name")
        if name in seen:
            raise ValidationError("Profile %s is given twice." % name)
        seen.append(name)
    return tuple(seen)


@dataclass(frozen=True)
class ProfileListChange:
    profile_ids: tuple      # the endpoint's new list, in evaluation order
    added: tuple = ()
    removed: tuple = ()
    already: tuple = ()     # asked for, but already in the wanted state
    changed: bool = False   # the list differs (a reorder counts: order decides)


def calculate_profiles_append(current, names):
    """Append the names not yet on the endpoint, keeping order."""
    current = tuple(current)
    added = tuple(name for name in names if name not in current)
    already = tuple(name for name in names if name in current)
    return ProfileListChange(current + added, added=added, already=already, changed=bool(added))


def calculate_profiles_remove(current, names, endpoint_id):
    """Remove names from the list; every one must be on it (else nothing changes)."""
    current = tuple(current)
    missing = [name for name in names if name not in current]
    if missing:
        raise NotFound("Profile%s %s %s not on endpoint %s; nothing removed."
                       % ("s" if len(missing) > 1 else "", ", ".join(missing),
                          "are" if len(missing) > 1 else "is", endpoint_id))
    return ProfileListChange(tuple(p for p in current if p not in names), removed=tuple(names),
                             changed=bool(names))


def calculate_profiles_set(current, names):
    current, names = tuple(current), tuple(names)
    if current == names:
        return ProfileListChange(current, already=names)
    return ProfileListChange(names, added=tuple(n for n in names if n not in current),
                             removed=tuple(p for p in current if p not in names), changed=True)


# -- IP pools ----------------------------------------------------------------------

@dataclass(frozen=True)
class PoolChange:
    pool: object                 # model.IPPool wanted
    previous: Optional[object]   # the stored pool with the same CIDR, if any

    @property
    def action(self):
        if self.previous is None:
            return "add"
        return "same" if self.previous == self.pool else "update"


def calculate_pool_changes(existing, wanted):
    """Decide what adding ``wanted`` pools means given the ``existing`` ones.

    Same CIDR as a stored pool: an update of its options (or nothing).
    Overlapping a different stored pool, or another wanted pool: refused.
    """
    import netaddr
    stored = {pool.cidr: pool for pool in existing}
    changes = []
    seen = []
    for pool in wanted:
        net = netaddr.IPNetwork(pool.cidr)
        for other in seen:
            if other == net:
                raise ValidationError("Pool %s is given twice." % pool.cidr)
            if _overlaps(other, net):
                raise Conflict("Pools %s and %s overlap; give only one of them." % (other, net))
        seen.append(net)
        if pool.cidr not in stored:
            for other in existing:
                if other.version == pool.version and _overlaps(netaddr.IPNetwork(other.cidr), net):
                    raise Conflict("Pool %s overlaps the existing pool %s; nothing added."
                                   % (pool.cidr, other.cidr))
        changes.append(PoolChange(pool, stored.get(pool.cidr)))
    return changes


def _overlaps(a, b):
    return a.version == b.version and a.first <= b.last and b.first <= a.last


def calculate_range_cidrs(start, end):
    """The fewest CIDRs covering start..end (netaddr.IPAddress values)."""
    import netaddr
    if start.version != end.version:
        raise ValidationError("%s and %s are not the same IP version." % (start, end))
    if start > end:
        raise ValidationError("The range start %s is above its end %s." % (start, end))
    return [cidr.cidr for cidr in netaddr.iprange_to_cidrs(start, end)]


def render_short_list(items, limit=5):
    """Items joined with commas, cut after ``limit``: 'a, b, c and 7 more' (pure)."""
    items = list(items)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += " and %d more" % (len(items) - limit)
    return shown


def check_pool_flags(pool):
    """Options that make no sense for the pool's IP version or together."""
    if pool.ipip and pool.version == 6:
        raise ValidationError("IP-in-IP is not supported for IPv6 pools (%s)." % pool.cidr)
    if pool.ipip and pool.vxlan:
        raise ValidationError("Choose one encapsulation for %s: --ipip or --vxlan, not both." % pool.cidr)
    return pool


