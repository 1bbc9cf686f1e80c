"""Links, addresses, routes and neighbours through rtnetlink (pyroute2).

The only module that imports pyroute2, and it does so inside functions:
importing this module costs nothing, so commands that never touch the kernel
(and code that only needs the exception classes) stay fast.

Namespaces
~~~~~~~~~~
Every entry point takes ``netns``: None for the caller's own network
namespace, or a path such as ``/proc/<pid>/ns/net``. A netlink socket serves
the namespace it was created in, so :class:`Session` enters the target
namespace with ``setns``, opens its socket and comes straight back, all in
this thread. pyroute2's own ``netns=`` support forks a helper process for
that, which costs more than all the netlink work of a ``container add``.

Errors
~~~~~~
errno values become named subclasses of HostNetworkError (or NotRoot for
EPERM), so callers can tell "already there" from "gone" without looking at
numbers, and the user reads one sentence instead of a traceback.

Sysctls use the same setns helper (``entered_netns``) from
``calicoctl.host.sysctl``.
"""
import contextlib
import errno
import functools
import os
import socket
from dataclasses import dataclass
from typing import Optional

from calicoctl.errors import CalicoError, HostNetworkError, NotRoot

CLONE_NEWNET = 0x40000000
IFF_UP = 0x1
IFA_F_NODAD = 0x02
NTF_PROXY = 0x08
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_MAIN = 254
# The protocol `ip route` uses by default; routes we add look like the ones
# an administrator (or the reference's `ip route replace`) would have made.
RTPROT_BOOT = 3


# -- errors ------------------------------------------------------------------

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
def _translated(what):
    from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError
    try:
        yield
    except (PyrouteNetlinkError, OSError) as exc:
        raise translate_error(exc, what) from None


# -- entering namespaces -------------------------------------------------------

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


# -- what we read back -----------------------------------------------------------

@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: Optional[str]
    up: bool
    kind: Optional[str] = None
    peer_index: Optional[int] = None      # IFLA_LINK: a veth's peer index (in the peer's netns)
    mtu: Optional[int] = None


@dataclass(frozen=True)
class AddressInfo:
    ifname: str
    ip: str
    prefixlen: int
    version: int


@dataclass(frozen=True)
class RouteInfo:
    """A main-table route as the kernel reports it."""
    dst: str                      # "default" or CIDR, e.g. "10.0.0.5/32"
    gateway: Optional[str]
    ifname: Optional[str]         # None when listed without names (or the link is gone)
    scope: int
    version: int
    protocol: int
    ifindex: Optional[int] = None


def _link_info(msg):
    kind = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
    return LinkInfo(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"),
                    mac=msg.get_attr("IFLA_ADDRESS"), up=bool(msg["flags"] & IFF_UP),
                    kind=kind, peer_index=msg.get_attr("IFLA_LINK"), mtu=msg.get_attr("IFLA_MTU"))


def _family(version):
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _version_of(ip):
    return 6 if ":" in str(ip) else 4


def _host_prefix(version):
    return 128 if version == 6 else 32


def _route_dst(dst):
    """'default' or an 'ip[/len]' string -> (dst or None, dst_len, version)."""
    if dst in ("default", "0.0.0.0/0"):
        return None, 0, 4
    if dst == "::/0":
        return None, 0, 6
    address, _, length = str(dst).partition("/")
    version = _version_of(address)
    return address, int(length) if length else _host_prefix(version), version


# -- a netlink session --------------------------------------------------------------

