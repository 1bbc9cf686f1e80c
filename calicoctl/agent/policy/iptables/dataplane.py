"""The policy dataplane: etcd policy -> iptables chains and ipsets (a Component).

Each cycle it asks the index (``state.PolicyIndex``) what changed; the pure
planner (``plan.PolicyPlanner``) re-renders only the affected chains
(``rules``) into the *desired* state and places tags; the two reconcilers
diff that against what they have *programmed* and apply the difference:
ipset adds and creates first (``set_reconciler``), then chain writes
(``iptables-restore --noflush``, one per family per batch) and chain
deletions (``chain_reconciler``), then ipset destroys. So a rule never
refers to a set or chain that is not there yet, and nothing is removed while
something still refers to it. This module only sequences them (and owns the
timers: refresh, hook checks, cleanup, retries).

Diff, not rebuild
~~~~~~~~~~~~~~~~~
On start and on every resync it reads the kernel (``iptables-save``, and
the sets as the ipset adapter lists them over netlink) as its programmed state and computes everything desired
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

from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.policy.iptables.chain_reconciler import CLEANUP_QUIET, ChainReconciler
from calicoctl.agent.policy.iptables.plan import FAMILIES, PolicyPlanner
from calicoctl.agent.policy.iptables.set_reconciler import SetReconciler
from calicoctl.agent.policy.component import PolicyComponent
from calicoctl.host import iptables as iptables_mod
from calicoctl.host import ipsets as ipsets_mod

LOG = logging.getLogger(__name__)

RETRY_INTERVAL = 5.0


class PolicyDataplane(PolicyComponent):
    """Programs policy for this host's endpoints (see the module docstring).

    :param config: AgentConfig.
    :param tables: optional {version: IptablesTable} (tests run them in a netns, or fakes).
    :param ipsets: optional Ipsets adapter.
    :param resolve: optional ``resolve(name) -> addresses`` for etcd host names.
    """

    dataplane = "iptables"

    def __init__(self, config, tables=None, ipsets=None, links=None, resolve=None, cleanup=None):
        super().__init__(config, resolve, cleanup)
        self.links = links
        """An InterfaceWatcher: only interfaces it lists get dispatch entries.
        None: every endpoint's interface is taken to exist (tests)."""
        self._links_changed = set()
        if links is not None:
            links.subscribe(self._on_links)
        if tables is None:
            tables = {v: iptables_mod.IptablesTable(v, backend=config.iptables_backend) for v in FAMILIES}
        self.plan = PolicyPlanner(self.index, config.tag_ipset_budget, self._present)
        self.families = self.plan.families
        """version -> FamilyPlan: the desired chains."""
        self.chains = {v: ChainReconciler(v, tables[v], config.restore_chunk_chains) for v in FAMILIES}
        self.sets = SetReconciler(ipsets or ipsets_mod.Ipsets())
        self._resync = True
        """Next flush re-reads the kernel and recomputes everything."""
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
        super().start(wake)

    def _on_links(self, changed):
        self._links_changed |= changed

    def _present(self, iface):
        return self.links is None or iface in self.links.links

    def resync(self):
        self._resync = True

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
            if changes.config and self.index.interface_prefix != self.plan.prefix:
                self._recompute_all()
                self._apply()
            else:
                self.plan.apply_changes(changes)
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
            for chains in self.chains.values():
                chains.check_hooks()
        # Cleaning out prepended-over rules waits for an RCU grace period:
        # do it when changes have paused, so it never delays the next change
        # (but not forever, and not once a chain has grown long).
        quiet = now - self._last_change >= CLEANUP_QUIET
        for version, chains in self.chains.items():
            chains.mark_due_cleanups(self.families[version], now, quiet)
        if now - self._last_retry >= RETRY_INTERVAL:
            self._last_retry = now
            for version, chains in self.chains.items():
                chains.retry_failed(self.families[version])
        if self._needs_apply():
            self._apply()

    def protection_programmed(self):
        return all(self._protection_programmed(version) for version in FAMILIES)

    def _protection_programmed(self, version):
        """True when the kernel has this family's global chains (so the
        control-plane rules) and its protected-address set as desired."""
        chains = self.chains[version]
        if not chains.hooks_ok or rules.control_plane_set_name(version) not in self.sets.programmed:
            return False
        return all(chains.is_programmed(self.families[version], name)
                   for name in (rules.CHAIN_INPUT, rules.CHAIN_FORWARD))

    # -- full recomputation --------------------------------------------------------------
    def _full_sync(self):
        """Read the kernel, recompute all desired state from the index, apply the diff."""
        self._resync = False
        self._last_refresh = time.monotonic()
        self.index.take_changes()
        if self.links is not None:
            self.links.refresh_and_notify()
            self._links_changed = set()
        for chains in self.chains.values():
            chains.read_kernel()
        self.sets.read_kernel()
        read = time.monotonic()
        found = (len(self.chains[4].programmed), len(self.chains[6].programmed))
        self._recompute_all()
        computed = time.monotonic()
        self._apply()
        self.written_whole()
        LOG.info("Resync: %d local endpoints, %d/%d IPv4/IPv6 chains desired, %d/%d found in the kernel; "
                 "read %.0f ms, computed %.0f ms, applied %.0f ms",
                 len(self.index.local), len(self.families[4].desired), len(self.families[6].desired),
                 found[0], found[1], (read - self._last_refresh) * 1000, (computed - read) * 1000,
                 (time.monotonic() - computed) * 1000)

    def _recompute_all(self):
        self.plan.recompute_all({v: chains.programmed for v, chains in self.chains.items()},
                                self.sets.programmed)

    # -- applying ------------------------------------------------------------------------------
    def _needs_apply(self):
        return bool(self.plan.sets_dirty) or any(
            self.families[v].dirty or not chains.hooks_ok for v, chains in self.chains.items())

    def _apply(self, prepend=False):
        """Sets first, then chain writes, chain deletes, set destroys: nothing
        is referred to before it exists or removed while referred to."""
        timings = [time.monotonic()]
        destroys = self.sets.write(self.plan)
        timings.append(time.monotonic())
        for version, chains in self.chains.items():
            chains.write(self.families[version], prepend)
        timings.append(time.monotonic())
        for version, chains in self.chains.items():
            chains.delete(self.families[version])
        timings.append(time.monotonic())
        held = set().union(*(chains.sets_held(self.families[version])
                             for version, chains in self.chains.items())) if destroys else set()
        self.sets.destroy(self.plan, destroys, held)
        timings.append(time.monotonic())
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("Applied: sets %.1f ms, chain writes %.1f ms, deletes %.1f ms, set destroys %.1f ms",
                      *((b - a) * 1000 for a, b in zip(timings, timings[1:])))


