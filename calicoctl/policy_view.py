"""Pure: the cluster's policy as each host's agent reads it (for ``calicoctl.policy_eval``).

``ClusterPolicy`` is built from etcd's leaves (endpoints, profiles, config,
host addresses, BGP peers, the control-plane setting). For each host it
asks the agent's own pure index (``calicoctl.agent.state.PolicyIndex``, fed
the same leaves) what that host's agent enforces: which endpoints get
chains (active, with profiles, an interface name that fits the host's
``InterfacePrefix``, the first to claim the interface), each profile's
rules as Felix reads them, tag membership, ``DefaultEndpointToHostAction``
and the control plane's ports and addresses. So an explanation reads etcd
exactly as the agent does; nothing of that is written twice.

Beside the indexes it keeps what only explanations need: every endpoint
(to name parties), the workloads' recorded names, each profile's stored
rules (Felix's reasons for rejecting them) and each host's recorded
addresses.

The agent's index logs the data it skips, for the agent's operator; here
the explanation says what matters (a profile Felix rejects, an interface
claimed twice), and a command's stderr is for its own errors, so those
logs are silenced while the view is built.
"""
import contextlib
import ipaddress
import logging

from calicoctl.datastore import paths

READ_PREFIXES = (paths.HOSTS_DIR, paths.PROFILES_DIR, paths.CONFIG_DIR, paths.BGP_V1)
"""The etcd directories whose leaves a ClusterPolicy is built from."""


def canonical(text):
    """An address in canonical (compressed) form, or None if it is not one."""
    try:
        return ipaddress.ip_address(text).compressed
    except (TypeError, ValueError):
        return None


def endpoint_path(endpoint):
    """The etcd key of an endpoint (as the agent's index knows it)."""
    key = endpoint.key
    return paths.endpoint_key(key.hostname, key.orchestrator_id, key.workload_id, key.endpoint_id)


@contextlib.contextmanager
def _agent_logs_silenced():
    logger = logging.getLogger("calicoctl.agent")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class ClusterPolicy:
    """The cluster's policy as each host's agent reads it.

    :param items: (path, value) of every leaf under ``READ_PREFIXES``.
    :param etcd_endpoints: ((host, port), ...) of the agents' etcd: their
        ports and literal addresses belong to the control plane.
    """

    def __init__(self, items, etcd_endpoints=()):
        from calicoctl import model
        from calicoctl.agent.keys import Kind, parse_key
        from calicoctl.agent.state import EndpointParser
        self._items = [(parse_key(path), value) for path, value in items]
        self._etcd_endpoints = tuple(etcd_endpoints)
        self._parse = EndpointParser()
        """Shared by every host's index: each endpoint is parsed once."""
        self._indexes = {}
        self.endpoints = []
        """Every endpoint the agents can read (valid JSON), any host, by etcd key."""
        self.workload_names = {}
        """(hostname, orchestrator, workload) -> the workload's recorded name."""
        self.stored_rules = {}
        """profile -> model.StoredRules of its rules key."""
        self.profiles = set()
        """Names of the profiles etcd has (rules or tags)."""
        self.host_addresses = {}
        """canonical address -> hostname, from each host's recorded addresses."""
        for key, value in self._items:
            if key.kind is Kind.ENDPOINT:
                with _agent_logs_silenced():
                    endpoint = self._parse(key, value)[1]
                if endpoint is not None:
                    self.endpoints.append(endpoint)
            elif key.kind is Kind.PROFILE:
                name, field = key.parts
                self.profiles.add(name)
                if field == "rules":
                    self.stored_rules[name] = model.StoredRules.read(name, value)
            elif key.kind is Kind.HOST_ADDRESS and key.parts[1] in ("ip_addr_v4", "ip_addr_v6"):
                address = canonical(value)
                if address is not None:
                    self.host_addresses[address] = key.parts[0]
            else:
                workload = paths.parse_workload_name_key(key.path)
                if workload is not None and value:
                    self.workload_names[workload] = value
        self.endpoints.sort(key=endpoint_path)

    def host(self, hostname):
        """The PolicyIndex ``hostname``'s agent builds from these leaves (built once)."""
        index = self._indexes.get(hostname)
        if index is None:
            from calicoctl.agent.state import PolicyIndex
            index = PolicyIndex(hostname, parser=self._parse, etcd_endpoints=self._etcd_endpoints)
            with _agent_logs_silenced():
                index.apply_snapshot(self._items)
            self._indexes[hostname] = index
        return index

    def workload_name(self, endpoint):
        key = endpoint.key
        return self.workload_names.get((key.hostname, key.orchestrator_id, key.workload_id))

    def endpoints_with_address(self, address):
        wanted = canonical(address)
        return [endpoint for endpoint in self.endpoints if wanted in map(canonical, endpoint.addresses())]

    def addresses_of_host(self, hostname):
        return {address for address, host in self.host_addresses.items() if host == hostname}
