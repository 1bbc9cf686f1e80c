"""Pure: the chains and ipsets the policy dataplane wants, kept incrementally.

``PolicyPlanner`` reads a ``state.PolicyIndex`` and keeps, per IP family, the
*desired* chains (``FamilyPlan``: rules and write rank of every chain, plus
the names whose desired rules changed since the reconcilers last looked:
``dirty``) and the desired ipsets with the members to check. It decides
where each tag is matched (``TagKind.SET`` within the budget, a tag tree
beyond it, for good once the kernel refused the tag's set: ``demote_tag``)
and renders only what a change touches (``apply_changes``), or everything
after a resync (``recompute_all``). It never talks to the kernel: the
reconcilers (``chain_reconciler``, ``set_reconciler``) program what it
wants and tell it what they found.
"""
import logging
from dataclasses import dataclass, field

from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.policy.iptables.chaintree import Side, TagKind
from calicoctl.agent.policy.planner import ChangesPlanner

LOG = logging.getLogger(__name__)

FAMILIES = (4, 6)
SET_FAMILY = {4: "inet", 6: "inet6"}
SET_TYPE = "hash:ip"


@dataclass
class FamilyPlan:
    """Desired chains of one IP family."""
    version: int
    desired: dict = field(default_factory=dict)
    """chain -> rules (tuple) we want."""
    rank: dict = field(default_factory=dict)
    """chain -> write rank of every desired chain."""
    dirty: set = field(default_factory=set)
    """chains whose desired state changed since the last apply (or to re-check)."""
    from_tree: object = None
    to_tree: object = None
    tag_trees: dict = field(default_factory=dict)
    """(tag, Side) -> ChainTree."""

    def set_chain(self, name, chain_rules, rank):
        chain_rules = tuple(chain_rules)
        self.rank[name] = rank
        if self.desired.get(name) != chain_rules:
            self.desired[name] = chain_rules
            self.dirty.add(name)

    def drop_chain(self, name):
        if name in self.desired:
            del self.desired[name]
            self.dirty.add(name)

    def update_tree(self, tree, added=(), removed=(), rank_of=rules.dispatch_rank):
        written, deleted = tree.update(added=[k for k in added if k not in tree.keys],
                                       removed=[k for k in removed if k in tree.keys])
        for name, chain_rules in written.items():
            self.set_chain(name, chain_rules, rank_of(tree.depth(name)))
        for name in deleted:
            self.drop_chain(name)


@dataclass
class SetPlan:
    """A desired ipset: its family and members."""
    family: str
    members: set


