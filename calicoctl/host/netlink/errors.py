"""Netlink failures as named CalicoErrors.

errno values become subclasses of NetlinkError (or NotRoot for EPERM), so
callers can tell "already there" from "gone" without looking at numbers,
and the user reads one sentence instead of a traceback.
"""
import contextlib
import errno
import os

from calicoctl.errors import HostNetworkError, NotRoot


class NetlinkError(HostNetworkError):
    """A netlink request failed; ``errno`` holds the kernel's answer."""

    def __init__(self, message, error_number=None):
        super().__init__(message)
        self.errno = error_number


class AlreadyPresent(NetlinkError):
    """EEXIST: the interface, address or route is already there."""


class LinkNotFound(NetlinkError):
    """ENODEV: no interface of that name or index."""


class NotPresent(NetlinkError):
    """ESRCH / ENOENT / EADDRNOTAVAIL: the route, address or entry is absent."""


class NamespaceNotFound(NetlinkError):
    """The namespace path does not exist (the process holding it is gone)."""


class NetlinkPermissionDenied(NotRoot):
    """EPERM: we lack CAP_NET_ADMIN (not root)."""


_ERRNO_CLASSES = {
    errno.EEXIST: AlreadyPresent,
    errno.ENODEV: LinkNotFound,
    errno.ESRCH: NotPresent,
    errno.ENOENT: NotPresent,
    errno.EADDRNOTAVAIL: NotPresent,
}


def translate_error(exc, what):
    """A CalicoError for a pyroute2 NetlinkError or an OSError, prefixed by ``what``."""
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if code == errno.EPERM:
        return NetlinkPermissionDenied("%s: operation not permitted (run as root)." % what)
    cls = _ERRNO_CLASSES.get(code, NetlinkError)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    return cls("%s: %s." % (what, reason), code)


@contextlib.contextmanager
def translated(what):
    """Raise pyroute2's and the OS's errors escaping the block as ours."""
    from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError
    try:
        yield
    except (PyrouteNetlinkError, OSError) as exc:
        raise translate_error(exc, what) from None
