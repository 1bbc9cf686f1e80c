"""Container networking: give a Docker container a Calico interface, and take it away.

Workflows for ``calicoctl container ...`` (docs/decisions.md, "Containers"
and "IP address claims"). Each takes its collaborators (a DatastoreClient, a
DockerAdapter, the hostname) and returns a result; only the CLI prints.

What ``add_container`` leaves behind when it succeeds:

- an IP claim in etcd (create-only, so two hosts racing for one address
  cannot both win), its value naming the owner ``<host>/docker/<id>``;
- a veth pair: the host's interface prefix (``cali`` unless
  ``InterfacePrefix`` says otherwise) + the endpoint ID cut to 15 characters
  on the host, its
  peer created directly inside the container's namespace with the
  requested name, both with the MTU that fits the pool (the LAN device's,
  less a VXLAN or IP-in-IP pool's encapsulation); inside, the address as
  /32 (/128), a link route to the host's IP and the default route via it;
  on the host side proxy ARP (proxy NDP and a proxy entry for the gateway
  with IPv6) and a scope-link route per workload IP;
- the endpoint JSON of the reference, and beside it the container's name
  (``paths.workload_name_key``) so ``remove`` works after ``docker rm``.

Nothing half-done
~~~~~~~~~~~~~~~~~
Every step that changes something pushes its undo onto a ``Rollback``; any
failure (including Ctrl-C) runs them newest first and re-raises. The claim
is first made with a TTL and only made permanent once the kernel work is
done: if etcd vanishes mid-way, the undo cannot reach it, but the claim
then expires by itself. A claim that outlives a failed run (etcd came back
before the TTL ran out) is owned by the same container, so a retry adopts it
instead of calling the address taken. The endpoint key is written last, so
an agent watching etcd never sees an endpoint whose interface is not ready.

``restore_container`` (the agent's, when a container restarted) re-creates
missing endpoints in the container's new namespace with the same steps as
``add`` (``interfaces.configure_workload_veth``), from what the endpoint
records: the inside name (``container_interface``), the MAC, every address
and gateway.
``add``, ``restore`` and ``remove`` each hold the workload's lock
(``host.locks``), so two adds with different ``--interface`` names, or an
add racing a re-creation, never interleave.

``remove_container`` deletes the veth first (traffic stops), then releases
the claims (compare-and-delete on the owner), then the workload's record;
a retry after a failure at any point picks up where the last one stopped.
It finds the workload in etcd first (full ID, recorded name, ID prefix), and
asks Docker only when etcd does not know the name (e.g. after a rename).

Every workflow also takes ``host_netns`` (the namespace that plays the host:
None, the caller's own, for the CLI; a simulated host's for in-process
tests) and ``progress``, called with the name of each finished step (tests
use it to break things mid-way).
"""
import os
import uuid
from dataclasses import dataclass
from typing import Optional, Tuple

from calicoctl import model, validate
from calicoctl.errors import AlreadyExists, Conflict, NotFound
from calicoctl.host import locks
from calicoctl.ops import allocator, interfaces
from calicoctl.ops.container_logic import (LIBNETWORK_ORCHESTRATOR, ORCHESTRATOR, calculate_endpoint_with_ip,
                                           calculate_endpoint_without_ip, calculate_host_net, calculate_veth_name,
                                           default_route, parse_interface_name, render_claim_owner, select_workloads)
from calicoctl.ops.rollback import Rollback

DEFAULT_INTERFACE = "eth1"


# -- results ------------------------------------------------------------------------

@dataclass(frozen=True)
class AddResult:
    container: "object"              # host.docker.ContainerInfo
    endpoint: model.Endpoint
    interface: str


@dataclass(frozen=True)
class RemoveResult:
    workload: model.Workload
    released: Tuple[str, ...] = ()
    deleted_interfaces: Tuple[str, ...] = ()
    removed_by_docker: bool = False
    """Nothing to do: the agent released it all when Docker removed the container."""


@dataclass(frozen=True)
class RestoreResult:
    workload_id: str
    restored: Tuple[str, ...] = ()   # endpoint IDs re-created in the container
    intact: Tuple[str, ...] = ()     # endpoint IDs that needed nothing
    problems: Tuple[str, ...] = ()   # one line per endpoint that could not be restored


@dataclass(frozen=True)
class IPChangeResult:
    workload_id: str
    ip: str
    changed: bool                    # False: nothing to do (already so)
    endpoint: Optional[model.Endpoint] = None
    note: Optional[str] = None


def _step(progress, name):
    """Report a finished step to an observer (tests use this to break things mid-way)."""
    if progress is not None:
        progress(name)


