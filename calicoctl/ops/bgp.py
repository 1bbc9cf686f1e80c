"""BGP settings (``calicoctl bgp``, ``calicoctl node bgp``, ``calicoctl node --rr-cluster-id``).

Peers are global (``hostname`` None: every node peers with them) or one
node's own; the same workflows serve both. The node-to-node mesh and the
default AS are single global values. A host with a cluster ID is a route
reflector; with the mesh off, the hosts peer through the reflectors
(docs/decisions.md, "Route reflectors").

Two changes can leave hosts with no way to learn each other's routes:
turning the mesh off, and turning the last reflector back into an ordinary
node while it is off. Both are refused, unless forced, when no reflector,
global peer or node-specific peer would remain (``calculate_routes_cut_off``).
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl import model
from calicoctl.errors import Conflict, NotFound

NO_ROUTES = ("hosts would learn no routes to each other's workloads over BGP (VXLAN pools are not "
             "affected)")


@dataclass(frozen=True)
class PeerChange:
    """What adding a peer did.

    :ivar previous: the peer with the same IP stored before, if any.
    """
    peer: model.BGPPeer
    previous: Optional[model.BGPPeer] = None

    @property
    def changed(self):
        return self.previous != self.peer


@dataclass(frozen=True)
class PeerRemoved:
    ip: str
    hostname: Optional[str]     # None: it was a global peer


@dataclass(frozen=True)
class SettingChange:
    """A global value set to ``after``; ``before`` is what it was."""
    before: object
    after: object

    @property
    def changed(self):
        return self.before != self.after


# -- peers ------------------------------------------------------------------------

def list_peers(datastore, hostname=None):
    """Global peers, or one node's, IPv4 first, each version by IP."""
    return datastore.list_bgp_peers(hostname=hostname)


def add_peer(datastore, peer, hostname=None):
    """Add ``peer`` (or change the AS of the peer with its IP); nothing is
    written when it is already there as given."""
    existing = [p for p in datastore.list_bgp_peers(hostname=hostname, version=peer.version) if p.ip == peer.ip]
    change = PeerChange(peer, existing[0] if existing else None)
    if change.changed:
        datastore.add_bgp_peer(peer, hostname=hostname)
    return change


def remove_peer(datastore, ip, hostname=None):
    """Remove the peer with ``ip``; NotFound when there is none."""
    if not datastore.remove_bgp_peer(ip, hostname=hostname):
        if hostname is None:
            raise NotFound("%s is not a global BGP peer." % ip)
        raise NotFound("%s is not a BGP peer of node %s." % (ip, hostname))
    return PeerRemoved(ip, hostname)


@dataclass(frozen=True)
class ReflectorRole:
    """What ``calicoctl node --rr-cluster-id`` asks for: a route reflector with
    ``cluster_id``, or (None) an ordinary node."""
    cluster_id: Optional[str]


@dataclass(frozen=True)
class ReflectorChange(SettingChange):
    """A host's cluster ID from ``before`` to ``after`` (None: not a reflector);
    ``node_mesh``: the mesh is on, so the reflectors are not used yet."""
    node_mesh: bool = True


def calculate_routes_cut_off(node_mesh, reflectors, global_peers, node_peers):
    """True when hosts would learn no BGP routes from each other (pure): the
    mesh is off and there is no reflector, no global peer and no node's own peer."""
    return not node_mesh and not reflectors and not global_peers and not node_peers


def _routes_cut_off(datastore, node_mesh, reflectors):
    return calculate_routes_cut_off(node_mesh, reflectors, datastore.list_bgp_peers(),
                                    datastore.any_node_peers())


# -- route reflectors ------------------------------------------------------------------

def list_route_reflectors(datastore):
    """The hosts that are route reflectors (model.BgpHost), by hostname."""
    return [host for host in datastore.list_bgp_hosts() if host.is_reflector]


def plan_route_reflector(datastore, hostname, role, force=False):
    """The ReflectorChange giving ``hostname`` the ReflectorRole ``role``, not
    yet written (``apply_route_reflector`` writes it).

    Refuses (Conflict) to make the last reflector an ordinary node while the
    mesh is off and no peer is configured, unless ``force``.
    """
    node_mesh = datastore.get_node_mesh()
    change = ReflectorChange(datastore.get_rr_cluster_id(hostname), role.cluster_id, node_mesh=node_mesh)
    if change.changed and role.cluster_id is None and not force:
        others = [host for host in list_route_reflectors(datastore) if host.hostname != hostname]
        if _routes_cut_off(datastore, node_mesh, others):
            raise Conflict("Not making %s an ordinary node: it is the last route reflector and the "
                           "node-to-node mesh is off, so %s. Turn the mesh on first ('calicoctl bgp "
                           "node-mesh on'), or repeat with --force." % (hostname, NO_ROUTES))
    return change


def apply_route_reflector(datastore, hostname, change):
    if change.changed:
        datastore.set_rr_cluster_id(hostname, change.after)


# -- mesh and default AS -------------------------------------------------------------

def read_node_mesh(datastore):
    return datastore.get_node_mesh()


def set_node_mesh(datastore, enabled, force=False):
    """Turn the mesh on or off. Refuses (Conflict) to turn it off while no
    route reflector and no peer is configured, unless ``force``."""
    if not enabled and not force and datastore.get_node_mesh() and \
            _routes_cut_off(datastore, False, list_route_reflectors(datastore)):
        raise Conflict("Not turning the node-to-node mesh off: with no route reflector and no BGP peer, "
                       "%s. Make a host a route reflector first ('calicoctl node --rr-cluster-id=<IPv4>') "
                       "or add a BGP peer, or repeat with --force." % NO_ROUTES)
    return _set(datastore.get_node_mesh, datastore.set_node_mesh, enabled)


def read_default_as(datastore):
    return datastore.get_default_as()


def set_default_as(datastore, as_num):
    return _set(datastore.get_default_as, datastore.set_default_as, as_num)


def _set(read, write, value):
    change = SettingChange(read(), value)
    if change.changed:
        write(value)
    return change
