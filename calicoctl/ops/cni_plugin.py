"""The calico and calico-ipam CNI plugins' work, done inside the node agent
(docs/decisions.md, "CNI plugins").

The plugin binaries (``calicoctl/cni_client.py``) pass each invocation to
the agent's socket; ``CniPlugin.handle`` answers it: the request is parsed
by ``calicoctl.ops.cni_protocol``, the decisions are ``cni_logic``'s, the
kernel work is ``container add``'s (``calicoctl.ops.interfaces``) and the
addresses come from the same allocator as ``container add`` and the Docker
IPAM driver (``calicoctl.ops.allocator``), so no address is ever given
twice whoever asks.

What ADD of the calico plugin leaves for an attachment (network N,
container C, interface I; its ID A is ``cni_logic.calculate_attachment_id``):

- an address claim per subnet, owner ``<host>/cni/<N>/<C>/<I>``, made with
  a TTL and confirmed when the kernel work is done (a crash mid-way frees it);
- a veth: the InterfacePrefix + A on the host, its peer I created directly
  in C's namespace, both with the MTU that fits the pools (the LAN
  device's, less any encapsulation); the addresses as /32 (/128), a link
  route to the host's address and the default route via it; on the host
  proxy ARP/NDP and a route per address, as ``container add`` makes them;
- the endpoint ``/calico/v1/host/<host>/workload/cni/<C>/endpoint/<A>``
  with profile N (made with ``profile add``'s rules if missing), written
  last, create-only.

Any failure undoes what this call made (``Rollback``), never what another
made: a second ADD of a live attachment is refused before it changes
anything (one whose host interface is gone, as after a reboot that no DEL
followed, is replaced).
``calico-ipam`` on its own (for another main plugin) makes only the claims.
DEL undoes ADD and succeeds when things are already gone; GC removes what
attachments of N on this host that the runtime no longer lists hold.
Each attachment's work holds its container's lock (``host.locks``).
"""
import contextlib
import logging
import time

from calicoctl import model, validate
from calicoctl.errors import CalicoError, Conflict, HostNotReady, NotFound, ValidationError
from calicoctl.host import locks
from calicoctl.ops import allocator, cni_logic, interfaces
from calicoctl.ops import cni_protocol as protocol
from calicoctl.ops.cni_logic import ORCHESTRATOR
from calicoctl.ops.container_logic import calculate_host_net, calculate_veth_name
from calicoctl.ops.rollback import Rollback

LOG = logging.getLogger(__name__)