# -- shared checks ------------------------------------------------------------------------

def _require_networkable(info, query):
    if not info.running:
        raise Conflict("Container %s is not running." % query)
    if info.host_networked:
        raise Conflict("Container %s uses the host's network namespace; Calico cannot add "
                       "an interface to it." % query)
    if info.shares_netns:
        raise Conflict("Container %s shares the network namespace of %s; add Calico networking "
                       "to that container instead." % (query, info.network_mode.split(":", 1)[1]))


def _container_netns_error(exc, query):
    from calicoctl.host import netlink
    if isinstance(exc, netlink.NamespaceNotFound):
        return Conflict("Container %s stopped while its networking was being set up." % query)
    return exc


def _resolve_workload(datastore, docker, hostname, query):
    """The workload the user means, from etcd first (so it works after
    ``docker rm`` and needs no Docker round trip), else by asking Docker
    for the container's ID. None if neither knows it."""
    workloads = datastore.list_workloads(hostname, ORCHESTRATOR)
    candidates = select_workloads(workloads, query)
    if len(candidates) == 1:
        return candidates[0]
    try:
        info = docker.inspect(query)
    except NotFound:
        if candidates:
            raise Conflict("%s matches several containers: %s; give a longer ID."
                           % (query, ", ".join(sorted(w.workload_id[:12] for w in candidates)))) from None
        return None
    for workload in workloads:
        if workload.workload_id == info.id:
            return workload
    return None


def _require_workload(datastore, docker, hostname, query):
    workload = _resolve_workload(datastore, docker, hostname, query)
    if workload is None:
        raise NotFound("Container %s has no Calico networking on host %s." % (query, hostname))
    return workload


# -- workflows ---------------------------------------------------------------------------

def add_container(datastore, docker, hostname, container, ip_text, interface=DEFAULT_INTERFACE,
                  host_netns=None, progress=None):
    """Give a running container a Calico interface with one IP; returns AddResult.

    ``ip_text`` is the address, or ``ipv4``, ``ipv6`` or a CIDR inside a pool
    to have a free one assigned (``allocator.claim`` reads, checks and claims it)."""
    interface = parse_interface_name(interface)
    info = docker.inspect(container)
    _require_networkable(info, container)
    # One add (or agent re-creation) of a container at a time: two adds with
    # different --interface names would otherwise both pass the check below.
    with locks.workload_lock(info.id):
        return _add_locked(datastore, hostname, container, info, ip_text, interface, host_netns, progress)


def _add_locked(datastore, hostname, container, info, ip_text, interface, host_netns, progress):
    from calicoctl.host import netlink
    if datastore.list_endpoints(hostname, ORCHESTRATOR, info.id):
        raise AlreadyExists("Container %s already has Calico networking." % container)
    endpoint_id = uuid.uuid1().hex
    veth = calculate_veth_name(endpoint_id, datastore.get_interface_prefix(hostname))
    owner = render_claim_owner(hostname, info.id)
    try:
        with netlink.Session(host_netns) as host, netlink.Session(info.netns_path) as cont:
            if cont.find_link(interface) is not None:
                raise Conflict("Container %s already has an interface named %s; choose another "
                               "with --interface." % (container, interface))
            with Rollback() as rollback:
                assignment = allocator.claim(datastore, ip_text, owner, rollback, hostname=hostname)
                ip, pool, gateway = assignment.ip, assignment.pool, assignment.gateway
                _step(progress, "claimed")
                mtu = interfaces.workload_mtu(host, [gateway], [pool])
                try:
                    interfaces.create_workload_veth(host, host_netns, veth, interface, info.netns_path,
                                                    ipv6=ip.version == 6, mtu=mtu)
                except netlink.AlreadyPresent:
                    raise Conflict("Cannot create interface %s in container %s: the name is taken (in "
                                   "the container or, as %s, on the host)." % (interface, container, veth)) from None
                rollback.push("delete interface %s" % veth, lambda: netlink.delete_link(veth, host_netns))
                _step(progress, "veth")
                link = interfaces.configure_workload_veth(host, host_netns, cont, info.netns_path, veth,
                                                          interface, [ip], {ip.version: gateway})
                _step(progress, "configured")
                # Our open socket kept its namespace alive; if the container
                # died meanwhile the interface dies as soon as we let go.
                if not os.path.exists(info.netns_path):
                    raise Conflict("Container %s stopped while its networking was being set up."
                                   % container)

                allocator.confirm_claim(datastore, pool, ip, owner)
                _step(progress, "confirmed")
                endpoint = model.Endpoint(
                    key=model.EndpointKey(hostname, ORCHESTRATOR, info.id, endpoint_id),
                    name=veth, mac=link.mac, state="active", profile_ids=(),
                    ipv4_nets=(calculate_host_net(ip),) if ip.version == 4 else (),
                    ipv6_nets=(calculate_host_net(ip),) if ip.version == 6 else (),
                    ipv4_gateway=gateway if ip.version == 4 else None,
                    ipv6_gateway=gateway if ip.version == 6 else None,
                    container_interface=interface)
                datastore.write_workload_name(hostname, ORCHESTRATOR, info.id, info.name)
                rollback.push("remove the name record of %s" % container,
                              lambda: datastore.remove_workload_name(hostname, ORCHESTRATOR, info.id))
                _step(progress, "named")
                datastore.write_endpoint(endpoint, create_only=True)
                _step(progress, "written")
    except netlink.NetlinkError as exc:
        raise _container_netns_error(exc, container) from None
    return AddResult(container=info, endpoint=endpoint, interface=interface)


