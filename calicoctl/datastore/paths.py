"""The etcd key layout: the only module that spells out keys.

It follows calicoctl 0.5.5's v1 layout (docs/etcd-layout.md) so that data
written by the original tools reads the same. A back-incompatible change belongs
under a new version prefix, not in place.

Pure: builders return strings, parsers return tuples/None. No imports from
the rest of the project.
"""
import re

ROOT = "/calico"
V1 = "/calico/v1"
READY = V1 + "/Ready"
CONFIG_DIR = V1 + "/config"
HOSTS_DIR = V1 + "/host"
PROFILES_DIR = V1 + "/policy/profile"
IPAM_DIR = V1 + "/ipam"

BGP_V1 = "/calico/bgp/v1"
BGP_GLOBAL_DIR = BGP_V1 + "/global"
BGP_GLOBAL_AS = BGP_GLOBAL_DIR + "/as_num"
BGP_NODE_MESH = BGP_GLOBAL_DIR + "/node_mesh"
BGP_HOSTS_DIR = BGP_V1 + "/host"

FELIX_STATUS_DIR = "/calico/felix/v1/host"

DEFAULT_ORCHESTRATOR = "docker"


def _dashed(cidr):
    return str(cidr).replace("/", "-")


# -- global and per-host config -------------------------------------------------

def global_config(name):
    return "%s/%s" % (CONFIG_DIR, name)


CONTROL_PLANE_PROTECTION = "ControlPlaneProtection"


def control_plane_protection():
    """Our extension: the control-plane protection setting (model.ControlPlaneProtection), global."""
    return global_config(CONTROL_PLANE_PROTECTION)


def host_dir(hostname):
    return "%s/%s" % (HOSTS_DIR, hostname)


def host_config_dir(hostname):
    return host_dir(hostname) + "/config"


def host_config(hostname, name):
    return "%s/%s" % (host_config_dir(hostname), name)


def config_value(get, hostname, name):
    """A config value as it counts on ``hostname``: the host's own, else the
    global one; None when neither is set (or both are empty). ``get``: key ->
    value (a dict's ``get``, a datastore read)."""
    for key in (host_config(hostname, name), global_config(name)):
        value = get(key)
        if value not in (None, ""):
            return value
    return None


def host_bird_ip(hostname):
    return host_dir(hostname) + "/bird_ip"


def host_vxlan(hostname):
    """Our extension: the host's VXLAN tunnel endpoint {"ip", "mac", "vni"}."""
    return host_dir(hostname) + "/vxlan"


def host_workloads_dir(hostname):
    return host_dir(hostname) + "/workload"


def orchestrator_dir(hostname, orchestrator_id=DEFAULT_ORCHESTRATOR):
    return "%s/%s" % (host_workloads_dir(hostname), orchestrator_id)


def workload_dir(hostname, orchestrator_id, workload_id):
    return "%s/%s" % (orchestrator_dir(hostname, orchestrator_id), workload_id)


def endpoint_key(hostname, orchestrator_id, workload_id, endpoint_id):
    return "%s/endpoint/%s" % (workload_dir(hostname, orchestrator_id, workload_id), endpoint_id)


def workload_name_key(hostname, orchestrator_id, workload_id):
    """Our extension: the workload's name (a Docker container name), so that
    ``container remove <name>`` finds it even when Docker no longer does.
    A leaf beside ``endpoint/``; readers of endpoint keys never see it."""
    return workload_dir(hostname, orchestrator_id, workload_id) + "/name"


def released_workloads_dir(hostname, orchestrator_id):
    """Our extension: notes the agent leaves (with a TTL) of the workloads
    whose networking it released because Docker removed them."""
    return "%s/released/%s" % (host_dir(hostname), orchestrator_id)


def released_workload_key(hostname, orchestrator_id, workload_id):
    return "%s/%s" % (released_workloads_dir(hostname, orchestrator_id), workload_id)


WORKLOAD_NAME_KEY_RE = re.compile(
    r"^/calico/v1/host/(?P<hostname>[^/]+)/workload/(?P<orchestrator_id>[^/]+)/(?P<workload_id>[^/]+)/name$")


def parse_workload_name_key(key):
    """-> (hostname, orchestrator_id, workload_id) of a workload name key, or None."""
    match = WORKLOAD_NAME_KEY_RE.match(key)
    if not match:
        return None
    return match.group("hostname"), match.group("orchestrator_id"), match.group("workload_id")


ENDPOINT_KEY_RE = re.compile(
    r"^/calico/v1/host/(?P<hostname>[^/]+)/workload/(?P<orchestrator_id>[^/]+)/"
    r"(?P<workload_id>[^/]+)/endpoint/(?P<endpoint_id>[^/]+)$")


def parse_endpoint_key(key):
    """-> (hostname, orchestrator_id, workload_id, endpoint_id) or None."""
    match = ENDPOINT_KEY_RE.match(key)
    if not match:
        return None
    return (match.group("hostname"), match.group("orchestrator_id"),
            match.group("workload_id"), match.group("endpoint_id"))


def docker_networks_dir(hostname):
    """Our extension: the Docker networks of the calico driver on one host."""
    return host_dir(hostname) + "/docker/network"


def docker_network(hostname, network_id):
    return "%s/%s" % (docker_networks_dir(hostname), network_id)


DOCKER_NETWORK_KEY_RE = re.compile(r"^/calico/v1/host/(?P<hostname>[^/]+)/docker/network/(?P<network_id>[^/]+)$")


def parse_docker_network_key(key):
    """-> (hostname, Docker network ID) or None."""
    match = DOCKER_NETWORK_KEY_RE.match(key)
    return (match.group("hostname"), match.group("network_id")) if match else None


