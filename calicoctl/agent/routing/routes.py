"""Routes, proxy ARP/NDP and sysctls for this host's workload interfaces (a Component).

For each active local endpoint whose interface exists and is up: a device
route (scope link) per workload address, ``proxy_arp`` with ``proxy_delay``
0 for IPv4 (the workload's gateway is the host's own address, answered by
proxy ARP), ``proxy_ndp`` plus a proxy neighbour entry for its IPv6 gateway
(docs/decisions.md, "Containers"). BIRD learns these routes
and advertises them to other hosts.

An endpoint can arrive before its interface (etcd first, veth later, or a
restarted container): its chains are programmed at once by the policy
dataplane, its routes when the interface appears. Interfaces are noticed
through netlink link events (a thread that only wakes the main loop) and,
as a safety net, a cheap listing every ``link_poll_interval`` seconds.

On (re)sync it also removes stale routes: host routes with protocol
``boot`` on interfaces carrying the workload prefix whose address no
endpoint owns (what a SIGKILLed agent or a crashed ``container remove``
left behind). Routes of other protocols (the kernel's own fe80::/64, BIRD's)
are never touched.
"""
import logging
import threading
import time
from dataclasses import dataclass, replace

from calicoctl.agent.component import Component
from calicoctl.agent.indexes import LocalEndpoints
from calicoctl.errors import CalicoError
from calicoctl.host import sysctl
from calicoctl.host.netlink import RTPROT_BOOT

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkloadNetwork:
    """What one local interface should have (pure; compared to what it has)."""
    iface: str
    ipv4: tuple
    ipv6: tuple
    ipv6_gateway: object = None


def calculate_stale_routes(routes, desired, prefix, boot_protocol=RTPROT_BOOT):
    """Routes (anything with dst, gateway, ifname, protocol) to delete: host routes we would have made
    on a workload interface that no endpoint wants there (pure)."""
    stale = []
    for route in routes:
        if not route.ifname or not route.ifname.startswith(prefix) or route.gateway:
            continue
        if route.protocol != boot_protocol or route.dst == "default":
            continue
        address, _, length = route.dst.partition("/")
        if length not in ("32", "128"):
            continue
        want = desired.get(route.ifname)
        if want is None or address not in (want.ipv4 + want.ipv6):
            stale.append(route)
    return stale


