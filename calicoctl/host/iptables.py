"""iptables, read with ``iptables-save`` and written with ``iptables-restore --noflush``.

Knows nothing of Calico policy: it parses a table into chains, renders a
restore input that (re)writes whole chains, deletes chains and inserts
rules, and runs it. ``--noflush`` means chains not named in the input are
left exactly as they are, so rules and chains of other tools survive.

Backend: nf_tables (``iptables-nft-*``)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Debian installs both the nf_tables and the legacy (x_tables) back ends; we
program nf_tables, deliberately (figures measured on this machine with the
agent's own chains for 10,000 endpoints):

- The cost of a change must not grow with the cluster (issue 4, bench c).
  A legacy restore swaps the whole table as one blob: rewriting one chain
  costs about 200 ms with 10,000 endpoints' chains loaded (3 ms with 100).
  nf_tables changes only the chains named: 3-8 ms, growing mildly with the
  number of chains (the restore tool lists them all).
- It is Debian's default ``iptables``, so ``iptables -L`` and other tools see
  our rules in the same ruleset; mixing back ends in one network namespace
  splits the rules across two rulesets that both see every packet.
- Legacy is faster for one big load (0.3 s vs 1 s for 10,000 endpoints),
  which matters only at cold start, and we stay well inside the budget.

Three nf_tables costs shape how the agent uses it:

- ``iptables-nft-restore`` is quadratic in the number of chains *declared
  in one input* (20,000 chains: 5 s in one input, 1 s in batches of 500),
  so callers split big transactions into batches of a few hundred chains.
- Every commit that adds a rule makes the kernel re-validate every chain
  reachable from the built-in chains (no memo: a chain reached along many
  paths is walked many times). With 10,000 endpoints reachable, rewriting
  one chain costs about 35 ms instead of 8. So the agent dispatches only to
  interfaces that exist (an entry for a missing interface could never match
  anyway), and this remains the one cost that grows with the number of
  *live* workloads.
- A commit that removes rules (flushing a chain to rewrite it) waits for an
  RCU grace period: 8-16 ms here whatever the table size, against 2 ms for
  one that only adds rules. So an incremental change inserts the chain's new
  rules in front of the old ones and cleans the old ones out later, when
  changes have paused (calicoctl.agent.policy.iptables.dataplane).

Reading the kernel back costs more (``iptables-nft-save`` of 10,000
endpoints' chains takes about 2.5 s), so the dataplane reads only when it
(re)synchronises, and checks its two hook rules with ``iptables -C``.
``CALICO_AGENT_IPTABLES_BACKEND=legacy`` selects the other back end for
comparison.

Every command can run in another network namespace by passing ``prefix``
(e.g. ``["nsenter", "--net=/proc/<pid>/ns/net", "--"]``): tests use that; the
agent itself runs inside the namespace it programs.
"""
import logging
import time

from calicoctl.errors import CommandFailed, HostNetworkError
from calicoctl.host import run as run_mod

LOG = logging.getLogger(__name__)

BACKENDS = {
    "nft": {4: ("iptables-nft-save", "iptables-nft-restore", "iptables-nft"),
            6: ("ip6tables-nft-save", "ip6tables-nft-restore", "ip6tables-nft")},
    "legacy": {4: ("iptables-legacy-save", "iptables-legacy-restore", "iptables-legacy"),
               6: ("ip6tables-legacy-save", "ip6tables-legacy-restore", "ip6tables-legacy")},
}
# Errors worth retrying as they are: another writer committed first.
TRANSIENT_MARKERS = ("Resource temporarily unavailable", "Another app is currently holding")
MAX_ATTEMPTS = 4


def parse_save(text, table="filter"):
    """``iptables-save`` output -> {chain: [rule, ...]} for one table.

    Rules are the text after ``-A <chain> `` exactly as printed. Every
    declared chain appears, empty ones with an empty list.
    """
    chains = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("*"):
            in_table = line[1:].strip() == table
            continue
        if not in_table or not line or line.startswith("#"):
            continue
        if line == "COMMIT":
            in_table = False
        elif line.startswith(":"):
            chains.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            chains.setdefault(chain, []).append(rest[0] if rest else "")
    return chains


def render_restore(table, writes=(), deletes=(), inserts=()):
    """A ``--noflush`` restore input.

    :param writes: ``[(chain, rules)]``: each chain is created or flushed
        and filled with ``rules`` (text after ``-A <chain>``).
    :param deletes: chains to flush and delete (after the writes, so a
        chain rewritten here may stop referring to one deleted here).
    :param inserts: complete lines such as ``-I INPUT 1 -j felix-INPUT``.
    """
    lines = ["*" + table]
    for chain, _ in writes:
        lines.append(":%s - [0:0]" % chain)
    for chain in deletes:
        lines.append(":%s - [0:0]" % chain)
    for chain, rules in writes:
        for rule in rules:
            lines.append("-A %s %s" % (chain, rule))
    for chain in deletes:
        lines.append("-X %s" % chain)
    lines.extend(inserts)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class IptablesTable:
    """One table of one IP family, read and written through the chosen back end."""

    def __init__(self, version, table="filter", backend="nft", prefix=(), runner=None):
        self.version = version
        self.table = table
        self.backend = backend
        self.prefix = list(prefix)
        self._run = runner or run_mod.run
        self._save, self._restore, self._iptables = BACKENDS[backend][version]

    def __repr__(self):
        return "IptablesTable(v%d, %s, %s)" % (self.version, self.table, self.backend)

    def _command(self, *args):
        return self.prefix + list(args)

    def read(self):
        """{chain: [rule, ...]} of the whole table, as the kernel has it."""
        return parse_save(self._run(self._command(self._save, "-t", self.table)), self.table)

    def restore(self, text):
        """Apply a ``--noflush`` restore input; retry briefly when another
        writer got in first. Raises CommandFailed."""
        args = [self._restore, "--noflush"]
        if self.backend == "legacy":
            args += ["--wait", "5"]
        delay = 0.01
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self._run(self._command(*args), input_text=text, timeout=120)
                return
            except CommandFailed as exc:
                transient = any(marker in (exc.stderr or "") for marker in TRANSIENT_MARKERS)
                if not transient or attempt == MAX_ATTEMPTS:
                    raise
                LOG.info("%s: %s; retrying", self._restore, (exc.stderr or "").strip()[:200])
                time.sleep(delay)
                delay *= 4

    def has_rule(self, chain, rule):
        """``iptables -C chain rule``: True if the rule is present (False too
        when iptables cannot be run: the caller then writes the rule, and
        that failure is reported)."""
        args = self._command(self._iptables, "-t", self.table, "-C", chain) + rule.split()
        if self.backend == "legacy":
            args[len(self.prefix) + 1:len(self.prefix) + 1] = ["-w", "5"]
        try:
            self._run(args)
        except (CommandFailed, HostNetworkError):
            return False
        return True