def felix_host_dir(hostname):
    return "%s/%s" % (FELIX_STATUS_DIR, hostname)


def felix_status(hostname):
    return "%s/%s/status" % (FELIX_STATUS_DIR, hostname)


# -- policy --------------------------------------------------------------------

def profile_dir(name):
    return "%s/%s" % (PROFILES_DIR, name)


def profile_tags(name):
    return profile_dir(name) + "/tags"


def profile_rules(name):
    return profile_dir(name) + "/rules"


PROFILE_KEY_RE = re.compile(r"^/calico/v1/policy/profile/(?P<name>[^/]+)/(?P<field>tags|rules)$")


def parse_profile_key(key):
    """-> (profile name, 'tags'|'rules') or None."""
    match = PROFILE_KEY_RE.match(key)
    return (match.group("name"), match.group("field")) if match else None


# -- IP pools and claims -------------------------------------------------------

def pools_dir(version):
    return "%s/v%d/pool" % (IPAM_DIR, version)


def pool_key(cidr):
    version = 6 if ":" in str(cidr) else 4
    return "%s/%s" % (pools_dir(version), _dashed(cidr))


POOL_KEY_RE = re.compile(r"^/calico/v1/ipam/v(?P<version>[46])/pool/(?P<cidr>[0-9a-fA-F.:]+-\d+)$")


def parse_pool_key(key):
    """-> CIDR string ('10.0.0.0/8') or None."""
    match = POOL_KEY_RE.match(key)
    if not match:
        return None
    address, prefix = match.group("cidr").rsplit("-", 1)
    return "%s/%s" % (address, prefix)


def claims_dir(pool_cidr):
    version = 6 if ":" in str(pool_cidr) else 4
    return "%s/v%d/assignment/%s" % (IPAM_DIR, version, _dashed(pool_cidr))


def claim_key(pool_cidr, ip):
    return "%s/%s" % (claims_dir(pool_cidr), ip)


CLAIMS_DIR_RE = re.compile(r"^/calico/v1/ipam/v[46]/assignment/(?P<cidr>[0-9a-fA-F.:]+-\d+)$")


def parse_claims_dir(key):
    """-> pool CIDR string of an assignment directory key, or None."""
    match = CLAIMS_DIR_RE.match(key)
    if not match:
        return None
    address, prefix = match.group("cidr").rsplit("-", 1)
    return "%s/%s" % (address, prefix)


def assignments_dir(version):
    """Root of every pool's claims of one IP version."""
    return "%s/v%d/assignment" % (IPAM_DIR, version)


CLAIM_KEY_RE = re.compile(
    r"^/calico/v1/ipam/v[46]/assignment/(?P<cidr>[0-9a-fA-F.:]+-\d+)/(?P<ip>[0-9a-fA-F.:]+)$")


def parse_claim_key(key):
    """-> (pool CIDR, IP string) or None."""
    match = CLAIM_KEY_RE.match(key)
    if not match:
        return None
    address, prefix = match.group("cidr").rsplit("-", 1)
    return "%s/%s" % (address, prefix), match.group("ip")


# -- BGP -----------------------------------------------------------------------

def global_peers_dir(version):
    return "%s/peer_v%d" % (BGP_GLOBAL_DIR, version)


def global_peer(ip):
    version = 6 if ":" in str(ip) else 4
    return "%s/%s" % (global_peers_dir(version), ip)


def bgp_host_dir(hostname):
    return "%s/%s" % (BGP_HOSTS_DIR, hostname)


def host_ip_addr(hostname, version):
    return "%s/ip_addr_v%d" % (bgp_host_dir(hostname), version)


def host_as_num(hostname):
    return bgp_host_dir(hostname) + "/as_num"


def host_rr_cluster_id(hostname):
    """The host's route reflector cluster ID (an IPv4 address); absent: not a reflector."""
    return bgp_host_dir(hostname) + "/rr_cluster_id"


def host_peers_dir(hostname, version):
    return "%s/peer_v%d" % (bgp_host_dir(hostname), version)


def host_peer(hostname, ip):
    version = 6 if ":" in str(ip) else 4
    return "%s/%s" % (host_peers_dir(hostname, version), ip)


# -- parsers for the BGP tree and host records (used by the agent's BIRD/tunnel components) --

BGP_HOST_KEY_RE = re.compile(
    r"^/calico/bgp/v1/host/(?P<hostname>[^/]+)/(?P<field>ip_addr_v4|ip_addr_v6|as_num|rr_cluster_id)$")
BGP_PEER_KEY_RE = re.compile(
    r"^/calico/bgp/v1/(?:global|host/(?P<hostname>[^/]+))/peer_v(?P<version>[46])/(?P<ip>[^/]+)$")
HOST_VXLAN_KEY_RE = re.compile(r"^/calico/v1/host/(?P<hostname>[^/]+)/vxlan$")


def parse_bgp_host_key(key):
    """-> (hostname, 'ip_addr_v4'|'ip_addr_v6'|'as_num'|'rr_cluster_id') or None."""
    match = BGP_HOST_KEY_RE.match(key)
    return (match.group("hostname"), match.group("field")) if match else None


def parse_bgp_peer_key(key):
    """-> (hostname or None for a global peer, version, ip) or None."""
    match = BGP_PEER_KEY_RE.match(key)
    if not match:
        return None
    return match.group("hostname"), int(match.group("version")), match.group("ip")


def parse_host_vxlan_key(key):
    """-> hostname or None."""
    match = HOST_VXLAN_KEY_RE.match(key)
    return match.group("hostname") if match else None
