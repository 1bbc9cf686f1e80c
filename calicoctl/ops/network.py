"""Docker networks on Calico: the workflows behind the calico network driver
and the calico-ipam IPAM driver (docs/decisions.md, "Docker networks").

``DockerPlugin`` answers each request Docker makes (parsed by
``calicoctl.ops.plugin_protocol``) with etcd, the kernel and, for what the
protocol does not say (a network's name), Docker's own API. Every piece of
state is in etcd (docs/etcd-layout.md): the networks of this host, the
profile of each network, the endpoints, the address claims.

- A network is the profile of its name: created (with the default rules of
  ``profile add``) if it does not exist, kept if it does. Docker does not
  tell the driver the name in CreateNetwork, so it is looked up from Docker
  right after (a thread; Docker answers once the network is stored) and at
  the latest in CreateEndpoint.
- Addresses: calico-ipam claims them with ``calicoctl.ops.allocator``,
  owner ``<host>/libnetwork/ipam``, released on ReleaseAddress.
- Endpoints: ``/calico/v1/host/<h>/workload/libnetwork/<endpoint>/endpoint/<endpoint>``
  with the Docker endpoint ID, profile ``<network name>``; the veth is made
  by the code ``container add`` uses (``calicoctl.ops.interfaces``), its
  container end left on the host for Docker to move in at Join.
- ``reconcile`` removes what Docker no longer knows (a dockerd that died
  cannot tell us), only after seeing it missing twice, or at once for an
  endpoint whose veth is gone too (its container died unseen: a power-off).
- ``start_abandoned`` starts the containers Docker gave up on at boot
  because the plugins were not there yet.
"""
import logging
import threading
import time

from calicoctl import model, validate
from calicoctl.errors import CalicoError, Conflict, NotFound, ValidationError
from calicoctl.ops import allocator, interfaces
from calicoctl.ops import plugin_protocol as protocol
from calicoctl.ops.container_logic import LIBNETWORK_ORCHESTRATOR as ORCHESTRATOR
from calicoctl.ops.container_logic import calculate_host_net, calculate_veth_name
from calicoctl.ops.rollback import Rollback

LOG = logging.getLogger(__name__)
NAME_LOOKUP_TIMEOUT = 10.0


def render_ipam_owner(hostname):
    """The value of calico-ipam's claims on one host."""
    return "%s/%s/ipam" % (hostname, ORCHESTRATOR)


