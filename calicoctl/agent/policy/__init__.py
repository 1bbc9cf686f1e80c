"""The policy dataplanes: what etcd's policy becomes in this host's kernel.

Two implement the same policy (docs/dataplanes.md):

- ``nftables``: one nftables table (``inet calico``) in which endpoints are
  data (elements of sets), not chains, so that a change costs the same
  with 10,000 endpoints as with 100; programmed in the agent's process
  through libnftables, one atomic transaction per cycle;
- iptables (``calicoctl.agent.policy.iptables.dataplane``): Felix's chains, one pair per
  endpoint, through ``iptables-restore`` and ipsets.

Both are driven by the same pure index of etcd's policy
(``calicoctl.agent.state.PolicyIndex``).
"""
