"""The CNI protocol for the calico and calico-ipam plugins, as pure logic.

A CNI runtime (Podman, containerd, ...) runs a plugin binary with the
request in environment variables (``CNI_COMMAND``, ``CNI_CONTAINERID``,
``CNI_NETNS``, ``CNI_IFNAME``, ...) and the network configuration as JSON
on stdin; the plugin prints a result (or an error object) as JSON on stdout
and exits non-zero on failure (the CNI spec, SPEC.md of
containernetworking/cni, versions 0.4.0, 1.0.0 and 1.1.0). Our binaries
(``calicoctl/cni_client.py``) pass the request unread to the node agent
over a unix socket, framed as ``encode_request`` / ``decode_request`` say;
the agent parses it here into a typed ``Request`` (a ``CniError`` with the
spec's code for anything wrong), does the work (``calicoctl.ops.cni_plugin``)
and answers with ``render_*``'s output. No I/O here.

Versions: a request's ``cniVersion`` must be one of ``SUPPORTED_VERSIONS``
(else code 1); results are rendered in that version (0.4.0's IPs carry a
``version`` field, 1.x's do not). GC and STATUS exist from 1.1.0.

``prevResult``: ADD appends our interfaces, addresses and routes to it
(the indexes of our addresses shifted past the interfaces before ours);
CHECK reads from it which addresses our interface should have; DEL
releases the addresses it names as well as the endpoint's.

IPAM configuration (the ``ipam`` object, for both plugins): ``type`` must
be ``calico-ipam``; ``subnet`` (a CIDR) or ``subnets`` (a list, at most one
per IP version) name where addresses come from, each inside a Calico pool
(default: one IPv4 address from any pool). With the ``ips`` capability
(``runtimeConfig.ips``) or ``IP=`` in CNI_ARGS (``podman run --ip``) the
runtime asks for given addresses; each must lie in the subnet of its version.
"""
import json
import re
from dataclasses import dataclass, replace
from typing import Optional

from calicoctl import validate
from calicoctl.errors import CalicoError, ValidationError
from calicoctl.ops.allocator import AddressRequest
from calicoctl.ops.container_logic import parse_interface_name

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
MAIN_PLUGIN = "calico"
IPAM_PLUGIN = "calico-ipam"
PLUGINS = (MAIN_PLUGIN, IPAM_PLUGIN)
ATTACHMENT_COMMANDS = ("ADD", "DEL", "CHECK")
COMMANDS = ATTACHMENT_COMMANDS + ("GC", "STATUS")
SINCE_1_1 = ("GC", "STATUS")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
# The spec's rule for container IDs and network names.
IDENTIFIER_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
DEFAULT_ROUTES = {4: "0.0.0.0/0", 6: "::/0"}

# Error codes: the spec's (0-99), then ours (100+).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
ADDRESS_UNAVAILABLE = 100      # the address asked for is taken, or the range is full
INTERFACE_EXISTS = 101         # the container already has the interface, or the attachment exists
HOST_NOT_READY = 102           # this host has no address in etcd (`calicoctl node` first)
CHECK_INTERFACE = 110          # CHECK: an interface is missing or not as ADD made it
CHECK_ADDRESS = 111            # CHECK: an address is missing from the interface or its claim
CHECK_ROUTE = 112              # CHECK: a route is missing
CHECK_ENDPOINT = 113           # CHECK: the endpoint in etcd is missing or differs
OTHER_FAILURE = 999            # anything else (the message says what)


class CniError(CalicoError):
    """A failure to report to the runtime with CNI error ``code``."""

    def __init__(self, code, msg, details=""):
        super().__init__(msg)
        self.code = code
        self.details = details


# -- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interface:
    name: str
    mac: Optional[str] = None
    sandbox: Optional[str] = None        # the container's netns path; None on the host


@dataclass(frozen=True)
class IPConfig:
    address: str                         # CIDR: "192.168.1.7/32"
    gateway: Optional[str] = None
    interface: Optional[int] = None      # index into Result.interfaces

    @property
    def ip(self):
        return self.address.split("/")[0]

    @property
    def version(self):
        return 6 if ":" in self.address else 4


@dataclass(frozen=True)
class Route:
    dst: str
    gw: Optional[str] = None


@dataclass(frozen=True)
class Result:
    """An ADD result (an IPAM plugin's has no interfaces), version-neutral."""
    interfaces: tuple = ()
    ips: tuple = ()
    routes: tuple = ()
    dns: Optional[dict] = None


