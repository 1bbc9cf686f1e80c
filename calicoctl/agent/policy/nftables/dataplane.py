"""The nftables policy dataplane (a Component): etcd policy -> table ``inet calico``.

Each cycle it asks the index (``state.PolicyIndex``) what changed, has the
planner (``plan.TablePlanner``) re-render what that touches, and sends the
difference between the wanted table and the programmed one
(``transaction.plan_units``) to the kernel as one batch through libnftables
(calicoctl.host.nftables): one atomic transaction, in the agent's process.

Start and repair
~~~~~~~~~~~~~~~~
At start (and on every resync) it writes the whole table in one batch that
replaces what was there (``transaction.full_table``): after a SIGKILL and
restart the old rules stay in force until the new ones take over in the
same instant, and established flows are accepted by both. The same full
write repairs the table every ``refresh_interval`` seconds, whatever anyone
did to it meanwhile.

A batch the kernel refuses
~~~~~~~~~~~~~~~~~~~~~~~~~~
Nothing of a refused batch applied. It is sent again in halves, then
quarters, ... (in the same order) until the units at fault are alone; the
rest goes through. A profile chain refused on its own is checked rule by
rule without applying anything (libnftables' dry run); each rule the
kernel refuses becomes a ``drop`` in its place (so the profile never allows
more than it says) and is reported, with its profile, in ``calicoctl
status``; the chain is then written. Anything else refused is logged and
retried every ``RETRY_INTERVAL`` seconds. Should the full write at start be
refused, the table is read back from the kernel (``transaction.read_table``)
and brought to the wanted state the same way, unit by unit: an old table is
never removed before a new one can take its place.

Beside other rules
~~~~~~~~~~~~~~~~~~
nftables runs every base chain on a hook, so an ``accept`` here does not
override another table's ``drop`` (Docker's FORWARD policy is DROP once it
enables forwarding). When iptables' filter table exists, ``Coexistence``
keeps accept rules for workload interfaces at the top of its FORWARD chain
(and INPUT, when ``DefaultEndpointToHostAction`` is ACCEPT): this table
has already dropped what policy denies.
"""
import logging
import time

from calicoctl.agent.policy.component import PolicyComponent
from calicoctl.agent.policy.nftables import coexistence, rules, transaction
from calicoctl.agent.policy.nftables.plan import TablePlanner
from calicoctl.errors import CalicoError
from calicoctl.host import nftables as nftables_mod

LOG = logging.getLogger(__name__)

RETRY_INTERVAL = 5.0


