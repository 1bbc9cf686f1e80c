"""Docker's plugin protocol for the calico network driver and the calico-ipam
IPAM driver, as pure request -> response logic.

Docker POSTs JSON to ``/Plugin.Activate``, ``/NetworkDriver.<Method>`` and
``/IpamDriver.<Method>`` (moby's libnetwork docs, remote.md and ipam.md).
Here requests are parsed into typed values (ValidationError, with a message
for the user, for anything we cannot honour), responses are rendered, and
``dispatch`` maps a path and body to a status and JSON reply. The work
itself is in ``calicoctl.ops.network``; the HTTP server in
``calicoctl.host.plugin_server``. No I/O here.

Choices (docs/decisions.md, "Docker networks"):

- Scope "local": no cluster store, no swarm. A network is created on each
  host under the same name, which is the profile's name, so it is one
  network everywhere.
- A network without ``--subnet`` gets the pool ``0.0.0.0/0`` (``::/0``)
  from calico-ipam, pool ID ``calico-ipv4`` (``calico-ipv6``): addresses
  come from any Calico pool. With ``--subnet`` (and ``--ip-range``) the
  pool ID is that CIDR, which must lie inside a Calico pool.
- Addresses are /32 (/128); the gateway is the host's own address with a
  link route to it, as ``calicoctl container add`` makes them. calico-ipam
  names a gateway in its pool data so Docker never asks for one.
"""
import json
import secrets
from dataclasses import dataclass
from typing import Optional, Tuple

from calicoctl import validate
from calicoctl.errors import CalicoError, ValidationError

NETWORK_DRIVER = "calico"
IPAM_DRIVER = "calico-ipam"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
ADDRESS_SPACES = {"LocalDefaultAddressSpace": "CalicoLocal", "GlobalDefaultAddressSpace": "CalicoGlobal"}
AUTO_POOL_IDS = {4: "calico-ipv4", 6: "calico-ipv6"}
ANY_NETWORK = {4: "0.0.0.0/0", 6: "::/0"}
GATEWAY_LABEL = "com.docker.network.gateway"
REQUEST_TYPE = "RequestAddressType"
GENERIC_OPTIONS = "com.docker.network.generic"
INTERNAL_OPTION = "com.docker.network.internal"
ENABLE_IPV6_OPTION = "com.docker.network.enable_ipv6"
PORT_MAP_OPTION = "com.docker.network.portmap"
CONTAINER_PREFIX = "eth"       # Docker appends an index: eth0, eth1, ...
TEMP_PREFIX = "tmp"            # the container end's name until Docker moves it
ROUTE_CONNECTED = 1


# -- requests ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolRequest:
    """IpamDriver.RequestPool: ``cidr`` is --subnet (None: any Calico pool),
    ``range`` is --ip-range (addresses come from it), else the subnet."""
    version: int
    cidr: Optional[str] = None
    range: Optional[str] = None


@dataclass(frozen=True)
class AddressRequest:
    """IpamDriver.RequestAddress: from the pool ``pool_id`` (see parse_pool_id),
    ``ip`` if given (``--ip``), else any free address."""
    pool_id: str
    ip: Optional[object] = None      # netaddr.IPAddress


@dataclass(frozen=True)
class NetworkRequest:
    """NetworkDriver.CreateNetwork."""
    network_id: str
    pool_ids: Tuple[str, ...]
    ipv6: bool = False


@dataclass(frozen=True)
class EndpointRequest:
    """NetworkDriver.CreateEndpoint: the addresses calico-ipam gave (netaddr
    IPAddress or None) and the MAC Docker chose, if any."""
    network_id: str
    endpoint_id: str
    ipv4: Optional[object] = None
    ipv6: Optional[object] = None
    mac: Optional[str] = None


def _object(body, what):
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("Invalid %s request: expected a JSON object." % what)
    return body


def _id(body, field):
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise ValidationError("Invalid request: %s is missing." % field)
    return validate.parse_name(value, field)


def render_pool_id(version, cidr=None):
    return cidr if cidr is not None else AUTO_POOL_IDS[version]


def parse_pool_id(pool_id):
    """-> (version, range CIDR or None for any pool of that version)."""
    for version, auto in AUTO_POOL_IDS.items():
        if pool_id == auto:
            return version, None
    try:
        cidr = validate.parse_cidr(pool_id, "pool ID")
    except ValidationError:
        raise ValidationError("Unknown pool ID %r: not one calico-ipam handed out." % (pool_id,)) from None
    return cidr.version, str(cidr)


