"""Endpoints and workloads (per host, per orchestrator) in etcd."""
from calicoctl import model
from calicoctl.datastore import paths
from calicoctl.datastore.store import EtcdStore, Update
from calicoctl.errors import Conflict, NotFound, ValidationError


def _key_tuple(ep_key):
    return (ep_key.hostname, ep_key.orchestrator_id, ep_key.workload_id, ep_key.endpoint_id)


class WorkloadStore(EtcdStore):
    # -- endpoints --------------------------------------------------------------

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

    def write_endpoint(self, endpoint, create_only=False):
        key = paths.endpoint_key(*_key_tuple(endpoint.key))
        if create_only:
            if not self.kv.create(key, endpoint.to_json()):
                raise Conflict("Endpoint %s already exists." % endpoint.endpoint_id)
        else:
            self.kv.put(key, endpoint.to_json())

    def remove_endpoint(self, ep_key):
        """Delete one endpoint (False if absent), and its workload's
        directory if nothing else is left in it."""
        removed = self._delete(paths.endpoint_key(*_key_tuple(ep_key)))
        workload = paths.workload_dir(ep_key.hostname, ep_key.orchestrator_id, ep_key.workload_id)
        self.kv.delete_empty_dir(workload + "/endpoint")
        self.kv.delete_empty_dir(workload)
        return removed

    def update_endpoint(self, ep_key, compute):
        """CAS-update an endpoint: compute(Endpoint) -> Endpoint. Returns an
        Update of the Endpoint before and after."""
        key = paths.endpoint_key(*_key_tuple(ep_key))

        def apply(old):
            endpoint = model.Endpoint.from_json(ep_key, old)
            updated = compute(endpoint)
            return old if updated == endpoint else updated.to_json()
        update = self.update_value(key, apply)
        return Update(model.Endpoint.from_json(ep_key, update.old), model.Endpoint.from_json(ep_key, update.new))

    # -- workloads (per host, per orchestrator) ---------------------------------

    def list_workloads(self, hostname, orchestrator_id=paths.DEFAULT_ORCHESTRATOR, workload_id=None):
        """Every workload of one orchestrator on one host (or only ``workload_id``),
        with its endpoints and name, from a single recursive read. Malformed
        endpoints are skipped."""
        prefix = paths.orchestrator_dir(hostname, orchestrator_id)
        read = paths.workload_dir(hostname, orchestrator_id, workload_id) if workload_id else prefix
        names = {}
        endpoints = {}
        for key, value in self._leaves(read):
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

    def get_workload(self, hostname, orchestrator_id, workload_id):
        """One workload (endpoints and name), or None if etcd has nothing of it."""
        found = self.list_workloads(hostname, orchestrator_id, workload_id)
        return found[0] if found else None

    def write_workload_name(self, hostname, orchestrator_id, workload_id, name):
        self.kv.put(paths.workload_name_key(hostname, orchestrator_id, workload_id), name)

    def remove_workload_name(self, hostname, orchestrator_id, workload_id):
        return self._delete(paths.workload_name_key(hostname, orchestrator_id, workload_id))

    def write_released_workload(self, hostname, orchestrator_id, workload_id, name, ttl):
        """Note for ``ttl`` seconds that the workload's networking was released
        because its orchestrator removed it (the value: its name, or "")."""
        self.kv.put(paths.released_workload_key(hostname, orchestrator_id, workload_id), name or "", ttl=ttl)

    def list_released_workloads(self, hostname, orchestrator_id):
        """model.Workload (no endpoints) of every note ``write_released_workload`` left."""
        prefix = paths.released_workloads_dir(hostname, orchestrator_id) + "/"
        return [model.Workload(hostname=hostname, orchestrator_id=orchestrator_id,
                               workload_id=key[len(prefix):], name=value or None)
                for key, value in self._leaves(prefix.rstrip("/")) if "/" not in key[len(prefix):]]

    def remove_workload(self, hostname, orchestrator_id, workload_id):
        """Delete a workload directory (endpoints, name) recursively; False if absent."""
        return self._delete(paths.workload_dir(hostname, orchestrator_id, workload_id), recursive=True)

    # -- Docker networks of the calico driver (our extension) ---------------------

    def write_docker_network(self, hostname, network):
        self.kv.put(paths.docker_network(hostname, network.network_id), network.to_json())

    def get_docker_network(self, hostname, network_id):
        """The DockerNetwork, or None if absent or malformed."""
        value = self._get(paths.docker_network(hostname, network_id))
        if value is None:
            return None
        try:
            return model.DockerNetwork.from_json(network_id, value)
        except ValidationError:
            return None

    def remove_docker_network(self, hostname, network_id):
        return self._delete(paths.docker_network(hostname, network_id))

    def list_docker_networks(self, hostname=None):
        """[(hostname, DockerNetwork)] of one host, or of every host."""
        prefix = paths.docker_networks_dir(hostname) if hostname else paths.HOSTS_DIR
        found = []
        for key, value in self._leaves(prefix):
            parsed = paths.parse_docker_network_key(key)
            if parsed is None:
                continue
            try:
                found.append((parsed[0], model.DockerNetwork.from_json(parsed[1], value)))
            except ValidationError:
                continue
        return sorted(found, key=lambda item: (item[0], item[1].network_id))