class CniPlugin:
    """Both plugins' commands on one host.

    :param datastore: a DatastoreClient (shared by the server's threads).
    :param host_netns: the namespace that plays the host (None: our own).
    :param lock_dir: where the per-container locks live.
    """

    def __init__(self, datastore, hostname, host_netns=None, lock_dir=locks.LOCK_DIR):
        self.datastore = datastore
        self.hostname = hostname
        self.host_netns = host_netns
        self.lock_dir = lock_dir

    def handle(self, frame):
        """One framed invocation from a plugin binary -> the framed reply."""
        started = time.monotonic()
        try:
            plugin, env, stdin = protocol.decode_request(frame)
        except protocol.CniError as exc:
            return protocol.encode_reply(1, protocol.render_failure(exc))
        status, output = protocol.respond(self.run, plugin, env, stdin, on_bug=_log_bug)
        LOG.info("CNI %s %s %s/%s -> %s (%.0f ms)", plugin, env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID", "-"),
                 env.get("CNI_IFNAME", "-"), "ok" if status == 0 else output.decode("utf-8", "replace"),
                 (time.monotonic() - started) * 1000)
        return protocol.encode_reply(status, output)

    def run(self, request):
        """Do one parsed request; returns a protocol.Result to print, or None."""
        ipam_only = request.plugin == protocol.IPAM_PLUGIN
        if request.command == "ADD":
            return self.assign(request) if ipam_only else self.add(request)
        if request.command == "DEL":
            return self.release(request) if ipam_only else self.delete(request)
        if request.command == "CHECK":
            return self.check_claims(request) if ipam_only else self.check(request)
        if request.command == "GC":
            return self.collect(request, endpoints=not ipam_only)
        return self.status(request)

    # -- ADD --------------------------------------------------------------------------------

    def add(self, request):
        from calicoctl.host import netlink
        attachment_id = cni_logic.calculate_attachment_id(request.network, *request.attachment)
        with locks.workload_lock(request.container_id, self.lock_dir):
            self._replace_dead(request, self._endpoint(request, attachment_id))
            veth = calculate_veth_name(attachment_id, self.datastore.get_interface_prefix(self.hostname))
            with netlink.Session(self.host_netns) as host, netlink.Session(request.netns) as cont, \
                    Rollback() as rollback:
                if cont.find_link(request.ifname) is not None:
                    raise protocol.CniError(protocol.INTERFACE_EXISTS, "The container already has an interface %s."
                                            % request.ifname)
                claimed = self._claim(request, rollback)
                self._ensure_profile(request.network)
                ips, gateways = [a.ip for a in claimed], _gateways(claimed)
                mtu = interfaces.workload_mtu(host, [gateways.get(4), gateways.get(6)], [a.pool for a in claimed])
                try:
                    interfaces.create_workload_veth(host, self.host_netns, veth, request.ifname, request.netns,
                                                    ipv6=any(ip.version == 6 for ip in ips), mtu=mtu)
                except netlink.AlreadyPresent:
                    raise protocol.CniError(protocol.INTERFACE_EXISTS, "Cannot create %s in the container: %s "
                                            "exists on the host." % (request.ifname, veth)) from None
                rollback.push("delete interface %s" % veth, lambda: netlink.delete_link(veth, self.host_netns))
                link = interfaces.configure_workload_veth(host, self.host_netns, cont, request.netns, veth,
                                                          request.ifname, ips, gateways)
                host_link = host.get_link(veth)
                self._confirm(request, claimed)
                self._write_endpoint(request, attachment_id, veth, link, ips, gateways)
        return cni_logic.calculate_add_result(request, host_link, link, ips, gateways)

    def _replace_dead(self, request, endpoint):
        """A second ADD of a live attachment is refused; the endpoint of one
        whose host interface is gone (its namespace died without a DEL, as
        at a reboot) is removed, with its claims, for the new one."""
        from calicoctl.host import netlink
        if endpoint is None:
            return
        if netlink.find_link(endpoint.name, self.host_netns) is not None:
            raise protocol.CniError(protocol.INTERFACE_EXISTS, "Container %s is already attached to %s as %s."
                                    % (request.container_id, request.network, request.ifname))
        LOG.warning("CNI ADD: endpoint %s of container %s has no interface %s any more; replacing it",
                    endpoint.endpoint_id, request.container_id, endpoint.name)
        self._release_claims(request, endpoint.addresses())
        self.datastore.remove_endpoint(endpoint.key)

    def assign(self, request):
        """calico-ipam's ADD: the claims alone."""
        with Rollback() as rollback:
            claimed = self._claim(request, rollback)
            self._confirm(request, claimed)
        return cni_logic.calculate_ipam_result(request, [a.ip for a in claimed], _gateways(claimed))

    def _check_addresses(self, request):
        """Every address's pool and this host's gateway (``allocator.check``;
        CNI's codes for what fails), claiming nothing."""
        with _cni_codes():
            for wanted in request.addresses:
                allocator.check(self.datastore, wanted, self.hostname)

    def _claim(self, request, rollback):
        """[allocator.Assignment] of the request's addresses, claimed until ``_confirm``."""
        owner = cni_logic.render_owner(self.hostname, request.network, *request.attachment)
        with _cni_codes():
            return [allocator.claim(self.datastore, wanted, owner, rollback, hostname=self.hostname)
                    for wanted in request.addresses]

    def _confirm(self, request, claimed):
        owner = cni_logic.render_owner(self.hostname, request.network, *request.attachment)
        for assignment in claimed:
            allocator.confirm_claim(self.datastore, assignment.pool, assignment.ip, owner)

    def _ensure_profile(self, network):
        """The network's profile, as ``profile add`` makes it, if there is none."""
        if not self.datastore.profile_exists(network):
            self.datastore.create_profile(model.Profile.new(network))

    def _write_endpoint(self, request, attachment_id, veth, link, ips, gateways):
        endpoint = model.Endpoint(
            key=model.EndpointKey(self.hostname, ORCHESTRATOR, request.container_id, attachment_id),
            name=veth, mac=link.mac, state="active", profile_ids=(request.network,),
            ipv4_nets=tuple(calculate_host_net(ip) for ip in ips if ip.version == 4),
            ipv6_nets=tuple(calculate_host_net(ip) for ip in ips if ip.version == 6),
            ipv4_gateway=gateways.get(4), ipv6_gateway=gateways.get(6), container_interface=request.ifname)
        try:
            self.datastore.write_endpoint(endpoint, create_only=True)
        except Conflict:
            raise protocol.CniError(protocol.INTERFACE_EXISTS, "Container %s is already attached to %s as %s."
                                    % (request.container_id, request.network, request.ifname)) from None

    def _endpoint(self, request, attachment_id):
        found = self.datastore.list_endpoints(self.hostname, ORCHESTRATOR, request.container_id, attachment_id)
        return found[0] if found else None

    # -- DEL --------------------------------------------------------------------------------

    def delete(self, request):
        """The veth (the container's end goes with it), the claims, the endpoint."""
        from calicoctl.host import netlink
        attachment_id = cni_logic.calculate_attachment_id(request.network, *request.attachment)
        with locks.workload_lock(request.container_id, self.lock_dir):
            endpoint = self._endpoint(request, attachment_id)
            veth = endpoint.name if endpoint is not None else \
                calculate_veth_name(attachment_id, self.datastore.get_interface_prefix(self.hostname))
            netlink.delete_link(veth, self.host_netns)
            self._release_claims(request, endpoint.addresses() if endpoint is not None else ())
            if endpoint is not None:
                self.datastore.remove_endpoint(endpoint.key)

    def release(self, request):
        """calico-ipam's DEL: the attachment's claims."""
        with locks.workload_lock(request.container_id, self.lock_dir):
            self._release_claims(request, ())

    def _release_claims(self, request, addresses):
        """Release the attachment's claims on ``addresses`` and those prevResult
        names (compare-and-delete on the owner: never someone else's); with
        neither, look for its claims in every pool."""
        owner = cni_logic.render_owner(self.hostname, request.network, *request.attachment)
        candidates = set(addresses)
        if request.prev_result is not None:
            candidates.update(ip.ip for ip in request.prev_result.ips)
        if not candidates:
            candidates = {ip for _, ip, holder in self._all_claims() if holder == owner}
        for address in sorted(candidates):
            allocator.release_address(self.datastore, validate.parse_ip(address), owner, allow_anonymous=False)

    def _all_claims(self):
        """(pool CIDR, ip, owner) of every claim, read pool by pool."""
        return [(cidr, ip, holder) for version in (4, 6) for cidr in self.datastore.list_claim_pools(version)
                for ip, holder in self.datastore.list_claim_owners(cidr).items()]

    # -- CHECK ------------------------------------------------------------------------------

    def check(self, request):
        """Compare the attachment with what ADD made; the first difference is the error."""
        from calicoctl.host import netlink
        expected = cni_logic.expected_addresses(request)
        owner = cni_logic.render_owner(self.hostname, request.network, *request.attachment)
        endpoint = self._endpoint(request, cni_logic.calculate_attachment_id(request.network, *request.attachment))
        seen = cni_logic.Observation(endpoint=endpoint)
        if endpoint is not None:
            with netlink.Session(self.host_netns) as host, netlink.Session(request.netns) as cont:
                seen = self._observe(endpoint, expected, host, cont, request.ifname)
        _raise_problems(cni_logic.calculate_check_problems(request, expected, owner, seen))

    def _observe(self, endpoint, expected, host, cont, ifname):
        host_link = host.find_link(endpoint.name)
        cont_link = cont.find_link(ifname)
        versions = sorted({6 if ":" in cidr else 4 for cidr in expected} | {4})
        return cni_logic.Observation(
            endpoint=endpoint, claims=self._claims(endpoint.addresses()), host_link=host_link,
            container_link=cont_link,
            container_addresses=tuple("%s/%d" % (address.ip, address.prefixlen)
                                      for address in cont.list_addresses(index=cont_link.index)) if cont_link else (),
            container_routes=tuple((route.dst, route.gateway) for version in versions
                                   for route in cont.list_routes(version, ifindex=cont_link.index, names=False))
            if cont_link else (),
            host_routes=tuple(dst for version in versions
                              for dst in host.list_device_routes(host_link.index, version)) if host_link else ())

    def check_claims(self, request):
        """calico-ipam's CHECK: every address of prevResult inside a Calico
        pool is claimed by this attachment."""
        if request.prev_result is None:
            raise protocol.CniError(protocol.INVALID_CONFIG, "CHECK needs the prevResult of the ADD.")
        owner = cni_logic.render_owner(self.hostname, request.network, *request.attachment)
        claims = self._claims([ip.ip for ip in request.prev_result.ips])
        _raise_problems([(protocol.CHECK_ADDRESS, "Address %s is %s." % (
            ip, "not claimed" if holder is None else "claimed by %s" % holder))
            for ip, holder in sorted(claims.items()) if holder != owner])

    def _claims(self, addresses):
        """{ip: owner or None} of the addresses inside a Calico pool."""
        found = {}
        for address in addresses:
            pool = self.datastore.pool_for_ip(validate.parse_ip(address))
            if pool is not None:
                found[address] = self.datastore.get_claim(pool.cidr, address)
        return found

    # -- GC and STATUS --------------------------------------------------------------------------

    def collect(self, request, endpoints=True):
        """Remove what attachments of the network on this host hold that the
        runtime does not list as valid; go on past failures, report them all."""
        from calicoctl.host import netlink
        valid = set(request.valid_attachments)
        problems = []
        if endpoints:
            stale = cni_logic.select_stale_endpoints(self.datastore.list_endpoints(self.hostname, ORCHESTRATOR),
                                                     request.network, valid)
            for endpoint in stale:
                LOG.warning("CNI GC: removing endpoint %s of container %s (%s)", endpoint.endpoint_id,
                            endpoint.key.workload_id, endpoint.container_interface)
                try:
                    with locks.workload_lock(endpoint.key.workload_id, self.lock_dir):
                        netlink.delete_link(endpoint.name, self.host_netns)
                        self.datastore.remove_endpoint(endpoint.key)
                except CalicoError as exc:
                    problems.append(str(exc))
        for cidr, ip, holder in cni_logic.select_stale_claims(self._all_claims(), self.hostname, request.network,
                                                              valid):
            LOG.warning("CNI GC: releasing %s (%s)", ip, holder)
            try:
                self.datastore.release_ip(cidr, ip, owner=holder, allow_anonymous=False)
            except CalicoError as exc:
                problems.append(str(exc))
        if problems:
            raise protocol.CniError(protocol.OTHER_FAILURE, "GC could not remove everything: %s"
                                    % "; ".join(problems))

    def status(self, request):
        """Ready for ADD: etcd answers, the network's subnets lie in pools,
        this host has its addresses (code 50 otherwise)."""
        try:
            self._check_addresses(request)
        except CalicoError as exc:
            raise protocol.CniError(protocol.NOT_AVAILABLE, "Not ready: %s" % exc) from None


def _gateways(claimed):
    """{IP version: gateway} of allocator.Assignments."""
    return {assignment.ip.version: assignment.gateway for assignment in claimed}


@contextlib.contextmanager
def _cni_codes():
    """The allocator's refusals as CniErrors with CNI's codes."""
    try:
        yield
    except HostNotReady as exc:
        raise protocol.CniError(protocol.HOST_NOT_READY, str(exc)) from None
    except (NotFound, ValidationError) as exc:
        raise protocol.CniError(protocol.INVALID_CONFIG, str(exc)) from None
    except Conflict as exc:
        raise protocol.CniError(protocol.ADDRESS_UNAVAILABLE, str(exc)) from None


def _raise_problems(problems):
    if problems:
        code, first = problems[0]
        raise protocol.CniError(code, first, details="; ".join(text for _, text in problems[1:]))


def _log_bug(exc):
    LOG.error("CNI request failed", exc_info=exc)