def parse_result(data, what="prevResult"):
    """A result object of any supported version -> Result (CniError 7 if malformed)."""
    def bad(reason):
        return CniError(INVALID_CONFIG, "Invalid %s: %s." % (what, reason))
    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    try:
        interfaces = tuple(Interface(name=_text(item["name"]), mac=item.get("mac") or None,
                                     sandbox=item.get("sandbox") or None)
                           for item in data.get("interfaces") or ())
        ips = []
        for item in data.get("ips") or ():
            index = item.get("interface")
            if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                      or not 0 <= index < len(interfaces)):
                raise ValueError("interface index %r" % (index,))
            address = _text(item["address"])
            validate.parse_cidr(address)
            ips.append(IPConfig(address, gateway=item.get("gateway") or None, interface=index))
        routes = tuple(Route(dst=_text(item["dst"]), gw=item.get("gw") or None) for item in data.get("routes") or ())
        dns = data.get("dns")
    except (AttributeError, KeyError, TypeError, ValueError, ValidationError) as exc:
        raise bad(str(exc)) from None
    return Result(interfaces=interfaces, ips=tuple(ips), routes=routes,
                  dns=dns if isinstance(dns, dict) and dns else None)


def _text(value):
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string, got %r" % (value,))
    return value


def merge_results(previous, ours):
    """``ours`` appended to a ``prevResult`` (our interface indexes shifted
    past the interfaces already there)."""
    if previous is None:
        return ours
    shift = len(previous.interfaces)
    ips = tuple(replace(ip, interface=ip.interface + shift) if ip.interface is not None else ip
                for ip in ours.ips)
    return Result(interfaces=previous.interfaces + ours.interfaces, ips=previous.ips + ips,
                  routes=previous.routes + tuple(route for route in ours.routes if route not in previous.routes),
                  dns=previous.dns or ours.dns)


def render_result(result, version):
    """The result object in ``version``; an IPAM result (no interfaces) has no
    ``interfaces`` key and no interface indexes."""
    data = {"cniVersion": version}
    if result.interfaces:
        data["interfaces"] = [_drop_none({"name": item.name, "mac": item.mac, "sandbox": item.sandbox})
                              for item in result.interfaces]
    ips = []
    for ip in result.ips:
        item = {"address": ip.address, "gateway": ip.gateway, "interface": ip.interface}
        if version == "0.4.0":
            item["version"] = str(ip.version)
        ips.append(_drop_none(item))
    data["ips"] = ips
    if result.routes:
        data["routes"] = [_drop_none({"dst": route.dst, "gw": route.gw}) for route in result.routes]
    if result.dns:
        data["dns"] = result.dns
    return data


def _drop_none(item):
    return {key: value for key, value in item.items() if value is not None}


def render_error(code, msg, details="", version=LATEST_VERSION):
    data = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        data["details"] = details
    return data


def calculate_routes(gateways):
    """The default route of each IP version via its gateway (``{version: ip}``)."""
    return tuple(Route(dst=DEFAULT_ROUTES[version], gw=gateways[version]) for version in sorted(gateways))


