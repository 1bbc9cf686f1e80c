"""Pure: the ``inet calico`` table the policy wants, kept incrementally.

``TablePlanner`` reads a ``state.PolicyIndex`` and keeps the *desired* table
(``Table``: chains, base-chain hooks, sets and their elements) together
with what changed since the dataplane last took it (``dirty_chains``,
``dirty_sets``). It renders only what a change touches (``apply_changes``),
or everything (``recompute_all``); it never talks to the kernel. What is
programmed, and the transaction that gets it there, is
``transaction.py``'s business.

A change touches, and so costs:

- an endpoint added, removed or changed: its elements (addresses, MAC,
  profile set); a profile list no endpoint had yet adds one set, two short
  chains and a rule in each dispatch chain;
- a profile's rules: that profile's two chains (and the sets of tags it
  starts or stops naming);
- an address joining or leaving a tag: one element of one set.
"""
import logging
from dataclasses import dataclass, field

from calicoctl.agent.policy.iptables import rules as iptables_rules
from calicoctl.agent.policy.nftables import rules
from calicoctl.agent.policy.planner import ChangesPlanner

LOG = logging.getLogger(__name__)


@dataclass
class Table:
    """One nftables table's contents, as plain data."""
    chains: dict = field(default_factory=dict)
    """chain name -> tuple of rule texts."""
    hooks: dict = field(default_factory=dict)
    """base chain name -> its hook spec (``rules.BASE_CHAINS``)."""
    sets: dict = field(default_factory=dict)
    """set name -> its type spec."""
    elements: dict = field(default_factory=dict)
    """set name -> set of element texts."""


@dataclass(frozen=True)
class Attachment:
    """What one local interface stands for in the table."""
    set_id: str
    elements: tuple
    """((set name, element), ...) apart from the profile set's."""


