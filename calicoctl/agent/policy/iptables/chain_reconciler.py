"""Programs one IP family's desired chains (plan.FamilyPlan) into iptables.

Keeps what it believes the kernel has (``programmed``), writes the dirty
chains whose rules differ and deletes the ones no longer desired, in an
order the kernel accepts (the pure ``plan_*`` functions below decide it):

- writes by rank, so a chain comes after every chain it refers to, in
  batches of ``chunk`` chains (one ``iptables-restore --noflush`` each);
  anything referred to but neither desired nor programmed gets a DROP stub
  first;
- in incremental cycles (``prepend``) a chain that has rules gets its new
  rules inserted in front of the old ones, which go later, once changes
  have paused (``due_cleanups``): removing rules costs an nf_tables commit
  an RCU grace period, adding them does not;
- deletions flush every chain of a batch, then delete them (a chain must be
  unreferenced before it can go), and wait while old rules kept behind a
  prepended RETURN still refer to them;
- a batch the kernel refuses is split in half until the bad chain is alone,
  which becomes a DROP stub and is retried later (``retry_failed``).
"""
import enum
import logging
import time

from calicoctl.agent.policy.iptables import rules
from calicoctl.errors import CalicoError, CommandFailed
from calicoctl.host import iptables as iptables_mod

LOG = logging.getLogger(__name__)

CLEANUP_DELAY = 1.0        # a prepended chain is rewritten whole no sooner than this,
CLEANUP_QUIET = 1.0        # and only once no change came for this long,
CLEANUP_MAX_WAIT = 30.0    # unless it has waited this long already


class WriteMode(enum.Enum):
    REPLACE = "replace"      # flush the chain and write its rules
    PREPEND = "prepend"      # insert the new rules in front of the old ones


class DeletePhase(enum.Enum):
    FLUSH = "flush"
    DELETE = "delete"


# -- pure decisions ---------------------------------------------------------------------

def prepended(chain_rules):
    """Rules to put in front of a chain's old rules so the old ones are never reached."""
    if chain_rules and is_verdict(chain_rules[-1]):
        return tuple(chain_rules)
    return tuple(chain_rules) + ("-j RETURN",)


def is_verdict(rule):
    """True for a rule that matches everything and ends evaluation of the chain."""
    words = rule.split()
    return len(words) == 2 and (words[0] == "-g" or (words[0] == "-j" and words[1] in ("DROP", "ACCEPT", "RETURN")))


def stub_rule(reason):
    return rules.render_comment("calico: %s" % reason) + " -j DROP"


def plan_writes(plan, programmed, prepend):
    """The chains to write, in order: ``[(name, rules, WriteMode)]`` (pure).

    Dirty chains whose desired rules differ from ``programmed``, by rank
    (then name), preceded by a DROP stub for every chain they refer to that
    is neither desired nor programmed. A chain that already has rules is
    prepended to when ``prepend``, else replaced.
    """
    writes = [name for name in plan.dirty
              if name in plan.desired and programmed.get(name) != plan.desired[name]]
    stubs = {}
    for name in writes:
        for rule in plan.desired[name]:
            for target in rules.chain_references(rule):
                if target not in plan.desired and target not in programmed and target not in stubs:
                    LOG.error("IPv%d chain %s refers to missing chain %s: adding a DROP stub",
                              plan.version, name, target)
                    stubs[target] = (stub_rule("missing chain"),)
    items = [(name, stub, WriteMode.REPLACE) for name, stub in stubs.items()]
    for name in sorted(writes, key=lambda name: (plan.rank.get(name, 0), name)):
        mode = WriteMode.PREPEND if prepend and programmed.get(name) else WriteMode.REPLACE
        items.append((name, plan.desired[name], mode))
    return items


def held_references(programmed, cleanup, references):
    """Names that old rules of chains awaiting cleanup still refer to (pure).

    :param references: ``references(rule)`` -> names (chains or sets).
    """
    found = set()
    for name in cleanup:
        for rule in programmed.get(name, ()):
            found |= references(rule)
    return found


