"""The pure decisions behind the CNI plugins (``calicoctl.ops.cni_plugin``):
what an attachment is called in etcd and on the host, what ADD reports,
what CHECK counts as a difference, what GC collects. No kernel, etcd or
socket here.

An attachment is (network, container ID, interface name). Its ID is a hash
of the three: the endpoint ID in etcd and, after the configured interface
prefix, the host side's interface name. Being derived, it is the same for
a repeated ADD (which then finds the endpoint it would make) and lets GC
tell one network's endpoints from another's without storing more; hashing
the whole container ID keeps names apart where IDs share a prefix
(nerdctl's begin with the namespace).
"""
import hashlib
from dataclasses import dataclass
from typing import Optional

from calicoctl.ops import cni_protocol as protocol
from calicoctl.ops.container_logic import calculate_host_net

ORCHESTRATOR = "cni"


def calculate_attachment_id(network, container_id, ifname):
    """32 hex characters, like the endpoint IDs ``container add`` makes."""
    text = "\0".join((network, container_id, ifname))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def render_owner(hostname, network, container_id, ifname):
    """The value of an attachment's address claims."""
    return "/".join((hostname, ORCHESTRATOR, network, container_id, ifname))


def parse_owner(owner, hostname, network):
    """(container ID, interface) of a claim owned by an attachment of
    ``network`` on ``hostname``, else None (someone else's claim)."""
    parts = (owner or "").split("/")
    if len(parts) != 5 or parts[:3] != [hostname, ORCHESTRATOR, network]:
        return None
    return parts[3], parts[4]


# -- ADD ------------------------------------------------------------------------------------

def calculate_add_result(request, host_interface, container_interface, ips, gateways):
    """The result of the calico plugin's ADD, appended to any prevResult.

    ``host_interface`` / ``container_interface``: LinkInfo of the two ends;
    ``ips``: the addresses given (netaddr); ``gateways``: {version: IP}.
    """
    ours = protocol.Result(
        interfaces=(protocol.Interface(host_interface.name, host_interface.mac),
                    protocol.Interface(container_interface.name, container_interface.mac, request.netns)),
        ips=tuple(protocol.IPConfig(calculate_host_net(ip), gateways[ip.version], interface=1) for ip in ips),
        routes=protocol.calculate_routes(gateways))
    return protocol.merge_results(request.prev_result, ours)


def calculate_ipam_result(request, ips, gateways):
    """calico-ipam's ADD result (no interfaces), appended to any prevResult."""
    ours = protocol.Result(ips=tuple(protocol.IPConfig(calculate_host_net(ip), gateways[ip.version]) for ip in ips),
                           routes=protocol.calculate_routes(gateways))
    return protocol.merge_results(request.prev_result, ours)


# -- CHECK ----------------------------------------------------------------------------------

def expected_addresses(request):
    """The addresses prevResult says our container interface has (CIDRs)."""
    previous = request.prev_result
    if previous is None:
        raise protocol.CniError(protocol.INVALID_CONFIG, "CHECK needs the prevResult of the ADD.")
    for index, interface in enumerate(previous.interfaces):
        if interface.name == request.ifname and interface.sandbox == request.netns:
            return tuple(sorted(ip.address for ip in previous.ips if ip.interface == index))
    raise protocol.CniError(protocol.CHECK_INTERFACE, "prevResult lists no interface %s in %s."
                            % (request.ifname, request.netns))


@dataclass(frozen=True)
class Observation:
    """What CHECK found of one attachment.

    ``claims``: {ip: owner or None}; ``container_addresses``: CIDRs on the
    container's interface; ``container_routes``: (dst, gateway) out of it
    ("default" for a default route); ``host_routes``: CIDRs routed out of
    the host side.
    """
    endpoint: Optional[object] = None        # model.Endpoint
    claims: Optional[dict] = None
    host_link: Optional[object] = None       # netlink LinkInfo
    container_link: Optional[object] = None
    container_addresses: tuple = ()
    container_routes: tuple = ()
    host_routes: tuple = ()


