"""The pure decisions behind keeping workloads networked through their
lifecycle (docs/decisions.md, "Workloads keep their networking"): what to do
with a workload given what Docker says of its container, with each of its
endpoints given what the kernel holds, and with a container on a calico
Docker network that Docker gave up on at boot. No Docker, etcd or kernel here."""
import enum
import re

_DOCKER_ID = re.compile(r"^[0-9a-f]{64}$")


class Presence(enum.Enum):
    """What Docker said of a container."""
    RUNNING = "running"
    STOPPED = "stopped"        # exists, not running (stopped, restarting, paused)
    GONE = "gone"              # Docker's own "No such container"
    UNKNOWN = "unknown"        # any other error, or Docker unreachable: doubt


class Action(enum.Enum):
    RESTORE = "restore"        # re-create missing endpoints in its namespace
    RELEASE = "release"        # release claims, remove endpoints and record
    KEEP = "keep"              # leave everything as it is
    IGNORE = "ignore"          # not a Docker container: not ours to judge


class EndpointPlan(enum.Enum):
    INTACT = "intact"          # host end present, its peer in the container
    CREATE = "create"          # nothing left: make the veth anew
    REPLACE_STALE = "replace"  # a host end whose peer is elsewhere (an old namespace)
    NAME_TAKEN = "name-taken"  # the container has another interface of that name


def is_docker_container_id(workload_id):
    """Docker's full IDs are 64 lower-case hex digits; other workloads
    (other tools', tests' namespaces) are left alone."""
    return bool(_DOCKER_ID.match(workload_id or ""))


def decide_workload(workload_id, presence, listed=None):
    """The Action for one of this host's workloads.

    :param presence: the Presence Docker reported on inspecting it.
    :param listed: True/False if a listing of Docker's containers was taken
        (it must agree before anything is released), None if not.
    """
    if not is_docker_container_id(workload_id):
        return Action.IGNORE
    if presence is Presence.RUNNING:
        return Action.RESTORE
    if presence is Presence.GONE and not listed:
        return Action.RELEASE
    return Action.KEEP


def plan_endpoint(host_end_present, peer_in_container, name_taken):
    """What to do with one endpoint of a running container.

    :param host_end_present: the endpoint's host-side interface exists.
    :param peer_in_container: ...and its peer is in the container's namespace.
    :param name_taken: the container has an interface of the endpoint's
        inside name that is not that peer.
    """
    if host_end_present and peer_in_container:
        return EndpointPlan.INTACT
    if name_taken:
        return EndpointPlan.NAME_TAKEN
    return EndpointPlan.REPLACE_STALE if host_end_present else EndpointPlan.CREATE


# What Docker (20.10) leaves in ``docker inspect`` after a power-off, seen
# with a simulated host's own dockerd (tests/system/test_docker_reboot.py):
# at its start it tries to start every container whose restart policy says
# so (``always``, even one the user had stopped; ``unless-stopped`` unless
# the user had stopped it). If a network plugin's socket is not there it
# looks for it for about 15 s, then gives up on that container for good:
# State.Status "exited", State.Error 'plugin "calico-ipam" not found'. A
# container it did not try (stopped by the user, or with no restart policy)
# keeps State.Error "": ``docker stop`` leaves none and a successful start
# clears it.
RESTART_POLICIES_AT_BOOT = ("always", "unless-stopped")


def should_start_abandoned(container, plugin_network_ids, plugin_names):
    """True for a container Docker gave up on starting because one of our
    plugins was missing (see above), whose restart policy says it runs.

    :param container: a host.docker.ContainerInfo (status, error,
        restart_policy, network_ids).
    :param plugin_network_ids: the Docker networks our driver serves.
    :param plugin_names: our plugins' names (``calico``, ``calico-ipam``).
    """
    return (container.status == "exited" and container.restart_policy in RESTART_POLICIES_AT_BOOT
            and any(network_id in plugin_network_ids for network_id in container.network_ids)
            and any('plugin "%s" not found' % name in container.error for name in plugin_names))