class NftablesDataplane(PolicyComponent):
    """Programs policy for this host's endpoints into ``inet calico`` (see the module docstring).

    :param nft: a ``host.nftables.Nftables`` (tests give one in a netns);
        made at the first flush otherwise.
    """

    dataplane = "nftables"

    def __init__(self, config, nft=None, resolve=None, cleanup=None):
        super().__init__(config, resolve, cleanup)
        self._nft = nftables_mod.LazyNftables(nft)
        self.plan = TablePlanner(self.index)
        self.programmed = None
        """The table as the kernel has it (None: unknown, write it whole)."""
        self.refused = {}
        """chain -> [{"profile", "direction", "position", "rule", "error"}] of
        rules the kernel refused (each a drop in its place)."""
        self._failed = set()
        """Chains and sets whose last write was refused (retried)."""
        self.coexistence = coexistence.Coexistence(lambda: self.nft)
        self._resync = True
        self._last_refresh = time.monotonic()
        self._last_retry = 0.0
        self._last_check = 0.0
        self.last_apply_seconds = None

    @property
    def nft(self):
        return self._nft.get()

    def close(self):
        super().close()
        self._nft.close()

    def resync(self):
        self._resync = True

    # -- Component interface -----------------------------------------------------------
    def flush(self):
        started = time.monotonic()
        if self._resync or self.programmed is None:
            self._write_whole()
        else:
            changes = self.index.take_changes()
            if not changes:
                return
            if changes.config and self.index.interface_prefix != self.plan.prefix:
                self._write_whole()
            else:
                self.plan.apply_changes(changes)
                self._apply()
            if changes.config or changes.control_plane:
                self.coexistence.check(self.index.interface_prefix, self.index.host_action)
        self.last_apply_seconds = time.monotonic() - started
        LOG.debug("nftables flush took %.1f ms", self.last_apply_seconds * 1000)

    def tick(self, now):
        if self._resync:
            return
        interval = self.config.refresh_interval
        if interval and now - self._last_refresh >= interval:
            LOG.info("Periodic refresh: rewriting table %s whole", rules.TABLE_REF)
            self._resync = True
            self.flush()
            return
        if now - self._last_check >= self.config.hook_check_interval:
            self._last_check = now
            self.coexistence.check(self.index.interface_prefix, self.index.host_action)
        if self._failed and now - self._last_retry >= RETRY_INTERVAL:
            self._last_retry = now
            for name in self._failed:
                if name in self.plan.table.sets or name in self.programmed.sets:
                    self.plan.dirty_sets[name] = None
                else:
                    self.plan.dirty_chains.add(name)
            self._failed = set()
            self._apply()

    def protection_programmed(self):
        if self.programmed is None:
            return False
        names = ("forward-out", rules.FORWARD_OUT, "input", rules.WL_TO_HOST)
        return all(self.programmed.chains.get(name) == self.plan.table.chains.get(name) for name in names) \
            and all(name in self.programmed.sets and self.programmed.elements[name] == self.plan.table.elements[name]
                    for name in rules.CONTROL_PLANE_SET.values())

    def status(self):
        status = super().status()
        status["refused_rules"] = [entry for chain in sorted(self.refused) for entry in self.refused[chain]]
        return status

    # -- writing -------------------------------------------------------------------------
    def _write_whole(self):
        """Everything from the index, in one batch replacing the table."""
        self._resync = False
        self._last_refresh = time.monotonic()
        self.index.take_changes()
        self.plan.recompute_all()
        self.plan.take_dirty()
        started = time.monotonic()
        try:
            self.nft.run(transaction.full_table(self.plan.table))
        except nftables_mod.NftError as exc:
            LOG.error("nftables refused the whole table (%s); writing it part by part", exc)
            self.programmed = self._read_kernel()
            self.plan.dirty_chains = set(self.plan.table.chains) | set(self.programmed.chains)
            self.plan.dirty_sets = {name: None for name in set(self.plan.table.sets) | set(self.programmed.sets)}
            self._apply()
            self.written_whole()        # what failed fails closed; retried below
        else:
            self.programmed = transaction.copy_table(self.plan.table)
            self.refused, self._failed = {}, set()
            self.written_whole()
        self.coexistence.check(self.index.interface_prefix, self.index.host_action)
        LOG.info("Wrote table %s: %d local endpoints, %d chains, %d sets in %.0f ms", rules.TABLE_REF,
                 len(self.index.local), len(self.plan.table.chains), len(self.plan.table.sets),
                 (time.monotonic() - started) * 1000)

    def _read_kernel(self):
        try:
            found = self.nft.list_json("table %s" % rules.TABLE_REF)
        except CalicoError as exc:
            LOG.error("Cannot read table %s back: %s", rules.TABLE_REF, exc)
            found = None
        if found is None:
            self.nft.run("add table %s\n" % rules.TABLE_REF)
            found = []
        return transaction.read_table(found)

    def _apply(self):
        dirty_chains, dirty_sets = self.plan.take_dirty()
        units = transaction.plan_units(self.plan.table, self.programmed, dirty_chains, dirty_sets)
        if not units:
            return
        for unit, error in self._send(units):
            self._refused(unit, error)

    def _send(self, units):
        """Send ``units`` in one batch; if refused, in halves, and so on.
        Returns [(unit, error)] of the units refused on their own."""
        try:
            self.nft.run(transaction.render(units))
        except nftables_mod.NftError as exc:
            if len(units) == 1:
                return [(units[0], exc)]
            middle = len(units) // 2
            return self._send(units[:middle]) + self._send(units[middle:])
        for unit in units:
            transaction.apply_unit(self.programmed, unit)
            if unit.phase in (transaction.WRITE_CHAIN, transaction.DELETE_CHAIN):
                self.refused.pop(unit.name, None)
        return []

    def _refused(self, unit, error):
        source = self.plan.profile_of_chain(unit.name) if unit.phase == transaction.WRITE_CHAIN else None
        self._failed.add(unit.name)
        if source is None:
            LOG.error("nftables refused %s: %s; retrying in %.0f s", unit.name, error, RETRY_INTERVAL)
            return
        profile, direction = source
        chain_rules, refused = self._without_refused_rules(unit.name, unit.payload)
        entries = []
        for text, reason in refused:
            position, rule = self.plan.policy_rule(profile, direction, text)
            if not any(entry["position"] == position and entry["rule"] == rule for entry in entries):
                entries.append({"profile": profile, "direction": direction, "position": position,
                                "rule": rule, "error": reason})
        if entries != self.refused.get(unit.name):
            for entry in entries:
                LOG.error("Profile %s, %s rule %d (%s): the kernel refused it (%s); it drops in its place "
                          "(retried every %.0f s)", profile, direction, entry["position"], entry["rule"],
                          entry["error"], RETRY_INTERVAL)
        retry = transaction.Unit(transaction.WRITE_CHAIN, unit.name,
                                 transaction.chain_commands(unit.name, chain_rules, flush=True), chain_rules)
        failed = self._send([retry])
        self.refused[unit.name] = entries
        if failed:
            LOG.error("nftables refused %s even so: %s; retrying in %.0f s", unit.name, failed[0][1], RETRY_INTERVAL)

    def _without_refused_rules(self, chain, chain_rules):
        """(rules with each one the kernel refuses replaced by a drop,
        [(rule, error)] of those refused), by a dry run of each rule alone."""
        kept, refused = [], []
        for rule in chain_rules:
            try:
                self.nft.check("add chain %s %s\nadd rule %s %s %s\n" % (rules.TABLE_REF, chain, rules.TABLE_REF,
                                                                         chain, rule))
                kept.append(rule)
            except nftables_mod.NftError as exc:
                refused.append((rule, str(exc)))
                kept.append('drop comment %s' % rules.quote("refused by the kernel"))
        return tuple(kept), refused


def remove_nftables_policy(nft=None):
    """Take out everything this dataplane programs (its table, its rules in
    iptables' chains), when another dataplane takes over."""
    own = nft is None
    nft = nft or nftables_mod.Nftables()
    try:
        if nft.list_json("table %s" % rules.TABLE_REF) is not None:
            nft.run("delete table %s\n" % rules.TABLE_REF)
            LOG.info("Removed the nftables dataplane: table %s", rules.TABLE_REF)
        coexistence.Coexistence(lambda: nft).remove()
    finally:
        if own:
            nft.close()
