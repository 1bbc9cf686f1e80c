"""The agent's path dispatcher: each etcd key parsed once, handed to whoever asked.

``parse_key`` turns an etcd path into a ``Key``: its ``Kind`` (endpoint,
profile, pool, ...) and the parts its path encodes. A component says which
kinds it needs (``Component.kinds``); the ``Dispatcher`` keeps the shared
indexes (``indexes.Indexes``) current and calls each component only for
keys of its kinds:

- ``snapshot(items)`` builds a fresh ``Indexes`` from the whole snapshot and
  hands every component that same, consistent view (``on_snapshot``);
- ``update(path, value)`` applies one change: a value equal to what the
  view has is no change at all; a deleted directory becomes a deletion of
  each leaf the view had under it, so components only ever see leaves. The
  view is updated first, then each component of the key's kind gets
  ``on_update(key, value)``.

A resynchronisation after an error is a snapshot of the view's own leaves
(``resync``): new indexes, every component starting over from them. A
snapshot taken only to catch up with etcd (``catch_up``) is applied as the
updates that turn the view into it: components see only what differs.
"""
import enum
import logging
import re
from dataclasses import dataclass

from calicoctl.datastore import paths

LOG = logging.getLogger(__name__)


class Kind(enum.Enum):
    ENDPOINT = "endpoint"          # parts: (hostname, orchestrator, workload, endpoint)
    PROFILE = "profile"            # parts: (profile, "rules" | "tags")
    POOL = "pool"                  # parts: (cidr,)
    HOST_ADDRESS = "host address"  # /calico/bgp/v1/host/<h>/<field>; parts: (hostname, field)
    BGP_PEER = "bgp peer"          # parts: (hostname or None, version, ip)
    BGP_GLOBAL = "bgp global"      # the global AS number and node mesh setting
    HOST_VXLAN = "host vxlan"      # parts: (hostname,)
    CONFIG = "config"              # global or per-host config; parts: (hostname or None, name)
    OTHER = "other"


@dataclass(frozen=True)
class Key:
    """An etcd path, parsed."""
    path: str
    kind: Kind
    parts: tuple = ()


_GLOBAL_CONFIG = paths.CONFIG_DIR + "/"
_HOST_CONFIG_RE = re.compile(r"^/calico/v1/host/(?P<hostname>[^/]+)/config/(?P<name>[^/]+)$")
_BGP_GLOBALS = (paths.BGP_GLOBAL_AS, paths.BGP_NODE_MESH)


def parse_key(path):
    """The ``Key`` of an etcd path (``Kind.OTHER`` for anything no component reads)."""
    if path.startswith(paths.HOSTS_DIR + "/"):
        parts = paths.parse_endpoint_key(path)
        if parts is not None:
            return Key(path, Kind.ENDPOINT, parts)
        match = _HOST_CONFIG_RE.match(path)
        if match:
            return Key(path, Kind.CONFIG, (match.group("hostname"), match.group("name")))
        hostname = paths.parse_host_vxlan_key(path)
        if hostname is not None:
            return Key(path, Kind.HOST_VXLAN, (hostname,))
    elif path.startswith(paths.PROFILES_DIR + "/"):
        parts = paths.parse_profile_key(path)
        if parts is not None:
            return Key(path, Kind.PROFILE, parts)
    elif path.startswith(paths.BGP_V1 + "/"):
        parts = paths.parse_bgp_host_key(path)
        if parts is not None:
            return Key(path, Kind.HOST_ADDRESS, parts)
        parts = paths.parse_bgp_peer_key(path)
        if parts is not None:
            return Key(path, Kind.BGP_PEER, parts)
        if path in _BGP_GLOBALS:
            return Key(path, Kind.BGP_GLOBAL)
    elif path.startswith(paths.IPAM_DIR + "/"):
        cidr = paths.parse_pool_key(path)
        if cidr is not None:
            return Key(path, Kind.POOL, (cidr,))
    elif path.startswith(_GLOBAL_CONFIG) and "/" not in path[len(_GLOBAL_CONFIG):]:
        return Key(path, Kind.CONFIG, (None, path[len(_GLOBAL_CONFIG):]))
    return Key(path, Kind.OTHER)


def as_key(key):
    """``key`` if already a Key, else the Key of the path."""
    return key if isinstance(key, Key) else parse_key(key)


def _call_directly(method, *args):
    method(*args)
    return True


class Dispatcher:
    """Feeds components from one stream of etcd changes (see the module docstring).

    :param hostname: this host (the indexes tell its endpoints apart).
    :param components: the components, each with ``kinds``.
    :param call: ``call(bound_method, *args) -> ok``: how to call a
        component's ``on_snapshot`` (the agent's main loop logs and times
        it and returns False on an error); by default, directly.
    """

    def __init__(self, hostname, components, call=_call_directly):
        from calicoctl.agent.indexes import Indexes
        self.hostname = hostname
        self.components = list(components)
        self._call = call
        self._by_kind = {kind: [c for c in self.components if kind in c.kinds] for kind in Kind}
        self.indexes = Indexes(hostname)
        """The current view; replaced whole by each snapshot."""

    def snapshot(self, items):
        """A fresh view from ``items`` (path -> value of every leaf), handed to
        every component. Returns False if any component failed."""
        from calicoctl.agent.indexes import Indexes
        indexes = Indexes(self.hostname, previous=self.indexes)
        indexes.load(items)
        self.indexes = indexes
        ok = True
        for component in self.components:
            ok = self._call(component.on_snapshot, indexes) and ok
        return ok

    def resync(self):
        """Start every component over from the view's own leaves (etcd is not read)."""
        return self.snapshot(dict(self.indexes.items))

    def catch_up(self, items):
        """Bring the view to ``items`` (a later snapshot of every leaf) by
        updates, each leaf that differs once; returns False if any component failed."""
        current = self.indexes.items
        ok = True
        for path in [path for path in current if items.get(path) is None]:
            ok = self.update(path, None) and ok
        for path, value in items.items():
            if value is not None and current.get(path) != value:
                ok = self.update(path, value) and ok
        return ok

    def update(self, path, value):
        """One etcd change; returns False if any component failed.

        This is the agent's per-event path: components are called directly
        (no timing, no name formatting); ``call`` wraps the rarer, longer
        calls (``on_snapshot``)."""
        items = self.indexes.items
        if value is None and path not in items:
            keys = self.indexes.keys_under(path)     # a directory: each leaf below it
        elif items.get(path) == value:
            return True
        else:
            keys = (parse_key(path),)
        ok = True
        for key in keys:
            self.indexes.apply(key, value)
            for component in self._by_kind[key.kind]:
                try:
                    component.on_update(key, value)
                except Exception:  # logged; the agent resynchronises (component.py)
                    LOG.exception("%s failed on %s; will resynchronise", type(component).__name__, key.path)
                    ok = False
        return ok
