"""Cheap views of interfaces for the node agent: link events, names, up flags.

None of these parse netlink messages with pyroute2: with tens of thousands
of interfaces that costs seconds, where these cost microseconds.
"""
import errno
import socket

from calicoctl.host.netlink.errors import translate_error
from calicoctl.host.netlink.links import IFF_UP
from calicoctl.host.netlink.netns import entered_netns

RTMGRP_LINK = 0x1
NETLINK_ROUTE = 0
SIOCGIFFLAGS = 0x8913


class LinkMonitor:
    """Notices rtnetlink link notifications (interfaces appearing, changing, going).

    A plain AF_NETLINK socket subscribed to RTMGRP_LINK: the messages are
    only drained, never parsed; callers list the interfaces afterwards.
    ``wait`` blocks up to ``timeout`` seconds and returns True if anything
    arrived (or the socket overflowed, which means a lot arrived).
    """

    def __init__(self, netns=None):
        with entered_netns(netns):
            try:
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
                self._sock.bind((0, RTMGRP_LINK))
            except OSError as exc:
                raise translate_error(exc, "Cannot open a netlink link monitor") from None
        self._sock.setblocking(False)

    def fileno(self):
        return self._sock.fileno()

    def wait(self, timeout):
        import select
        if self._sock is None:
            return False
        readable, _, _ = select.select([self._sock], [], [], timeout)
        if not readable:
            return False
        while True:
            try:
                if not self._sock.recv(1 << 20):
                    return True
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:      # overflowed: plenty changed
                    continue
                raise translate_error(exc, "Cannot read link notifications") from None

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def list_interface_indexes(netns=None):
    """{name: ifindex} of every interface, fast (if_nameindex, no attribute parsing)."""
    with entered_netns(netns):
        try:
            return {name: index for index, name in socket.if_nameindex()}
        except OSError as exc:
            raise translate_error(exc, "Cannot list interfaces") from None


class InterfaceFlags:
    """IFF_UP of interfaces by name with the SIOCGIFFLAGS ioctl: microseconds
    each, where a netlink query parsed by pyroute2 costs a millisecond."""

    def __init__(self, netns=None):
        with entered_netns(netns):
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def is_up(self, name):
        """True if ``name`` exists and is up; False if it is down or absent."""
        import fcntl
        import struct
        try:
            request = struct.pack("16sH14x", name.encode()[:15], 0)
            answer = fcntl.ioctl(self._sock.fileno(), SIOCGIFFLAGS, request)
        except OSError:
            return False
        return bool(struct.unpack("16sH14x", answer)[1] & IFF_UP)

    def close(self):
        self._sock.close()
