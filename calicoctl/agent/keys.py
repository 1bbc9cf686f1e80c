"""The agent's key vocabulary: what an etcd path is, parsed once.

``parse_key`` turns an etcd path into a ``Key``: its ``Kind`` (endpoint,
profile, pool, ...) and the parts its path encodes. Components say which
kinds they need (``Component.kinds``), the dispatcher (dispatch.py) routes
by kind, and the shared view (indexes.py) and the indexes of the
components (state.py, tunnels.py, control_plane.py, bird_config.py) read
the parts. This module owns that vocabulary and imports nothing of the agent.
"""
import enum
import re
from dataclasses import dataclass

from calicoctl.datastore import paths


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
