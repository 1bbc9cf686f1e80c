"""The pure decisions behind ``calicoctl container``: interface names, claim
owners, host nets, which workload a query means, endpoints with an address
added or taken away. No kernel, etcd or Docker here."""
from dataclasses import replace

from calicoctl.datastore import paths
from calicoctl.errors import Conflict, ValidationError
from calicoctl.model import IFNAMSIZ

ORCHESTRATOR = paths.DEFAULT_ORCHESTRATOR
# Endpoints made by the Docker network driver (calicoctl.ops.network).
LIBNETWORK_ORCHESTRATOR = "libnetwork"
DEFAULT_LAN_MTU = 1500


def calculate_veth_name(endpoint_id, prefix):
    """Host-side interface name: the host's interface prefix
    (``get_interface_prefix``), then as much of the ID as fits in 15
    characters ('cali' + 11)."""
    return prefix + endpoint_id[:IFNAMSIZ - len(prefix)]


def parse_interface_name(name):
    """A container interface name the kernel accepts: 1-15 chars, no '/', ':' or blanks."""
    if (not isinstance(name, str) or not 0 < len(name) <= IFNAMSIZ or name in (".", "..")
            or any(ch in name for ch in "/:") or any(ch.isspace() for ch in name)):
        raise ValidationError("Invalid interface name %r: use 1-15 characters, without '/', ':' "
                              "or spaces." % (name,))
    return name


def render_claim_owner(hostname, workload_id):
    """The value of an IP claim: which workload on which host holds it."""
    return "%s/%s/%s" % (hostname, ORCHESTRATOR, workload_id)


def calculate_host_net(ip):
    """'10.0.0.1' -> '10.0.0.1/32'; IPv6 -> /128."""
    return "%s/%d" % (ip, 128 if ip.version == 6 else 32)


def default_route(version):
    return "::/0" if version == 6 else "default"


def calculate_workload_mtu(lan_mtu, pools):
    """MTU of both ends of a workload's veth, its addresses being in ``pools``.

    The LAN device's MTU (``lan_mtu``; None when no interface holds the
    host's address: 1500), less the largest encapsulation any of the pools
    adds between hosts (VXLAN 50, IP-in-IP 20): a workload's full-size
    packet then still fits in the tunnel, so its first large packets are not
    lost waiting for path-MTU discovery (whose ICMP the workload's own
    policy may drop). Pools without encapsulation get the LAN's MTU.
    """
    overhead = max((pool.encapsulation_overhead for pool in pools if pool is not None), default=0)
    return (lan_mtu or DEFAULT_LAN_MTU) - overhead


def select_workloads(workloads, query):
    """Which of a host's workloads does the user mean by ``query``?

    Docker's own order: the full ID, then the exact name, then an ID prefix.
    Returns every candidate at the first level that matched (several means
    ambiguous), or [] if none did.
    """
    query = query.lstrip("/")
    exact = [w for w in workloads if w.workload_id == query]
    if exact:
        return exact
    named = [w for w in workloads if w.name == query]
    if named:
        return named
    return [w for w in workloads if w.workload_id.startswith(query)] if query else []


def calculate_endpoint_with_ip(endpoint, ip, gateway):
    """The endpoint with ``ip`` added (and the gateway of its version set, if unset)."""
    net = calculate_host_net(ip)
    if net in endpoint.nets(ip.version):
        raise Conflict("IP %s is already on endpoint %s." % (ip, endpoint.endpoint_id))
    nets_field = "ipv%d_nets" % ip.version
    gateway_field = "ipv%d_gateway" % ip.version
    changes = {nets_field: endpoint.nets(ip.version) + (net,)}
    if getattr(endpoint, gateway_field) is None:
        changes[gateway_field] = gateway
    return replace(endpoint, **changes)


def calculate_endpoint_without_ip(endpoint, ip):
    net = calculate_host_net(ip)
    nets_field = "ipv%d_nets" % ip.version
    return replace(endpoint, **{nets_field: tuple(n for n in endpoint.nets(ip.version) if n != net)})

