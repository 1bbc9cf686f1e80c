"""IP-in-IP between hosts for ``--ipip`` pools, where the kernel has it (docs/decisions.md, "IP-in-IP").

With an IPv4 pool marked ``ipip``: ``tunl0`` is brought up and, for every
endpoint on another host, each IPv4 network inside an IPIP pool is routed
``via <that host's IPv4> dev tunl0 onlink``. The original had BIRD install
those routes (a patched BIRD's ``krt_tunnel``); stock BIRD 2 cannot, so the
agent programs them itself, exactly like the VXLAN routes, and BIRD's
kernel export leaves IPIP pools alone (bird.py).

Kernels without IPIP (this machine's: no ``tunl0``, no modules to load) are
detected by trying to create the device, once. Then the pool is logged
once and left to BGP, which routes its addresses unencapsulated -- fine on
a flat LAN, and what the original did with IPIP off.

As for VXLAN, an endpoint's change replaces or removes its own routes only
(``tunnels.TunnelRoutes``); pools and host addresses, and every
``resync_interval`` seconds, check every route against the kernel.
"""
import logging

from calicoctl.agent.keys import Kind
from calicoctl.agent.routing.tunnels import TunnelComponent, TunnelIndex
from calicoctl.errors import CalicoError

LOG = logging.getLogger(__name__)

DEVICE = "tunl0"
RESYNC_INTERVAL = 60.0
RETRY_INTERVAL = 2.0


class IpipManager(TunnelComponent):
    """Routes remote workloads of IPIP pools over ``tunl0`` when the kernel can.

    :ivar supported: None until first needed, then whether the kernel has IPIP.
    """

    label = "IPIP"
    kinds = frozenset((Kind.POOL, Kind.HOST_ADDRESS, Kind.ENDPOINT))
    resync_interval = RESYNC_INTERVAL
    retry_interval = RETRY_INTERVAL

    def __init__(self, config):
        super().__init__(config.hostname)
        self.index = TunnelIndex()
        """The view's TunnelIndex (shared with VXLAN and NAT-outgoing)."""
        self.supported = None
        self.unsupported_reason = None

    def has_pools(self):
        return bool(self.index.pools_where(lambda pool: bool(pool.ipip)))

    def routes_itself(self):
        """True when IPIP pools exist and this kernel carries them (probes once)."""
        return self.has_pools() and self.probe()

    def probe(self):
        """Whether the kernel has IPIP: try to bring tunl0 up, once."""
        if self.supported is None:
            from calicoctl.host import netlink
            try:
                with netlink.Session() as session:
                    session.create_ipip(DEVICE)
                self.supported = True
            except CalicoError as exc:
                self.supported = False
                self.unsupported_reason = str(exc)
                LOG.warning("IPIP: this kernel has no IP-in-IP (%s); IPIP pools are routed "
                            "by BGP without encapsulation", exc)
        return self.supported

    # -- Component interface -------------------------------------------------------
    def on_snapshot(self, view):
        self.index = view.tunnels
        self._device_index = None
        self.mark_dirty()

    # -- effects -------------------------------------------------------------------
    def apply(self):
        from calicoctl.host import netlink
        if self.apply_changed_endpoints():
            return
        pools = self.index.pools_where(lambda pool: bool(pool.ipip))
        if pools and not self.probe():
            return
        if not pools and not self.supported:
            return          # never needed (or impossible): nothing of ours to clean
        routes = self.routes.rebuild(self.index, pools, self.index.host_ips)
        with netlink.Session() as session:
            link = session.find_link(DEVICE)
            if link is None:
                if not routes:
                    return
                link = session.create_ipip(DEVICE)
            current = session.list_device_routes(link.index)
            for dst in current:
                if dst not in routes:
                    session.delete_route(dst, index=link.index)
            for dst, gateway in routes.items():
                if current.get(dst) != gateway:
                    session.replace_onlink_route(dst, gateway, link.index)
        self._device_index = link.index