def plan_deletes(plan, programmed, cleanup):
    """(chains to delete now, sorted; chains that must wait) (pure).

    Dirty chains no longer desired but programmed. A chain can only go once
    nothing refers to it: those an old rule kept behind a prepended RETURN
    still refers to wait for its cleanup, and so does every chain a waiting
    chain refers to.
    """
    deletes = sorted(name for name in plan.dirty if name not in plan.desired and name in programmed)
    candidates = set(deletes)
    blocked = held_references(programmed, cleanup, rules.chain_references) & candidates
    todo = list(blocked)
    while todo:
        for rule in programmed.get(todo.pop(), ()):
            for target in rules.chain_references(rule):
                if target in candidates and target not in blocked:
                    blocked.add(target)
                    todo.append(target)
    return [name for name in deletes if name not in blocked], blocked


def due_cleanups(cleanup, programmed, desired, now, quiet):
    """Prepended chains to rewrite whole now (pure).

    Due once their delay passed and changes have paused (``quiet``), or
    when they waited too long or their rules have piled up.
    """
    due = []
    for name, when in cleanup.items():
        overdue = now - when >= CLEANUP_MAX_WAIT
        grown = len(programmed.get(name, ())) > 4 * len(desired.get(name, ())) + 32
        if when <= now and (quiet or overdue or grown):
            due.append(name)
    return due


# -- effects ------------------------------------------------------------------------------