def parse_pool_request(body):
    body = _object(body, "RequestPool")
    options = body.get("Options") or {}
    if options:
        raise ValidationError("calico-ipam takes no options (--ipam-opt): %s." % ", ".join(sorted(options)))
    pool, sub_pool = body.get("Pool") or None, body.get("SubPool") or None
    version = 6 if body.get("V6") else 4
    if pool is None:
        if sub_pool is not None:
            raise ValidationError("--ip-range needs --subnet.")
        return PoolRequest(version=version)
    cidr = validate.parse_cidr(pool, "subnet")
    if sub_pool is None:
        return PoolRequest(version=cidr.version, cidr=str(cidr), range=str(cidr))
    sub = validate.parse_cidr(sub_pool, "IP range")
    if sub.version != cidr.version or sub not in cidr:
        raise ValidationError("--ip-range %s does not lie inside --subnet %s." % (sub, cidr))
    return PoolRequest(version=cidr.version, cidr=str(cidr), range=str(sub))


def render_pool(request):
    """The RequestPool reply: the pool ID addresses are assigned from (the
    range), the pool Docker shows, and a gateway so it asks for none."""
    network = request.cidr or ANY_NETWORK[request.version]
    return {"PoolID": render_pool_id(request.version, request.range),
            "Pool": network, "Data": {GATEWAY_LABEL: ANY_NETWORK[request.version]}}


def parse_address_request(body):
    body = _object(body, "RequestAddress")
    pool_id = body.get("PoolID")
    if not isinstance(pool_id, str) or not pool_id:
        raise ValidationError("Invalid request: PoolID is missing.")
    version, _ = parse_pool_id(pool_id)
    options = body.get("Options") or {}
    if options.get(REQUEST_TYPE) == GATEWAY_LABEL:
        raise ValidationError("Calico networks have no gateway address: --gateway is not supported "
                              "(containers route through their host).")
    address = body.get("Address") or None
    ip = validate.parse_ip(address, version, "address") if address else None
    return AddressRequest(pool_id=pool_id, ip=ip)


def render_address(ip):
    return {"Address": "%s/%d" % (ip, 128 if ip.version == 6 else 32), "Data": {}}


def parse_release_address(body):
    """-> (pool ID, netaddr.IPAddress) of IpamDriver.ReleaseAddress."""
    body = _object(body, "ReleaseAddress")
    pool_id = body.get("PoolID") or ""
    version, _ = parse_pool_id(pool_id)
    return pool_id, validate.parse_ip(body.get("Address"), version, "address")


def parse_network_request(body):
    body = _object(body, "CreateNetwork")
    network_id = _id(body, "NetworkID")
    options = body.get("Options") or {}
    generic = options.get(GENERIC_OPTIONS) or {}
    if generic:
        raise ValidationError("The calico driver takes no driver options (-o): %s."
                              % ", ".join(sorted(generic)))
    if options.get(INTERNAL_OPTION):
        raise ValidationError("--internal is not supported by the calico driver: shape the network's "
                              "policy with `calicoctl profile <NETWORK> rule ...` instead.")
    pool_ids = []
    for field in ("IPv4Data", "IPv6Data"):
        for data in body.get(field) or ():
            space = (data or {}).get("AddressSpace")
            if space not in ADDRESS_SPACES.values():
                raise ValidationError("A calico network needs calico-ipam for its addresses: create it "
                                      "with --ipam-driver calico-ipam.")
            pool_ids.append(data.get("Pool") or "")
    return NetworkRequest(network_id=network_id, pool_ids=tuple(pool_ids),
                          ipv6=bool(options.get(ENABLE_IPV6_OPTION)))


def _known_endpoint_option(key):
    """Docker's own endpoint options (exposed ports, the MAC, ...) are its
    business; anything else came from the user (--driver-opt)."""
    return key.startswith("com.docker.")


