"""VXLAN between hosts for ``--vxlan`` pools (our extension; later Calico did the same).

Why: the kernel here has no IPIP, and a pool whose traffic is encapsulated
keeps working where the LAN cannot route workload addresses (or BGP is
off). The agent programs everything itself from etcd; BIRD is not involved
(its kernel export leaves VXLAN pools alone, see bird.py).

Per host, when any IPv4 VXLAN pool exists:

- one device ``vxlan.calico``: VNI 4096, UDP port 4789, outer source the
  host's own IPv4 address, no MAC learning, MTU 50 below the LAN device's;
- its record in etcd at ``/calico/v1/host/<h>/vxlan``:
  ``{"ip": <host IPv4>, "mac": <device MAC>, "vni": 4096}``.

  The tunnel address is the host's own IPv4 address; the device itself
  carries no address. Other hosts route to it with ``onlink`` (it is not
  on any subnet of the device) and resolve it with a permanent neighbour
  entry, so no address has to be allocated from a pool and nothing about
  it can clash. Traffic the host itself sends into the tunnel leaves with
  its LAN address as source, which the far side routes back normally.

- for every endpoint on another host, each IPv4 network inside a VXLAN
  pool: ``<net> via <that host's IP> dev vxlan.calico onlink``, a permanent
  neighbour ``<that host's IP> lladdr <its device MAC>`` and an FDB entry
  ``<its device MAC> dst <that host's IP>``. Whatever else is on the device
  (routes, neighbours, FDB entries) is removed: the device is ours.

A change of pools, host addresses or VXLAN records (and every
``resync_interval`` seconds) checks all of it against the kernel; a change of
endpoints only replaces or removes the routes of the endpoints that changed
(``tunnels.TunnelRoutes``), so it costs the same however many endpoints the
cluster has.

No VXLAN pool left: the device (and with it all its routes) and the etcd
record are removed.
"""
import logging

from calicoctl import model
from calicoctl.agent.keys import Kind
from calicoctl.agent.indexes import Indexes
from calicoctl.agent.routing.tunnels import TunnelComponent, calculate_vxlan_plan
from calicoctl.datastore import paths

LOG = logging.getLogger(__name__)

DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
OVERHEAD = model.VXLAN_OVERHEAD
DEFAULT_MTU = 1450
RESYNC_INTERVAL = 60.0   # re-check the kernel against etcd now and then
RETRY_INTERVAL = 2.0     # after a failed apply


class VxlanManager(TunnelComponent):
    """Keeps ``vxlan.calico`` and its routes/neighbours/FDB as etcd says.

    :param config: the AgentConfig (hostname).
    :param datastore: a DatastoreClient, to publish this host's record.
    """

    label = "VXLAN"
    kinds = frozenset((Kind.POOL, Kind.HOST_ADDRESS, Kind.HOST_VXLAN, Kind.ENDPOINT))
    resync_interval = RESYNC_INTERVAL
    retry_interval = RETRY_INTERVAL

    def __init__(self, config, datastore):
        super().__init__(config.hostname)
        self._datastore = datastore
        self.view = Indexes(self.hostname)
        self.index = self.view.tunnels
        """The view's TunnelIndex (shared with IPIP and NAT-outgoing)."""
        self._device_absent = False
        """True once we know there is no device (so no netlink call is needed)."""

    # -- Component interface -------------------------------------------------------
    def on_snapshot(self, view):
        self.view, self.index = view, view.tunnels
        self._device_index = None
        self.mark_dirty()

    def has_pools(self):
        return bool(self.index.pools_where(lambda pool: pool.vxlan))

    def forget_kernel_state(self):
        self._device_absent = False      # check the kernel again
        super().forget_kernel_state()

    # -- effects -------------------------------------------------------------------
    def apply(self):
        """Make the kernel (and our etcd record) match the index: the routes
        of the endpoints that changed, or everything."""
        from calicoctl.host import netlink
        if self.apply_changed_endpoints():
            return
        plan = calculate_vxlan_plan(self.hostname, self.index, VNI, self.routes)
        if not plan.wanted:
            if not self._device_absent:
                with netlink.Session() as session:
                    if session.delete_link(DEVICE):
                        LOG.info("VXLAN: no VXLAN pool any more; removed %s", DEVICE)
                self._device_absent = True
            self._unpublish()
            return
        self._device_absent = False
        with netlink.Session() as session:
            link = self._ensure_device(session, plan.local_ip)
            self._publish(plan.local_ip, link.mac)
            self._sync_table(
                "FDB entry", plan.fdb, session.list_fdb_entries(link.index),
                lambda mac, ip: session.replace_fdb_entry(mac, ip, link.index),
                lambda mac, ip: session.delete_fdb_entry(mac, ip, link.index))
            self._sync_table(
                "neighbour", plan.neighbours, session.list_neighbours(link.index),
                lambda ip, mac: session.replace_permanent_neighbour(ip, mac, link.index),
                lambda ip, mac: session.delete_neighbour(ip, link.index))
            self._sync_table(
                "route", plan.routes, session.list_device_routes(link.index),
                lambda dst, gw: session.replace_onlink_route(dst, gw, link.index),
                lambda dst, gw: session.delete_route(dst, index=link.index))
        self._device_index = link.index

    def _ensure_device(self, session, local_ip):
        info = session.find_vxlan(DEVICE)
        if info is not None and (info.vni, info.port, info.local, info.learning) != (VNI, PORT, local_ip, False):
            LOG.info("VXLAN: %s has other settings (vni %s, port %s, local %s); recreating it",
                     DEVICE, info.vni, info.port, info.local)
            session.delete_link(DEVICE)
            info = None
        mtu = _lan_mtu(session, local_ip) - OVERHEAD
        if info is None:
            link = session.create_vxlan(DEVICE, VNI, PORT, local_ip, mtu=mtu)
            LOG.info("VXLAN: created %s (vni %d, local %s, mac %s, mtu %d)",
                     DEVICE, VNI, local_ip, link.mac, mtu)
            return link
        link = info.link
        if link.mtu != mtu:
            session.set_link_mtu(link.index, mtu)
        if not link.up:
            session.set_link_up(link.index)
        return link

    @staticmethod
    def _sync_table(what, wanted, current, replace, delete):
        """Make a kernel table (dict) equal ``wanted``: delete extras, set the rest."""
        for key, value in current.items():
            if key not in wanted:
                delete(key, value)
                LOG.debug("VXLAN: removed %s %s", what, key)
        for key, value in wanted.items():
            if current.get(key) != value:
                replace(key, value)
                LOG.debug("VXLAN: set %s %s -> %s", what, key, value)

    def _publish(self, local_ip, mac):
        tunnel = model.VxlanTunnel(ip=local_ip, mac=mac.lower(), vni=VNI)
        if self.index.vteps.get(self.hostname) == tunnel:
            return
        self._datastore.write_host_vxlan(self.hostname, tunnel)
        # The watch will echo it back; see it now so we do not write twice.
        self.view.record_write(paths.host_vxlan(self.hostname), tunnel.to_json())
        LOG.info("VXLAN: published %s", tunnel.to_json())

    def _unpublish(self):
        if self.hostname in self.index.vteps:
            self._datastore.remove_host_vxlan(self.hostname)
            self.view.record_write(paths.host_vxlan(self.hostname), None)


def _lan_mtu(session, local_ip):
    """MTU of the interface holding ``local_ip`` (the tunnel's underlay)."""
    return session.address_mtu(local_ip) or DEFAULT_MTU + OVERHEAD
