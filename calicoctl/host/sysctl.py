"""Kernel settings under /proc/sys, for the caller's own network namespace.

The agent runs inside the namespace it programs, so it writes the files
directly (``/proc/sys/net`` resolves to the namespace of the process that
opens it). ``root`` is injectable so pure callers can be exercised against
a directory. For another namespace use ``calicoctl.host.netlink.write_sysctl``.
"""
import errno
import os

from calicoctl.errors import HostNetworkError

PROC_SYS = "/proc/sys"


class SysctlNotFound(HostNetworkError):
    """The setting does not exist (e.g. the interface it belongs to is gone)."""


def _path(name, root):
    # Slash form ('net/ipv4/conf/cali0/proxy_arp'): interface names may hold dots.
    return os.path.join(root, name)


def read(name, root=PROC_SYS):
    """The stripped value of a setting, or None if it does not exist."""
    try:
        with open(_path(name, root)) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def write(name, value, root=PROC_SYS):
    """Set ``name`` to ``value``. Raises SysctlNotFound / HostNetworkError."""
    try:
        with open(_path(name, root), "w") as handle:
            handle.write(str(value))
    except FileNotFoundError:
        raise SysctlNotFound("Cannot set %s: no such setting." % name) from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise SysctlNotFound("Cannot set %s: no such setting." % name) from None
        raise HostNetworkError("Cannot set %s: %s." % (name, exc.strerror)) from None


def ensure(name, value, root=PROC_SYS):
    """Write ``value`` only if the setting differs; True if it was written."""
    if read(name, root) == str(value):
        return False
    write(name, value, root)
    return True