class Session:
    """One rtnetlink socket serving one network namespace.

    Use it as a context manager; the socket is closed on exit. Methods raise
    the NetlinkError subclasses above.
    """

    def __init__(self, netns=None):
        from pyroute2 import IPRoute
        self.netns = netns
        """The namespace path this session serves (None: the caller's)."""
        where = "in %s" % netns if netns else "in this network namespace"
        with entered_netns(netns), _translated("Cannot open a netlink socket %s" % where):
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

    # -- links ---------------------------------------------------------------------

    def find_link(self, name):
        """LinkInfo of interface ``name``, or None if there is none."""
        try:
            with _translated("Cannot read interface %s %s" % (name, self._where)):
                msgs = self._ipr.link("get", ifname=name)
        except (LinkNotFound, NotPresent):
            return None
        return _link_info(msgs[0]) if msgs else None

    def get_link(self, name):
        """LinkInfo of interface ``name``; LinkNotFound if absent."""
        info = self.find_link(name)
        if info is None:
            raise LinkNotFound("Interface %s not found %s." % (name, self._where), errno.ENODEV)
        return info

    def list_links(self):
        with _translated("Cannot list interfaces %s" % self._where):
            return [_link_info(msg) for msg in self._ipr.link("dump")]

    def create_veth(self, name, peer_name, peer_netns=None):
        """Create veth ``name`` here with its peer ``peer_name`` created directly in ``peer_netns``.

        One netlink request: the peer never exists in our namespace, so no
        move (and no rename) is needed. EEXIST (either name taken) raises
        AlreadyPresent.
        """
        peer = {"ifname": peer_name}
        fd = open_netns(peer_netns) if peer_netns else None
        try:
            if fd is not None:
                peer["net_ns_fd"] = fd
            with _translated("Cannot create veth %s (peer %s%s)"
                             % (name, peer_name, " in %s" % peer_netns if peer_netns else "")):
                self._ipr.link("add", ifname=name, kind="veth", peer=peer)
        finally:
            if fd is not None:
                os.close(fd)

    def delete_link(self, name):
        """Delete interface ``name`` (a veth takes its peer along); False if absent."""
        try:
            with _translated("Cannot delete interface %s %s" % (name, self._where)):
                self._ipr.link("del", ifname=name)
        except (LinkNotFound, NotPresent):
            return False
        return True

    def set_link_up(self, index):
        with _translated("Cannot bring interface %s up %s" % (index, self._where)):
            self._ipr.link("set", index=index, state="up")

    # -- addresses -----------------------------------------------------------------

    def add_address(self, index, ip, prefixlen=None):
        """Add ip/prefixlen to the interface. IPv6 skips DAD: the address is
        ours by construction, and DAD would hold it unusable for a second."""
        version = _version_of(ip)
        prefixlen = _host_prefix(version) if prefixlen is None else prefixlen
        kwargs = {"flags": IFA_F_NODAD} if version == 6 else {}
        with _translated("Cannot add address %s/%d %s" % (ip, prefixlen, self._where)):
            self._ipr.addr("add", index=index, address=str(ip), prefixlen=prefixlen, **kwargs)

    def delete_address(self, index, ip, prefixlen=None):
        """Remove ip/prefixlen from the interface; False if it was not there."""
        prefixlen = _host_prefix(_version_of(ip)) if prefixlen is None else prefixlen
        try:
            with _translated("Cannot remove address %s/%d %s" % (ip, prefixlen, self._where)):
                self._ipr.addr("del", index=index, address=str(ip), prefixlen=prefixlen)
        except NotPresent:
            return False
        return True

    def list_addresses(self, version=None, index=None):
        links = {link.index: link.name for link in self.list_links()}
        found = []
        for v in ((4, 6) if version is None else (version,)):
            with _translated("Cannot list addresses %s" % self._where):
                msgs = self._ipr.addr("dump", family=_family(v))
            for msg in msgs:
                if index is not None and msg["index"] != index:
                    continue
                found.append(AddressInfo(ifname=links.get(msg["index"]),
                                         ip=msg.get_attr("IFA_ADDRESS"),
                                         prefixlen=msg["prefixlen"], version=v))
        return found

    # -- routes --------------------------------------------------------------------

    def replace_route(self, dst, index, gateway=None, scope_link=False):
        """``ip route replace <dst> [via <gateway>] dev <index> [scope link]``.

        ``dst`` is 'default' (or '::/0' for IPv6) or an 'ip[/len]' string.
        """
        address, length, version = _route_dst(dst)
        if gateway is not None:
            version = _version_of(gateway)
        spec = dict(family=_family(version), dst_len=length, oif=index, proto=RTPROT_BOOT,
                    table=RT_TABLE_MAIN,
                    scope=RT_SCOPE_LINK if scope_link else RT_SCOPE_UNIVERSE)
        if address is not None:
            spec["dst"] = address
        if gateway is not None:
            spec["gateway"] = str(gateway)
        with _translated("Cannot set route %s%s %s" % (dst, " via %s" % gateway if gateway else "",
                                                        self._where)):
            self._ipr.route("replace", **spec)

    def delete_route(self, dst, index=None, version=None):
        """Delete the route to ``dst`` (on interface ``index`` if given); False if absent."""
        address, length, dst_version = _route_dst(dst)
        # Scope "nowhere" matches a route of any scope (what `ip route del` sends).
        spec = dict(family=_family(version or dst_version), dst_len=length, table=RT_TABLE_MAIN,
                    scope=RT_SCOPE_NOWHERE)
        if address is not None:
            spec["dst"] = address
        if index is not None:
            spec["oif"] = index
        try:
            with _translated("Cannot delete route %s %s" % (dst, self._where)):
                self._ipr.route("del", **spec)
        except NotPresent:
            return False
        return True

    def list_routes(self, version=4, ifindex=None, protocol=None, names=True):
        """Routes of the main table for one IP version.

        ``ifindex`` keeps only the routes out of that interface, ``protocol``
        only those of that routing protocol (e.g. RTPROT_BOOT). Resolving
        interface names costs a full link dump, which an agent with
        thousands of interfaces avoids with ``names=False`` (``ifname`` is
        then None; ``ifindex`` is always set).
        """
        links = {link.index: link.name for link in self.list_links()} if names else {}
        found = []
        with _translated("Cannot list routes %s" % self._where):
            msgs = self._ipr.route("dump", family=_family(version))
        for msg in msgs:
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            if table != RT_TABLE_MAIN:
                continue
            oif = msg.get_attr("RTA_OIF")
            if (ifindex is not None and oif != ifindex) or (protocol is not None and msg["proto"] != protocol):
                continue
            address = msg.get_attr("RTA_DST")
            if address is None and msg["dst_len"] == 0:
                dst = "default"
            else:
                dst = "%s/%d" % (address, msg["dst_len"])
            found.append(RouteInfo(dst=dst, gateway=msg.get_attr("RTA_GATEWAY"), ifname=links.get(oif),
                                   scope=msg["scope"], version=version, protocol=msg["proto"],
                                   ifindex=oif))
        return found

    def route_source(self, destination):
        """The source address the kernel would use to reach destination, or None."""
        try:
            with _translated("Cannot look up the route to %s %s" % (destination, self._where)):
                msgs = self._ipr.route("get", dst=str(destination))
        except CalicoError:
            return None
        for msg in msgs:
            source = msg.get_attr("RTA_PREFSRC")
            if source:
                return source
        return None

    # -- neighbours ----------------------------------------------------------------

    def add_proxy_neighbour(self, ip, index):
        """``ip neigh replace proxy <ip> dev <index>``: answer NDP/ARP for ip on that link."""
        with _translated("Cannot add proxy neighbour %s %s" % (ip, self._where)):
            self._ipr.neigh("replace", dst=str(ip), ifindex=index, flags=NTF_PROXY,
                            family=_family(_version_of(ip)))

    def delete_proxy_neighbour(self, ip, index):
        try:
            with _translated("Cannot delete proxy neighbour %s %s" % (ip, self._where)):
                self._ipr.neigh("del", dst=str(ip), ifindex=index, flags=NTF_PROXY,
                                family=_family(_version_of(ip)))
        except NotPresent:
            return False
        return True


