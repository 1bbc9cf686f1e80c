"""The agent's shared view of etcd, kept current by the dispatcher (dispatch.py).

One ``Indexes`` per snapshot: built from it (``load``), then updated leaf by
leaf (``apply``) before the components of that leaf's kind are told. What
several components need lives here once instead of in each of them:

- ``items``: every leaf (path -> value), which a resynchronisation starts
  from, and by kind (``leaves``, ``keyed``);
- ``endpoints``: the endpoint parser, so each endpoint value is parsed once
  whoever reads it (policy, routes, tunnels);
- ``tunnels``: pools, host addresses, VXLAN records and endpoint networks
  (tunnels.TunnelIndex) for the VXLAN, IPIP and NAT-outgoing components;
- ``local``: this host's endpoints by interface name (``LocalEndpoints``)
  for the routes component.

Components read it; only a component's own etcd write is recorded in it
(``record_write``), so the watch's echo of that write changes nothing.
"""
from collections import ChainMap, defaultdict

from calicoctl.agent.policy.iptables import rules as rules_mod
from calicoctl.agent.keys import Kind, as_key, parse_key
from calicoctl.agent.state import EndpointParser, _Config, parse_endpoint
from calicoctl.agent.routing.tunnels import TunnelIndex
from calicoctl.datastore import paths

TUNNEL_KINDS = frozenset((Kind.ENDPOINT, Kind.POOL, Kind.HOST_ADDRESS, Kind.HOST_VXLAN))
LOCAL_KINDS = frozenset((Kind.ENDPOINT, Kind.CONFIG))


class Indexes:
    """See the module docstring.

    :param previous: the view this one replaces (its endpoint parses are reused).
    """

    def __init__(self, hostname, previous=None):
        self.hostname = hostname
        self.items = {}
        """path -> value of every leaf."""
        self._keys = {}
        """path -> keys.Key of every leaf."""
        self._by_kind = {kind: {} for kind in Kind}
        """Kind -> {path: value}."""
        self.endpoints = EndpointParser(hostname, previous.endpoints if previous is not None else None)
        self.tunnels = TunnelIndex(parser=self.endpoints)
        self.local = LocalEndpoints(hostname, self.endpoints)

    def load(self, items):
        """Fill from a snapshot (path -> value of every leaf)."""
        for path, value in items.items():
            if value is not None:
                self.apply(parse_key(path), value)
        self.endpoints.forget_previous()

    def apply(self, key, value):
        """One leaf (a keys.Key) set, or deleted (None)."""
        path = key.path
        if value is None:
            self.items.pop(path, None)
            self._keys.pop(path, None)
            self._by_kind[key.kind].pop(path, None)
        else:
            self.items[path] = value
            self._keys[path] = key
            self._by_kind[key.kind][path] = value
        if key.kind in TUNNEL_KINDS:
            self.tunnels.update(key, value)
        if key.kind in LOCAL_KINDS:
            self.local.apply(key, value)

    def record_write(self, path, value):
        """A component wrote ``value`` (None: deleted) at ``path`` in etcd: see it now."""
        self.apply(parse_key(path), value)

    def keys_under(self, path):
        """The Keys of every leaf under directory ``path``."""
        prefix = path.rstrip("/") + "/"
        return [key for leaf, key in self._keys.items() if leaf.startswith(prefix)]

    def leaves(self, kinds):
        """path -> value of every leaf of ``kinds`` (a read-only view)."""
        return ChainMap(*(self._by_kind[kind] for kind in kinds))

    def keyed(self, kinds):
        """(Key, value) of every leaf of ``kinds``."""
        return [(self._keys[path], value) for kind in kinds for path, value in self._by_kind[kind].items()]


class LocalEndpoints:
    """This host's endpoints by interface name, plus the interface prefix."""

    def __init__(self, hostname, parser=None):
        self.hostname = hostname
        self._parse = parser or parse_endpoint
        self.config = _Config(self.hostname)
        self.endpoints = {}
        """etcd key -> Endpoint of this host's valid endpoints."""
        self._claims = defaultdict(set)
        """interface name -> etcd keys of endpoints naming it."""
        self.changed = set()
        """Interface names whose endpoint changed since ``take_changed``
        (the routes component takes them)."""
        self.resynced = True
        """True until the first ``take_changed``: everything is new."""

    @property
    def interface_prefix(self):
        return self.config.interface_prefix

    def apply(self, key, value):
        """One etcd leaf (a path or keys.Key) set or deleted (None; also directories)."""
        key = as_key(key)
        path = key.path
        if key.kind is Kind.CONFIG and self.config.is_config_key(path):
            before = self.config.interface_prefix
            if value is None:
                self.config.values.pop(path, None)
            else:
                self.config.values[path] = value
            if self.config.interface_prefix != before:
                self.changed.update(self._claims)
            return
        if key.kind is Kind.ENDPOINT:
            if key.parts[0] != self.hostname:
                return
            _, endpoint = self._parse(key, value)
            key = path
            old = self.endpoints.get(key)
            if old == endpoint:
                return
            if old is not None:
                self.changed.add(old.name)
                claims = self._claims.get(old.name)
                if claims is not None:
                    claims.discard(key)
                    if not claims:
                        del self._claims[old.name]
            if endpoint is None:
                self.endpoints.pop(key, None)
            else:
                self.endpoints[key] = endpoint
                self._claims[endpoint.name].add(key)
                self.changed.add(endpoint.name)
            return
        prefix = paths.host_workloads_dir(self.hostname) + "/"
        if value is None and ((path + "/").startswith(prefix) or prefix.startswith(path.rstrip("/") + "/")):
            dir_prefix = path.rstrip("/") + "/"
            for leaf in [k for k in self.endpoints if k.startswith(dir_prefix)]:
                self.apply(leaf, None)
            for leaf in [k for k in self.config.values if k.startswith(dir_prefix)]:
                self.apply(leaf, None)

    def take_changed(self):
        changed, self.changed = self.changed, set()
        resynced, self.resynced = self.resynced, False
        return changed, resynced

    def endpoint_for(self, iface):
        """The active endpoint owning ``iface`` (first key wins a clash), or None."""
        for key in sorted(self._claims.get(iface, ())):
            endpoint = self.endpoints[key]
            if endpoint.state == "active" and \
                    rules_mod.validate_interface_name(iface, self.interface_prefix) is not None:
                return endpoint
        return None
