"""The policy dataplane: etcd policy -> iptables chains and ipsets (a Component).

Each cycle it asks the index (``state.PolicyIndex``) what changed, re-renders
only the affected chains (``rules``) into its *desired* state, diffs that
against what it has *programmed*, and applies the difference: ipset adds and
creates first, then chain writes (``iptables-restore --noflush``, one per
family per batch), then chain deletions, then ipset destroys. So a rule never
refers to a set or chain that is not there yet, and nothing is removed while
something still refers to it.

Diff, not rebuild
~~~~~~~~~~~~~~~~~
On start and on every resync it reads the kernel (``iptables-save``,
``ipset save``) as its programmed state and computes everything desired
from etcd; only chains whose rules differ are written and only stale chains
and sets are removed. After a SIGKILL and restart, chains that still match
etcd are not touched, so flows they allow never see a gap. Chains and sets
it does not own (``rules.is_owned_chain`` / ``is_owned_ipset``) are never
read into its state, so never changed.

Batches and failures
~~~~~~~~~~~~~~~~~~~~
Chain writes are ordered by rank (a chain after the chains it refers to) and
cut into batches of ``restore_chunk_chains`` (nf_tables restores are
quadratic in the chains of one input). In incremental cycles a chain that
already has rules is not flushed: its new rules are inserted in front of the
old ones (ending in RETURN unless they end in a verdict, so the old ones are
never reached), and the chain is rewritten whole once changes have paused.
Removing rules costs an nf_tables commit an RCU grace period, adding them
does not (calicoctl.host.iptables), so what traffic sees changes in about
2 ms. Chains to delete wait until no such leftover rules refer to them.
A batch the kernel refuses is split in
half and retried until the bad chain is alone; that chain is then written as
a DROP stub (so whatever refers to it drops rather than fails), and retried
at the next tick. Any chain referred to but neither desired nor programmed
gets a DROP stub too.

Interfaces
~~~~~~~~~~
An endpoint's chains are written as soon as etcd has it; its interface gets
a dispatch entry only while the interface exists (``links``, an
``InterfaceWatcher`` shared with the routes component). Until then its
traffic cannot arrive, and chains nothing jumps to cost the kernel nothing
at each commit (see calicoctl.host.iptables).

Control plane
~~~~~~~~~~~~~
The protected addresses (``index.control_plane``) are one more pair of
sets (``felix-cp-v4``/``-v6``), kept like the tag sets; the protected ports
are part of the global chains. Host names among the etcd endpoints are
resolved off the main loop (``resolver``, calicoctl.host.dns) at start and
every ``etcd_resolve_interval`` seconds; their addresses arrive through
``wake``. ``status`` says whether the protection is programmed.

Tags: sets within a budget, trees beyond it
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
The first ``tag_ipset_budget`` tags referenced by local policy get a
``hash:ip`` set per family; further tags (and any tag whose set the kernel
refuses to create) are matched through tag trees (``rules.make_tag_tree``).
A tag keeps its placement while it is referenced, so placements do not churn;
on resync, tags that already have a set in the kernel keep it. The default
budget (100 tags, 200 sets) stays inside the 256 sets a kernel with a fixed
IP_SET_MAX allows, leaving room for other users (NAT-outgoing takes two);
this kernel in fact grows its set table on demand (2,000 sets were created
in a test), but nothing here relies on that.
"""
import logging
import time
from dataclasses import dataclass, field

from calicoctl.agent import rules
from calicoctl.agent.chaintree import Side, TagKind
from calicoctl.agent.component import Component
from calicoctl.agent.state import PolicyIndex
from calicoctl.errors import CalicoError, CommandFailed
from calicoctl.host import dns as dns_mod
from calicoctl.host import iptables as iptables_mod
from calicoctl.host import ipsets as ipsets_mod

LOG = logging.getLogger(__name__)

FAMILIES = (4, 6)
SET_FAMILY = {4: "inet", 6: "inet6"}
SET_TYPE = "hash:ip"
RETRY_INTERVAL = 5.0
CLEANUP_DELAY = 1.0        # a prepended chain is rewritten whole no sooner than this,
CLEANUP_QUIET = 1.0        # and only once no change came for this long,
CLEANUP_MAX_WAIT = 30.0    # unless it has waited this long already


