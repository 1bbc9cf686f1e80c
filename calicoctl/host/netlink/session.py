"""``Session``: one rtnetlink socket serving one network namespace.

Its methods come by kernel object from ``links``, ``routing`` (addresses,
routes, neighbours) and ``tunnels``; each of those modules works on the
socket this class opens. The one-shot helpers below open a session for a
single call.
"""
from calicoctl.host.netlink.errors import translated
from calicoctl.host.netlink.links import Links
from calicoctl.host.netlink.netns import entered_netns
from calicoctl.host.netlink.routing import Routing
from calicoctl.host.netlink.tunnels import Tunnels


class Session(Links, Routing, Tunnels):
    """One rtnetlink socket serving one network namespace.

    Use it as a context manager; the socket is closed on exit. Methods raise
    the NetlinkError subclasses of ``calicoctl.host.netlink.errors``.
    """

    def __init__(self, netns=None):
        from pyroute2 import IPRoute
        self.netns = netns
        """The namespace path this session serves (None: the caller's)."""
        where = "in %s" % netns if netns else "in this network namespace"
        with entered_netns(netns), translated("Cannot open a netlink socket %s" % where):
            self._ipr = IPRoute()
        self._where = where

    def close(self):
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def find_link(name, netns=None):
    with Session(netns) as session:
        return session.find_link(name)


def delete_link(name, netns=None):
    """Delete interface ``name`` in ``netns``; False if it was not there."""
    with Session(netns) as session:
        return session.delete_link(name)