# How long the agent's note of a container Docker removed is kept.
RELEASED_NOTE_TTL = 7 * 24 * 3600


def remove_container(datastore, docker, hostname, container, host_netns=None, progress=None):
    """Take Calico networking away from a container (known to Docker or not).

    A container Docker removed, whose networking the agent has released
    already, is a state that already holds: a RemoveResult with
    ``removed_by_docker``."""
    workload = _resolve_workload(datastore, docker, hostname, container)
    if workload is None:
        return _removed_by_docker(datastore, docker, hostname, container)
    with locks.workload_lock(workload.workload_id):
        return _remove_locked(datastore, hostname, workload, host_netns, progress)


def release_removed_container(datastore, docker, hostname, workload_id):
    """The agent's, when Docker removed a container: ``remove_container``,
    then a note (RELEASED_NOTE_TTL) so that a later ``container remove``
    can say what became of it."""
    result = remove_container(datastore, docker, hostname, workload_id)
    datastore.write_released_workload(hostname, ORCHESTRATOR, workload_id, result.workload.name,
                                      ttl=RELEASED_NOTE_TTL)
    return result


def _removed_by_docker(datastore, docker, hostname, container):
    """The RemoveResult of a container Docker no longer knows whose
    networking the agent released; NotFound for anything else."""
    gone = select_workloads(datastore.list_released_workloads(hostname, ORCHESTRATOR), container)
    if len(gone) == 1:
        try:
            docker.inspect(container)
        except NotFound:
            return RemoveResult(workload=gone[0], removed_by_docker=True)
    raise NotFound("Container %s has no Calico networking on host %s." % (container, hostname))


def _remove_locked(datastore, hostname, workload, host_netns, progress):
    from calicoctl.host import netlink
    owner = render_claim_owner(hostname, workload.workload_id)
    deleted = []
    with netlink.Session(host_netns) as host:
        for endpoint in workload.endpoints:
            if host.delete_link(endpoint.name):
                deleted.append(endpoint.name)
    _step(progress, "veth")
    released = []
    for endpoint in workload.endpoints:
        for address in endpoint.addresses():
            if allocator.release_address(datastore, validate.parse_ip(address), owner):
                released.append(address)
    _step(progress, "released")
    datastore.remove_workload(hostname, ORCHESTRATOR, workload.workload_id)
    return RemoveResult(workload=workload, released=tuple(released), deleted_interfaces=tuple(deleted))


def restore_container(datastore, docker, hostname, workload_id, host_netns=None):
    """Re-create the endpoints of a (re)started container in its current
    namespace, as ``add_container`` made them: same inside name, MAC,
    addresses, routes and host side. Endpoint IDs, profiles and claims are
    untouched; endpoints already in place are left alone. Returns a
    RestoreResult; a container that is not running gets nothing."""
    from calicoctl.host import netlink
    with locks.workload_lock(workload_id):
        info = docker.inspect(workload_id)
        endpoints = datastore.list_endpoints(hostname, ORCHESTRATOR, workload_id)
        if not endpoints or not info.running or info.host_networked or info.shares_netns:
            return RestoreResult(workload_id)
        restored, intact, problems = [], [], []
        try:
            with netlink.Session(host_netns) as host, netlink.Session(info.netns_path) as cont:
                for endpoint in endpoints:
                    outcome = _restore_endpoint(datastore, hostname, host, host_netns, cont, info, endpoint)
                    if outcome == "restored":
                        restored.append(endpoint.endpoint_id)
                    elif outcome == "intact":
                        intact.append(endpoint.endpoint_id)
                    else:
                        problems.append(outcome)
        except netlink.NetlinkError as exc:
            raise _container_netns_error(exc, workload_id[:12]) from None
    return RestoreResult(workload_id, tuple(restored), tuple(intact), tuple(problems))