# -- requests -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One invocation of a plugin, validated.

    ``addresses``: what the IPAM part assigns (allocator.AddressRequest:
    a given ``ip``, or any free one of ``version`` within ``cidr``).
    ``prev_result``: None when the runtime passed none.
    ``valid_attachments``: GC's list of (container ID, interface name).
    """
    plugin: str
    command: str
    version: str
    network: str
    container_id: Optional[str] = None
    netns: Optional[str] = None
    ifname: Optional[str] = None
    addresses: tuple = ()
    prev_result: Optional[Result] = None
    valid_attachments: tuple = ()

    @property
    def attachment(self):
        return self.container_id, self.ifname


def parse_request(plugin, env, stdin):
    """(our binary's name, its CNI_* environment, its stdin bytes) -> Request.

    Raises CniError with the spec's code: 4 for the environment, 6 for
    stdin that is not a JSON object, 1 for an unsupported cniVersion, 7
    (or 2 for a field we do not support) for the configuration.
    """
    if plugin not in PLUGINS:
        raise CniError(INVALID_ENVIRONMENT, "Unknown plugin %r: the binary must be named %s."
                       % (plugin, " or ".join(PLUGINS)))
    command = env.get("CNI_COMMAND") or ""
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, "Invalid CNI_COMMAND %r: expected one of %s."
                       % (command, ", ".join(COMMANDS + ("VERSION",))))
    config = _parse_config(stdin)
    version = _parse_version(config, command)
    network = config.get("name")
    if not isinstance(network, str) or not IDENTIFIER_RE.match(network):
        raise CniError(INVALID_CONFIG, "Invalid network name %r in the configuration: a letter or digit, "
                       "then letters, digits, '_', '.' or '-'." % (network,))
    fields = {}
    if command in ATTACHMENT_COMMANDS:
        fields = _parse_attachment_env(env, command)
    addresses = _parse_ipam(config)
    if command == "ADD":
        addresses = _requested_addresses(_wanted_addresses(config, env), addresses)
    previous = config.get("prevResult")
    if previous is not None and command in ATTACHMENT_COMMANDS:
        fields["prev_result"] = parse_result(previous)
    if command == "GC":
        fields["valid_attachments"] = _parse_valid_attachments(config)
    return Request(plugin=plugin, command=command, version=version, network=network,
                   addresses=addresses, **fields)


def _parse_config(stdin):
    try:
        config = json.loads(stdin.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CniError(DECODING_FAILURE, "Cannot decode the network configuration: %s." % exc) from None
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "Cannot decode the network configuration: expected a JSON object.")
    return config


def _parse_version(config, command):
    version = config.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "The network configuration has no cniVersion.")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "Incompatible CNI version %s: calico supports %s."
                       % (version, ", ".join(SUPPORTED_VERSIONS)))
    if command in SINCE_1_1 and SUPPORTED_VERSIONS.index(version) < SUPPORTED_VERSIONS.index("1.1.0"):
        raise CniError(INCOMPATIBLE_VERSION, "%s needs cniVersion 1.1.0 or later (the configuration "
                       "has %s)." % (command, version))
    return version


def _parse_attachment_env(env, command):
    invalid = []
    container_id = env.get("CNI_CONTAINERID") or ""
    if not IDENTIFIER_RE.match(container_id):
        invalid.append("CNI_CONTAINERID")
    ifname = env.get("CNI_IFNAME") or ""
    try:
        parse_interface_name(ifname)
    except ValidationError:
        invalid.append("CNI_IFNAME")
    netns = env.get("CNI_NETNS") or None
    if netns is None and command != "DEL":
        invalid.append("CNI_NETNS")
    if invalid:
        raise CniError(INVALID_ENVIRONMENT, "Missing or invalid %s." % ", ".join(invalid))
    return {"container_id": container_id, "ifname": ifname, "netns": netns}


def _parse_ipam(config):
    """The ipam object -> AddressRequests, one per subnet (default: IPv4, any pool)."""
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise CniError(INVALID_CONFIG, "The network configuration has no ipam object.")
    kind = ipam.get("type")
    if kind != IPAM_PLUGIN:
        raise CniError(UNSUPPORTED_FIELD, "Unsupported ipam.type %r: calico needs calico-ipam, so that every "
                       "address is claimed in Calico's pools." % (kind,))
    subnets = ipam.get("subnets", [ipam["subnet"]] if "subnet" in ipam else [])
    if not isinstance(subnets, list):
        raise CniError(INVALID_CONFIG, "Invalid ipam.subnets: expected a list of CIDRs.")
    requests = {}
    for text in subnets:
        try:
            cidr = validate.parse_cidr(text, "ipam subnet")
        except ValidationError as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
        if cidr.version in requests:
            raise CniError(INVALID_CONFIG, "Invalid ipam.subnets: more than one IPv%d subnet." % cidr.version)
        requests[cidr.version] = AddressRequest(version=cidr.version, cidr=str(cidr))
    return tuple(requests[version] for version in sorted(requests)) or (AddressRequest(version=4),)


def _wanted_addresses(config, env):
    """The addresses the runtime asks for: runtimeConfig.ips (the ``ips``
    capability), else ``IP=`` in CNI_ARGS (the older convention; Podman
    passes one address so), comma-separated."""
    wanted = (config.get("runtimeConfig") or {}).get("ips")
    if wanted is not None:
        if not isinstance(wanted, list):
            raise CniError(INVALID_CONFIG, "Invalid runtimeConfig.ips: expected a list of addresses.")
        return wanted
    for pair in (env.get("CNI_ARGS") or "").split(";"):
        key, _, value = pair.partition("=")
        if key.strip() == "IP" and value.strip():
            return [text.strip() for text in value.split(",")]
    return []


def _requested_addresses(wanted, automatic):
    """The addresses asked for in place of automatic ones of their version."""
    by_version = {request.version: request for request in automatic}
    chosen = {}
    for text in wanted:
        try:
            ip = validate.parse_ip(text.split("/")[0] if isinstance(text, str) else text)
        except ValidationError as exc:
            raise CniError(INVALID_CONFIG, "Invalid address asked for: %s" % exc) from None
        subnet = by_version.get(ip.version)
        if subnet is None:
            raise CniError(INVALID_CONFIG, "Address %s asked for, but the network has no IPv%d subnet."
                           % (ip, ip.version))
        if subnet.cidr is not None and not _inside(ip, subnet.cidr):
            raise CniError(INVALID_CONFIG, "Address %s is outside the network's subnet %s." % (ip, subnet.cidr))
        if ip.version in chosen:
            raise CniError(INVALID_CONFIG, "More than one IPv%d address asked for." % ip.version)
        chosen[ip.version] = AddressRequest(version=ip.version, ip=ip, cidr=subnet.cidr)
    return tuple(chosen.get(request.version, request) for request in automatic)


def _inside(ip, cidr):
    import netaddr
    return ip in netaddr.IPNetwork(cidr)


def _parse_valid_attachments(config):
    """GC's list; absent or malformed is refused (releasing everything on a
    runtime's mistake is not ours to do)."""
    items = config.get(VALID_ATTACHMENTS)
    if not isinstance(items, list):
        raise CniError(INVALID_CONFIG, "GC needs %s (a list of attachments)." % VALID_ATTACHMENTS)
    found = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str) \
                or not isinstance(item.get("ifname"), str):
            raise CniError(INVALID_CONFIG, "Invalid entry in %s: %r." % (VALID_ATTACHMENTS, item))
        found.append((item["containerID"], item["ifname"]))
    return tuple(found)


