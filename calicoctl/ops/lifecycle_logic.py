"""The pure decisions behind keeping workloads networked through their
lifecycle (docs/decisions.md, "Workloads keep their networking"): what to do
with a workload given what Docker says of its container, and with each of
its endpoints given what the kernel holds. No Docker, etcd or kernel here."""
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