def _restore_endpoint(datastore, hostname, host, host_netns, cont, info, endpoint):
    """Re-create one endpoint if needed: 'restored', 'intact', or a problem line."""
    from calicoctl.ops.lifecycle_logic import EndpointPlan, plan_endpoint
    inside = endpoint.container_interface or DEFAULT_INTERFACE
    host_link = host.find_link(endpoint.name)
    peer = interfaces.find_container_link(cont, host_link, inside)
    named = cont.find_link(inside)
    plan = plan_endpoint(host_link is not None, peer is not None,
                         named is not None and (peer is None or named.index != peer.index))
    if plan is EndpointPlan.INTACT:
        return "intact"
    if plan is EndpointPlan.NAME_TAKEN:
        return ("endpoint %s: the container already has an interface %s that is not ours"
                % (endpoint.endpoint_id, inside))
    if plan is EndpointPlan.REPLACE_STALE:
        host.delete_link(endpoint.name)
    ips = [validate.parse_ip(address) for address in endpoint.addresses()]
    gateways = {}
    for version in (4, 6):
        if endpoint.nets(version):
            gateways[version] = getattr(endpoint, "ipv%d_gateway" % version) \
                or allocator.host_address(datastore, hostname, version)
    mtu = interfaces.workload_mtu(host, [gateways.get(4), gateways.get(6)],
                                  [datastore.pool_for_ip(ip) for ip in ips])
    host.create_veth(endpoint.name, inside, peer_netns=info.netns_path, peer_mac=endpoint.mac, mtu=mtu)
    try:
        interfaces.configure_workload_veth(host, host_netns, cont, info.netns_path, endpoint.name, inside, ips,
                                           gateways)
    except BaseException:
        host.delete_link(endpoint.name)
        raise
    return "restored"


def add_ip(datastore, docker, hostname, container, ip_text, interface=DEFAULT_INTERFACE,
           host_netns=None, progress=None):
    """Add one more IP to a container that already has Calico networking."""
    from calicoctl.host import netlink
    ip = validate.parse_ip(ip_text)
    interface = parse_interface_name(interface)
    info = docker.inspect(container)
    _require_networkable(info, container)
    endpoints = datastore.list_endpoints(hostname, ORCHESTRATOR, info.id)
    if not endpoints:
        raise NotFound("Container %s has no Calico networking; add it first with "
                       "`calicoctl container add %s <IP>`." % (container, container))
    _, pool, _ = allocator.check(datastore, allocator.AddressRequest(version=ip.version, ip=ip))
    owner = render_claim_owner(hostname, info.id)
    try:
        with netlink.Session(host_netns) as host, netlink.Session(info.netns_path) as cont:
            endpoint, host_link, link = None, None, None
            for candidate in endpoints:
                host_link = host.find_link(candidate.name)
                link = interfaces.find_container_link(cont, host_link, interface)
                if link is not None and (link.name == interface or len(endpoints) == 1):
                    endpoint = candidate
                    break
            if endpoint is None:
                raise NotFound("Container %s has no Calico interface named %s." % (container, interface))
            if calculate_host_net(ip) in endpoint.nets(ip.version):
                return IPChangeResult(info.id, str(ip), changed=False, endpoint=endpoint)
            gateway = getattr(endpoint, "ipv%d_gateway" % ip.version) \
                or allocator.host_address(datastore, hostname, ip.version)
            new_gateway = getattr(endpoint, "ipv%d_gateway" % ip.version) is None
            mtu = interfaces.workload_mtu(host, [gateway], [pool])
            _step(progress, "checked")

            with Rollback() as rollback:
                allocator.claim_address(datastore, pool, ip, owner, rollback)
                _step(progress, "claimed")
                if ip.version == 6 and not endpoint.ipv6_nets:
                    interfaces.enable_ipv6(info.netns_path, link.name)
                try:
                    cont.add_address(link.index, ip)
                    rollback.push("remove %s from the container" % ip,
                                  lambda: cont.delete_address(link.index, ip))
                except netlink.AlreadyPresent:
                    pass   # a leftover of an earlier attempt; now it is wanted
                if new_gateway:
                    interfaces.ensure_gateway_routes(cont, link, gateway)
                    rollback.push("remove the IPv%d default route" % ip.version,
                                  lambda: cont.delete_route(default_route(ip.version), link.index))
                if ip.version == 6 and not endpoint.ipv6_nets:
                    interfaces.ensure_host_side_v6(host, host_netns, host_link, gateway)
                # An address in a pool with more encapsulation: both ends shrink to fit it.
                interfaces.lower_veth_mtu(host, cont, host_link, link, mtu)
                host.replace_route(calculate_host_net(ip), host_link.index, scope_link=True)
                rollback.push("remove the host route to %s" % ip,
                              lambda: host.delete_route(calculate_host_net(ip), host_link.index))
                _step(progress, "configured")
                allocator.confirm_claim(datastore, pool, ip, owner)
                updated = datastore.update_endpoint(
                    endpoint.key, lambda current: calculate_endpoint_with_ip(current, ip, gateway)).new
                _step(progress, "written")
    except netlink.NetlinkError as exc:
        raise _container_netns_error(exc, container) from None
    return IPChangeResult(info.id, str(ip), changed=True, endpoint=updated)