class ChainReconciler:
    """What one family's filter table has, and the writes that change it.

    :param version: 4 or 6.
    :param table: an ``IptablesTable`` (or anything with read/restore/has_rule).
    :param chunk: chains per restore.
    """

    def __init__(self, version, table, chunk):
        self.version = version
        self.table = table
        self.chunk = max(1, chunk)
        self.programmed = {}
        """chain -> rules (tuple) we believe the kernel has (owned chains only)."""
        self.hooks_ok = False
        self.failed = set()
        """chains the kernel refused (stubbed); retried on tick."""
        self.cleanup = {}
        """chain -> monotonic time after which its old (prepended-over) rules go."""

    def read_kernel(self):
        """Forget everything and read the kernel's chains as programmed."""
        try:
            kernel = self.table.read()
        except CalicoError as exc:
            LOG.error("Cannot read IPv%d iptables (%s); assuming none of our chains exist", self.version, exc)
            kernel = {}
        self.programmed = {name: tuple(chain_rules) for name, chain_rules in kernel.items()
                           if rules.is_owned_chain(name)}
        self.hooks_ok = not rules.calculate_missing_hooks(kernel)
        self.failed = set()
        self.cleanup = {}

    def sets_held(self, plan):
        """Sets that rules still in the kernel match on although no desired
        chain does: old rules behind a prepended RETURN, and chains waiting
        to be deleted."""
        leftovers = [name for name in self.programmed if name not in plan.desired]
        return held_references(self.programmed, set(self.cleanup) | set(leftovers), rules.set_references)

    def check_hooks(self):
        """Notice hook rules someone removed (the next write re-inserts them)."""
        if self.hooks_ok and not all(self.table.has_rule(chain, rule) for chain, rule in rules.HOOKS.items()):
            LOG.warning("IPv%d hook rules were removed; re-inserting them", self.version)
            self.hooks_ok = False

    def mark_due_cleanups(self, plan, now, quiet):
        for name in due_cleanups(self.cleanup, self.programmed, plan.desired, now, quiet):
            del self.cleanup[name]
            if name in plan.desired:
                plan.dirty.add(name)       # rewritten whole: the old rules go

    def retry_failed(self, plan):
        if self.failed:
            plan.dirty |= self.failed
            self.failed = set()

    def is_programmed(self, plan, name):
        """True when the kernel has chain ``name`` as desired (new rules in front count)."""
        wanted = plan.desired.get(name)
        return wanted is not None and name not in self.failed and \
            self.programmed.get(name, ())[:len(wanted)] == wanted

    # -- writes -------------------------------------------------------------------------------
    def write(self, plan, prepend=False):
        """Write every dirty chain whose desired rules differ from the kernel's."""
        items = plan_writes(plan, self.programmed, prepend)
        plan.dirty = {name for name in plan.dirty if name not in plan.desired}
        for name, _, mode in items:
            if mode is WriteMode.PREPEND:
                self.cleanup.setdefault(name, time.monotonic() + CLEANUP_DELAY)
        for start in range(0, len(items), self.chunk):
            self._write_batch(items[start:start + self.chunk])
        if not self.hooks_ok:
            self._ensure_hooks()

    def _write_batch(self, batch):
        """Apply (name, rules, mode) items in one restore; split on failure."""
        replace = [(name, chain_rules) for name, chain_rules, mode in batch if mode is WriteMode.REPLACE]
        inserts = []
        for name, chain_rules, mode in batch:
            if mode is WriteMode.PREPEND:
                inserts += ["-I %s %d %s" % (name, position, rule)
                            for position, rule in enumerate(prepended(chain_rules), 1)]
        try:
            self.table.restore(iptables_mod.render_restore("filter", writes=replace, inserts=inserts))
        except CommandFailed as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                self._write_batch(batch[:middle])
                self._write_batch(batch[middle:])
                return
            name, chain_rules, mode = batch[0]
            if mode is WriteMode.PREPEND:      # try the plain way before giving up on it
                self.cleanup.pop(name, None)
                self._write_batch([(name, chain_rules, WriteMode.REPLACE)])
                return
            LOG.error("IPv%d chain %s refused by the kernel (%s); writing a DROP stub",
                      self.version, name, (exc.stderr or str(exc)).strip()[:300])
            stub = (stub_rule("failed to program"),)
            try:
                self.table.restore(iptables_mod.render_restore("filter", writes=[(name, stub)]))
                self.programmed[name] = stub
            except CommandFailed as stub_exc:
                LOG.error("IPv%d chain %s: even the stub failed: %s", self.version, name, stub_exc)
                self.programmed.pop(name, None)
            self.failed.add(name)
            return
        for name, chain_rules, mode in batch:
            if mode is WriteMode.PREPEND:
                self.programmed[name] = prepended(chain_rules) + tuple(self.programmed.get(name, ()))
            else:
                self.programmed[name] = tuple(chain_rules)

    def _ensure_hooks(self):
        kernel_missing = [chain for chain in sorted(rules.HOOKS)
                          if not self.table.has_rule(chain, rules.HOOKS[chain])]
        if kernel_missing:
            try:
                self.table.restore(iptables_mod.render_restore(
                    "filter", inserts=[rules.render_hook_insert(c) for c in kernel_missing]))
            except CommandFailed as exc:
                LOG.error("IPv%d: cannot insert hook rules: %s", self.version, exc)
                return
            LOG.info("IPv%d: inserted hook rules in %s", self.version, ", ".join(kernel_missing))
        self.hooks_ok = True

    # -- deletes ------------------------------------------------------------------------------
    def delete(self, plan):
        """Delete the chains no longer desired that nothing of ours refers to any more."""
        deletes, waiting = plan_deletes(plan, self.programmed, self.cleanup)
        plan.dirty = waiting
        if not deletes:
            return
        # Flush them all first: then none refers to another and any order deletes.
        for phase in (DeletePhase.FLUSH, DeletePhase.DELETE):
            for start in range(0, len(deletes), self.chunk):
                self._delete_batch(deletes[start:start + self.chunk], phase)

    def _delete_batch(self, batch, phase):
        if phase is DeletePhase.FLUSH:
            text = iptables_mod.render_restore("filter", writes=[(name, ()) for name in batch])
        else:
            text = iptables_mod.render_restore("filter", deletes=batch)
        try:
            self.table.restore(text)
        except CommandFailed as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                self._delete_batch(batch[:middle], phase)
                self._delete_batch(batch[middle:], phase)
                return
            LOG.error("IPv%d: cannot %s chain %s: %s", self.version, phase.value, batch[0],
                      (exc.stderr or str(exc)).strip()[:300])
            return
        for name in batch:
            if phase is DeletePhase.FLUSH:
                if name in self.programmed:
                    self.programmed[name] = ()
            else:
                self.programmed.pop(name, None)