class PolicyPlanner(ChangesPlanner):
    """Desired chains and sets for a PolicyIndex (see the module docstring).

    :param index: the PolicyIndex to read.
    :param budget: how many tags may have sets of their own.
    :param present: ``present(iface)``: True while the interface exists (only
        those get dispatch entries).
    """

    def __init__(self, index, budget, present=lambda iface: True):
        self.index = index
        self.budget = budget
        self._present = present
        self.families = {v: FamilyPlan(v) for v in FAMILIES}
        self.sets = {}
        """set name -> SetPlan of every desired set."""
        self.sets_dirty = {}
        """set name -> members to check, or None for every member."""
        self.slots = {}
        """tag -> TagKind of every referenced tag."""
        self._tag_refs = {}
        """(tag, Side) -> profiles whose rendered rules use it."""
        self._profile_refs = {}
        """profile -> {(tag, Side)} its rendered rules use."""
        self.refused_set_tags = set()
        """Tags whose set the kernel would not create: always trees."""
        self.prefix = index.interface_prefix
        """The interface prefix the desired chains were rendered for."""

    def take_sets_dirty(self):
        pending, self.sets_dirty = self.sets_dirty, {}
        return pending

    # -- full recomputation --------------------------------------------------------------
    def recompute_all(self, programmed_chains, programmed_sets):
        """Rebuild every desired chain and set from the index.

        :param programmed_chains: {version: chain names the kernel has}; all
            are re-checked (stale ones deleted).
        :param programmed_sets: names of the sets the kernel has; tags that
            have one keep it (no churn across a restart).
        """
        prefix = self.prefix = self.index.interface_prefix
        for family in self.families.values():
            family.desired, family.rank = {}, {}
            family.dirty = set(programmed_chains[family.version])
            family.from_tree = rules.make_dispatch_tree("outbound", prefix)
            family.to_tree = rules.make_dispatch_tree("inbound", prefix)
            family.tag_trees = {}
        old_slots = self.slots
        self.slots, self._tag_refs, self._profile_refs = {}, {}, {}
        self.sets = {}
        self.sets_dirty = {name: None for name in programmed_sets}
        # Placement: tags that already have a set keep it, then the rest by
        # name, within the budget.
        wanted = set()
        for profile in self.index.used_profiles():
            wanted |= {tag for tag, _ in rules.referenced_tags(self.index.profile_rules(profile))}

        def has_set(tag):
            return old_slots.get(tag) is TagKind.SET or rules.tag_set_name(tag, 4) in programmed_sets
        for tag in sorted(wanted, key=lambda t: (not has_set(t), t)):
            self._place_tag(tag)
        self._render_control_plane_sets()
        self._render_globals()
        self._render_interfaces(set(self.index.local))
        for profile in sorted(self.index.used_profiles()):
            self._render_profile(profile)

    # -- incremental changes (ChangesPlanner.apply_changes) ------------------------------------
    def _render_globals(self):
        ports = self.index.control_plane.ports
        for family in self.families.values():
            for name, chain_rules in rules.render_global_chains(
                    family.version, self.index.interface_prefix, self.index.host_action, ports).items():
                family.set_chain(name, chain_rules, rules.global_rank(name))

    def _render_control_plane_sets(self):
        """The protected addresses' sets while the protection is on, else none."""
        control_plane = self.index.control_plane
        for version in FAMILIES:
            name = rules.control_plane_set_name(version)
            if control_plane.ports:
                members = control_plane.addresses(version)
                state = self.sets.get(name)
                if state is not None and state.members == members:
                    continue
                self.sets[name] = SetPlan(SET_FAMILY[version], members)
            elif self.sets.pop(name, None) is None:
                continue
            self.sets_dirty[name] = None

    def _render_interfaces(self, ifaces):
        prefix = self.index.interface_prefix
        for family in self.families.values():
            added, removed = [], []
            for iface in ifaces:
                suffix = rules.validate_interface_name(iface, prefix)
                if suffix is None:
                    continue
                endpoint = self.index.local_endpoint(iface)
                chains = rules.render_endpoint_chains(suffix, endpoint, family.version) if endpoint else {}
                for direction in ("inbound", "outbound"):
                    name = rules.endpoint_chain(direction, suffix)
                    if name in chains:
                        family.set_chain(name, chains[name], rules.RANK_ENDPOINT)
                    else:
                        family.drop_chain(name)
                if chains and self._present(iface):
                    added.append(suffix)
                else:
                    removed.append(suffix)
            for tree in (family.from_tree, family.to_tree):
                family.update_tree(tree, added, removed, rules.dispatch_rank)

    def _render_profile(self, profile):
        used = self.index.is_used(profile)
        rules_obj = self.index.profile_rules(profile)
        new_refs = rules.referenced_tags(rules_obj) if used else set()
        old_refs = self._profile_refs.get(profile, set())
        for tag, side in sorted(new_refs - old_refs):
            self._add_tag_ref(tag, side, profile)
        for family in self.families.values():
            names = (rules.profile_chain(profile, "inbound"), rules.profile_chain(profile, "outbound"))
            if used:
                chains = rules.render_profile_chains(profile, rules_obj, family.version, self.resolve_tag)
                for name in names:
                    family.set_chain(name, chains[name], rules.RANK_PROFILE)
            else:
                for name in names:
                    family.drop_chain(name)
        for tag, side in sorted(old_refs - new_refs):
            self._remove_tag_ref(tag, side, profile)
        if new_refs:
            self._profile_refs[profile] = new_refs
        else:
            self._profile_refs.pop(profile, None)

    # -- tags --------------------------------------------------------------------------------
    def resolve_tag(self, tag, version, side):
        if self.slots.get(tag) is TagKind.SET:
            return rules.TagPlacement(TagKind.SET, rules.tag_set_name(tag, version))
        return rules.TagPlacement(TagKind.TREE, rules.tag_tree_root(tag, version, side))

    def _place_tag(self, tag):
        if tag in self.slots:
            return
        dedicated = sum(1 for kind in self.slots.values() if kind is TagKind.SET)
        if dedicated < self.budget and tag not in self.refused_set_tags:
            self.slots[tag] = TagKind.SET
            for version in FAMILIES:
                name = rules.tag_set_name(tag, version)
                self.sets[name] = SetPlan(SET_FAMILY[version], set(self.index.tag_members(tag, version)))
                self.sets_dirty[name] = None
        else:
            self.slots[tag] = TagKind.TREE

    def _add_tag_ref(self, tag, side, profile):
        self._place_tag(tag)
        users = self._tag_refs.setdefault((tag, side), set())
        first = not users
        users.add(profile)
        if first and self.slots[tag] is TagKind.TREE:
            self._build_tag_tree(tag, side)

    def _remove_tag_ref(self, tag, side, profile):
        users = self._tag_refs.get((tag, side))
        if users is None:
            return
        users.discard(profile)
        if users:
            return
        del self._tag_refs[(tag, side)]
        if self.slots.get(tag) is TagKind.TREE:
            self._drop_tag_tree(tag, side)
        if not any((tag, s) in self._tag_refs for s in Side):
            if self.slots.pop(tag, None) is TagKind.SET:
                for version in FAMILIES:
                    name = rules.tag_set_name(tag, version)
                    self.sets.pop(name, None)
                    self.sets_dirty[name] = None

    def _build_tag_tree(self, tag, side):
        for family in self.families.values():
            tree = rules.make_tag_tree(tag, family.version, side)
            family.tag_trees[(tag, side)] = tree
            keys = [rules.ip_key(ip) for ip in self.index.tag_members(tag, family.version)]
            family.update_tree(tree, added=keys, rank_of=rules.tag_tree_rank)

    def _drop_tag_tree(self, tag, side):
        for family in self.families.values():
            tree = family.tag_trees.pop((tag, side), None)
            if tree is not None:
                for name in tree.chains:
                    family.drop_chain(name)

    def _update_tag_members(self, tag, version, addresses):
        slot = self.slots.get(tag)
        if slot is TagKind.SET:
            name = rules.tag_set_name(tag, version)
            state = self.sets.get(name)
            if state is None:
                return
            for address in addresses:
                if self.index.tag_has(tag, version, address):
                    state.members.add(address)
                else:
                    state.members.discard(address)
            dirty = self.sets_dirty.get(name, set())
            if dirty is not None:
                self.sets_dirty[name] = dirty | set(addresses)
        elif slot is TagKind.TREE:
            family = self.families[version]
            added = [rules.ip_key(a) for a in addresses if self.index.tag_has(tag, version, a)]
            removed = [rules.ip_key(a) for a in addresses if not self.index.tag_has(tag, version, a)]
            for side in Side:
                tree = family.tag_trees.get((tag, side))
                if tree is not None:
                    family.update_tree(tree, added, removed, rules.tag_tree_rank)

    def demote_tag(self, tag):
        """The kernel refused this tag's set: match it with trees instead, for good."""
        LOG.warning("Tag %s: cannot create its ipset; matching it with chains instead", tag)
        self.refused_set_tags.add(tag)
        if self.slots.get(tag) is not TagKind.SET:
            return
        self.slots[tag] = TagKind.TREE
        for version in FAMILIES:
            name = rules.tag_set_name(tag, version)
            self.sets.pop(name, None)
            self.sets_dirty[name] = None
        users = set()
        for side in Side:
            if (tag, side) in self._tag_refs:
                self._build_tag_tree(tag, side)
                users |= self._tag_refs[(tag, side)]
        for profile in sorted(users):
            for family in self.families.values():
                chains = rules.render_profile_chains(profile, self.index.profile_rules(profile),
                                                     family.version, self.resolve_tag)
                for name, chain_rules in chains.items():
                    family.set_chain(name, chain_rules, rules.RANK_PROFILE)

    def demote_tag_for_set(self, set_name):
        """Demote the tag (if any) whose set ``set_name`` is."""
        for tag, slot in list(self.slots.items()):
            if slot is TagKind.SET and set_name in (rules.tag_set_name(tag, 4), rules.tag_set_name(tag, 6)):
                self.demote_tag(tag)
