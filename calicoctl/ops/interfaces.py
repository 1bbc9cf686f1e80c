"""The kernel steps of ``calicoctl container``: both ends of a workload's veth.

Both ends get the MTU that fits the workload's pools (``workload_mtu``). On
the host side: up, proxy ARP/NDP, a scope-link route per workload IP. In
the container: IPv6 switched on without DAD, a link route to the gateway
and the default route via it. ``host`` and ``cont`` are netlink Sessions of
the two namespaces.
"""
from calicoctl.ops.container_logic import calculate_host_net, calculate_workload_mtu, default_route


def workload_mtu(host, host_ips, pools):
    """The MTU of a workload veth whose addresses are in ``pools``
    (container_logic.calculate_workload_mtu). The LAN device is the
    interface holding this host's address as etcd records it (``host_ips``,
    the first one an interface holds counts; None entries are skipped)."""
    lan_mtu = None
    for ip in host_ips:
        lan_mtu = host.address_mtu(ip) if ip else None
        if lan_mtu:
            break
    return calculate_workload_mtu(lan_mtu, pools)


def create_workload_veth(host, host_netns, veth, peer_name, peer_netns=None, ipv6=False, mtu=None):
    """A workload's veth: ``veth`` on the host, its peer ``peer_name`` created
    in ``peer_netns`` (None: beside it, for Docker to move into the
    container), both ends with MTU ``mtu`` (see ``workload_mtu``). With
    ``ipv6`` the host end skips duplicate address detection. Raises
    netlink.AlreadyPresent when either name is taken."""
    from calicoctl.host import sysctl
    host.create_veth(veth, peer_name, peer_netns=peer_netns, mtu=mtu)
    if ipv6:
        sysctl.write("net/ipv6/conf/%s/accept_dad" % veth, 0, host_netns)


def configure_workload_veth(host, host_netns, cont, netns_path, veth, interface, ips, gateways):
    """Both ends of a just-created workload veth: in the container the
    addresses and the routes via each gateway (``{version: gateway}``), on
    the host the host side. Returns the container end's LinkInfo."""
    from calicoctl.host import sysctl
    link = cont.get_link(interface)
    if any(ip.version == 6 for ip in ips):
        enable_ipv6(netns_path, interface)
        sysctl.write("net/ipv6/conf/%s/accept_dad" % veth, 0, host_netns)
    cont.set_link_up(link.index)
    for ip in ips:
        cont.add_address(link.index, ip)
    for version in sorted(gateways):
        ensure_gateway_routes(cont, link, gateways[version])
    host_link = host.get_link(veth)
    ensure_host_side(host, host_netns, host_link, ips, gateways.get(6))
    return link


def lower_veth_mtu(host, cont, host_link, link, mtu):
    """Both ends of a workload veth down to ``mtu`` if either is above it."""
    for session, end in ((host, host_link), (cont, link)):
        if end.mtu is None or end.mtu > mtu:
            session.set_link_mtu(end.index, mtu)


def ensure_host_side(host, host_netns, link, ips, gateway6=None):
    """Host end of a workload veth: up, proxy ARP/NDP, a scope-link route per IP."""
    from calicoctl.host import sysctl
    host.set_link_up(link.index)
    sysctl.write("net/ipv4/conf/%s/proxy_arp" % link.name, 1, host_netns)
    sysctl.write("net/ipv4/neigh/%s/proxy_delay" % link.name, 0, host_netns)
    if any(ip.version == 6 for ip in ips):
        ensure_host_side_v6(host, host_netns, link, gateway6)
    for ip in ips:
        host.replace_route(calculate_host_net(ip), link.index, scope_link=True)


def ensure_host_side_v6(host, host_netns, link, gateway6):
    from calicoctl.host import sysctl
    sysctl.write("net/ipv6/conf/%s/proxy_ndp" % link.name, 1, host_netns)
    sysctl.write("net/ipv6/neigh/%s/proxy_delay" % link.name, 0, host_netns)
    if gateway6:
        # The gateway is the host's own address, not on this link: answer the
        # container's neighbour solicitations for it.
        host.add_proxy_neighbour(gateway6, link.index)


def enable_ipv6(netns, interface):
    """IPv6 on our interface inside the container, without duplicate address detection.

    Docker turns IPv6 off by default in containers whose networks have none
    (``--net=none`` always), and new interfaces inherit that. DAD would keep
    the link-local addresses, and so neighbour discovery, unusable for a
    second or two; on a point-to-point veth there is nobody to clash with.
    """
    from calicoctl.host import sysctl
    sysctl.write("net/ipv6/conf/%s/accept_dad" % interface, 0, netns)
    sysctl.write("net/ipv6/conf/%s/disable_ipv6" % interface, 0, netns)


def ensure_gateway_routes(cont, link, gateway):
    """Inside the container: a link route to the gateway, then the default route via it."""
    version = 6 if ":" in gateway else 4
    cont.replace_route("%s/%d" % (gateway, 128 if version == 6 else 32), link.index, scope_link=True)
    cont.replace_route(default_route(version), link.index, gateway=gateway)


def find_container_link(cont, host_link, interface):
    """The container's end of our veth: ``interface`` if it is our peer, else
    whichever interface is (the user may have added it under another name)."""
    if host_link is None:
        return None
    named = cont.find_link(interface) if interface else None
    if named is not None and named.peer_index == host_link.index:
        return named
    for link in cont.list_links():
        if link.peer_index == host_link.index and link.kind == "veth":
            return link
    return None


def restore_address(netns, index, ip):
    from calicoctl.host import netlink
    with netlink.Session(netns) as session:
        session.add_address(index, ip)
