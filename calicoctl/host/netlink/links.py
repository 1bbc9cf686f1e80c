"""Interfaces: find, list, create (veth pairs), bring up, set the MTU of, delete."""
import errno
import os
from dataclasses import dataclass
from typing import Optional

from calicoctl.host.netlink.errors import LinkNotFound, NotPresent, translated
from calicoctl.host.netlink.netns import open_netns

IFF_UP = 0x1


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: Optional[str]
    up: bool
    kind: Optional[str] = None
    peer_index: Optional[int] = None      # IFLA_LINK: a veth's peer index (in the peer's netns)
    mtu: Optional[int] = None


def link_info(msg):
    """LinkInfo of a pyroute2 link message."""
    kind = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
    return LinkInfo(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"),
                    mac=msg.get_attr("IFLA_ADDRESS"), up=bool(msg["flags"] & IFF_UP),
                    kind=kind, peer_index=msg.get_attr("IFLA_LINK"), mtu=msg.get_attr("IFLA_MTU"))


class Links:
    """Session methods for interfaces (a Session provides ``_ipr`` and ``_where``)."""

    def _link_message(self, name):
        """pyroute2's message for interface ``name``, or None if there is none."""
        try:
            with translated("Cannot read interface %s %s" % (name, self._where)):
                msgs = self._ipr.link("get", ifname=name)
        except (LinkNotFound, NotPresent):
            return None
        return msgs[0] if msgs else None

    def find_link(self, name):
        """LinkInfo of interface ``name``, or None if there is none."""
        msg = self._link_message(name)
        return link_info(msg) if msg is not None else None

    def get_link(self, name):
        """LinkInfo of interface ``name``; LinkNotFound if absent."""
        info = self.find_link(name)
        if info is None:
            raise LinkNotFound("Interface %s not found %s." % (name, self._where), errno.ENODEV)
        return info

    def list_links(self):
        with translated("Cannot list interfaces %s" % self._where):
            return [link_info(msg) for msg in self._ipr.link("dump")]

    def create_veth(self, name, peer_name, peer_netns=None, peer_mac=None, mtu=None):
        """Create veth ``name`` here with its peer ``peer_name`` created directly in ``peer_netns``
        (with MAC ``peer_mac`` if given, else a random one; both ends with
        MTU ``mtu`` if given, else the kernel's 1500).

        One netlink request: the peer never exists in our namespace, so no
        move (and no rename) is needed. EEXIST (either name taken) raises
        AlreadyPresent.
        """
        peer = {"ifname": peer_name}
        mine = {}
        if peer_mac:
            peer["address"] = peer_mac
        if mtu:
            peer["mtu"] = mine["mtu"] = mtu
        fd = open_netns(peer_netns) if peer_netns else None
        try:
            if fd is not None:
                peer["net_ns_fd"] = fd
            with translated("Cannot create veth %s (peer %s%s)"
                            % (name, peer_name, " in %s" % peer_netns if peer_netns else "")):
                self._ipr.link("add", ifname=name, kind="veth", peer=peer, **mine)
        finally:
            if fd is not None:
                os.close(fd)

    def delete_link(self, name):
        """Delete interface ``name`` (a veth takes its peer along); False if absent."""
        try:
            with translated("Cannot delete interface %s %s" % (name, self._where)):
                self._ipr.link("del", ifname=name)
        except (LinkNotFound, NotPresent):
            return False
        return True

    def set_link_up(self, index):
        with translated("Cannot bring interface %s up %s" % (index, self._where)):
            self._ipr.link("set", index=index, state="up")

    def set_link_mtu(self, index, mtu):
        with translated("Cannot set the MTU of interface %s %s" % (index, self._where)):
            self._ipr.link("set", index=index, mtu=mtu)

    def find_peer_netns(self, name):
        """The path of the network namespace holding veth ``name``'s peer (a
        workload's namespace, whatever started it), or None if ``name`` has
        no peer in another namespace. LinkNotFound if there is no ``name``.

        The link names its peer's namespace by an ID valid only here; the
        namespace files there are (``/run/netns/*``, every process's
        ``ns/net``) are asked for their ID until one matches.
        """
        message = self._link_message(name)
        if message is None:
            raise LinkNotFound("Interface %s not found %s." % (name, self._where), errno.ENODEV)
        nsid = message.get_attr("IFLA_LINK_NETNSID")
        if nsid is None:
            return None
        for path in _namespace_files():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue          # the process ended meanwhile
            try:
                with translated("Cannot ask for the ID of namespace %s %s" % (path, self._where)):
                    found = self._ipr.get_netnsid(fd=fd)
            finally:
                os.close(fd)
            if found.get("nsid") == nsid:
                return path
        return None


def _namespace_files():
    """A path to every network namespace this process can name, each once."""
    seen = set()
    candidates = []
    try:
        candidates += [os.path.join("/run/netns", name) for name in sorted(os.listdir("/run/netns"))]
    except OSError:
        pass
    candidates += ["/proc/%s/ns/net" % pid for pid in os.listdir("/proc") if pid.isdigit()]
    for path in candidates:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            yield path
