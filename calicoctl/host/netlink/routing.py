"""Addresses, routes (main table) and neighbour entries of a network namespace."""
import ipaddress
import socket
from dataclasses import dataclass
from typing import Optional

from calicoctl.errors import CalicoError
from calicoctl.host.netlink.errors import NotPresent, translated

IFA_F_NODAD = 0x02
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
RTNH_F_ONLINK = 0x04
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_MAIN = 254
# The protocol `ip route` uses by default; routes we add look like the ones
# an administrator (or the original calicoctl's `ip route replace`) would have made.
RTPROT_BOOT = 3


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


def family(version):
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def version_of(ip):
    return 6 if ":" in str(ip) else 4


def host_prefix(version):
    return 128 if version == 6 else 32


def route_dst(dst):
    """'default' or an 'ip[/len]' string -> (dst or None, dst_len, version)."""
    if dst in ("default", "0.0.0.0/0"):
        return None, 0, 4
    if dst == "::/0":
        return None, 0, 6
    address, _, length = str(dst).partition("/")
    version = version_of(address)
    return address, int(length) if length else host_prefix(version), version


class Routing:
    """Session methods for addresses, routes and neighbours (a Session
    provides ``_ipr``, ``_where`` and ``list_links``)."""

    # -- addresses -----------------------------------------------------------------

    def add_address(self, index, ip, prefixlen=None):
        """Add ip/prefixlen to the interface. IPv6 skips DAD: the address is
        ours by construction, and DAD would hold it unusable for a second."""
        version = version_of(ip)
        prefixlen = host_prefix(version) if prefixlen is None else prefixlen
        kwargs = {"flags": IFA_F_NODAD} if version == 6 else {}
        with translated("Cannot add address %s/%d %s" % (ip, prefixlen, self._where)):
            self._ipr.addr("add", index=index, address=str(ip), prefixlen=prefixlen, **kwargs)

    def delete_address(self, index, ip, prefixlen=None):
        """Remove ip/prefixlen from the interface; False if it was not there."""
        prefixlen = host_prefix(version_of(ip)) if prefixlen is None else prefixlen
        try:
            with translated("Cannot remove address %s/%d %s" % (ip, prefixlen, self._where)):
                self._ipr.addr("del", index=index, address=str(ip), prefixlen=prefixlen)
        except NotPresent:
            return False
        return True

    def list_addresses(self, version=None, index=None):
        links = {link.index: link.name for link in self.list_links()}
        found = []
        for v in ((4, 6) if version is None else (version,)):
            with translated("Cannot list addresses %s" % self._where):
                msgs = self._ipr.addr("dump", family=family(v))
            for msg in msgs:
                if index is not None and msg["index"] != index:
                    continue
                found.append(AddressInfo(ifname=links.get(msg["index"]),
                                         ip=msg.get_attr("IFA_ADDRESS"),
                                         prefixlen=msg["prefixlen"], version=v))
        return found

    def address_mtu(self, ip):
        """MTU of the interface holding address ``ip``, or None if none holds it."""
        wanted = ipaddress.ip_address(str(ip))
        with translated("Cannot list addresses %s" % self._where):
            for msg in self._ipr.addr("dump", family=family(wanted.version)):
                if ipaddress.ip_address(msg.get_attr("IFA_ADDRESS")) == wanted:
                    return self._ipr.link("get", index=msg["index"])[0].get_attr("IFLA_MTU")
        return None

    # -- routes --------------------------------------------------------------------

    def replace_route(self, dst, index, gateway=None, scope_link=False):
        """``ip route replace <dst> [via <gateway>] dev <index> [scope link]``.

        ``dst`` is 'default' (or '::/0' for IPv6) or an 'ip[/len]' string.
        """
        address, length, version = route_dst(dst)
        if gateway is not None:
            version = version_of(gateway)
        spec = dict(family=family(version), dst_len=length, oif=index, proto=RTPROT_BOOT,
                    table=RT_TABLE_MAIN,
                    scope=RT_SCOPE_LINK if scope_link else RT_SCOPE_UNIVERSE)
        if address is not None:
            spec["dst"] = address
        if gateway is not None:
            spec["gateway"] = str(gateway)
        with translated("Cannot set route %s%s %s" % (dst, " via %s" % gateway if gateway else "",
                                                       self._where)):
            self._ipr.route("replace", **spec)

    def replace_onlink_route(self, dst, gateway, index):
        """``ip route replace <dst> via <gateway> dev <index> onlink``: the gateway
        need not be on any subnet of that device (it is the far tunnel end)."""
        address, length, version = route_dst(dst)
        with translated("Cannot set route %s via %s onlink %s" % (dst, gateway, self._where)):
            self._ipr.route("replace", family=family(version), dst=address, dst_len=length,
                            gateway=str(gateway), oif=index, flags=RTNH_F_ONLINK,
                            proto=RTPROT_BOOT, table=RT_TABLE_MAIN)

    def delete_route(self, dst, index=None, version=None):
        """Delete the route to ``dst`` (on interface ``index`` if given); False if absent."""
        address, length, dst_version = route_dst(dst)
        # Scope "nowhere" matches a route of any scope (what `ip route del` sends).
        spec = dict(family=family(version or dst_version), dst_len=length, table=RT_TABLE_MAIN,
                    scope=RT_SCOPE_NOWHERE)
        if address is not None:
            spec["dst"] = address
        if index is not None:
            spec["oif"] = index
        try:
            with translated("Cannot delete route %s %s" % (dst, self._where)):
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
        with translated("Cannot list routes %s" % self._where):
            msgs = self._ipr.route("dump", family=family(version))
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

    def list_device_routes(self, index, version=4):
        """{dst CIDR: gateway or None} of the main table's routes out of ``index``
        (a default route there is not ours to manage, so it is left out)."""
        return {route.dst: route.gateway
                for route in self.list_routes(version, ifindex=index, names=False)
                if route.dst != "default"}

    def route_source(self, destination):
        """The source address the kernel would use to reach destination, or None."""
        try:
            with translated("Cannot look up the route to %s %s" % (destination, self._where)):
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
        with translated("Cannot add proxy neighbour %s %s" % (ip, self._where)):
            self._ipr.neigh("replace", dst=str(ip), ifindex=index, flags=NTF_PROXY,
                            family=family(version_of(ip)))

    def delete_proxy_neighbour(self, ip, index):
        try:
            with translated("Cannot delete proxy neighbour %s %s" % (ip, self._where)):
                self._ipr.neigh("del", dst=str(ip), ifindex=index, flags=NTF_PROXY,
                                family=family(version_of(ip)))
        except NotPresent:
            return False
        return True

    def list_neighbours(self, index, version=4):
        """{ip: mac} of the (non-proxy) neighbour entries on ``index``."""
        found = {}
        with translated("Cannot list neighbours %s" % self._where):
            msgs = self._ipr.neigh("dump", family=family(version), ifindex=index)
        for msg in msgs:
            if msg["ifindex"] != index or msg["flags"] & NTF_PROXY:
                continue
            found[msg.get_attr("NDA_DST")] = msg.get_attr("NDA_LLADDR")
        return found

    def replace_permanent_neighbour(self, ip, mac, index):
        """``ip neigh replace <ip> lladdr <mac> dev <index> nud permanent``."""
        with translated("Cannot set neighbour %s %s" % (ip, self._where)):
            self._ipr.neigh("replace", dst=str(ip), lladdr=mac, ifindex=index, state=NUD_PERMANENT,
                            family=family(version_of(ip)))

    def delete_neighbour(self, ip, index):
        try:
            with translated("Cannot delete neighbour %s %s" % (ip, self._where)):
                self._ipr.neigh("del", dst=str(ip), ifindex=index, family=family(version_of(ip)))
        except NotPresent:
            return False
        return True
