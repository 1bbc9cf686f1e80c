"""A fake filter table and fake ipsets for the policy dataplane's unit tests.

They stand behind the ``tables=`` / ``ipsets=`` injection of
``PolicyDataplane`` and refuse what the kernel refuses, so ordering mistakes
fail here as they would as root:

- a restore is all or nothing; a rule may only jump to a chain that exists
  once the input is applied, and only match on a set that exists;
- ``-X`` deletes only an empty chain no rule refers to;
- ``destroy`` fails on a set a rule still matches on, a write on a set
  that is not there, a create on a name taken by a set of another type, and
  any create beyond ``max_sets`` (each refusal per set, as the kernel's).

``refuse`` (a text) makes any restore containing it fail, like a rule the
kernel will not take.
"""
from calicoctl.agent.policy.iptables import rules
from calicoctl.errors import CommandFailed
from calicoctl.host.ipsets import IpsetInfo

BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT")


def _fail(what, text=None):
    raise CommandFailed(["fake"], 1, "", what, text)


class FakeTable:
    """One family's filter table."""

    def __init__(self, ipsets=None):
        self.chains = {name: [] for name in BUILTIN_CHAINS}
        self.ipsets = ipsets
        self.restores = []
        """Every restore input accepted or refused, in order."""
        self.refuse = None

    def read(self):
        return {name: list(chain_rules) for name, chain_rules in self.chains.items()}

    def has_rule(self, chain, rule):
        return rule in self.chains.get(chain, ())

    def restore(self, text):
        self.restores.append(text)
        if self.refuse and self.refuse in text:
            _fail("refused by the test", text)
        chains = {name: list(chain_rules) for name, chain_rules in self.chains.items()}
        for line in text.splitlines():
            if line in ("*filter", "COMMIT"):
                continue
            if line.startswith(":"):
                chains[line[1:].split()[0]] = []          # create, or flush (--noflush)
                continue
            op, chain, *rest = line.split(" ", 2)
            if chain not in chains:
                _fail("no chain %s" % chain, text)
            if op == "-A":
                chains[chain].append(rest[0])
            elif op == "-I":
                position, rule = rest[0].split(" ", 1)
                if int(position) > len(chains[chain]) + 1:
                    _fail("index of insertion too big", text)
                chains[chain].insert(int(position) - 1, rule)
            elif op == "-D":
                if rest[0] not in chains[chain]:
                    _fail("no such rule", text)
                chains[chain].remove(rest[0])
            elif op == "-X":
                referrers = [name for name, chain_rules in chains.items()
                             if any(chain in rules.chain_references(rule) for rule in chain_rules)]
                if chains[chain] or referrers or chain in BUILTIN_CHAINS:
                    _fail("chain %s is not empty or still referenced by %s" % (chain, referrers), text)
                del chains[chain]
            else:
                _fail("unknown line %r" % line, text)
        for chain_rules in chains.values():
            for rule in chain_rules:
                missing = rules.chain_references(rule) - set(chains)
                if missing:
                    _fail("jump to missing chain %s" % sorted(missing), text)
                if self.ipsets is not None and rules.set_references(rule) - set(self.ipsets.sets):
                    _fail("no such set in %r" % rule, text)
        self.chains = chains

    def owned(self):
        """{chain: rules tuple} of the chains the dataplane owns."""
        return {name: tuple(chain_rules) for name, chain_rules in self.chains.items()
                if rules.is_owned_chain(name)}

    def references_set(self, name):
        return any(name in rules.set_references(rule) for chain_rules in self.chains.values()
                   for rule in chain_rules)


class FakeIpsets:
    """The ipsets of one namespace, behind the ``Ipsets`` adapter's interface."""

    def __init__(self, max_sets=1000):
        self.sets = {}
        self.tables = []
        """FakeTables whose rules may match on these sets (destroy checks them)."""
        self.max_sets = max_sets
        self.calls = []
        """Every write and destroy asked for, as ("write", SetWrite) or ("destroy", name)."""

    def read(self, wanted=lambda name: True):
        return {name: IpsetInfo(name, info.set_type, info.family, set(info.members))
                for name, info in self.sets.items() if wanted(name)}

    def write(self, writes):
        failed = {}
        for write in writes:
            self.calls.append(("write", write))
            error = self._write(write)
            if error:
                failed[write.name] = error
        return failed

    def _write(self, write):
        existing = self.sets.get(write.name)
        if write.create:
            if existing is not None and (existing.set_type, existing.family) != (write.set_type, write.family):
                return "a set of another type has that name"
            if existing is None and len(self.sets) >= self.max_sets:
                return "no room for more sets"
            existing = self.sets.setdefault(write.name, IpsetInfo(write.name, write.set_type, write.family))
        if existing is None:
            return "the set does not exist"
        existing.members.update(write.adds)
        existing.members.difference_update(write.dels)
        return None

    def destroy(self, names):
        failed = {}
        for name in names:
            self.calls.append(("destroy", name))
            if any(table.references_set(name) for table in self.tables):
                failed[name] = "in use"
            else:
                self.sets.pop(name, None)
        return failed


def fake_kernel(max_sets=1000):
    """({4: FakeTable, 6: FakeTable}, FakeIpsets) wired together."""
    ipsets = FakeIpsets(max_sets)
    tables = {version: FakeTable(ipsets) for version in (4, 6)}
    ipsets.tables = list(tables.values())
    return tables, ipsets
