"""Who may reach whom, and why (``calicoctl policy explain`` / ``policy matrix``).

The verdicts come from the pure evaluator (``calicoctl.policy_eval``) over
etcd as the agents read it; this module reads etcd once, works out whom
the user named, and, with ``probe``, sends the same traffic for real from
the source workload's namespace (``calicoctl.host.probe``) to set what the
kernel did beside what the policy says.

Naming a party: a workload address (any host; TO may be any other
address), an endpoint ID (any host), or a container on this host (its
name or ID, as ``container <C> endpoint-id show`` takes it). An address
or ID held by several endpoints, or a container with several endpoints,
is ambiguous: the user names one by its endpoint ID or address.

Nothing is sent before every check has passed: probes need root, and a
source workload on this host (its namespace is found through its veth).
"""
import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from calicoctl import policy_eval, policy_view
from calicoctl.errors import Conflict, HostNetworkError, NotFound, ValidationError

PROBE_TIMEOUT = 0.5
PROBE_ATTEMPTS = 2
PROBE_THREADS = 32


@dataclass(frozen=True)
class Party:
    """FROM or TO, resolved.

    :ivar address: the address the user gave (None: the endpoint's own, of
        the IP version the pair has in common).
    :ivar endpoint: the workload endpoint (None: an address of no workload).
    :ivar name: the workload's recorded name (a container name), if any.
    """
    query: str
    address: Optional[str] = None
    endpoint: Optional[object] = None
    name: Optional[str] = None

    @property
    def label(self):
        if self.name:
            return self.name
        if self.endpoint is not None:
            return self.endpoint.endpoint_id[:12]
        return self.address


@dataclass(frozen=True)
class Verdict:
    """One (FROM, TO) pair: the explanation (None when the two have no IP
    version in common) and, when probed, what the kernel did."""
    source: Party
    destination: Party
    explanation: Optional[policy_eval.Explanation]
    observed: Optional[object] = None          # host.probe.Observation

    @property
    def agrees(self):
        if self.observed is None or self.explanation is None:
            return None
        return self.observed.reached == self.explanation.allowed


@dataclass(frozen=True)
class Matrix:
    parties: tuple
    verdicts: tuple                            # every ordered pair of distinct parties
    probed_hosts: tuple = ()                   # hosts whose rows were probed (this one)

    @property
    def disagreements(self):
        return [verdict for verdict in self.verdicts if verdict.agrees is False]


# -- reading and naming -------------------------------------------------------------------

def read_cluster(datastore, env):
    """The ClusterPolicy of etcd now; the agents' etcd endpoints are taken to
    be the ones this command uses."""
    from calicoctl.datastore import etcdconn
    settings = etcdconn.parse_settings(env)
    items = [leaf for prefix in policy_view.READ_PREFIXES for leaf in datastore.dump_tree(prefix)]
    return policy_view.ClusterPolicy(items, [(endpoint.host, endpoint.port) for endpoint in settings.endpoints])


def resolve(cluster, datastore, docker, hostname, query, any_address=False):
    """The Party ``query`` names (see the module docstring); ``any_address``
    lets it be an address no workload holds."""
    try:
        address = ipaddress.ip_address(query).compressed
    except ValueError:
        address = None
    if address is not None:
        holders = cluster.endpoints_with_address(address)
        if len(holders) > 1:
            raise Conflict("Address %s is held by several endpoints (%s); name one by its endpoint ID."
                           % (address, ", ".join(endpoint.endpoint_id for endpoint in holders)))
        if not holders and not any_address:
            raise NotFound("No workload has address %s." % address)
        return _party(cluster, query, holders[0] if holders else None, address)
    matches = [endpoint for endpoint in cluster.endpoints if endpoint.endpoint_id == query]
    if len(matches) > 1:
        raise Conflict("Endpoint ID %s is on several hosts (%s); name it by its address."
                       % (query, ", ".join(sorted(endpoint.key.hostname for endpoint in matches))))
    if matches:
        return _party(cluster, query, matches[0])
    return _party(cluster, query, _container_endpoint(cluster, datastore, docker, hostname, query))


def _container_endpoint(cluster, datastore, docker, hostname, query):
    from calicoctl import validate
    from calicoctl.ops import container
    unknown = NotFound("%s is not a workload address, an endpoint ID or a container with Calico networking "
                       "on this host (%s)." % (query, hostname))
    try:
        validate.parse_name(query.lstrip("/"), "container")
        ids = container.find_endpoint_ids(datastore, docker, hostname, query)
    except (NotFound, ValidationError):
        raise unknown from None
    found = [endpoint for endpoint in cluster.endpoints
             if endpoint.endpoint_id in ids and endpoint.key.hostname == hostname]
    if not found:
        raise unknown
    if len(found) > 1:
        raise Conflict("Container %s has several endpoints (%s); name one by its endpoint ID or address."
                       % (query, ", ".join(endpoint.endpoint_id for endpoint in found)))
    return found[0]


def _party(cluster, query, endpoint, address=None):
    name = cluster.workload_name(endpoint) if endpoint is not None else None
    return Party(query, address, endpoint, name)


