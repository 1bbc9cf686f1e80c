"""Pure: what the agent keeps workloads away from (the control plane).

``ControlPlaneIndex`` follows the etcd leaves that decide it:

- the setting (``model.ControlPlaneProtection`` at
  ``paths.control_plane_protection()``): on/off and the protected TCP ports.
  Unset means the defaults; a value that does not parse also means the
  defaults (logged): bad data must not open the control plane;
- every host's recorded addresses (``/calico/bgp/v1/host/<h>/ip_addr_v4``
  and ``ip_addr_v6``, written by ``calicoctl node``) and every BGP peer's
  (global and per host): with NAT-outgoing a workload reaching a peer's
  port 179 would speak with its host's address.

plus what the agent was started with: its etcd endpoints, whose ports are
always protected and whose addresses are protected as IP literals at once,
or once the caller has resolved their host names (``set_resolved``).

The dataplane turns this into one ipset of addresses per IP family and a
few rules (calicoctl.agent.policy.iptables.rules, "Control plane"); a host joining or
leaving changes set members only.
"""
import ipaddress
import logging

from calicoctl import model
from calicoctl.agent.keys import Kind, as_key
from calicoctl.datastore import paths

LOG = logging.getLogger(__name__)

HOST_ADDRESS_FIELDS = ("ip_addr_v4", "ip_addr_v6")


def _address(text):
    """Canonical form of an IP address (as the kernel lists set members), or None."""
    try:
        return ipaddress.ip_address(text).compressed
    except (TypeError, ValueError):
        return None


class ControlPlaneIndex:
    """See the module docstring.

    :param etcd_endpoints: ``((host, port), ...)`` of the agent's etcd; a host
        is an IP address or a name to resolve.
    """

    def __init__(self, etcd_endpoints=()):
        endpoints = tuple(etcd_endpoints)
        self.etcd_ports = tuple(sorted({port for _, port in endpoints}))
        self._etcd_literals = {_address(host) for host, _ in endpoints} - {None}
        self.etcd_hostnames = tuple(sorted({host for host, _ in endpoints if _address(host) is None}))
        """etcd endpoint hosts that are names: the caller resolves them."""
        self._resolved = {}
        """etcd host name -> addresses it last resolved to."""
        self._setting_key = paths.control_plane_protection()
        self.reset()

    def reset(self):
        """Forget everything that came from etcd (a new snapshot follows)."""
        self.setting, self.problem = model.ControlPlaneProtection(), None
        self._recorded = {}
        """etcd key -> address, for host address and BGP peer leaves."""
        self.changed = True

    # -- queries -------------------------------------------------------------------------
    @property
    def ports(self):
        """TCP ports to protect, sorted; () while the protection is off."""
        if not self.setting.enabled:
            return ()
        return tuple(sorted(set(self.setting.ports) | set(self.etcd_ports)))

    def addresses(self, version):
        """Every protected address of one IP family."""
        found = set(self._recorded.values()) | self._etcd_literals
        for addresses in self._resolved.values():
            found.update(addresses)
        return {address for address in found if (":" in address) == (version == 6)}

    def take_changed(self):
        changed, self.changed = self.changed, False
        return changed

    # -- updates -------------------------------------------------------------------------
    def apply(self, key, value):
        """One etcd leaf (a path or keys.Key) set (value) or deleted (None;
        also directories).

        True if the key is one of ours (nobody else needs it).
        """
        key = as_key(key)
        if key.path == self._setting_key:
            setting, problem = model.ControlPlaneProtection.from_stored(value)
            if problem is not None:
                LOG.warning("Invalid control-plane protection setting at %s (%s); protecting the "
                            "default ports %s.", key.path, problem, ", ".join(map(str, setting.ports)))
            if (setting, problem) != (self.setting, self.problem):
                self.setting, self.problem = setting, problem
                self.changed = True
            return True
        if key.kind is Kind.HOST_ADDRESS:
            if key.parts[1] not in HOST_ADDRESS_FIELDS:
                return False
            self._record(key.path, self._parse_host_address(key.path, value))
            return True
        if key.kind is Kind.BGP_PEER:
            address = _address(key.parts[2]) if value is not None else None
            if value is not None and address is None:
                LOG.warning("Ignoring BGP peer key %s: not an IP address.", key.path)
            self._record(key.path, address)
            return True
        if value is None and key.path.startswith(paths.BGP_V1):
            prefix = key.path.rstrip("/") + "/"
            for leaf in [k for k in self._recorded if k.startswith(prefix)]:
                self._record(leaf, None)
        return False

    @staticmethod
    def _parse_host_address(path, value):
        """The address a host's address leaf records, or None."""
        if value in (None, ""):
            return None
        address = _address(value)
        if address is None:
            LOG.warning("Ignoring invalid host address %r at %s.", value, path)
        return address

    def _record(self, key, address):
        if address is None:
            if self._recorded.pop(key, None) is not None:
                self.changed = True
        elif self._recorded.get(key) != address:
            self._recorded[key] = address
            self.changed = True

    def set_resolved(self, hostname, addresses):
        """The addresses an etcd endpoint's host name resolved to. A lookup
        that found nothing keeps the previous ones: a DNS outage must not
        open etcd to workloads."""
        canonical = frozenset(a for a in map(_address, addresses) if a is not None)
        if canonical and self._resolved.get(hostname) != canonical:
            self._resolved[hostname] = canonical
            self.changed = True

    def describe(self):
        """The figures the agent reports (``calicoctl status`` shows them)."""
        return {"enabled": self.setting.enabled, "ports": list(self.ports),
                "addresses": {"4": len(self.addresses(4)), "6": len(self.addresses(6))},
                "problem": self.problem}