def calculate_check_problems(request, expected, owner, seen):
    """[(CNI code, what differs)] between an attachment as ADD left it
    (``expected``: CIDRs from prevResult) and what ``seen`` shows; [] if none."""
    problems = []
    endpoint = seen.endpoint
    if endpoint is None:
        return [(protocol.CHECK_ENDPOINT, "No endpoint for %s of container %s in etcd."
                 % (request.ifname, request.container_id))]
    recorded = tuple(sorted(endpoint.ipv4_nets + endpoint.ipv6_nets))
    if recorded != tuple(expected):
        problems.append((protocol.CHECK_ENDPOINT, "Endpoint %s has %s; ADD gave %s."
                         % (endpoint.endpoint_id, ", ".join(recorded) or "no address", ", ".join(expected))))
    for ip, holder in sorted((seen.claims or {}).items()):
        if holder != owner:
            problems.append((protocol.CHECK_ADDRESS, "Address %s is %s." % (
                ip, "not claimed" if holder is None else "claimed by %s" % holder)))
    host, cont = seen.host_link, seen.container_link
    if host is None:
        problems.append((protocol.CHECK_INTERFACE, "Host interface %s is missing." % endpoint.name))
    elif not host.up:
        problems.append((protocol.CHECK_INTERFACE, "Host interface %s is down." % endpoint.name))
    if cont is None:
        problems.append((protocol.CHECK_INTERFACE, "Interface %s is missing in %s." % (request.ifname, request.netns)))
    elif host is not None and cont.peer_index != host.index:
        problems.append((protocol.CHECK_INTERFACE, "Interface %s in %s is not the peer of %s."
                         % (request.ifname, request.netns, endpoint.name)))
    if cont is None or host is None:
        return problems
    for cidr in expected:
        if cidr not in seen.container_addresses:
            problems.append((protocol.CHECK_ADDRESS, "Address %s is missing on %s." % (cidr, request.ifname)))
        if calculate_host_net(_ip(cidr)) not in seen.host_routes:
            problems.append((protocol.CHECK_ROUTE, "The host has no route to %s via %s." % (cidr, endpoint.name)))
    gateways = {4: endpoint.ipv4_gateway, 6: endpoint.ipv6_gateway}
    for route in request.prev_result.routes:
        version = 6 if ":" in route.dst else 4
        if route.gw is None or route.gw != gateways[version]:
            continue            # not a route we made
        dst = "default" if route.dst in protocol.DEFAULT_ROUTES.values() else route.dst
        if (dst, route.gw) not in seen.container_routes:
            problems.append((protocol.CHECK_ROUTE, "Route %s via %s is missing on %s."
                             % (route.dst, route.gw, request.ifname)))
    return problems


def _ip(cidr):
    import netaddr
    return netaddr.IPNetwork(cidr).ip


# -- GC -------------------------------------------------------------------------------------

def select_stale_endpoints(endpoints, network, valid):
    """The endpoints of ``network``'s attachments not in ``valid`` ({(container
    ID, interface)}): an endpoint is the network's when its ID is the
    attachment ID of (network, its workload, its interface)."""
    stale = []
    for endpoint in endpoints:
        attachment = (endpoint.key.workload_id, endpoint.container_interface or "")
        if endpoint.endpoint_id == calculate_attachment_id(network, *attachment) and attachment not in valid:
            stale.append(endpoint)
    return stale


def select_stale_claims(claims, hostname, network, valid):
    """[(pool CIDR, ip, owner)] -> those held by attachments of ``network``
    on ``hostname`` that are not in ``valid``."""
    stale = []
    for claim in claims:
        attachment = parse_owner(claim[2], hostname, network)
        if attachment is not None and attachment not in valid:
            stale.append(claim)
    return stale
