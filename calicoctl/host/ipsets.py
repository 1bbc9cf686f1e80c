"""The IP sets of one network namespace, written and read in this process.

Knows nothing of Calico. Callers describe what each set should get
(``SetWrite``: create it if absent, add these members, delete those) and
get back, per set, what the kernel refused; every step is idempotent
(creating a set that exists with the same type and size, adding a member
that is there, deleting one that is not, destroying a set that is gone),
so a batch can simply be sent again. The kernel is spoken to through
netlink (``calicoctl.host.netlink.ipset``), one socket per call: no process
is started, so a cycle that only changes set members costs no fork.

``netns`` (a ``/proc/<pid>/ns/net`` path) works in another network
namespace (tests).
"""
import logging
from dataclasses import dataclass
from typing import Optional, Sequence

from calicoctl.host.netlink.ipset import IpsetError, IpsetInfo, IpsetSocket

LOG = logging.getLogger(__name__)

__all__ = ["IpsetInfo", "Ipsets", "SetWrite"]


@dataclass(frozen=True)
class SetWrite:
    """What one batch does to one set.

    :ivar create: create the set first (a set already there with the same
        type, family and ``maxelem`` is fine).
    :ivar maxelem: its capacity when created (None: the kernel's 65536).
    """
    name: str
    set_type: str
    family: str
    adds: Sequence[str] = ()
    dels: Sequence[str] = ()
    create: bool = False
    maxelem: Optional[int] = None


class Ipsets:
    """The ipsets of one network namespace (None: this process's)."""

    def __init__(self, netns=None):
        self.netns = netns

    def read(self, wanted=lambda name: True):
        """{name: IpsetInfo} of the sets ``wanted`` accepts. Raises NetlinkError."""
        with IpsetSocket(self.netns) as sock:
            return sock.list(wanted)

    def write(self, writes):
        """Apply each SetWrite in turn: create, add, delete.

        :return: {set name: error text} of the sets the kernel refused (a
            set stops at its first refusal; the other sets go on).
        :raises NetlinkError: when the kernel cannot be spoken to at all.
        """
        failed = {}
        with IpsetSocket(self.netns) as sock:
            for write in writes:
                try:
                    if write.create:
                        sock.create(write.name, write.set_type, write.family, write.maxelem)
                    if write.adds:
                        sock.add(write.name, write.set_type, write.family, write.adds)
                    if write.dels:
                        sock.delete(write.name, write.set_type, write.family, write.dels)
                except IpsetError as exc:
                    failed[write.name] = str(exc)
                    LOG.error("ipset %s: %s", write.name, exc)
        return failed

    def destroy(self, names):
        """Destroy sets (those already gone are fine).

        :return: {set name: error text} of those the kernel kept (in use).
        """
        failed = {}
        with IpsetSocket(self.netns) as sock:
            for name in names:
                try:
                    sock.destroy(name)
                except IpsetError as exc:
                    failed[name] = str(exc)
        return failed

    def replace(self, name, set_type, family, members):
        """Make set ``name`` hold exactly ``members``, atomically for the rules
        matching on it: a temporary set is filled and swapped in.

        :raises IpsetError: the kernel refused (``name`` of another type, ...).
        """
        temp = name + "-tmp"
        with IpsetSocket(self.netns) as sock:
            sock.create(name, set_type, family)
            sock.create(temp, set_type, family)
            try:
                sock.flush(temp)
                sock.add(temp, set_type, family, members)
                sock.swap(temp, name)
            finally:
                sock.destroy(temp)
