"""BGP settings (``calicoctl bgp``, ``calicoctl node bgp``).

Peers are global (``hostname`` None: every node peers with them) or one
node's own; the same workflows serve both. The node-to-node mesh and the
default AS are single global values.
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl import model
from calicoctl.errors import NotFound


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


# -- mesh and default AS -------------------------------------------------------------

def read_node_mesh(datastore):
    return datastore.get_node_mesh()


def set_node_mesh(datastore, enabled):
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