class TablePlanner(ChangesPlanner):
    """The desired table for a PolicyIndex (see the module docstring)."""

    def __init__(self, index):
        self.index = index
        self.table = Table()
        self.dirty_chains = set()
        """Chains whose desired rules (or existence) changed since ``take_dirty``."""
        self.dirty_sets = {}
        """set name -> elements that may have changed (None: all of them, or the set itself)."""
        self._attached = {}
        """interface -> Attachment."""
        self._profile_sets = {}
        """profile set ID -> (profiles, interfaces using it)."""
        self._tag_users = {}
        """tag -> profiles whose rules name it."""
        self._profile_tags = {}
        """profile -> tags its rules name (while it is used here)."""
        self._profile_chains = {}
        """profile chain -> (profile, direction)."""
        self.prefix = None
        """The interface prefix the table was last rendered for."""

    # -- what the dataplane takes -------------------------------------------------------
    def take_dirty(self):
        chains, sets = self.dirty_chains, self.dirty_sets
        self.dirty_chains, self.dirty_sets = set(), {}
        return chains, sets

    def profile_of_chain(self, chain):
        """(profile, direction) of a profile chain, or None."""
        return self._profile_chains.get(chain)

    def policy_rule(self, profile, direction, rendered):
        """(1-based position, text as ``rule show`` prints it) of the policy
        rule that rendered as ``rendered`` in the profile's chain, or
        (None, the rendered text)."""
        rules_obj = self.index.profile_rules(profile)
        for position, rule in enumerate(getattr(rules_obj, direction + "_rules", ()), start=1):
            if rendered in rules.render_rule(rule):
                return position, rule.describe()
        return None, rendered

    # -- the whole table ----------------------------------------------------------------
    def recompute_all(self):
        """Everything from the index (start, resync, prefix change)."""
        self.table = Table(hooks=dict(rules.BASE_CHAINS))
        self._attached, self._profile_sets, self._tag_users, self._profile_tags = {}, {}, {}, {}
        self._profile_chains = {}
        self.prefix = self.index.interface_prefix
        for name, spec in rules.SET_TYPES.items():
            self._set_set(name, spec)
        self._render_control_plane_sets()
        self._render_globals()
        for iface in sorted(self.index.local):
            self._attach(iface)
        self._render_dispatch()
        for profile in sorted(self.index.used_profiles()):
            self._render_profile(profile)
        self.dirty_chains, self.dirty_sets = set(self.table.chains), {name: None for name in self.table.sets}

    # -- incremental changes (ChangesPlanner.apply_changes) ------------------------------------
    def _render_interfaces(self, ifaces):
        sets_before = set(self._profile_sets)
        for iface in sorted(ifaces):
            self._attach(iface)
        if set(self._profile_sets) != sets_before:
            self._render_dispatch()

    # -- chains and sets ---------------------------------------------------------------------
    def _set_chain(self, name, chain_rules):
        chain_rules = tuple(chain_rules)
        if self.table.chains.get(name) != chain_rules:
            self.table.chains[name] = chain_rules
            self.dirty_chains.add(name)

    def _drop_chain(self, name):
        if self.table.chains.pop(name, None) is not None:
            self.dirty_chains.add(name)

    def _set_set(self, name, spec, elements=()):
        if self.table.sets.get(name) == spec:
            return
        self.table.sets[name] = spec
        self.table.elements[name] = set(elements)
        self.dirty_sets[name] = None

    def _drop_set(self, name):
        if self.table.sets.pop(name, None) is not None:
            self.table.elements.pop(name, None)
            self.dirty_sets[name] = None

    def _add_element(self, name, element):
        members = self.table.elements[name]
        if element not in members:
            members.add(element)
            self._note(name, element)

    def _remove_element(self, name, element):
        members = self.table.elements.get(name)
        if members is not None and element in members:
            members.discard(element)
            self._note(name, element)

    def _note(self, name, element):
        if name in self.dirty_sets:
            if self.dirty_sets[name] is not None:
                self.dirty_sets[name].add(element)
        else:
            self.dirty_sets[name] = {element}

    # -- renderers -------------------------------------------------------------------------
    def _render_globals(self):
        chains = rules.render_global_chains(self.index.interface_prefix, self.index.host_action,
                                            self.index.control_plane.ports)
        for name, chain_rules in chains.items():
            self._set_chain(name, chain_rules)

    def _render_control_plane_sets(self):
        control_plane = self.index.control_plane
        for version, name in rules.CONTROL_PLANE_SET.items():
            wanted = set(control_plane.addresses(version)) if control_plane.ports else set()
            for address in self.table.elements[name] - wanted:
                self._remove_element(name, address)
            for address in wanted - self.table.elements[name]:
                self._add_element(name, address)

    def _render_dispatch(self):
        for name, chain_rules in rules.render_dispatch_chains(self._profile_sets).items():
            self._set_chain(name, chain_rules)

    def _attach(self, iface):
        """Make ``iface``'s elements match its endpoint (or remove them)."""
        endpoint = self.index.local_endpoint(iface)
        usable = iptables_rules.validate_interface_name(iface, self.index.interface_prefix) is not None
        old = self._attached.pop(iface, None)
        new = None
        if endpoint is not None and usable:
            elements = rules.endpoint_elements(iface, endpoint)
            new = Attachment(rules.profile_set_id(endpoint.profile_ids),
                             tuple(sorted((name, element) for name, members in elements.items()
                                          for element in members)))
        if old is not None:
            for name, element in set(old.elements) - set(new.elements if new else ()):
                self._remove_element(name, element)
            if new is None or new.set_id != old.set_id:
                self._leave_profile_set(old.set_id, iface)
        if new is None:
            return
        self._attached[iface] = new
        for name, element in new.elements:
            self._add_element(name, element)
        if old is None or new.set_id != old.set_id:
            self._join_profile_set(new.set_id, endpoint.profile_ids, iface)

    def _join_profile_set(self, set_id, profiles, iface):
        entry = self._profile_sets.get(set_id)
        if entry is None:
            entry = self._profile_sets[set_id] = (tuple(profiles), set())
            self._set_set(rules.profile_set(set_id), rules.PROFILE_SET_TYPE)
            for name, chain_rules in rules.render_profile_set_chains(set_id, profiles).items():
                self._set_chain(name, chain_rules)
        entry[1].add(iface)
        self._add_element(rules.profile_set(set_id), rules.quote(iface))

    def _leave_profile_set(self, set_id, iface):
        profiles, users = self._profile_sets[set_id]
        users.discard(iface)
        self._remove_element(rules.profile_set(set_id), rules.quote(iface))
        if users:
            return
        del self._profile_sets[set_id]
        self._drop_set(rules.profile_set(set_id))
        for direction in ("inbound", "outbound"):
            self._drop_chain(rules.profile_set_chain(set_id, direction))

    def _render_profile(self, profile):
        used = self.index.is_used(profile)
        rules_obj = self.index.profile_rules(profile)
        new_tags = rules.referenced_tags(rules_obj) if used else set()
        old_tags = self._profile_tags.get(profile, set())
        for tag in sorted(new_tags - old_tags):
            self._add_tag_user(tag, profile)
        for direction in ("inbound", "outbound"):
            name = rules.profile_chain(profile, direction)
            if used:
                self._profile_chains[name] = (profile, direction)
            else:
                self._profile_chains.pop(name, None)
                self._drop_chain(name)
        if used:
            for name, chain_rules in rules.render_profile_chains(profile, rules_obj).items():
                self._set_chain(name, chain_rules)
        for tag in sorted(old_tags - new_tags):
            self._remove_tag_user(tag, profile)
        if new_tags:
            self._profile_tags[profile] = new_tags
        else:
            self._profile_tags.pop(profile, None)

    def _add_tag_user(self, tag, profile):
        users = self._tag_users.setdefault(tag, set())
        if not users:
            for version in (4, 6):
                self._set_set(rules.tag_set(tag, version), rules.tag_set_type(version),
                              self.index.tag_members(tag, version))
        users.add(profile)

    def _remove_tag_user(self, tag, profile):
        users = self._tag_users.get(tag)
        if users is None:
            return
        users.discard(profile)
        if not users:
            del self._tag_users[tag]
            for version in (4, 6):
                self._drop_set(rules.tag_set(tag, version))

    def _update_tag_members(self, tag, version, addresses):
        if tag not in self._tag_users:
            return
        name = rules.tag_set(tag, version)
        for address in addresses:
            if self.index.tag_has(tag, version, address):
                self._add_element(name, address)
            else:
                self._remove_element(name, address)