@dataclass
class _Family:
    """Desired and programmed chains of one IP family."""
    version: int
    table: object
    desired: dict = field(default_factory=dict)
    """chain -> rules (tuple) we want."""
    rank: dict = field(default_factory=dict)
    """chain -> write rank of every desired chain."""
    programmed: dict = field(default_factory=dict)
    """chain -> rules (tuple) we believe the kernel has."""
    dirty: set = field(default_factory=set)
    """chains whose desired state changed since the last apply."""
    hooks_ok: bool = False
    failed: set = field(default_factory=set)
    """chains the kernel refused (stubbed); retried on tick."""
    cleanup: dict = field(default_factory=dict)
    """chain -> monotonic time after which its old (prepended-over) rules go."""
    from_tree: object = None
    to_tree: object = None
    tag_trees: dict = field(default_factory=dict)
    """(tag, side) -> ChainTree."""

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


@dataclass
class _SetState:
    family: str
    members: set


class PolicyDataplane(Component):
    """Programs policy for this host's endpoints (see the module docstring).

    :param config: AgentConfig.
    :param tables: optional {version: IptablesTable} (tests run them in a netns).
    :param ipsets: optional Ipsets adapter.
    :param resolve: optional ``resolve(name) -> addresses`` for etcd host names.
    """

    def __init__(self, config, tables=None, ipsets=None, links=None, parser=None, resolve=None):
        self.config = config
        self.links = links
        """An InterfaceWatcher: only interfaces it lists get dispatch entries.
        None: every endpoint's interface is taken to exist (tests)."""
        self._links_changed = set()
        if links is not None:
            links.subscribe(self._on_links)
        self.index = PolicyIndex(config.hostname, parser, etcd_endpoints=config.etcd_endpoints)
        self._resolver = None
        self._resolve = resolve or dns_mod.resolve
        if tables is None:
            tables = {v: iptables_mod.IptablesTable(v, backend=config.iptables_backend) for v in FAMILIES}
        self.families = {v: _Family(v, tables[v]) for v in FAMILIES}
        self.ipsets = ipsets or ipsets_mod.Ipsets()
        self.budget = config.tag_ipset_budget
        self.chunk = max(1, config.restore_chunk_chains)
        self._resync = True
        """Next flush re-reads the kernel and recomputes everything."""
        self._slots = {}
        """tag -> TagKind of every referenced tag."""
        self._tag_refs = {}
        """(tag, side) -> profiles whose rendered rules use it."""
        self._profile_refs = {}
        """profile -> {(tag, side)} its rendered rules use."""
        self._refused_set_tags = set()
        """Tags whose set the kernel would not create: always trees."""
        self._sets_desired = {}
        """set name -> _SetState."""
        self._sets_programmed = {}
        """set name -> IpsetInfo as far as we know."""
        self._sets_dirty = {}
        """set name -> members to check, or None for every member."""
        self._prefix = self.index.interface_prefix
        self._last_hook_check = 0.0
        self._last_refresh = time.monotonic()
        self._last_retry = 0.0
        self._last_change = 0.0
        self.last_apply_seconds = None
        """Duration of the last flush that changed anything (for logs/benchmarks)."""

    # -- Component interface -----------------------------------------------------------
    def start(self, wake):
        if self.links is not None:
            self.links.start(wake)
        names = self.index.control_plane.etcd_hostnames
        if names:
            def resolved(results):
                wake(lambda: self._on_resolved(results))
            self._resolver = dns_mod.PeriodicResolver(names, self.config.etcd_resolve_interval,
                                                      resolved, resolve=self._resolve)
            self._resolver.start()

    def _on_resolved(self, results):
        for name, addresses in results.items():
            self.index.control_plane.set_resolved(name, addresses)

    def close(self):
        if self._resolver is not None:
            self._resolver.stop()

    def _on_links(self, changed):
        self._links_changed |= changed

    def _present(self, iface):
        return self.links is None or iface in self.links.links

    def on_snapshot(self, items):
        self.index.apply_snapshot(items)
        self._resync = True

    def on_update(self, key, value):
        self.index.apply(key, value)

    def flush(self):
        started = time.monotonic()
        if self._resync:
            self._full_sync()
        else:
            changes = self.index.take_changes()
            links_changed, self._links_changed = self._links_changed, set()
            changes.ifaces |= {i for i in links_changed if i in self.index.local}
            if not changes and not self._needs_apply():
                return
            if changes.config and self.index.interface_prefix != self._prefix:
                self._recompute_all()
                self._apply()
            else:
                self._apply_changes(changes)
                self._apply(prepend=True)
                self._last_change = time.monotonic()
        self.last_apply_seconds = time.monotonic() - started
        LOG.debug("Policy flush took %.1f ms", self.last_apply_seconds * 1000)

    def tick(self, now):
        if self._resync:
            return
        if self.links is not None:
            self.links.tick(now)
        if self._links_changed:
            self.flush()
        interval = self.config.refresh_interval
        if interval and now - self._last_refresh >= interval:
            LOG.info("Periodic refresh: re-reading iptables and ipsets")
            self._resync = True
            self.flush()
            return
        if now - self._last_hook_check >= self.config.hook_check_interval:
            self._last_hook_check = now
            for family in self.families.values():
                if family.hooks_ok and not all(family.table.has_rule(chain, rule)
                                               for chain, rule in rules.HOOKS.items()):
                    LOG.warning("IPv%d hook rules were removed; re-inserting them", family.version)
                    family.hooks_ok = False
        # Cleaning out prepended-over rules waits for an RCU grace period:
        # do it when changes have paused, so it never delays the next change
        # (but not forever, and not once a chain has grown long).
        quiet = now - self._last_change >= CLEANUP_QUIET
        for family in self.families.values():
            for name, when in list(family.cleanup.items()):
                overdue = now - when >= CLEANUP_MAX_WAIT
                grown = len(family.programmed.get(name, ())) > 4 * len(family.desired.get(name, ())) + 32
                if when <= now and (quiet or overdue or grown):
                    del family.cleanup[name]
                    if name in family.desired:
                        family.dirty.add(name)       # rewritten whole: the old rules go
        if now - self._last_retry >= RETRY_INTERVAL:
            self._last_retry = now
            for family in self.families.values():
                if family.failed:
                    family.dirty |= family.failed
                    family.failed = set()
        if self._needs_apply():
            self._apply()

    def status(self):
        control_plane = self.index.control_plane.describe()
        control_plane["active"] = bool(control_plane["ports"]) and all(
            self._protection_programmed(family) for family in self.families.values())
        return {"local_endpoints": len(self.index.local), "control_plane": control_plane}

    def _protection_programmed(self, family):
        """True when the kernel has this family's global chains (so the
        control-plane rules) and its protected-address set as desired."""
        if not family.hooks_ok or rules.control_plane_set_name(family.version) not in self._sets_programmed:
            return False
        for name in (rules.CHAIN_INPUT, rules.CHAIN_FORWARD):
            wanted = family.desired.get(name)
            if wanted is None or name in family.failed or family.programmed.get(name, ())[:len(wanted)] != wanted:
                return False
        return True

    # -- full recomputation --------------------------------------------------------------
    def _full_sync(self):
        """Read the kernel, recompute all desired state from the index, apply the diff."""
        self._resync = False
        self._last_refresh = time.monotonic()
        self.index.take_changes()
        if self.links is not None:
            self.links.refresh_and_notify()
            self._links_changed = set()
        for family in self.families.values():
            try:
                kernel = family.table.read()
            except CalicoError as exc:
                LOG.error("Cannot read IPv%d iptables (%s); assuming none of our chains exist",
                          family.version, exc)
                kernel = {}
            family.programmed = {name: tuple(chain_rules) for name, chain_rules in kernel.items()
                                 if rules.is_owned_chain(name)}
            family.hooks_ok = not rules.calculate_missing_hooks(kernel)
            family.failed = set()
            family.cleanup = {}
        try:
            self._sets_programmed = self.ipsets.read(rules.is_owned_ipset)
        except CalicoError as exc:
            LOG.error("Cannot read ipsets (%s); assuming none of ours exist", exc)
            self._sets_programmed = {}
        read = time.monotonic()
        found = (len(self.families[4].programmed), len(self.families[6].programmed))
        self._recompute_all()
        computed = time.monotonic()
        self._apply()
        LOG.info("Resync: %d local endpoints, %d/%d IPv4/IPv6 chains desired, %d/%d found in the kernel; "
                 "read %.0f ms, computed %.0f ms, applied %.0f ms",
                 len(self.index.local), len(self.families[4].desired), len(self.families[6].desired),
                 found[0], found[1], (read - self._last_refresh) * 1000, (computed - read) * 1000,
                 (time.monotonic() - computed) * 1000)

    def _recompute_all(self):
        """Rebuild every desired chain and set from the index."""
        prefix = self._prefix = self.index.interface_prefix
        for family in self.families.values():
            family.desired, family.rank = {}, {}
            family.dirty = set(family.programmed)
            family.from_tree = rules.make_dispatch_tree("outbound", prefix)
            family.to_tree = rules.make_dispatch_tree("inbound", prefix)
            family.tag_trees = {}
        old_slots = self._slots
        self._slots, self._tag_refs, self._profile_refs = {}, {}, {}
        self._sets_desired = {}
        self._sets_dirty = {name: None for name in self._sets_programmed}
        # Placement: tags that already have a set keep it (no churn across a
        # restart), then the rest by name, within the budget.
        wanted = set()
        for profile in self.index.used_profiles():
            wanted |= {tag for tag, _ in rules.referenced_tags(self.index.profile_rules(profile))}

        def has_set(tag):
            return (old_slots.get(tag) is TagKind.SET
                    or rules.tag_set_name(tag, 4) in self._sets_programmed)
        for tag in sorted(wanted, key=lambda t: (not has_set(t), t)):
            self._place_tag(tag)
        self._render_control_plane_sets()
        self._render_globals()
        self._render_interfaces(set(self.index.local))
        for profile in sorted(self.index.used_profiles()):
            self._render_profile(profile)

    # -- incremental changes ---------------------------------------------------------------
    def _apply_changes(self, changes):
        if changes.control_plane:
            self._render_control_plane_sets()
        if changes.config or changes.control_plane:
            self._render_globals()
        if changes.ifaces:
            self._render_interfaces(changes.ifaces)
        for profile in sorted(changes.profiles):
            self._render_profile(profile)
        for (tag, version), addresses in changes.tag_ips.items():
            self._update_tag_members(tag, version, addresses)

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
                state = self._sets_desired.get(name)
                if state is not None and state.members == members:
                    continue
                self._sets_desired[name] = _SetState(SET_FAMILY[version], members)
            elif self._sets_desired.pop(name, None) is None:
                continue
            self._sets_dirty[name] = None

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
                self._update_tree(family, tree, added, removed, rules.dispatch_rank)

    def _update_tree(self, family, tree, added=(), removed=(), rank_of=rules.dispatch_rank):
        written, deleted = tree.update(added=[k for k in added if k not in tree.keys],
                                       removed=[k for k in removed if k in tree.keys])
        for name, chain_rules in written.items():
            family.set_chain(name, chain_rules, rank_of(tree.depth(name)))
        for name in deleted:
            family.drop_chain(name)

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
                chains = rules.render_profile_chains(profile, rules_obj, family.version, self._resolve_tag)
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
    def _resolve_tag(self, tag, version, side):
        if self._slots.get(tag) is TagKind.SET:
            return rules.TagPlacement(TagKind.SET, rules.tag_set_name(tag, version))
        return rules.TagPlacement(TagKind.TREE, rules.tag_tree_root(tag, version, side))

    def _place_tag(self, tag):
        if tag in self._slots:
            return
        dedicated = sum(1 for kind in self._slots.values() if kind is TagKind.SET)
        if dedicated < self.budget and tag not in self._refused_set_tags:
            self._slots[tag] = TagKind.SET
            for version in FAMILIES:
                name = rules.tag_set_name(tag, version)
                self._sets_desired[name] = _SetState(SET_FAMILY[version],
                                                     set(self.index.tag_members(tag, version)))
                self._sets_dirty[name] = None
        else:
            self._slots[tag] = TagKind.TREE

    def _add_tag_ref(self, tag, side, profile):
        self._place_tag(tag)
        users = self._tag_refs.setdefault((tag, side), set())
        first = not users
        users.add(profile)
        if first and self._slots[tag] is TagKind.TREE:
            self._build_tag_tree(tag, side)

    def _remove_tag_ref(self, tag, side, profile):
        users = self._tag_refs.get((tag, side))
        if users is None:
            return
        users.discard(profile)
        if users:
            return
        del self._tag_refs[(tag, side)]
        if self._slots.get(tag) is TagKind.TREE:
            self._drop_tag_tree(tag, side)
        if not any((tag, s) in self._tag_refs for s in Side):
            if self._slots.pop(tag, None) is TagKind.SET:
                for version in FAMILIES:
                    name = rules.tag_set_name(tag, version)
                    self._sets_desired.pop(name, None)
                    self._sets_dirty[name] = None

    def _build_tag_tree(self, tag, side):
        for family in self.families.values():
            tree = rules.make_tag_tree(tag, family.version, side)
            family.tag_trees[(tag, side)] = tree
            keys = [rules.ip_key(ip) for ip in self.index.tag_members(tag, family.version)]
            self._update_tree(family, tree, added=keys, rank_of=rules.tag_tree_rank)

    def _drop_tag_tree(self, tag, side):
        for family in self.families.values():
            tree = family.tag_trees.pop((tag, side), None)
            if tree is not None:
                for name in tree.chains:
                    family.drop_chain(name)

    def _update_tag_members(self, tag, version, addresses):
        slot = self._slots.get(tag)
        if slot is TagKind.SET:
            name = rules.tag_set_name(tag, version)
            state = self._sets_desired.get(name)
            if state is None:
                return
            for address in addresses:
                if self.index.tag_has(tag, version, address):
                    state.members.add(address)
                else:
                    state.members.discard(address)
            dirty = self._sets_dirty.get(name, set())
            if dirty is not None:
                self._sets_dirty[name] = dirty | set(addresses)
        elif slot is TagKind.TREE:
            family = self.families[version]
            added = [rules.ip_key(a) for a in addresses if self.index.tag_has(tag, version, a)]
            removed = [rules.ip_key(a) for a in addresses if not self.index.tag_has(tag, version, a)]
            for side in Side:
                tree = family.tag_trees.get((tag, side))
                if tree is not None:
                    self._update_tree(family, tree, added, removed, rules.tag_tree_rank)

    def _demote_tag(self, tag):
        """The kernel refused this tag's set: match it with trees instead."""
        LOG.warning("Tag %s: cannot create its ipset; matching it with chains instead", tag)
        self._refused_set_tags.add(tag)
        if self._slots.get(tag) is not TagKind.SET:
            return
        self._slots[tag] = TagKind.TREE
        for version in FAMILIES:
            name = rules.tag_set_name(tag, version)
            self._sets_desired.pop(name, None)
            self._sets_dirty[name] = None
        users = set()
        for side in Side:
            if (tag, side) in self._tag_refs:
                self._build_tag_tree(tag, side)
                users |= self._tag_refs[(tag, side)]
        for profile in sorted(users):
            for family in self.families.values():
                chains = rules.render_profile_chains(profile, self.index.profile_rules(profile),
                                                     family.version, self._resolve_tag)
                for name, chain_rules in chains.items():
                    family.set_chain(name, chain_rules, rules.RANK_PROFILE)

    # -- applying ------------------------------------------------------------------------------
    def _needs_apply(self):
        return bool(self._sets_dirty) or any(f.dirty or not f.hooks_ok for f in self.families.values())

    def _apply(self, prepend=False):
        timings = [time.monotonic()]
        destroys = self._apply_sets()
        timings.append(time.monotonic())
        for family in self.families.values():
            self._apply_writes(family, prepend)
        timings.append(time.monotonic())
        for family in self.families.values():
            self._apply_deletes(family)
        timings.append(time.monotonic())
        # Old rules kept behind a prepended RETURN may still name a set we want
        # gone; destroying it would fail, so it waits (ticks retry).
        in_use = self._sets_still_referenced() if destroys else set()
        for name in destroys:
            if name in in_use:
                self._sets_dirty[name] = None
        destroys = [name for name in destroys if name not in in_use]
        if destroys:
            failed = self.ipsets.apply([ipsets_mod.render_destroy(name) for name in destroys])
            for name in destroys:
                if name not in failed:
                    self._sets_programmed.pop(name, None)
        timings.append(time.monotonic())
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("Applied: sets %.1f ms, chain writes %.1f ms, deletes %.1f ms, set destroys %.1f ms",
                      *((b - a) * 1000 for a, b in zip(timings, timings[1:])))

    def _apply_sets(self):
        """Create/fill/trim sets; returns the sets to destroy after the chains."""
        pending, self._sets_dirty = self._sets_dirty, {}
        lines, destroys, diffs = [], [], {}
        for name, members in sorted(pending.items()):
            want = self._sets_desired.get(name)
            have = self._sets_programmed.get(name)
            if want is None:
                if have is not None:
                    destroys.append(name)
                continue
            if have is not None and (have.set_type != SET_TYPE or have.family != want.family):
                LOG.warning("ipset %s exists with type %s %s; matching its tag with chains instead",
                            name, have.set_type, have.family)
                self._demote_tag_for_set(name)
                continue
            adds, dels = [], []
            if have is None:
                lines.append(ipsets_mod.render_create(name, SET_TYPE, want.family))
                adds = sorted(want.members)
            else:
                check = (want.members | have.members) if members is None else members
                for member in sorted(check):
                    wanted, present = member in want.members, member in have.members
                    if wanted and not present:
                        adds.append(member)
                    elif present and not wanted:
                        dels.append(member)
            lines += [ipsets_mod.render_add(name, m) for m in adds]
            lines += [ipsets_mod.render_del(name, m) for m in dels]
            diffs[name] = (want.family, adds, dels)
        failed = self.ipsets.apply(lines) if lines else {}
        retry = []
        for name, (family, adds, dels) in diffs.items():
            if name in failed:
                self._sets_programmed.pop(name, None)
                self._demote_tag_for_set(name)
                if name in self._sets_desired:       # not a tag's: no chains can stand in
                    retry.append(name)
                continue
            info = self._sets_programmed.get(name)
            if info is None:
                info = self._sets_programmed[name] = ipsets_mod.IpsetInfo(name, SET_TYPE, family, set())
            info.members.update(adds)
            info.members.difference_update(dels)
        # Demotions above queued their sets for removal.
        for name in self._sets_dirty:
            if name not in self._sets_desired and name in self._sets_programmed:
                destroys.append(name)
        self._sets_dirty = {name: None for name in retry}
        return destroys

    def _sets_still_referenced(self):
        """Sets named by old rules kept behind a prepended RETURN (see _apply_writes)."""
        found = set()
        for family in self.families.values():
            for name in family.cleanup:
                for rule in family.programmed.get(name, ()):
                    found |= rules.set_references(rule)
        return found

    def _demote_tag_for_set(self, set_name):
        for tag, slot in list(self._slots.items()):
            if slot is TagKind.SET and set_name in (rules.tag_set_name(tag, 4), rules.tag_set_name(tag, 6)):
                self._demote_tag(tag)

    def _apply_writes(self, family, prepend=False):
        """Write every dirty chain whose desired rules differ from the kernel's.

        With ``prepend`` (incremental cycles), a chain that already has
        rules gets its new rules inserted in front of the old ones, followed
        by a RETURN unless they end in a verdict, and the old ones are
        cleaned out ``CLEANUP_DELAY`` later. Removing rules makes an
        nf_tables commit wait for an RCU grace period (4-16 ms here,
        whatever the table size); adding them does not (about 2 ms), so the
        traffic-visible change lands fast and the wait happens off the
        critical path.
        """
        writes = []
        for name in family.dirty:
            if name in family.desired and family.programmed.get(name) != family.desired[name]:
                writes.append(name)
        # Anything referred to must exist: stub what is neither desired nor there.
        stubs = {}
        for name in writes:
            for target in set().union(*(rules.chain_references(r) for r in family.desired[name])) \
                    if family.desired[name] else ():
                if target not in family.desired and target not in family.programmed \
                        and target not in stubs:
                    LOG.error("IPv%d chain %s refers to missing chain %s: adding a DROP stub",
                              family.version, name, target)
                    stubs[target] = (_stub_rule("missing chain"),)
        items = [(name, stub, -1) for name, stub in stubs.items()]
        items += sorted(((name, family.desired[name], family.rank.get(name, 0)) for name in writes),
                        key=lambda item: (item[2], item[0]))
        family.dirty = {name for name in family.dirty if name not in family.desired}
        batch_items = []
        for name, chain_rules, _ in items:
            old = family.programmed.get(name)
            mode = "prepend" if prepend and old else "replace"
            if mode == "prepend":
                family.cleanup.setdefault(name, time.monotonic() + CLEANUP_DELAY)
            batch_items.append((name, tuple(chain_rules), mode))
        for start in range(0, len(batch_items), self.chunk):
            self._write_batch(family, batch_items[start:start + self.chunk])
        if not family.hooks_ok:
            self._ensure_hooks(family)

    def _write_batch(self, family, batch):
        """Apply (name, rules, mode) items in one restore; split on failure."""
        replace = [(name, chain_rules) for name, chain_rules, mode in batch if mode == "replace"]
        inserts = []
        for name, chain_rules, mode in batch:
            if mode == "prepend":
                inserts += ["-I %s %d %s" % (name, position, rule)
                            for position, rule in enumerate(_prepended(chain_rules), 1)]
        try:
            family.table.restore(iptables_mod.render_restore("filter", writes=replace, inserts=inserts))
        except CommandFailed as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                self._write_batch(family, batch[:middle])
                self._write_batch(family, batch[middle:])
                return
            name, _, mode = batch[0]
            if mode == "prepend":      # try the plain way before giving up on it
                family.cleanup.pop(name, None)
                self._write_batch(family, [(name, batch[0][1], "replace")])
                return
            LOG.error("IPv%d chain %s refused by the kernel (%s); writing a DROP stub",
                      family.version, name, (exc.stderr or str(exc)).strip()[:300])
            stub = (_stub_rule("failed to program"),)
            try:
                family.table.restore(iptables_mod.render_restore("filter", writes=[(name, stub)]))
                family.programmed[name] = stub
            except CommandFailed as stub_exc:
                LOG.error("IPv%d chain %s: even the stub failed: %s", family.version, name, stub_exc)
                family.programmed.pop(name, None)
            family.failed.add(name)
            return
        for name, chain_rules, mode in batch:
            if mode == "prepend":
                family.programmed[name] = _prepended(chain_rules) + tuple(family.programmed.get(name, ()))
            else:
                family.programmed[name] = chain_rules

    def _ensure_hooks(self, family):
        kernel_missing = [chain for chain in sorted(rules.HOOKS)
                          if not family.table.has_rule(chain, rules.HOOKS[chain])]
        if kernel_missing:
            try:
                family.table.restore(iptables_mod.render_restore(
                    "filter", inserts=[rules.render_hook_insert(c) for c in kernel_missing]))
            except CommandFailed as exc:
                LOG.error("IPv%d: cannot insert hook rules: %s", family.version, exc)
                return
            LOG.info("IPv%d: inserted hook rules in %s", family.version, ", ".join(kernel_missing))
        family.hooks_ok = True

    def _apply_deletes(self, family):
        deletes = sorted(name for name in family.dirty
                         if name not in family.desired and name in family.programmed)
        # Old rules kept behind a prepended RETURN may still refer to a chain
        # we want gone: the kernel refuses to delete it until they are cleaned out.
        blocked = set()
        for name in family.cleanup:
            for rule in family.programmed.get(name, ()):
                blocked |= rules.chain_references(rule)
        family.dirty = {name for name in deletes if name in blocked}
        deletes = [name for name in deletes if name not in blocked]
        if not deletes:
            return
        # Flush them all first: then none refers to another and any order deletes.
        for phase in ("flush", "delete"):
            for start in range(0, len(deletes), self.chunk):
                batch = deletes[start:start + self.chunk]
                self._delete_batch(family, batch, phase)

    def _delete_batch(self, family, batch, phase):
        if phase == "flush":
            text = iptables_mod.render_restore("filter", writes=[(name, ()) for name in batch])
        else:
            text = iptables_mod.render_restore("filter", deletes=batch)
        try:
            family.table.restore(text)
        except CommandFailed as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                self._delete_batch(family, batch[:middle], phase)
                self._delete_batch(family, batch[middle:], phase)
                return
            LOG.error("IPv%d: cannot %s chain %s: %s", family.version, phase, batch[0],
                      (exc.stderr or str(exc)).strip()[:300])
            return
        for name in batch:
            if phase == "flush":
                if name in family.programmed:
                    family.programmed[name] = ()
            else:
                family.programmed.pop(name, None)


def _prepended(chain_rules):
    """Rules to put in front of a chain's old rules so the old ones are never reached."""
    if chain_rules and _is_verdict(chain_rules[-1]):
        return tuple(chain_rules)
    return tuple(chain_rules) + ("-j RETURN",)


def _is_verdict(rule):
    """True for a rule that matches everything and ends evaluation of the chain."""
    words = rule.split()
    return len(words) == 2 and (words[0] == "-g" or (words[0] == "-j" and words[1] in ("DROP", "ACCEPT", "RETURN")))


def _stub_rule(reason):
    return rules.render_comment("calico: %s" % reason) + " -j DROP"
