"""Hosts in etcd: readiness and global defaults, BGP settings and peers,
host registration, the agent's status and (our extension) the host's VXLAN
tunnel endpoint."""
import json

from calicoctl import model, validate
from calicoctl.datastore import paths
from calicoctl.datastore.store import EtcdStore, ip_versions
from calicoctl.errors import ValidationError


class HostStore(EtcdStore):
    # -- readiness and config --------------------------------------------------

    def set_ready(self, ready=True):
        self.kv.put(paths.READY, "true" if ready else "false")

    def ensure_global_config(self, name, value):
        """Create a global config value if missing (never overwrite)."""
        self.kv.create(paths.global_config(name), value)

    def get_config(self, hostname, name):
        """A config value as the agent reads it: the host's, else the global
        one; None when neither is set (or both are empty)."""
        return paths.config_value(self._get, hostname, name)

    def get_interface_prefix(self, hostname):
        """The prefix of workload interface names on ``hostname`` (model.interface_prefix)."""
        return model.interface_prefix(self.get_config(hostname, "InterfacePrefix"))

    def get_control_plane_protection(self):
        """The stored control-plane protection JSON, or None when unset."""
        return self._get(paths.control_plane_protection())

    def update_control_plane_protection(self, compute):
        """CAS-update the control-plane protection: ``compute(stored text or None)``
        returns the model.ControlPlaneProtection to store, or None to leave etcd
        as it is. Returns an Update of the stored text (None: unset) before and after."""
        def apply(old):
            new = compute(old)
            return old if new is None else new.to_json()
        return self.update_value(paths.control_plane_protection(), apply, create=True)

    # -- BGP ---------------------------------------------------------------------

    def get_default_as(self):
        value = self._get(paths.BGP_GLOBAL_AS)
        return int(value) if value not in (None, "") and value.isdigit() else 64511

    def set_default_as(self, as_num):
        self.kv.put(paths.BGP_GLOBAL_AS, str(as_num))

    def get_node_mesh(self):
        value = self._get(paths.BGP_NODE_MESH)
        if not value:
            return True
        try:
            return bool(json.loads(value).get("enabled", True))
        except (ValueError, AttributeError):
            return True

    def set_node_mesh(self, enabled):
        self.kv.put(paths.BGP_NODE_MESH, json.dumps({"enabled": bool(enabled)}))

    def ensure_bgp_defaults(self):
        for key, value in ((paths.BGP_GLOBAL_AS, "64511"),
                           (paths.BGP_NODE_MESH, json.dumps({"enabled": True}))):
            self.kv.create(key, value)

    def list_bgp_peers(self, hostname=None, version=None):
        """Global peers (hostname None) or one host's peers, sorted by IP."""
        directories = [paths.global_peers_dir(v) if hostname is None else paths.host_peers_dir(hostname, v)
                       for v in ip_versions(version)]
        peers = self._valid_models(directories, model.BGPPeer.from_json)
        import netaddr
        peers.sort(key=lambda peer: (peer.version, netaddr.IPAddress(peer.ip)))
        return peers

    def add_bgp_peer(self, peer, hostname=None):
        key = paths.global_peer(peer.ip) if hostname is None else paths.host_peer(hostname, peer.ip)
        self.kv.put(key, peer.to_json())

    def remove_bgp_peer(self, ip, hostname=None):
        key = paths.global_peer(ip) if hostname is None else paths.host_peer(hostname, ip)
        return self._delete(key)

    def any_node_peers(self):
        """True if any host has a BGP peer of its own."""
        return any(paths.parse_bgp_peer_key(key) for key, _ in self._leaves(paths.BGP_HOSTS_DIR))

    # -- route reflectors ----------------------------------------------------------

    def list_bgp_hosts(self):
        """Every host's BGP record (model.BgpHost), by hostname."""
        fields = {}
        for key, value in self._leaves(paths.BGP_HOSTS_DIR):
            parsed = paths.parse_bgp_host_key(key)
            if parsed is not None:
                fields.setdefault(parsed[0], {})[parsed[1]] = value
        return [model.BgpHost.from_fields(hostname, fields[hostname]) for hostname in sorted(fields)]

    def get_rr_cluster_id(self, hostname):
        """The host's route reflector cluster ID, or None: not a reflector (or an unreadable ID)."""
        return model.BgpHost.from_fields(hostname, {"rr_cluster_id": self._get(paths.host_rr_cluster_id(hostname))}
                                         ).rr_cluster_id

    def set_rr_cluster_id(self, hostname, cluster_id):
        """Make the host a route reflector with ``cluster_id``; None: an ordinary node."""
        if cluster_id is None:
            self._delete(paths.host_rr_cluster_id(hostname))
        else:
            self.kv.put(paths.host_rr_cluster_id(hostname), cluster_id)

    # -- hosts ---------------------------------------------------------------------

    def get_host_ip(self, hostname, version):
        """The host's recorded IPv4/IPv6 address, or None."""
        value = self._get(paths.host_ip_addr(hostname, version))
        if not value:
            return None
        try:
            return str(validate.parse_ip(value, version))
        except ValidationError:
            return None

    # -- host registration and agent status (calicoctl node / status) ------------

    def register_host(self, hostname, ip, ip6=None, as_num=None):
        """Write the keys ``calicoctl node`` owns for a host (docs/etcd-layout.md, "Written by calicoctl node").

        ``ip6`` None stores "" (no IPv6); ``as_num`` None deletes the per-host
        AS so the global default applies.
        """
        self.kv.put(paths.host_bird_ip(hostname), ip)
        self.kv.put(paths.host_ip_addr(hostname, 4), ip)
        self.kv.put(paths.host_ip_addr(hostname, 6), ip6 or "")
        self.kv.make_dir(paths.host_workloads_dir(hostname))
        if as_num is None:
            self._delete(paths.host_as_num(hostname))
        else:
            self.kv.put(paths.host_as_num(hostname), str(as_num))
        self.kv.put(paths.host_config(hostname, "DefaultEndpointToHostAction"), "RETURN")
        self.kv.put(paths.host_config(hostname, "marker"), "created")

    def remove_host(self, hostname):
        """Delete every key of a host (config, endpoints, BGP, agent status)."""
        for directory in (paths.host_dir(hostname), paths.bgp_host_dir(hostname),
                          paths.felix_host_dir(hostname)):
            self._delete(directory, recursive=True)

    def get_agent_status(self, hostname):
        """The agent's status JSON for a host, or None (absent or expired)."""
        return self._get(paths.felix_status(hostname))

    # -- this host's VXLAN tunnel endpoint (written by the agent) ----------------

    def write_host_vxlan(self, hostname, tunnel):
        """Record ``tunnel`` (a model.VxlanTunnel) as ``hostname``'s VXLAN endpoint."""
        self.kv.put(paths.host_vxlan(hostname), tunnel.to_json())

    def remove_host_vxlan(self, hostname):
        """Delete ``hostname``'s VXLAN record; False if there was none."""
        return self._delete(paths.host_vxlan(hostname))

    def dump_tree(self, prefix):
        """(key, value) of every leaf under prefix, sorted; [] if absent."""
        return sorted(self._leaves(prefix))
