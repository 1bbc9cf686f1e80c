"""IP sets, read with ``ipset save`` and written with ``ipset restore``.

Knows nothing of Calico: it parses sets (type, family, members) and applies
batches of ``create``/``add``/``del``/``destroy`` lines with ``-exist``, so
every line is idempotent (creating a set that exists with the same type,
adding a member that is there, deleting one that is not, are no-ops).

``ipset restore`` stops at the first bad line and does not say which of the
earlier lines took effect (they are sent to the kernel in batches), so on
failure ``apply`` retries each set's lines on their own (idempotent, so
replaying is safe) and reports the sets that still fail; the caller decides
what to do about them.

``prefix`` runs the commands in another network namespace (tests).
"""
import logging
from dataclasses import dataclass, field

from calicoctl.errors import CommandFailed
from calicoctl.host import run as run_mod

LOG = logging.getLogger(__name__)


@dataclass
class IpsetInfo:
    name: str
    set_type: str
    family: str
    members: set = field(default_factory=set)


def parse_save(text, wanted=lambda name: True):
    """``ipset save`` output -> {name: IpsetInfo} for sets ``wanted(name)`` accepts."""
    sets = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3:
            continue
        if words[0] == "create" and wanted(words[1]):
            family = "inet"
            if "family" in words:
                family = words[words.index("family") + 1]
            sets[words[1]] = IpsetInfo(words[1], words[2], family)
        elif words[0] == "add" and words[1] in sets:
            sets[words[1]].members.add(words[2])
    return sets


def render_create(name, set_type="hash:ip", family="inet", maxelem=1048576):
    return "create %s %s family %s maxelem %d" % (name, set_type, family, maxelem)


def render_add(name, member):
    return "add %s %s" % (name, member)


def render_del(name, member):
    return "del %s %s" % (name, member)


def render_destroy(name):
    return "destroy %s" % name


class Ipsets:
    """The ipsets of one network namespace."""

    def __init__(self, prefix=(), runner=None):
        self.prefix = list(prefix)
        self._run = runner or run_mod.run

    def read(self, wanted=lambda name: True):
        """{name: IpsetInfo} of the sets ``wanted`` accepts."""
        return parse_save(self._run(self.prefix + ["ipset", "save"]), wanted)

    def restore(self, lines):
        """Run ``lines`` in one ``ipset -exist restore``. Raises CommandFailed."""
        if lines:
            self._run(self.prefix + ["ipset", "-exist", "restore"],
                      input_text="\n".join(lines) + "\n", timeout=120)

    def destroy(self, name):
        """``ipset destroy``; False if the set could not be destroyed (absent, or in use)."""
        try:
            self._run(self.prefix + ["ipset", "destroy", name], timeout=30)
        except CommandFailed:
            return False
        return True

    def apply(self, lines):
        """Apply lines; on failure retry set by set.

        Returns {set name: error text} for sets whose lines still failed
        (empty when everything applied).
        """
        try:
            self.restore(lines)
            return {}
        except CommandFailed as exc:
            LOG.warning("ipset restore of %d lines failed (%s); retrying set by set",
                        len(lines), (exc.stderr or "").strip()[:200])
        groups = {}
        for line in lines:
            groups.setdefault(line.split()[1], []).append(line)
        failed = {}
        for name, group in groups.items():
            try:
                self.restore(group)
            except CommandFailed as exc:
                failed[name] = (exc.stderr or str(exc)).strip()
                LOG.error("ipset %s: %s", name, failed[name])
        return failed