def remove_ip(datastore, docker, hostname, container, ip_text, interface=DEFAULT_INTERFACE,
              host_netns=None, progress=None):
    """Take one IP away from a container's Calico endpoint and release it."""
    from calicoctl.host import netlink
    ip = validate.parse_ip(ip_text)
    interface = parse_interface_name(interface)
    workload = _require_workload(datastore, docker, hostname, container)
    owner = render_claim_owner(hostname, workload.workload_id)
    net = calculate_host_net(ip)
    holders = [ep for ep in workload.endpoints if net in ep.nets(ip.version)]
    if not holders:
        # A claim left by a failed earlier run is still ours to give back.
        if allocator.release_address(datastore, ip, owner, allow_anonymous=False):
            return IPChangeResult(workload.workload_id, str(ip), changed=True,
                                  note="released a leftover claim")
        raise NotFound("IP %s is not on container %s." % (ip, container))
    endpoint = holders[0]
    netns_path = _running_netns(docker, workload.workload_id)
    _step(progress, "checked")

    try:
        with Rollback() as rollback:
            updated = datastore.update_endpoint(endpoint.key,
                                                lambda current: calculate_endpoint_without_ip(current, ip)).new
            rollback.push("put %s back on the endpoint" % ip,
                          lambda: datastore.update_endpoint(endpoint.key,
                                                            lambda current: _readd(current, ip)))
            _step(progress, "updated")
            with netlink.Session(host_netns) as host:
                host_link = host.find_link(endpoint.name)
                if netns_path is not None and host_link is not None:
                    with netlink.Session(netns_path) as cont:
                        link = interfaces.find_container_link(cont, host_link, interface)
                        if link is not None and cont.delete_address(link.index, ip):
                            rollback.push("put %s back in the container" % ip,
                                          lambda: interfaces.restore_address(netns_path, link.index, ip))
                _step(progress, "address")
                if host_link is not None:
                    host.delete_route(net, host_link.index)
            _step(progress, "kernel")
    except netlink.NetlinkError as exc:
        raise _container_netns_error(exc, container) from None
    # Last, and outside the rollback: if this fails the IP is already gone
    # from the container, and a retry gives back the leftover claim.
    allocator.release_address(datastore, ip, owner)
    return IPChangeResult(workload.workload_id, str(ip), changed=True, endpoint=updated)


def _readd(endpoint, ip):
    if calculate_host_net(ip) in endpoint.nets(ip.version):
        return endpoint
    return calculate_endpoint_with_ip(endpoint, ip, getattr(endpoint, "ipv%d_gateway" % ip.version))


def _running_netns(docker, workload_id):
    """The container's namespace path if Docker knows it and it runs, else None."""
    try:
        info = docker.inspect(workload_id)
    except NotFound:
        return None
    return info.netns_path if info.running and not info.host_networked else None


def find_endpoint_ids(datastore, docker, hostname, container):
    """IDs of the container's endpoints on this host (NotFound if it has none):
    those ``container add`` made, else those of its calico Docker networks."""
    workload = _resolve_workload(datastore, docker, hostname, container)
    if workload is not None and workload.endpoints:
        return [endpoint.endpoint_id for endpoint in workload.endpoints]
    try:
        docker_ids = set(docker.inspect(container).endpoint_ids)
    except NotFound:
        docker_ids = set()
    found = [endpoint.endpoint_id for endpoint in datastore.list_endpoints(hostname, LIBNETWORK_ORCHESTRATOR)
             if endpoint.endpoint_id in docker_ids]
    if not found:
        raise NotFound("Container %s has no Calico networking on host %s." % (container, hostname))
    return sorted(found)
