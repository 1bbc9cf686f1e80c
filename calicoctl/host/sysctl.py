"""Kernel settings under /proc/sys, in this network namespace or another.

Names use the slash form (``net/ipv4/conf/cali0/proxy_arp``): interface
names may contain dots. ``/proc/sys/net`` resolves to the network namespace
of the thread that opens the file, so for ``netns`` (a path such as
``/proc/<pid>/ns/net``) the file is opened with this thread inside that
namespace (``calicoctl.host.netlink.entered_netns``); ``netns`` None is the
caller's own.

Errors are the netlink module's, so a caller that already handles those
(a vanished container, not being root) handles these too.
"""
import errno

from calicoctl.host.netlink import NetlinkError, NetlinkPermissionDenied, NotPresent, entered_netns

PROC_SYS = "/proc/sys/"


class SysctlNotFound(NotPresent):
    """The setting does not exist (e.g. the interface it belongs to is gone)."""


def read(name, netns=None):
    """The stripped value of a setting, or None if it does not exist."""
    with entered_netns(netns):
        try:
            with open(PROC_SYS + name) as handle:
                return handle.read().strip()
        except FileNotFoundError:
            return None


def write(name, value, netns=None):
    """Set ``name`` to ``value``. Raises SysctlNotFound, NetlinkPermissionDenied
    (not root) or NetlinkError."""
    with entered_netns(netns):
        try:
            with open(PROC_SYS + name, "w") as handle:
                handle.write(str(value))
        except FileNotFoundError:
            raise SysctlNotFound("Cannot set %s: no such setting (is the interface gone?)." % name,
                                 errno.ENOENT) from None
        except PermissionError:
            raise NetlinkPermissionDenied("Cannot set %s: permission denied (run as root)." % name) from None
        except OSError as exc:
            raise NetlinkError("Cannot set %s: %s." % (name, exc.strerror), exc.errno) from None


def ensure(name, value, netns=None):
    """Write ``value`` only if the setting differs; True if it was written."""
    if read(name, netns) == str(value):
        return False
    write(name, value, netns)
    return True
