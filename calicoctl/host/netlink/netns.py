"""Entering another network namespace with this thread, and coming back.

A namespace is named by a path such as ``/proc/<pid>/ns/net`` (None: the
caller's own). A netlink socket, like a ``/proc/sys/net`` file, serves the
namespace of the thread that opened it, so we ``setns`` into the target,
open, and come straight back, all in this thread. pyroute2's own ``netns=``
support forks a helper process for that, which costs more than all the
netlink work of a ``container add``.
"""
import contextlib
import errno
import functools
import os

from calicoctl.host.netlink.errors import NamespaceNotFound, NetlinkError, NetlinkPermissionDenied

CLONE_NEWNET = 0x40000000


@functools.lru_cache(maxsize=None)
def _libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd, description):
    import ctypes
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            raise NetlinkPermissionDenied(
                "Cannot enter network namespace %s: operation not permitted (run as root)."
                % description)
        raise NetlinkError("Cannot enter network namespace %s: %s." % (description, os.strerror(code)),
                           code)


def open_netns(netns):
    """An O_RDONLY fd on the namespace file; the caller closes it."""
    try:
        return os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceNotFound("Network namespace %s does not exist (has its process exited?)."
                                % netns, errno.ENOENT) from None
    except PermissionError:
        raise NetlinkPermissionDenied("Cannot open network namespace %s: permission denied "
                                      "(run as root)." % netns) from None
    except OSError as exc:
        raise NetlinkError("Cannot open network namespace %s: %s." % (netns, exc.strerror),
                           exc.errno) from None


@contextlib.contextmanager
def entered_netns(netns):
    """Run the block with this thread in ``netns`` (None: where it already is).

    The thread always returns to its own namespace, even if the block fails;
    if even that fails we are somewhere unknown, and say so loudly.
    """
    if netns is None:
        yield
        return
    target = open_netns(netns)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, netns)
            try:
                yield
            finally:
                _setns(own, "of this process (returning from %s)" % netns)
        finally:
            os.close(own)
    finally:
        os.close(target)
