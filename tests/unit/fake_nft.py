"""A fake libnftables for the nftables dataplane's unit tests.

It stands behind ``NftablesDataplane(nft=...)``, understands the commands the
dataplane sends (tables, sets, elements, chains, rules of one table) and
refuses what the kernel refuses, so an ordering mistake fails here as it
would as root:

- a batch is all or nothing (``run`` works on a copy);
- a rule may only jump to a chain, or match on a set, that exists;
- a chain or set may be deleted only while no rule refers to it, an element
  only if it is there, and nothing that does not exist may be flushed;
- any rule containing ``refuse`` (a text) is refused, like a rule the kernel
  will not take.

``batches`` records every batch sent (applied or not); ``checks`` the dry runs.
"""
import copy
import re

from calicoctl.agent.policy.nftables import rules
from calicoctl.host.nftables import NftError

_REFERENCE = re.compile(r"(?:jump|goto) (\S+)")


class FakeNft:
    def __init__(self):
        self.table = None
        """None (no table) or {"sets": {name: spec}, "elements": {name: set()},
        "chains": {name: [rules]}, "hooks": {name: spec}}."""
        self.refuse = None
        self.batches = []
        self.checks = []

    # -- the Nftables interface -------------------------------------------------------
    def run(self, commands, flags=0):
        self.batches.append(commands)
        state = copy.deepcopy(self.table)
        for line in commands.splitlines():
            if line.strip():
                state = self._apply(state, line.strip())
        self.table = state
        return ""

    def check(self, commands):
        self.checks.append(commands)
        state = copy.deepcopy(self.table)
        for line in commands.splitlines():
            if line.strip():
                state = self._apply(state, line.strip())

    def list_json(self, what):
        if what != "table %s" % rules.TABLE_REF:
            return None          # iptables' filter chains: not in this fake
        if self.table is None:
            return None
        objects = [{"chain": {"name": name}} for name in self.table["chains"]]
        for name, spec in self.table["sets"].items():
            types = spec[len("type "):].rstrip(";").split(" . ")
            elements = [self._element_json(element) for element in sorted(self.table["elements"][name])]
            objects.append({"set": {"name": name, "type": types if len(types) > 1 else types[0],
                                    "elem": elements}})
        return objects

    def close(self):
        pass

    # -- what the fake kernel holds -------------------------------------------------------
    def chain(self, name):
        return tuple(self.table["chains"][name])

    def elements(self, name):
        return set(self.table["elements"][name])

    # -- interpretation -------------------------------------------------------------------
    @staticmethod
    def _element_json(element):
        parts = [part.strip().strip('"') for part in element.split(" . ")]
        return {"concat": parts} if len(parts) > 1 else parts[0]

    def _fail(self, why, line):
        raise NftError("nftables refused the change: %s %s" % (why, line), line)

    def _apply(self, state, line):
        ref = rules.TABLE_REF
        if self.refuse and self.refuse in line:
            self._fail("refused by the test", line)
        if line == "add table %s" % ref:
            return state or {"sets": {}, "elements": {}, "chains": {}, "hooks": {}}
        if line == "delete table %s" % ref:
            if state is None:
                self._fail("No such file or directory", line)
            return None
        if state is None:
            self._fail("No such file or directory (no table)", line)
        words = line.split()
        verb, kind, name = " ".join(words[:2]), words[2] if len(words) > 2 else "", None
        rest = line[len("%s %s %s " % (words[0], words[1], ref)):]
        name, _, body = rest.partition(" ")
        if verb == "add set":
            state["sets"].setdefault(name, body.strip("{} "))
            state["elements"].setdefault(name, set())
        elif verb in ("add element", "delete element"):
            if name not in state["sets"]:
                self._fail("No such file or directory (set %s)" % name, line)
            elements = {element.strip() for element in body.strip("{} ").split(", ")}
            if verb == "add element":
                state["elements"][name] |= elements
            else:
                if not elements <= state["elements"][name]:
                    self._fail("No such file or directory (element)", line)
                state["elements"][name] -= elements
        elif verb == "delete set":
            if name not in state["sets"]:
                self._fail("No such file or directory (set %s)" % name, line)
            if any("@" + name in rule.split() for chain in state["chains"].values() for rule in chain):
                self._fail("Device or resource busy (set %s in use)" % name, line)
            del state["sets"][name]
            del state["elements"][name]
        elif verb == "add chain":
            state["chains"].setdefault(name, [])
            if body:
                state["hooks"][name] = body.strip("{} ")
        elif verb == "flush chain":
            if name not in state["chains"]:
                self._fail("No such file or directory (chain %s)" % name, line)
            state["chains"][name] = []
        elif verb == "delete chain":
            if name not in state["chains"]:
                self._fail("No such file or directory (chain %s)" % name, line)
            if any(name in _REFERENCE.findall(rule) for chain in state["chains"].values() for rule in chain):
                self._fail("Device or resource busy (chain %s in use)" % name, line)
            del state["chains"][name]
            state["hooks"].pop(name, None)
        elif verb == "add rule":
            if name not in state["chains"]:
                self._fail("No such file or directory (chain %s)" % name, line)
            for target in _REFERENCE.findall(body):
                if target not in state["chains"]:
                    self._fail("No such file or directory (chain %s)" % target, line)
            for word in body.split():
                if word.startswith("@") and word[1:] not in state["sets"]:
                    self._fail("No such file or directory (set %s)" % word[1:], line)
            state["chains"][name].append(body)
        else:
            self._fail("fake: unknown command %r" % kind, line)
        return state