# -- one-shot helpers -----------------------------------------------------------

def find_link(name, netns=None):
    with Session(netns) as session:
        return session.find_link(name)


def delete_link(name, netns=None):
    """Delete interface ``name`` in ``netns``; False if it was not there."""
    with Session(netns) as session:
        return session.delete_link(name)


def list_links(netns=None):
    with Session(netns) as session:
        return session.list_links()


def list_addresses(netns=None, version=None, ifname=None):
    with Session(netns) as session:
        index = None
        if ifname is not None:
            index = session.get_link(ifname).index
        return session.list_addresses(version=version, index=index)


def list_routes(netns=None, version=4):
    with Session(netns) as session:
        return session.list_routes(version)


# -- tunnels: VXLAN/IPIP devices, onlink routes, static neighbours, FDB ---------
# Used by the agent's tunnel components (calicoctl/agent/vxlan.py, ipip.py).
# Module-level functions on a Session, so they stay apart from the container
# code above.

NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
AF_BRIDGE = 7


@dataclass(frozen=True)
class VxlanInfo:
    """What ``find_vxlan`` reads back about a VXLAN device."""
    link: LinkInfo
    vni: Optional[int]
    port: Optional[int]
    local: Optional[str]
    learning: Optional[bool]


def find_vxlan(session, name):
    """VxlanInfo of device ``name``, or None if there is no such device.

    A device of that name that is not VXLAN comes back with ``vni`` None.
    """
    try:
        with _translated("Cannot read interface %s %s" % (name, session._where)):
            msgs = session._ipr.link("get", ifname=name)
    except (LinkNotFound, NotPresent):
        return None
    if not msgs:
        return None
    msg = msgs[0]
    vni = port = local = learning = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None and linkinfo.get_attr("IFLA_INFO_KIND") == "vxlan":
        data = linkinfo.get_attr("IFLA_INFO_DATA")
        if data is not None:
            vni = data.get_attr("IFLA_VXLAN_ID")
            port = data.get_attr("IFLA_VXLAN_PORT")
            local = data.get_attr("IFLA_VXLAN_LOCAL")
            learn = data.get_attr("IFLA_VXLAN_LEARNING")
            learning = None if learn is None else bool(learn)
    return VxlanInfo(link=_link_info(msg), vni=vni, port=port, local=local, learning=learning)


def create_vxlan(session, name, vni, port, local_ip, mtu=None):
    """Create VXLAN device ``name`` (no learning: we program the FDB) and bring it up."""
    with _translated("Cannot create VXLAN device %s %s" % (name, session._where)):
        session._ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port,
                          vxlan_local=local_ip, vxlan_learning=0)
    link = session.get_link(name)
    settings = {"state": "up"}
    if mtu:
        settings["mtu"] = mtu
    with _translated("Cannot bring VXLAN device %s up %s" % (name, session._where)):
        session._ipr.link("set", index=link.index, **settings)
    return session.get_link(name)


