"""``calicoctl cni install`` / ``uninstall``: a CNI network on Calico on this host.

``install`` checks the subnets against the Calico pools, puts the two
plugin binaries (``calicoctl/cni_client.py`` under the names ``calico``
and ``calico-ipam``) into the bin directory, writes
``<conf-dir>/<NETWORK>.conflist`` and makes the network's profile (with
``profile add``'s rules) if there is none. Running it again rewrites both,
so an upgrade of calicoctl reaches the binaries. ``uninstall`` removes the
configuration only: the binaries may serve other networks, and the profile
may hold endpoints (``calicoctl profile remove`` it when you want).

The configuration says ``cniVersion`` 1.0.0, which runtimes built on
libcni before 1.2 (Podman 4) read, and lists every version we speak in
``cniVersions``, from which newer runtimes pick the highest (1.1.0).
"""
import json
import os
from dataclasses import dataclass

from calicoctl import validate
from calicoctl.errors import Conflict, ValidationError
from calicoctl.ops import allocator, profile
from calicoctl.ops import cni_protocol as protocol

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIR = "/opt/cni/bin"
CONF_VERSION = "1.0.0"
SYSTEM_PYTHON = "/usr/bin/python3"
CONFLIST_SUFFIX = ".conflist"


@dataclass(frozen=True)
class InstallResult:
    network: str
    conf_path: str
    binaries: tuple
    subnets: tuple
    created_profile: bool


@dataclass(frozen=True)
class UninstallResult:
    network: str
    conf_path: str
    removed: bool            # False: there was nothing to remove


# -- pure ---------------------------------------------------------------------------------

def parse_network_name(name):
    """A CNI network name that is also a profile name."""
    if not isinstance(name, str) or not protocol.IDENTIFIER_RE.match(name):
        raise ValidationError("Invalid network name %r: a letter or digit, then letters, digits, '_', '.' "
                              "or '-'." % (name,))
    return validate.parse_name(name, "network name")


def render_conflist(network, subnets=()):
    """The network configuration list (text) for ``network``."""
    ipam = {"type": protocol.IPAM_PLUGIN}
    if subnets:
        ipam["subnets"] = list(subnets)
    config = {"cniVersion": CONF_VERSION, "cniVersions": list(protocol.SUPPORTED_VERSIONS), "name": network,
              "plugins": [{"type": protocol.MAIN_PLUGIN, "ipam": ipam, "capabilities": {"ips": True}}]}
    return json.dumps(config, indent=2) + "\n"


def is_calico_conflist(text):
    """True if the configuration's first plugin is ours."""
    try:
        plugins = json.loads(text).get("plugins") or [{}]
        return plugins[0].get("type") == protocol.MAIN_PLUGIN
    except (AttributeError, TypeError, ValueError):
        return False


def render_launcher(source, python):
    """The plugin binary: ``source`` (cni_client.py) started by ``python``
    in isolated mode, which sees no site-packages (nor a virtualenv's)."""
    body = source.split("\n", 1)[1] if source.startswith("#!") else source
    return "#!%s -IS\n%s" % (python, body)


def cni_client_path():
    """The plugin binaries' source: calicoctl/cni_client.py."""
    from calicoctl import cni_client
    return cni_client.__file__


def system_python():
    """The system's interpreter; ``env`` finds one on PATH where it is elsewhere."""
    return SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else "/usr/bin/env -S python3"


# -- workflows ------------------------------------------------------------------------------

def install(datastore, network, subnets=(), conf_dir=DEFAULT_CONF_DIR, bin_dir=DEFAULT_BIN_DIR):
    from calicoctl.host import daemon
    network = parse_network_name(network)
    cidrs = _check_subnets(datastore, subnets)
    conf_path = os.path.join(conf_dir, network + CONFLIST_SUFFIX)
    existing = _read(conf_path)
    if existing is not None and not is_calico_conflist(existing):
        raise Conflict("%s exists and does not configure Calico; remove it first." % conf_path)
    with open(cni_client_path()) as handle:
        launcher = render_launcher(handle.read(), system_python())
    binaries = []
    try:
        for name in protocol.PLUGINS:
            binaries.append(os.path.join(bin_dir, name))
            daemon.write_atomically(binaries[-1], launcher, mode=0o755)
        daemon.write_atomically(conf_path, render_conflist(network, cidrs))
    except OSError as exc:
        raise ValidationError("Cannot write %s: %s." % (exc.filename or conf_dir, exc.strerror or exc)) from None
    created = profile.add_profile(datastore, network).changed
    return InstallResult(network, conf_path, tuple(binaries), tuple(cidrs), created)


def _check_subnets(datastore, subnets):
    cidrs = {}
    pools = datastore.list_pools() if subnets else []
    for text in subnets:
        cidr = validate.parse_cidr(text, "subnet")
        if cidr.version in cidrs:
            raise ValidationError("Give at most one --subnet per IP version.")
        allocator.choose_pool(pools, cidr.version, str(cidr))
        cidrs[cidr.version] = str(cidr)
    return [cidrs[version] for version in sorted(cidrs)]


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def uninstall(network, conf_dir=DEFAULT_CONF_DIR):
    network = parse_network_name(network)
    conf_path = os.path.join(conf_dir, network + CONFLIST_SUFFIX)
    existing = _read(conf_path)
    if existing is None:
        return UninstallResult(network, conf_path, removed=False)
    if not is_calico_conflist(existing):
        raise Conflict("%s does not configure Calico; not removing it." % conf_path)
    os.unlink(conf_path)
    return UninstallResult(network, conf_path, removed=True)
