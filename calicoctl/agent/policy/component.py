"""What every policy dataplane does the same way: follow etcd's policy.

``PolicyComponent`` keeps the ``state.PolicyIndex`` of the keys policy
depends on (endpoints, profiles, config, host addresses, BGP peers),
resolves the etcd endpoints given by name off the main loop (their
addresses are protected like the rest of the control plane), and reports
the local endpoints and the control-plane protection in the agent's
status. A dataplane subclasses it and implements ``flush``/``tick`` and
``protection_programmed``.
"""
import logging

from calicoctl.agent.component import Component
from calicoctl.agent.keys import Kind
from calicoctl.agent.state import PolicyIndex
from calicoctl.errors import CalicoError
from calicoctl.host import dns as dns_mod

LOG = logging.getLogger(__name__)


class PolicyComponent(Component):
    """:param resolve: optional ``resolve(name) -> addresses`` for etcd host names (tests).
    :param cleanup: called once, after the first complete write: removes
        what the other dataplane programmed (a node switching dataplanes).
    """

    kinds = frozenset((Kind.ENDPOINT, Kind.PROFILE, Kind.CONFIG, Kind.HOST_ADDRESS, Kind.BGP_PEER))
    dataplane = None
    """The name ``calicoctl node --dataplane`` and ``calicoctl status`` use."""

    def __init__(self, config, resolve=None, cleanup=None):
        self.config = config
        self._cleanup = cleanup
        self.index = PolicyIndex(config.hostname, etcd_endpoints=config.etcd_endpoints)
        self._resolve = resolve or dns_mod.resolve
        self._resolver = None

    def start(self, wake):
        names = self.index.control_plane.etcd_hostnames
        if names:
            def resolved(results):
                wake(lambda: self._on_resolved(results))
            self._resolver = dns_mod.PeriodicResolver(names, self.config.etcd_resolve_interval,
                                                      resolved, resolve=self._resolve)
            self._resolver.start()

    def _on_resolved(self, results):
        for name, addresses in results.items():
            self.index.control_plane.set_resolved(name, addresses)

    def close(self):
        if self._resolver is not None:
            self._resolver.stop()

    def on_snapshot(self, view):
        self.index.apply_snapshot(view.keyed(self.kinds), parser=view.endpoints)
        self.resync()

    def on_update(self, key, value):
        self.index.apply(key, value)

    def written_whole(self):
        """A dataplane calls this after each complete write of its state."""
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            try:
                cleanup()
            except CalicoError as exc:
                LOG.error("Could not remove what the other dataplane programmed: %s", exc)

    def resync(self):
        """The next flush starts over: read the kernel, apply everything."""
        raise NotImplementedError

    def protection_programmed(self):
        """True when the kernel enforces the control-plane protection as desired."""
        raise NotImplementedError

    def status(self):
        control_plane = self.index.control_plane.describe()
        control_plane["active"] = bool(control_plane["ports"]) and self.protection_programmed()
        return {"local_endpoints": len(self.index.local), "control_plane": control_plane,
                "dataplane": self.dataplane}
