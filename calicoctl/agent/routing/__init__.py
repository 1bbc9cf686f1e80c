"""How workload traffic gets where it goes: the components that program
routes, tunnels and NAT-outgoing from what etcd says.

- ``routes``: routes, proxy ARP/NDP and sysctls for this host's workload
  interfaces (``WorkloadRoutes``; ``InterfaceWatcher`` follows netlink);
- ``tunnels``: what the tunnel components share (``TunnelIndex``: pools, host
  addresses, VXLAN records) and their pure route plans;
- ``vxlan``, ``ipip``: routes to other hosts' workloads over ``vxlan.calico``
  or ``tunl0`` for pools that ask for it;
- ``nat``, ``nat_nftables``: masquerade for ``--nat-outgoing`` pools, with
  iptables and ipsets or with the nftables table ``ip calico-nat``.

BGP (BIRD, which tells other hosts these routes) is calicoctl.agent.bgp.
"""