def parse_endpoint_request(body):
    body = _object(body, "CreateEndpoint")
    options = body.get("Options") or {}
    if options.get(PORT_MAP_OPTION):
        raise ValidationError("Publishing ports (-p) is not supported on calico networks: containers "
                              "are reached at their own addresses.")
    unknown = sorted(key for key in options if not _known_endpoint_option(key))
    if unknown:
        raise ValidationError("The calico driver takes no endpoint options (--driver-opt): %s."
                              % ", ".join(unknown))
    interface = body.get("Interface") or {}
    addresses = {}
    for version, field in ((4, "Address"), (6, "AddressIPv6")):
        text = interface.get(field) or None
        addresses[version] = validate.parse_ip(text.split("/")[0], version, field) if text else None
    if addresses[4] is None and addresses[6] is None:
        raise ValidationError("The endpoint has no address: create the network with --ipam-driver "
                              "calico-ipam.")
    mac = interface.get("MacAddress") or None
    return EndpointRequest(network_id=_id(body, "NetworkID"), endpoint_id=_id(body, "EndpointID"),
                           ipv4=addresses[4], ipv6=addresses[6], mac=mac)


def parse_network_id(body):
    """-> the network ID of DeleteNetwork."""
    return _id(_object(body, "DeleteNetwork"), "NetworkID")


def parse_endpoint_ids(body):
    """-> (network ID, endpoint ID) of Join, Leave, DeleteEndpoint, EndpointOperInfo."""
    body = _object(body, "endpoint")
    return _id(body, "NetworkID"), _id(body, "EndpointID")


# -- replies ------------------------------------------------------------------------------

def calculate_temp_name(endpoint_id):
    """The container end of the veth until Docker moves and renames it."""
    return TEMP_PREFIX + endpoint_id[:11]


def generate_mac():
    """A random locally administered unicast MAC."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join("%02x" % octet for octet in octets)


def parse_join(body):
    """-> (network ID, endpoint ID, sandbox key: the path of the container's
    network namespace) of NetworkDriver.Join."""
    network_id, endpoint_id = parse_endpoint_ids(body)
    key = body.get("SandboxKey")
    if not isinstance(key, str) or not key.startswith("/"):
        raise ValidationError("Invalid request: SandboxKey is missing.")
    return network_id, endpoint_id, key


def render_join(endpoint, routed_versions=()):
    """The Join reply for a model.Endpoint: move our veth's peer in, route
    through the host as ``container add`` does. ``routed_versions``: IP
    versions the container already has a default route of (its first
    network's); the kernel takes one link route to the host per address,
    so a further interface gets none and traffic leaves by the first."""
    reply = {"InterfaceName": {"SrcName": calculate_temp_name(endpoint.endpoint_id),
                               "DstPrefix": CONTAINER_PREFIX},
             "StaticRoutes": [], "DisableGatewayService": True}
    for version, gateway in ((4, endpoint.ipv4_gateway), (6, endpoint.ipv6_gateway)):
        if gateway and endpoint.nets(version) and version not in routed_versions:
            reply["Gateway" if version == 4 else "GatewayIPv6"] = gateway
            reply["StaticRoutes"].append({"Destination": "%s/%d" % (gateway, 32 if version == 4 else 128),
                                          "RouteType": ROUTE_CONNECTED})
    return reply


def render_activate(implements):
    return {"Implements": list(implements)}


# -- dispatch -----------------------------------------------------------------------------

def dispatch(routes, path, body_bytes, on_bug=None):
    """(HTTP status, reply dict) for a POST of ``body_bytes`` to ``path``.

    ``routes`` maps paths to callables taking the parsed body. Errors we
    expect become ``{"Err": message}`` (Docker shows the message to the
    user); an unknown path is 404, as the protocol asks, so Docker treats
    the method as unimplemented. ``on_bug(exc)`` hears anything unexpected.
    """
    handler = routes.get(path)
    if handler is None:
        return 404, render_error("%s is not implemented." % path)
    try:
        body = json.loads(body_bytes.decode("utf-8")) if body_bytes and body_bytes.strip() else None
    except (UnicodeDecodeError, ValueError) as exc:
        return 400, render_error("Invalid JSON in the request to %s: %s" % (path, exc))
    try:
        return 200, handler(body)
    except CalicoError as exc:
        return 200, render_error(str(exc))
    except Exception as exc:  # noqa: BLE001 - Docker must get an answer; the bug is logged
        if on_bug is not None:
            on_bug(exc)
        return 500, render_error("Internal error in the calico plugin: %s" % exc)


def render_error(message):
    """A failure reply: network drivers' replies carry it as ``Err``, IPAM
    drivers' as ``Error`` (libnetwork's two API packages differ)."""
    return {"Err": message, "Error": message}