class DockerPlugin:
    """The two drivers' workflows on one host.

    :param datastore: a DatastoreClient (its own connection: requests come
        from the server's threads).
    :param docker: a DockerAdapter for this host's dockerd.
    :param host_netns: the namespace that plays the host (None: our own).
    """

    def __init__(self, datastore, docker, hostname, host_netns=None):
        self.datastore = datastore
        self.docker = docker
        self.hostname = hostname
        self.host_netns = host_netns
        self._suspects = set()
        self._lock = threading.Lock()

    # -- routes for the two sockets -----------------------------------------------

    def network_routes(self):
        def ok(_body):
            return {}
        return {
            "/Plugin.Activate": lambda _body: protocol.render_activate(["NetworkDriver"]),
            "/NetworkDriver.GetCapabilities": lambda _body: {"Scope": "local"},
            "/NetworkDriver.CreateNetwork": lambda body: self.create_network(
                protocol.parse_network_request(body)),
            "/NetworkDriver.DeleteNetwork": lambda body: self.delete_network(protocol.parse_network_id(body)),
            "/NetworkDriver.CreateEndpoint": lambda body: self.create_endpoint(
                protocol.parse_endpoint_request(body)),
            "/NetworkDriver.EndpointOperInfo": lambda _body: {"Value": {}},
            "/NetworkDriver.DeleteEndpoint": lambda body: self.delete_endpoint(
                *protocol.parse_endpoint_ids(body)),
            "/NetworkDriver.Join": lambda body: self.join(*protocol.parse_join(body)),
            "/NetworkDriver.Leave": ok,
            "/NetworkDriver.DiscoverNew": ok,
            "/NetworkDriver.DiscoverDelete": ok,
            "/NetworkDriver.ProgramExternalConnectivity": ok,
            "/NetworkDriver.RevokeExternalConnectivity": ok,
        }

    def ipam_routes(self):
        return {
            "/Plugin.Activate": lambda _body: protocol.render_activate(["IpamDriver"]),
            "/IpamDriver.GetCapabilities": lambda _body: {"RequiresMACAddress": False},
            "/IpamDriver.GetDefaultAddressSpaces": lambda _body: dict(protocol.ADDRESS_SPACES),
            "/IpamDriver.RequestPool": lambda body: self.request_pool(protocol.parse_pool_request(body)),
            "/IpamDriver.ReleasePool": lambda _body: {},
            "/IpamDriver.RequestAddress": lambda body: self.request_address(
                protocol.parse_address_request(body)),
            "/IpamDriver.ReleaseAddress": lambda body: self.release_address(
                *protocol.parse_release_address(body)),
        }

    # -- IPAM -------------------------------------------------------------------------

    def request_pool(self, request):
        """Check the subnet against the Calico pools (NotFound names them)."""
        pools = self.datastore.list_pools(request.version)
        allocator.choose_pool(pools, request.version, request.cidr)
        return protocol.render_pool(request)

    def request_address(self, request):
        version, cidr = protocol.parse_pool_id(request.pool_id)
        wanted = allocator.AddressRequest(version=version, ip=request.ip, cidr=cidr)
        return protocol.render_address(allocator.claim(self.datastore, wanted, render_ipam_owner(self.hostname)).ip)

    def release_address(self, _pool_id, ip):
        allocator.release_address(self.datastore, ip, render_ipam_owner(self.hostname), allow_anonymous=False)
        return {}

    # -- networks -----------------------------------------------------------------------

    def create_network(self, request):
        """Record the network; its name and profile follow on a thread once
        Docker has stored it (Docker does not say the name in this request)."""
        record = self.datastore.get_docker_network(self.hostname, request.network_id)
        if record is None:
            self.datastore.write_docker_network(self.hostname, model.DockerNetwork(request.network_id))
        if record is None or record.name is None:
            threading.Thread(target=self._adopt_name_soon, args=(request.network_id,),
                             name="network-name", daemon=True).start()
        else:
            self.adopt_name(request.network_id)
        return {}

    def _adopt_name_soon(self, network_id):
        deadline = time.monotonic() + NAME_LOOKUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.adopt_name(network_id) is not None:
                    return
            except CalicoError as exc:
                LOG.info("Cannot name network %s yet: %s", network_id, exc)
            # Docker stores the network as soon as we answer; the user may ask
            # for its profile right after `docker network create` returns.
            time.sleep(0.005 if time.monotonic() < deadline - NAME_LOOKUP_TIMEOUT + 2 else 0.05)
        LOG.warning("Docker did not show network %s within %.0f s; its profile is made at its first "
                    "endpoint", network_id, NAME_LOOKUP_TIMEOUT)

    def adopt_name(self, network_id):
        """The network's DockerNetwork with its name (from etcd, else Docker),
        its profile created if missing; None while Docker does not show it."""
        with self._lock:
            stored = record = self.datastore.get_docker_network(self.hostname, network_id)
            if record is None or record.name is None:
                info = self.docker.inspect_network(network_id)
                if info is None:
                    return None
                record = model.DockerNetwork(network_id, name=info.name)
            if not self.datastore.profile_exists(record.name) \
                    and self.datastore.create_profile(model.Profile.new(record.name)):
                record = model.DockerNetwork(network_id, name=record.name, created_profile=True)
            if record != stored:
                self.datastore.write_docker_network(self.hostname, record)
            return record

    def delete_network(self, network_id):
        """Forget the network; remove its profile only if the driver created it
        and neither another host's network of that name nor an endpoint uses it."""
        record = self.datastore.get_docker_network(self.hostname, network_id)
        self.datastore.remove_docker_network(self.hostname, network_id)
        if record is None or record.name is None or not record.created_profile:
            return {}
        others = [(host, net) for host, net in self.datastore.list_docker_networks() if net.name == record.name]
        if others:
            host, other = others[0]      # the flag moves to a network that remains
            self.datastore.write_docker_network(host, model.DockerNetwork(
                other.network_id, other.name, created_profile=True))
            return {}
        if not any(record.name in ep.profile_ids for ep in self.datastore.list_endpoints()):
            self.datastore.remove_profile(record.name)
        return {}

    # -- endpoints ------------------------------------------------------------------------

    def create_endpoint(self, request):
        """The veth (container end left for Docker), host side as ``container
        add`` makes it, and the endpoint in etcd with the network's profile."""
        from calicoctl.host import netlink
        record = self.adopt_name(request.network_id)
        if record is None:
            raise NotFound("Docker does not know network %s." % request.network_id)
        ips = [ip for ip in (request.ipv4, request.ipv6) if ip is not None]
        gateways, pools = {}, []
        for ip in ips:
            pools.append(self.datastore.pool_for_ip(ip))
            if pools[-1] is None:
                raise ValidationError("IP %s is not in any Calico pool." % ip)
            gateways[ip.version] = self._host_ip(ip.version)
        endpoint_id = request.endpoint_id
        existing = self.datastore.list_endpoints(self.hostname, ORCHESTRATOR, endpoint_id, endpoint_id)
        if existing:
            return self._mac_reply(request, existing[0].mac)    # Docker retried
        mac = request.mac or protocol.generate_mac()
        veth = calculate_veth_name(endpoint_id, self.datastore.get_interface_prefix(self.hostname))
        with netlink.Session(self.host_netns) as host, Rollback() as rollback:
            mtu = interfaces.workload_mtu(host, [gateways.get(4), gateways.get(6)], pools)
            try:
                interfaces.create_workload_veth(host, self.host_netns, veth,
                                                protocol.calculate_temp_name(endpoint_id),
                                                ipv6=request.ipv6 is not None, mtu=mtu)
            except netlink.AlreadyPresent:
                raise Conflict("Interface %s already exists on this host." % veth) from None
            rollback.push("delete interface %s" % veth, lambda: netlink.delete_link(veth, self.host_netns))
            interfaces.ensure_host_side(host, self.host_netns, host.get_link(veth), ips, gateways.get(6))
            endpoint = model.Endpoint(
                key=model.EndpointKey(self.hostname, ORCHESTRATOR, endpoint_id, endpoint_id),
                name=veth, mac=mac.lower(), state="active", profile_ids=(record.name,),
                ipv4_nets=tuple(calculate_host_net(ip) for ip in ips if ip.version == 4),
                ipv6_nets=tuple(calculate_host_net(ip) for ip in ips if ip.version == 6),
                ipv4_gateway=gateways.get(4), ipv6_gateway=gateways.get(6))
            self.datastore.write_endpoint(endpoint, create_only=True)
        return self._mac_reply(request, mac)

    @staticmethod
    def _mac_reply(request, mac):
        # Docker takes a MAC from the driver only when it chose none itself.
        return {} if request.mac else {"Interface": {"MacAddress": mac}}

    def _host_ip(self, version):
        gateway = self.datastore.get_host_ip(self.hostname, version)
        if gateway is None:
            raise NotFound("Host %s has no IPv%d address in etcd: run `calicoctl node%s` first."
                           % (self.hostname, version, " --ip6=<IPv6>" if version == 6 else ""))
        return gateway

    def _endpoint(self, endpoint_id):
        found = self.datastore.list_endpoints(self.hostname, ORCHESTRATOR, endpoint_id, endpoint_id)
        if not found:
            raise NotFound("Endpoint %s is not a calico endpoint on host %s." % (endpoint_id, self.hostname))
        return found[0]

    def join(self, _network_id, endpoint_id, sandbox_key):
        """Where the container already routes through another interface (a
        second calico network), the new one gets no gateway of that version."""
        from calicoctl.host import netlink
        endpoint = self._endpoint(endpoint_id)
        routed = []
        try:
            with netlink.Session(sandbox_key) as sandbox:
                routed = [version for version in (4, 6)
                          if any(route.dst == "default" for route in sandbox.list_routes(version))]
        except netlink.NetlinkError as exc:
            LOG.info("Cannot look into sandbox %s (%s); routing through the new interface", sandbox_key, exc)
        return protocol.render_join(endpoint, routed)

    def delete_endpoint(self, _network_id, endpoint_id):
        """Delete the endpoint, then its veth (if Docker has not taken its
        peer away with the container's namespace): in that order an endpoint
        whose veth is gone is always a dead one (``reconcile``). The address
        is calico-ipam's to release (ReleaseAddress follows)."""
        from calicoctl.host import netlink
        existing = self.datastore.list_endpoints(self.hostname, ORCHESTRATOR, endpoint_id, endpoint_id)
        veth = existing[0].name if existing else \
            calculate_veth_name(endpoint_id, self.datastore.get_interface_prefix(self.hostname))
        self.datastore.remove_workload(self.hostname, ORCHESTRATOR, endpoint_id)
        netlink.delete_link(veth, self.host_netns)
        return {}

    # -- reconciliation ---------------------------------------------------------------------

    def reconcile(self):
        """Remove endpoints and IPAM claims of this host that Docker no longer
        has, and records of networks it no longer has; each only once it was
        missing at two calls in a row (a ``docker run`` may be between
        RequestAddress and Join), except an endpoint whose veth is gone as
        well: its container died without Docker telling us (a power-off), so
        it goes at once and a container that asks for its address again
        (``--ip``) gets it. An endpoint's addresses are released with it
        unless one of Docker's endpoints has them again. Returns what was
        removed."""
        networks = self.docker.list_networks(protocol.NETWORK_DRIVER)
        live_endpoints = {ep for net in networks for ep in net.endpoint_ids}
        in_use = {ip for net in networks for ip in net.addresses}
        live_addresses = set(in_use)
        live_networks = {net.id for net in networks}
        missing, dead = set(), set()
        ours = {endpoint.endpoint_id: endpoint
                for endpoint in self.datastore.list_endpoints(self.hostname, ORCHESTRATOR)}
        for endpoint in ours.values():
            if endpoint.endpoint_id not in live_endpoints:
                (dead if self._veth_gone(endpoint) else missing).add(("endpoint", endpoint.endpoint_id))
                live_addresses.update(endpoint.addresses())     # released with the endpoint, below
        owner = render_ipam_owner(self.hostname)
        for version in (4, 6):
            for cidr in self.datastore.list_claim_pools(version):
                for ip, holder in self.datastore.list_claim_owners(cidr).items():
                    if holder == owner and ip not in live_addresses:
                        missing.add(("claim", ip))
        for _host, record in self.datastore.list_docker_networks(self.hostname):
            if record.network_id not in live_networks:
                missing.add(("network", record.network_id))
        confirmed, self._suspects = (missing & self._suspects) | dead, missing
        for kind, ident in sorted(confirmed):
            LOG.warning("Docker no longer has %s %s; removing it", kind, ident)
            if kind == "endpoint":
                self.delete_endpoint(None, ident)
                addresses = [ip for ip in ours[ident].addresses() if ip not in in_use]
            elif kind == "claim":
                addresses = [ident]
            else:
                self.delete_network(ident)
                addresses = []
            for address in addresses:
                allocator.release_address(self.datastore, validate.parse_ip(address), owner, allow_anonymous=False)
        return sorted(confirmed)

    def _veth_gone(self, endpoint):
        """True if the endpoint's host-side veth is not there (False on any doubt)."""
        from calicoctl.host import netlink
        try:
            return netlink.find_link(endpoint.name, self.host_netns) is None
        except netlink.NetlinkError:
            return False

    def start_abandoned(self):
        """Start the containers Docker gave up on because our plugins were not
        there when it started (``lifecycle_logic.should_start_abandoned``:
        stopped for that reason, and its restart policy says it runs).
        Returns [(ContainerInfo, None, or why its start failed)]."""
        from calicoctl.errors import DockerUnavailable
        from calicoctl.ops.lifecycle_logic import should_start_abandoned
        plugins = (protocol.NETWORK_DRIVER, protocol.IPAM_DRIVER)
        networks = {net.id for net in self.docker.list_networks(protocol.NETWORK_DRIVER)}
        outcomes = []
        for container_id in sorted(self.docker.list_container_ids(status="exited")):
            try:
                info = self.docker.inspect(container_id)
            except NotFound:
                continue            # removed meanwhile
            if not should_start_abandoned(info, networks, plugins):
                continue
            try:
                self.docker.start(info.id)
            except DockerUnavailable:
                raise
            except NotFound:
                continue
            except CalicoError as exc:
                outcomes.append((info, str(exc)))
                continue
            outcomes.append((info, None))
        return outcomes