def create_ipip(session, name="tunl0"):
    """Create the IPIP fallback device (if missing) and bring it up.

    Raises NetlinkError (EOPNOTSUPP and the like) on a kernel without IPIP.
    """
    link = session.find_link(name)
    if link is None:
        with _translated("Cannot create IPIP device %s %s" % (name, session._where)):
            session._ipr.link("add", ifname=name, kind="ipip")
        link = session.get_link(name)
    if not link.up:
        session.set_link_up(link.index)
    return session.get_link(name)


def set_link_mtu(session, index, mtu):
    with _translated("Cannot set the MTU of interface %s %s" % (index, session._where)):
        session._ipr.link("set", index=index, mtu=mtu)


def list_device_routes(session, index, version=4):
    """{dst CIDR: gateway or None} of the main table's routes out of ``index``
    (a default route there is not ours to manage, so it is left out)."""
    return {route.dst: route.gateway
            for route in session.list_routes(version, ifindex=index, names=False)
            if route.dst != "default"}


def replace_onlink_route(session, dst, gateway, index):
    """``ip route replace <dst> via <gateway> dev <index> onlink``: the gateway
    need not be on any subnet of that device (it is the far tunnel end)."""
    address, length, version = _route_dst(dst)
    with _translated("Cannot set route %s via %s onlink %s" % (dst, gateway, session._where)):
        session._ipr.route("replace", family=_family(version), dst=address, dst_len=length,
                           gateway=str(gateway), oif=index, flags=RTNH_F_ONLINK,
                           proto=RTPROT_BOOT, table=RT_TABLE_MAIN)


def list_neighbours(session, index, version=4):
    """{ip: mac} of the (non-proxy) neighbour entries on ``index``."""
    found = {}
    with _translated("Cannot list neighbours %s" % session._where):
        msgs = session._ipr.neigh("dump", family=_family(version), ifindex=index)
    for msg in msgs:
        if msg["ifindex"] != index or msg["flags"] & NTF_PROXY:
            continue
        found[msg.get_attr("NDA_DST")] = msg.get_attr("NDA_LLADDR")
    return found


def replace_permanent_neighbour(session, ip, mac, index):
    """``ip neigh replace <ip> lladdr <mac> dev <index> nud permanent``."""
    with _translated("Cannot set neighbour %s %s" % (ip, session._where)):
        session._ipr.neigh("replace", dst=str(ip), lladdr=mac, ifindex=index, state=NUD_PERMANENT,
                           family=_family(_version_of(ip)))


def delete_neighbour(session, ip, index):
    try:
        with _translated("Cannot delete neighbour %s %s" % (ip, session._where)):
            session._ipr.neigh("del", dst=str(ip), ifindex=index, family=_family(_version_of(ip)))
    except NotPresent:
        return False
    return True


def list_fdb_entries(session, index):
    """{mac: remote IP} of the FDB entries with a destination on ``index``."""
    found = {}
    with _translated("Cannot list FDB entries %s" % session._where):
        msgs = session._ipr.fdb("dump", ifindex=index)
    for msg in msgs:
        if msg["ifindex"] != index:
            continue
        dst = msg.get_attr("NDA_DST")
        if dst is not None:
            found[msg.get_attr("NDA_LLADDR")] = dst
    return found


def replace_fdb_entry(session, mac, dst_ip, index):
    """``bridge fdb replace <mac> dev <index> dst <dst_ip> self permanent``."""
    with _translated("Cannot set FDB entry %s -> %s %s" % (mac, dst_ip, session._where)):
        session._ipr.fdb("replace", ifindex=index, lladdr=mac, dst=str(dst_ip),
                         state=NUD_NOARP | NUD_PERMANENT, flags=NTF_SELF)


def delete_fdb_entry(session, mac, dst_ip, index):
    try:
        with _translated("Cannot delete FDB entry %s %s" % (mac, session._where)):
            session._ipr.fdb("del", ifindex=index, lladdr=mac, dst=str(dst_ip))
    except NotPresent:
        return False
    return True


# -- link events and cheap listings (added for the node agent: calicoctl.agent.routes) --

RTMGRP_LINK = 0x1
NETLINK_ROUTE = 0


class LinkMonitor:
    """Notices rtnetlink link notifications (interfaces appearing, changing, going).

    A plain AF_NETLINK socket subscribed to RTMGRP_LINK: the messages are
    only drained, never parsed (parsing tens of thousands of them with
    pyroute2 would cost seconds); callers list the interfaces afterwards.
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


SIOCGIFFLAGS = 0x8913


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