def parse_error_version(stdin):
    """The version to report an error in: the request's if we support it."""
    try:
        version = json.loads(stdin.decode("utf-8")).get("cniVersion")
    except (AttributeError, UnicodeDecodeError, ValueError):
        return LATEST_VERSION
    return version if version in SUPPORTED_VERSIONS else LATEST_VERSION


# -- framing between the plugin binaries and the agent ----------------------------------------
#
# request: b"<n>\n" + header (n bytes: plugin name, then KEY=VALUE entries,
#          separated by NUL, which no environment variable can contain) + stdin
# reply:   b"<exit code> <m>\n" + stdout (m bytes) + stderr

def encode_request(plugin, env, stdin):
    header = "\0".join([plugin] + ["%s=%s" % item for item in sorted(env.items())]).encode("utf-8")
    return b"%d\n" % len(header) + header + stdin


def decode_request(data):
    """-> (plugin, env dict, stdin bytes); CniError 5 if the frame is malformed."""
    length, newline, rest = data.partition(b"\n")
    if not newline or not length.isdigit() or int(length) > len(rest):
        raise CniError(IO_FAILURE, "Malformed request from the plugin binary.")
    header, stdin = rest[:int(length)], rest[int(length):]
    plugin, *entries = header.decode("utf-8", "replace").split("\0")
    env = dict(entry.split("=", 1) for entry in entries if "=" in entry)
    return plugin, env, stdin


def encode_reply(code, stdout=b"", stderr=b""):
    return b"%d %d\n" % (code, len(stdout)) + stdout + stderr


# -- answering ---------------------------------------------------------------------------------

def respond(work, plugin, env, stdin, on_bug=None):
    """(exit status, stdout bytes) for one invocation.

    ``work(Request)`` does it and returns a Result to print (None: nothing,
    as for DEL, CHECK, GC, STATUS). Every failure becomes the spec's error
    object in the request's version; ``on_bug(exc)`` hears the unexpected.
    """
    try:
        request = parse_request(plugin, env, stdin)
        result = work(request)
    except CalicoError as exc:
        return 1, render_failure(exc, stdin)
    except Exception as exc:  # noqa: BLE001 - the runtime must get an answer; the bug is logged
        if on_bug is not None:
            on_bug(exc)
        return 1, render_failure(CniError(OTHER_FAILURE, "Internal error in the calico agent: %s" % exc), stdin)
    if result is None:
        return 0, b""
    return 0, _json(render_result(result, request.version))


def render_failure(exc, stdin=b""):
    """The error object (bytes) for one of our errors, in the request's version."""
    return _json(render_error(error_code(exc), str(exc), details=getattr(exc, "details", ""),
                              version=parse_error_version(stdin)))


def error_code(exc):
    """The CNI code of one of our errors."""
    from calicoctl.errors import DatastoreUnavailable, NotFound
    from calicoctl.host.netlink.errors import NamespaceNotFound
    if isinstance(exc, CniError):
        return exc.code
    if isinstance(exc, DatastoreUnavailable):
        return TRY_AGAIN_LATER
    if isinstance(exc, NamespaceNotFound):
        return UNKNOWN_CONTAINER
    if isinstance(exc, (ValidationError, NotFound)):
        return INVALID_CONFIG
    return OTHER_FAILURE


def _json(data):
    return json.dumps(data).encode("utf-8")
