"""Tunnel devices (VXLAN, IPIP) and the VXLAN device's forwarding database.

Used by the agent's tunnel components (calicoctl.agent.routing.vxlan, ipip); the
onlink routes and permanent neighbours they also need are in ``routing``.
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl.host.netlink.errors import NotPresent, translated
from calicoctl.host.netlink.links import LinkInfo, link_info
from calicoctl.host.netlink.routing import NUD_PERMANENT

NUD_NOARP = 0x40
NTF_SELF = 0x02


@dataclass(frozen=True)
class VxlanInfo:
    """What ``find_vxlan`` reads back about a VXLAN device."""
    link: LinkInfo
    vni: Optional[int]
    port: Optional[int]
    local: Optional[str]
    learning: Optional[bool]


class Tunnels:
    """Session methods for tunnel devices (a Session provides ``_ipr``,
    ``_where`` and the Links methods)."""

    def find_vxlan(self, name):
        """VxlanInfo of device ``name``, or None if there is no such device.

        A device of that name that is not VXLAN comes back with ``vni`` None.
        """
        msg = self._link_message(name)
        if msg is None:
            return None
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
        return VxlanInfo(link=link_info(msg), vni=vni, port=port, local=local, learning=learning)

    def create_vxlan(self, name, vni, port, local_ip, mtu=None):
        """Create VXLAN device ``name`` (no learning: we program the FDB) and bring it up."""
        with translated("Cannot create VXLAN device %s %s" % (name, self._where)):
            self._ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_port=port,
                           vxlan_local=local_ip, vxlan_learning=0)
        link = self.get_link(name)
        settings = {"state": "up"}
        if mtu:
            settings["mtu"] = mtu
        with translated("Cannot bring VXLAN device %s up %s" % (name, self._where)):
            self._ipr.link("set", index=link.index, **settings)
        return self.get_link(name)

    def create_ipip(self, name="tunl0"):
        """Create the IPIP fallback device (if missing) and bring it up.

        Raises NetlinkError (EOPNOTSUPP and the like) on a kernel without IPIP.
        """
        link = self.find_link(name)
        if link is None:
            with translated("Cannot create IPIP device %s %s" % (name, self._where)):
                self._ipr.link("add", ifname=name, kind="ipip")
            link = self.get_link(name)
        if not link.up:
            self.set_link_up(link.index)
        return self.get_link(name)

    # -- the VXLAN device's FDB ----------------------------------------------------

    def list_fdb_entries(self, index):
        """{mac: remote IP} of the FDB entries with a destination on ``index``."""
        found = {}
        with translated("Cannot list FDB entries %s" % self._where):
            msgs = self._ipr.fdb("dump", ifindex=index)
        for msg in msgs:
            if msg["ifindex"] != index:
                continue
            dst = msg.get_attr("NDA_DST")
            if dst is not None:
                found[msg.get_attr("NDA_LLADDR")] = dst
        return found

    def replace_fdb_entry(self, mac, dst_ip, index):
        """``bridge fdb replace <mac> dev <index> dst <dst_ip> self permanent``."""
        with translated("Cannot set FDB entry %s -> %s %s" % (mac, dst_ip, self._where)):
            self._ipr.fdb("replace", ifindex=index, lladdr=mac, dst=str(dst_ip),
                          state=NUD_NOARP | NUD_PERMANENT, flags=NTF_SELF)

    def delete_fdb_entry(self, mac, dst_ip, index):
        try:
            with translated("Cannot delete FDB entry %s %s" % (mac, self._where)):
                self._ipr.fdb("del", ifindex=index, lladdr=mac, dst=str(dst_ip))
        except NotPresent:
            return False
        return True