def choose_addresses(source, destination):
    """(source address, destination address) for a pair: the given ones, else
    the endpoints' own of the IP version both have (IPv4 first); None when
    they have none in common."""
    fixed = [party.address for party in (source, destination) if party.address is not None]
    versions = [ipaddress.ip_address(fixed[0]).version] if fixed else [4, 6]
    for version in versions:
        chosen = [party.address if party.address is not None and ipaddress.ip_address(party.address).version
                  == version else _first_address(party, version) for party in (source, destination)]
        if None not in chosen:
            return tuple(chosen)
    return None


def _first_address(party, version):
    if party.address is not None or party.endpoint is None:
        return None
    addresses = party.endpoint.addresses(version)
    return ipaddress.ip_address(addresses[0]).compressed if addresses else None


def evaluate(cluster, source, destination, traffic):
    """The Verdict of one pair (without a probe); PortDecides names the pair."""
    addresses = choose_addresses(source, destination)
    if addresses is None:
        return Verdict(source, destination, None)
    packet = traffic.packet(*addresses)
    try:
        return Verdict(source, destination, policy_eval.explain(cluster, source.endpoint, packet,
                                                                destination.endpoint))
    except policy_eval.PortDecides as exc:
        raise policy_eval.PortDecides("From %s to %s: %s" % (source.label, destination.label, exc)) from None


# -- the workflows ----------------------------------------------------------------------------

def explain_pair(datastore, docker, hostname, env, source_query, destination_query, traffic, probe=False,
                 netns_of=None):
    """The Verdict for FROM -> TO; with ``probe``, the kernel's answer too.

    :param netns_of: ``netns_of(endpoint)`` -> the path of its namespace
        (default: found through its veth on this host).
    """
    cluster = read_cluster(datastore, env)
    source = resolve(cluster, datastore, docker, hostname, source_query)
    destination = resolve(cluster, datastore, docker, hostname, destination_query, any_address=True)
    verdict = evaluate(cluster, source, destination, traffic)
    if verdict.explanation is None:
        raise ValidationError("%s and %s have no IP version in common: %s cannot send to %s."
                              % (source.label, destination.label, source.label, destination.label))
    if not probe:
        return verdict
    _check_probe(traffic)
    if source.endpoint.key.hostname != hostname:
        raise ValidationError("--probe sends from %s's namespace, so it runs on its host %s, not on %s."
                              % (source.label, source.endpoint.key.hostname, hostname))
    netns = (netns_of or find_netns)(source.endpoint)
    return _probed(verdict, netns)


def explain_matrix(datastore, docker, hostname, env, queries, traffic, probe=False, netns_of=None):
    """The Matrix of the parties named (every endpoint when none is), each
    ordered pair evaluated; with ``probe`` the rows of workloads on this host
    are probed too, in parallel."""
    cluster = read_cluster(datastore, env)
    if queries:
        parties = [resolve(cluster, datastore, docker, hostname, query) for query in queries]
    else:
        parties = [_party(cluster, endpoint.endpoint_id, endpoint) for endpoint in
                   sorted(cluster.endpoints, key=lambda e: (e.key.hostname, cluster.workload_name(e) or "",
                                                            e.endpoint_id))]
    verdicts = [evaluate(cluster, source, destination, traffic)
                for source in parties for destination in parties if source is not destination]
    if not probe:
        return Matrix(tuple(parties), tuple(verdicts))
    _check_probe(traffic)
    local = [number for number, verdict in enumerate(verdicts)
             if verdict.source.endpoint.key.hostname == hostname and verdict.explanation is not None]
    namespaces = {}
    for number in local:
        endpoint = verdicts[number].source.endpoint
        if endpoint.endpoint_id not in namespaces:
            namespaces[endpoint.endpoint_id] = (netns_of or find_netns)(endpoint)

    def probe_one(number):
        return _probed(verdicts[number], namespaces[verdicts[number].source.endpoint.endpoint_id])
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        for number, probed in zip(local, list(pool.map(probe_one, local))):
            verdicts[number] = probed
    return Matrix(tuple(parties), tuple(verdicts), (hostname,))


def _check_probe(traffic):
    if not traffic.probeable:
        raise ValidationError("--probe sends ping, TCP or UDP only, not protocol %s." % traffic.protocol)


def _probed(verdict, netns):
    from calicoctl.host import probe
    observed = probe.probe(netns, verdict.explanation.packet, PROBE_TIMEOUT, PROBE_ATTEMPTS)
    return Verdict(verdict.source, verdict.destination, verdict.explanation, observed)


def find_netns(endpoint):
    """The namespace of a workload endpoint on this host, through its veth."""
    from calicoctl.host import netlink
    try:
        with netlink.Session() as session:
            path = session.find_peer_netns(endpoint.name)
    except netlink.LinkNotFound:
        raise HostNetworkError("Endpoint %s's interface %s is not on this host, so there is nothing to "
                               "probe from." % (endpoint.endpoint_id, endpoint.name)) from None
    if path is None:
        raise HostNetworkError("Cannot find the network namespace of endpoint %s: its interface %s has no "
                               "peer in another namespace." % (endpoint.endpoint_id, endpoint.name))
    return path
