"""Typed reads and writes of Calico's etcd data.

``DatastoreClient`` takes an etcd connection (``etcdconn.EtcdConnection`` or a
python-etcd ``Client``) and speaks in models (``calicoctl.model``). It is the
boundary where python-etcd's exceptions become ours: connection failures
become DatastoreUnavailable (exit 3), anything else unexpected from etcd
becomes DatastoreError.

Read-modify-write of a value goes through ``update_value``: read the value
and its modifiedIndex, compute the new value, write with ``prevIndex``; if
someone else wrote in between, read again and retry. That is what lets
twenty concurrent ``endpoint <ID> profile append`` calls all land.
"""
import functools
import json

from calicoctl import model, validate
from calicoctl.datastore import paths
from calicoctl.errors import (CalicoError, Conflict, DatastoreError, DatastoreUnavailable,
                              NotFound, ValidationError)

CAS_ATTEMPTS = 50


def _translate_errors(method):
    """Turn python-etcd exceptions escaping ``method`` into CalicoErrors."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        import etcd
        try:
            return method(self, *args, **kwargs)
        except CalicoError:
            raise
        except etcd.EtcdConnectionFailed as exc:
            raise DatastoreUnavailable("Cannot reach etcd: %s" % exc)
        except etcd.EtcdException as exc:
            raise DatastoreError("etcd error in %s: %s" % (method.__name__, exc))
    return wrapper


class DatastoreClient:
    def __init__(self, etcd_client):
        self.etcd = etcd_client

    # -- generic helpers ------------------------------------------------------

    def _get(self, key):
        """The value at key, or None when it is absent."""
        import etcd
        try:
            return self.etcd.read(key).value
        except etcd.EtcdKeyNotFound:
            return None

    def _exists(self, key):
        import etcd
        try:
            self.etcd.read(key)
            return True
        except etcd.EtcdKeyNotFound:
            return False

    def _delete(self, key, recursive=False):
        """Delete key (a dir when recursive); False if it was not there."""
        import etcd
        try:
            if recursive:
                self.etcd.delete(key, recursive=True, dir=True)
            else:
                self.etcd.delete(key)
            return True
        except etcd.EtcdKeyNotFound:
            return False

    def _leaves(self, prefix):
        """(key, value) of every leaf under prefix; empty if prefix is absent."""
        import etcd
        try:
            result = self.etcd.read(prefix, recursive=True)
        except etcd.EtcdKeyNotFound:
            return []
        return [(node.key, node.value) for node in result.leaves if not node.dir and node.key]

    def _valid_models(self, directories, from_json, key_filter=None):
        """Models parsed from the leaves of directories; malformed ones are skipped
        (data another writer got wrong must not break listing the rest)."""
        found = []
        for directory in directories:
            for key, value in self._leaves(directory):
                if key_filter is not None and key_filter(key) is None:
                    continue
                try:
                    found.append(from_json(value))
                except ValidationError:
                    continue
        return found

    @_translate_errors
    def update_value(self, key, compute, create=False):
        """Compare-and-swap read-modify-write.

        ``compute(old_value)`` returns the new value (old_value is None when
        the key is absent and ``create`` is set); returning the old value
        unchanged skips the write. Raises NotFound if the key is absent and
        ``create`` is false. Returns the value written (or kept).
        """
        import etcd
        for _ in range(CAS_ATTEMPTS):
            try:
                node = self.etcd.read(key)
                old_value, index = node.value, node.modifiedIndex
            except etcd.EtcdKeyNotFound:
                if not create:
                    raise NotFound("%s does not exist." % key)
                old_value, index = None, None
            new_value = compute(old_value)
            if new_value == old_value:
                return old_value
            try:
                if index is None:
                    self.etcd.write(key, new_value, prevExist=False)
                else:
                    self.etcd.write(key, new_value, prevIndex=index)
                return new_value
            except (etcd.EtcdCompareFailed, etcd.EtcdAlreadyExist, etcd.EtcdKeyNotFound):
                continue   # someone else wrote first: read again
        raise DatastoreError("Gave up updating %s after %d conflicting writes." % (key, CAS_ATTEMPTS))

    # -- readiness and config --------------------------------------------------

    @_translate_errors
    def ping(self):
        """Raise DatastoreUnavailable unless etcd answers."""
        self._exists(paths.READY)

    @_translate_errors
    def set_ready(self, ready=True):
        self.etcd.write(paths.READY, "true" if ready else "false")

    @_translate_errors
    def ensure_global_config(self, name, value):
        """Create a global config value if missing (never overwrite)."""
        import etcd
        try:
            self.etcd.write(paths.global_config(name), value, prevExist=False)
        except etcd.EtcdAlreadyExist:
            pass

    @_translate_errors
    def get_global_config(self, name):
        return self._get(paths.global_config(name))

    @_translate_errors
    def get_control_plane_protection(self):
        """The stored control-plane protection JSON, or None when unset."""
        return self._get(paths.control_plane_protection())

    def update_control_plane_protection(self, compute):
        """CAS-update the control-plane protection: ``compute(stored text or None)``
        returns the model.ControlPlaneProtection to store, or None to leave etcd
        as it is."""
        def apply(old):
            new = compute(old)
            return old if new is None else new.to_json()
        self.update_value(paths.control_plane_protection(), apply, create=True)

    # -- profiles ---------------------------------------------------------------

    @_translate_errors
    def profile_exists(self, name):
        return self._exists(paths.profile_dir(name))

    @_translate_errors
    def list_profile_names(self):
        import etcd
        try:
            result = self.etcd.read(paths.PROFILES_DIR)
        except etcd.EtcdKeyNotFound:
            return []
        names = [node.key.rsplit("/", 1)[-1] for node in result.children if node.key and node.key != paths.PROFILES_DIR]
        return sorted(set(names))

    @_translate_errors
    def create_profile(self, profile):
        """Write a new profile; False if it already existed (nothing written)."""
        import etcd
        try:
            self.etcd.write(paths.profile_rules(profile.name), profile.rules.to_json(), prevExist=False)
        except etcd.EtcdAlreadyExist:
            return False
        self.etcd.write(paths.profile_tags(profile.name), model.render_tags_json(profile.tags))
        return True

    @_translate_errors
    def get_profile(self, name):
        """Profile with tags and rules; NotFound if absent."""
        values = dict(self._leaves(paths.profile_dir(name)))
        if not values and not self._exists(paths.profile_dir(name)):
            raise NotFound("Profile %s not found." % name)
        tags_text = values.get(paths.profile_tags(name))
        rules_text = values.get(paths.profile_rules(name))
        tags = model.parse_tags_json(tags_text) if tags_text else ()
        rules = model.Rules.from_json(rules_text) if rules_text else model.Rules(id=name)
        return model.Profile(name=name, tags=tags, rules=rules)

    @_translate_errors
    def remove_profile(self, name):
        """Delete a profile; False if it did not exist."""
        return self._delete(paths.profile_dir(name), recursive=True)

    def update_profile_tags(self, name, compute):
        """CAS-update a profile's tags: compute(tuple) -> tuple."""
        self._require_profile(name)

        def apply(old):
            tags = model.parse_tags_json(old) if old else ()
            new_tags = compute(tags)
            return old if tuple(new_tags) == tags and old is not None else model.render_tags_json(new_tags)
        return model.parse_tags_json(self.update_value(paths.profile_tags(name), apply, create=True))

    def update_profile_rules(self, name, compute):
        """CAS-update a profile's rules: compute(Rules) -> Rules."""
        self._require_profile(name)

        def apply(old):
            rules = model.Rules.from_json(old) if old else model.Rules(id=name)
            new_rules = compute(rules)
            return old if new_rules == rules and old is not None else new_rules.to_json()
        return model.Rules.from_json(self.update_value(paths.profile_rules(name), apply, create=True))

    def _require_profile(self, name):
        if not self.profile_exists(name):
            raise NotFound("Profile %s not found." % name)

    # -- endpoints --------------------------------------------------------------

    @_translate_errors
    def list_endpoints(self, hostname=None, orchestrator_id=None, workload_id=None, endpoint_id=None):
        """Endpoints matching the filters; malformed ones are skipped.

        The most specific prefix the filters allow is read recursively.
        """
        prefix = paths.HOSTS_DIR
        if hostname:
            prefix = paths.host_workloads_dir(hostname)
            if orchestrator_id:
                prefix = paths.orchestrator_dir(hostname, orchestrator_id)
                if workload_id:
                    prefix = paths.workload_dir(hostname, orchestrator_id, workload_id)
        found = []
        for key, value in self._leaves(prefix):
            parts = paths.parse_endpoint_key(key)
            if parts is None:
                continue
            ep_key = model.EndpointKey(*parts)
            if ((hostname and ep_key.hostname != hostname)
                    or (orchestrator_id and ep_key.orchestrator_id != orchestrator_id)
                    or (workload_id and ep_key.workload_id != workload_id)
                    or (endpoint_id and ep_key.endpoint_id != endpoint_id)):
                continue
            try:
                found.append(model.Endpoint.from_json(ep_key, value))
            except ValidationError:
                continue
        found.sort(key=lambda ep: (ep.key.hostname, ep.key.orchestrator_id, ep.key.workload_id, ep.key.endpoint_id))
        return found

    def get_endpoint(self, endpoint_id, hostname=None, orchestrator_id=None, workload_id=None):
        """Exactly one endpoint, else NotFound / Conflict (ambiguous)."""
        matches = self.list_endpoints(hostname, orchestrator_id, workload_id, endpoint_id)
        if not matches:
            raise NotFound("Endpoint %s not found." % endpoint_id)
        if len(matches) > 1:
            raise Conflict("More than one endpoint matches %s; narrow it down with --host, "
                           "--orchestrator or --workload." % endpoint_id)
        return matches[0]

    @_translate_errors
    def write_endpoint(self, endpoint, create_only=False):
        import etcd
        key = paths.endpoint_key(*_key_tuple(endpoint.key))
        try:
            if create_only:
                self.etcd.write(key, endpoint.to_json(), prevExist=False)
            else:
                self.etcd.write(key, endpoint.to_json())
        except etcd.EtcdAlreadyExist:
            raise Conflict("Endpoint %s already exists." % endpoint.endpoint_id)

    def update_endpoint(self, ep_key, compute):
        """CAS-update an endpoint: compute(Endpoint) -> Endpoint. Returns the result."""
        key = paths.endpoint_key(*_key_tuple(ep_key))

        def apply(old):
            endpoint = model.Endpoint.from_json(ep_key, old)
            updated = compute(endpoint)
            return old if updated == endpoint else updated.to_json()
        return model.Endpoint.from_json(ep_key, self.update_value(key, apply))

    @_translate_errors
    def remove_endpoint(self, ep_key):
        """Delete an endpoint and, when it was the last, its workload dir."""
        removed = self._delete(paths.endpoint_key(*_key_tuple(ep_key)))
        workload = paths.workload_dir(ep_key.hostname, ep_key.orchestrator_id, ep_key.workload_id)
        if not self._leaves(workload):
            self._delete(workload, recursive=True)
        return removed

    # -- workloads (per host, per orchestrator) ---------------------------------

    @_translate_errors
    def list_workloads(self, hostname, orchestrator_id=paths.DEFAULT_ORCHESTRATOR):
        """Every workload of one orchestrator on one host, with its endpoints and
        name, from a single recursive read. Malformed endpoints are skipped."""
        prefix = paths.orchestrator_dir(hostname, orchestrator_id)
        names = {}
        endpoints = {}
        for key, value in self._leaves(prefix):
            parts = paths.parse_endpoint_key(key)
            if parts is not None:
                ep_key = model.EndpointKey(*parts)
                try:
                    endpoints.setdefault(ep_key.workload_id, []).append(model.Endpoint.from_json(ep_key, value))
                except ValidationError:
                    endpoints.setdefault(ep_key.workload_id, [])
                continue
            rest = key[len(prefix) + 1:].split("/")
            if len(rest) == 2 and rest[1] == "name":
                names[rest[0]] = value
        workloads = []
        for workload_id in sorted(set(names) | set(endpoints)):
            eps = sorted(endpoints.get(workload_id, ()), key=lambda ep: ep.endpoint_id)
            workloads.append(model.Workload(hostname=hostname, orchestrator_id=orchestrator_id,
                                            workload_id=workload_id, name=names.get(workload_id) or None,
                                            endpoints=tuple(eps)))
        return workloads

    @_translate_errors
    def write_workload_name(self, hostname, orchestrator_id, workload_id, name):
        self.etcd.write(paths.workload_name_key(hostname, orchestrator_id, workload_id), name)

    @_translate_errors
    def remove_workload_name(self, hostname, orchestrator_id, workload_id):
        return self._delete(paths.workload_name_key(hostname, orchestrator_id, workload_id))

    @_translate_errors
    def remove_workload(self, hostname, orchestrator_id, workload_id):
        """Delete a workload directory (endpoints, name) recursively; False if absent."""
        return self._delete(paths.workload_dir(hostname, orchestrator_id, workload_id), recursive=True)

    # -- pools and claims -------------------------------------------------------

    @_translate_errors
    def list_pools(self, version=None):
        pools = self._valid_models([paths.pools_dir(v) for v in _versions(version)],
                                   model.IPPool.from_json, key_filter=paths.parse_pool_key)
        import netaddr
        pools.sort(key=lambda pool: (pool.version, netaddr.IPNetwork(pool.cidr)))
        return pools

    @_translate_errors
    def write_pool(self, pool):
        self.etcd.write(paths.pool_key(pool.cidr), pool.to_json())

    @_translate_errors
    def remove_pool(self, cidr):
        return self._delete(paths.pool_key(cidr))

    def pool_for_ip(self, ip):
        """The configured pool containing ip (a netaddr.IPAddress), or None."""
        import netaddr
        for pool in self.list_pools(ip.version):
            if ip in netaddr.IPNetwork(pool.cidr):
                return pool
        return None

    @_translate_errors
    def claim_ip(self, pool_cidr, ip, owner="", ttl=None):
        """Claim ip in pool atomically; False if someone already holds it.

        ``owner`` is stored as the value (the reference stored ""; only the
        key's existence means "taken"). With ``ttl`` the claim expires unless
        ``confirm_claim`` makes it permanent: a command that dies half-way
        (etcd gone, process killed) cannot leak it for ever.
        """
        import etcd
        try:
            self.etcd.write(paths.claim_key(pool_cidr, ip), owner, prevExist=False, ttl=ttl)
            return True
        except etcd.EtcdAlreadyExist:
            return False

    @_translate_errors
    def get_claim(self, pool_cidr, ip):
        """The owner string of a claim ("" for claims made by the reference), or None."""
        return self._get(paths.claim_key(pool_cidr, ip))

    @_translate_errors
    def confirm_claim(self, pool_cidr, ip, owner):
        """Make ``owner``'s claim permanent (drop its TTL); False if another owner holds it.

        If the claim expired meanwhile it is made again, create-only.
        """
        import etcd
        key = paths.claim_key(pool_cidr, ip)
        try:
            self.etcd.write(key, owner, prevValue=owner)
            return True
        except etcd.EtcdCompareFailed:
            return False
        except etcd.EtcdKeyNotFound:
            pass
        try:
            self.etcd.write(key, owner, prevExist=False)
            return True
        except etcd.EtcdAlreadyExist:
            return False

    @_translate_errors
    def release_ip(self, pool_cidr, ip, owner=None, allow_anonymous=True):
        """Delete a claim; False if absent.

        With ``owner``, only a claim held by that owner (or, when
        ``allow_anonymous``, an anonymous one as the reference wrote) is
        deleted, compare-and-delete, so a retry never frees an address
        someone else claimed in between.
        """
        import etcd
        key = paths.claim_key(pool_cidr, ip)
        if owner is None:
            return self._delete(key)
        value = self._get(key)
        if value is None or value not in ((owner, "") if allow_anonymous else (owner,)):
            return False
        try:
            self.etcd.delete(key, prevValue=value)
            return True
        except (etcd.EtcdCompareFailed, etcd.EtcdKeyNotFound):
            return False

    @_translate_errors
    def list_claim_pools(self, version):
        """CIDRs of every pool that has an assignment directory (claims may
        outlive their pool's definition)."""
        import etcd
        try:
            result = self.etcd.read(paths.assignments_dir(version))
        except etcd.EtcdKeyNotFound:
            return []
        cidrs = []
        for node in result.children:
            cidr = paths.parse_claims_dir(node.key or "")
            if cidr is not None:
                cidrs.append(cidr)
        return cidrs

    @_translate_errors
    def remove_empty_claims_dir(self, pool_cidr):
        """Delete a pool's claims directory if it is empty (or absent).

        False when it still holds claims: etcd refuses to delete a
        non-empty directory without ``recursive``, which makes this safe
        against a claim made after the caller looked.
        """
        import etcd
        try:
            self.etcd.delete(paths.claims_dir(pool_cidr), dir=True)
        except etcd.EtcdKeyNotFound:
            pass
        except etcd.EtcdDirNotEmpty:
            return False
        return True

    @_translate_errors
    def list_claims(self, pool_cidr):
        return sorted(key.rsplit("/", 1)[-1] for key, _ in self._leaves(paths.claims_dir(pool_cidr)))

    # -- BGP ---------------------------------------------------------------------

    @_translate_errors
    def get_default_as(self):
        value = self._get(paths.BGP_GLOBAL_AS)
        return int(value) if value not in (None, "") and value.isdigit() else 64511

    @_translate_errors
    def set_default_as(self, as_num):
        self.etcd.write(paths.BGP_GLOBAL_AS, str(as_num))

    @_translate_errors
    def get_node_mesh(self):
        value = self._get(paths.BGP_NODE_MESH)
        if not value:
            return True
        try:
            return bool(json.loads(value).get("enabled", True))
        except (ValueError, AttributeError):
            return True

    @_translate_errors
    def set_node_mesh(self, enabled):
        self.etcd.write(paths.BGP_NODE_MESH, json.dumps({"enabled": bool(enabled)}))

    @_translate_errors
    def ensure_bgp_defaults(self):
        import etcd
        for key, value in ((paths.BGP_GLOBAL_AS, "64511"),
                           (paths.BGP_NODE_MESH, json.dumps({"enabled": True}))):
            try:
                self.etcd.write(key, value, prevExist=False)
            except etcd.EtcdAlreadyExist:
                pass

    @_translate_errors
    def list_bgp_peers(self, hostname=None, version=None):
        """Global peers (hostname None) or one host's peers, sorted by IP."""
        directories = [paths.global_peers_dir(v) if hostname is None else paths.host_peers_dir(hostname, v)
                       for v in _versions(version)]
        peers = self._valid_models(directories, model.BGPPeer.from_json)
        import netaddr
        peers.sort(key=lambda peer: (peer.version, netaddr.IPAddress(peer.ip)))
        return peers

    @_translate_errors
    def add_bgp_peer(self, peer, hostname=None):
        key = paths.global_peer(peer.ip) if hostname is None else paths.host_peer(hostname, peer.ip)
        self.etcd.write(key, peer.to_json())

    @_translate_errors
    def remove_bgp_peer(self, ip, hostname=None):
        key = paths.global_peer(ip) if hostname is None else paths.host_peer(hostname, ip)
        return self._delete(key)

    # -- hosts ---------------------------------------------------------------------

    @_translate_errors
    def get_host_ip(self, hostname, version):
        """The host's recorded IPv4/IPv6 address, or None."""
        value = self._get(paths.host_ip_addr(hostname, version))
        if not value:
            return None
        try:
            return str(validate.parse_ip(value, version))
        except ValidationError:
            return None

    @_translate_errors
    def list_hostnames(self):
        names = set()
        for directory in (paths.HOSTS_DIR, paths.BGP_HOSTS_DIR):
            import etcd
            try:
                result = self.etcd.read(directory)
            except etcd.EtcdKeyNotFound:
                continue
            for node in result.children:
                if node.key and node.key != directory:
                    names.add(node.key.rsplit("/", 1)[-1])
        return sorted(names)

    # -- host registration and agent status (calicoctl node / status) ------------

    @_translate_errors
    def register_host(self, hostname, ip, ip6=None, as_num=None):
        """Write the keys ``calicoctl node`` owns for a host (reference.md §1.1 step 9).

        ``ip6`` None stores "" (no IPv6); ``as_num`` None deletes the per-host
        AS so the global default applies.
        """
        import etcd
        self.etcd.write(paths.host_bird_ip(hostname), ip)
        self.etcd.write(paths.host_ip_addr(hostname, 4), ip)
        self.etcd.write(paths.host_ip_addr(hostname, 6), ip6 or "")
        try:
            self.etcd.write(paths.host_workloads_dir(hostname), None, dir=True)
        except (etcd.EtcdNotFile, etcd.EtcdAlreadyExist):
            pass   # already there, perhaps with endpoints in it
        if as_num is None:
            self._delete(paths.host_as_num(hostname))
        else:
            self.etcd.write(paths.host_as_num(hostname), str(as_num))
        self.etcd.write(paths.host_config(hostname, "DefaultEndpointToHostAction"), "RETURN")
        self.etcd.write(paths.host_config(hostname, "marker"), "created")

    @_translate_errors
    def remove_host(self, hostname):
        """Delete every key of a host (config, endpoints, BGP, agent status)."""
        for directory in (paths.host_dir(hostname), paths.bgp_host_dir(hostname),
                          paths.felix_host_dir(hostname)):
            self._delete(directory, recursive=True)

    @_translate_errors
    def get_agent_status(self, hostname):
        """The agent's status JSON for a host, or None (absent or expired)."""
        return self._get(paths.felix_status(hostname))

    @_translate_errors
    def release_claims(self, ips):
        """Delete the claim of each IP in ``ips``, in whatever pool it sits.

        Scans the claim trees rather than the current pools, so claims in a
        pool removed since are released too. Returns the (pool, ip) released.
        """
        import netaddr
        wanted = {str(netaddr.IPAddress(ip)) for ip in ips}
        released = []
        for version in (4, 6):
            for key, _ in self._leaves(paths.assignments_dir(version)):
                parsed = paths.parse_claim_key(key)
                if parsed is None:
                    continue
                try:
                    ip = str(netaddr.IPAddress(parsed[1]))
                except (netaddr.AddrFormatError, ValueError):
                    continue
                if ip in wanted and self._delete(key):
                    released.append((parsed[0], ip))
        return sorted(released)

    @_translate_errors
    def dump_tree(self, prefix):
        """(key, value) of every leaf under prefix, sorted; [] if absent."""
        return sorted(self._leaves(prefix))


def _versions(version):
    """The IP versions a ``version`` filter (None = both) stands for."""
    return (4, 6) if version is None else (version,)


def _key_tuple(ep_key):
    return (ep_key.hostname, ep_key.orchestrator_id, ep_key.workload_id, ep_key.endpoint_id)


# -- agent: this host's VXLAN tunnel endpoint (our extension) ---------------------
# Plain functions on a DatastoreClient (kept apart from the class above so the
# CLI's methods and these agent writes do not collide in edits).

@_translate_errors
def write_host_vxlan(client, hostname, tunnel):
    """Record ``tunnel`` (a model.VxlanTunnel) as ``hostname``'s VXLAN endpoint."""
    client.etcd.write(paths.host_vxlan(hostname), tunnel.to_json())


@_translate_errors
def remove_host_vxlan(client, hostname):
    """Delete ``hostname``'s VXLAN record; False if there was none."""
    return client._delete(paths.host_vxlan(hostname))