def remove_iptables_policy(tables=None, ipsets=None, chunk=400):
    """Take out everything this dataplane programs (its hooks, chains and
    ipsets), when another dataplane takes over. Nothing else is touched."""
    tables = tables or {v: iptables_mod.IptablesTable(v) for v in FAMILIES}
    ipsets = ipsets or ipsets_mod.Ipsets()
    removed = 0
    for table in tables.values():
        chains = table.read()
        hooks = ["-D %s %s" % (chain, rule) for chain, rule in rules.HOOKS.items() if rule in chains.get(chain, ())]
        if hooks:
            table.restore(iptables_mod.render_restore("filter", inserts=hooks))
        owned = sorted(name for name in chains if rules.is_owned_chain(name))
        # Flush them all first: then none refers to another and any order deletes.
        batches = [owned[start:start + chunk] for start in range(0, len(owned), chunk)]
        for batch in batches:
            table.restore(iptables_mod.render_restore("filter", writes=[(name, ()) for name in batch]))
        for batch in batches:
            table.restore(iptables_mod.render_restore("filter", deletes=batch))
        removed += len(owned)
    sets = sorted(ipsets.read(rules.is_owned_ipset))
    for name, error in ipsets.destroy(sets).items():
        LOG.warning("Cannot remove ipset %s: %s", name, error)
    if removed or sets:
        LOG.info("Removed the iptables dataplane: %d chains, %d ipsets", removed, len(sets))