class InterfaceWatcher:
    """Which interfaces exist in this network namespace, kept current.

    Shared by the components that care (the policy dataplane dispatches only
    to interfaces that exist; routes need them up). A thread waits for
    netlink link notifications and only wakes the main loop (at most one
    wake queued at a time, however many notifications arrive); the listing
    itself (``refresh``) runs on the main loop, so subscribers are called
    there, with the names that appeared, vanished or changed index. A
    listing every ``poll_interval`` seconds is the safety net.
    """

    def __init__(self, netns=None, poll_interval=5.0):
        self.netns = netns
        self.poll_interval = poll_interval
        self.links = {}
        """name -> ifindex from the last listing."""
        self.listed = False
        """True once a listing succeeded (until then nothing is known)."""
        self._subscribers = []
        self._thread = None
        self._stopping = threading.Event()
        self._wake_pending = threading.Event()
        self._last_refresh = 0.0
        self._flags = None

    def subscribe(self, callback):
        """``callback(changed_names)`` after a listing that changed something."""
        self._subscribers.append(callback)

    def start(self, wake):
        """Start the notification thread once (later calls do nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._monitor, args=(wake,), name="link-monitor",
                                        daemon=True)
        self._thread.start()

    def close(self):
        self._stopping.set()
        if self._flags is not None:
            self._flags.close()
            self._flags = None

    def is_up(self, name):
        from calicoctl.host import netlink
        if self._flags is None:
            self._flags = netlink.InterfaceFlags(self.netns)
        return self._flags.is_up(name)

    def refresh(self):
        """List interfaces now; returns the names that appeared, went or changed index."""
        from calicoctl.host import netlink
        self._wake_pending.clear()
        self._last_refresh = time.monotonic()
        try:
            current = netlink.list_interface_indexes(self.netns)
        except CalicoError as exc:
            LOG.warning("Cannot list interfaces: %s", exc)
            return set()
        changed = {name for name in set(current) | set(self.links)
                   if current.get(name) != self.links.get(name)}
        self.links = current
        self.listed = True
        return changed

    def refresh_and_notify(self, force=False):
        changed = self.refresh()
        if changed or force:
            for callback in self._subscribers:
                callback(changed)
        return changed

    def tick(self, now):
        if now - self._last_refresh >= self.poll_interval:
            self.refresh_and_notify()

    def _monitor(self, wake):
        from calicoctl.host import netlink
        monitor = None
        while not self._stopping.is_set():
            try:
                if monitor is None:
                    monitor = netlink.LinkMonitor(self.netns)
                noticed = monitor.wait(1.0)
            except CalicoError as exc:
                LOG.warning("Link monitor: %s; reopening", exc)
                if monitor is not None:
                    monitor.close()
                monitor = None
                self._stopping.wait(1.0)
                continue
            if noticed and not self._wake_pending.is_set():
                self._wake_pending.set()
                wake(lambda: self.refresh_and_notify(force=True))
        if monitor is not None:
            monitor.close()


class WorkloadRoutes(Component):
    """Reads this host's endpoints from the shared view (``Indexes.local``,
    which collects the interfaces whose endpoint changed): it needs no
    ``on_update`` of its own."""

    def __init__(self, config, links=None, netns=None):
        self.config = config
        self.netns = netns
        self.links = links or InterfaceWatcher(netns, config.link_poll_interval)
        self.links.subscribe(self._on_links)
        self.index = LocalEndpoints(config.hostname)
        """The view's LocalEndpoints (empty until the first snapshot)."""
        self._programmed = {}
        """iface -> (ifindex, WorkloadNetwork) as last programmed."""
        self._session = None
        self._links_dirty = True
        self._full = True

    # -- Component interface -----------------------------------------------------------
    def start(self, wake):
        self.links.start(wake)
        # Open the netlink session now: loading pyroute2 takes about 0.1 s,
        # which the first local workloads would otherwise wait for, in the
        # middle of their burst (py-spy on the 20-host bench).
        try:
            self._open_session()
        except CalicoError as exc:
            LOG.warning("Workload routes: %s; will retry at the first change", exc)

    def on_snapshot(self, view):
        self.index = view.local

    def flush(self):
        changed, resynced = self.index.take_changed()
        if resynced:
            self._full = True
        if not (changed or self._full or self._links_dirty):
            return
        try:
            self._sync(changed)
        except CalicoError as exc:
            LOG.error("Workload routes: %s; will retry", exc)
            self._close_session()
            self._full = True

    def tick(self, now):
        self.links.tick(now)
        if self._links_dirty or self._full:
            self.flush()

    def close(self):
        self.links.close()
        self._close_session()

    def _on_links(self, changed):
        self._links_dirty = True

    # -- programming -------------------------------------------------------------------------
    def _open_session(self):
        if self._session is None:
            from calicoctl.host import netlink
            self._session = netlink.Session(self.netns)
        return self._session

    def _close_session(self):
        if self._session is not None:
            self._session.close()
            self._session = None

    def _sync(self, changed):
        session = self._open_session()
        prefix = self.index.interface_prefix
        if self._full or not self.links.listed:
            self.links.refresh()
        links_changed, self._links_dirty = self._links_dirty, False
        links = self.links.links
        # Only interfaces that exist (and are up) can carry routes: with many
        # endpoints and few interfaces this stays cheap.
        todo = set(changed) | set(self._programmed)
        if self._full or links_changed:
            todo |= {name for name in links if name.startswith(prefix) and self.links.is_up(name)}
        desired = {}

        def want_for(iface):
            if iface not in desired:
                endpoint = self.index.endpoint_for(iface)
                desired[iface] = None if endpoint is None else WorkloadNetwork(
                    iface, tuple(sorted(endpoint.addresses(4))), tuple(sorted(endpoint.addresses(6))),
                    endpoint.ipv6_gateway)
            return desired[iface]
        for iface in sorted(todo):
            want = want_for(iface)
            index = links.get(iface)
            have = self._programmed.get(iface)
            if have is not None and have[0] != index:
                have = None                  # the interface was replaced: its routes went with it
                self._programmed.pop(iface, None)
            if want is None:
                if have is not None and index is not None:
                    self._remove(session, iface, index, have[1])
                self._programmed.pop(iface, None)
                continue
            if index is None or not self.links.is_up(iface):
                # No interface, or it is down (the kernel drops its routes):
                # program it when it is there and up.
                self._programmed.pop(iface, None)
                continue
            if have is not None and have == (index, want):
                continue
            self._program(session, iface, index, want, have[1] if have else None)
            self._programmed[iface] = (index, want)
        if self._full:
            self._full = False
            names = {index: name for name, index in links.items()}
            for version in (4, 6):
                # Interface names from our own listing: cheaper than the kernel's link dump.
                routes = [replace(route, ifname=names.get(route.ifindex))
                          for route in session.list_routes(version, protocol=RTPROT_BOOT, names=False)]
                wanted = {route.ifname: want_for(route.ifname) for route in routes
                          if route.ifname and route.ifname.startswith(prefix)}
                wanted = {name: want for name, want in wanted.items() if want is not None}
                for route in calculate_stale_routes(routes, wanted, prefix):
                    LOG.info("Removing stale route %s dev %s", route.dst, route.ifname)
                    session.delete_route(route.dst, index=links.get(route.ifname), version=version)

    def _program(self, session, iface, index, want, old):
        from calicoctl.host import netlink
        if want.ipv4:
            self._set_sysctl("net/ipv4/conf/%s/proxy_arp" % iface, 1)
            self._set_sysctl("net/ipv4/neigh/%s/proxy_delay" % iface, 0)
        if want.ipv6:
            self._set_sysctl("net/ipv6/conf/%s/proxy_ndp" % iface, 1)
        for address in want.ipv4 + want.ipv6:
            session.replace_route(address, index, scope_link=":" not in address)
        if want.ipv6 and want.ipv6_gateway:
            session.add_proxy_neighbour(want.ipv6_gateway, index)
        if old is not None:
            for address in set(old.ipv4 + old.ipv6) - set(want.ipv4 + want.ipv6):
                session.delete_route(address, index=index)
            if old.ipv6_gateway and old.ipv6_gateway != want.ipv6_gateway:
                try:
                    session.delete_proxy_neighbour(old.ipv6_gateway, index)
                except netlink.NetlinkError:
                    pass
        LOG.info("Programmed %s: %s", iface, " ".join(want.ipv4 + want.ipv6) or "no addresses")

    def _remove(self, session, iface, index, old):
        for address in old.ipv4 + old.ipv6:
            session.delete_route(address, index=index)
        if old.ipv6_gateway:
            session.delete_proxy_neighbour(old.ipv6_gateway, index)
        LOG.info("Removed routes of %s", iface)

    def _set_sysctl(self, name, value):
        try:
            sysctl.ensure(name, value)
        except CalicoError as exc:
            LOG.warning("%s", exc)

    def status(self):
        return {}
