"""The iptables policy dataplane: Felix's chains (one pair per endpoint) and
ipsets, programmed through ``iptables-restore`` and netlink.

- ``rules``: pure rendering of policy into chains (the layout is its docstring);
- ``chaintree``: the trees that dispatch on interface names and match tags;
- ``plan``: pure planner, the desired chains and sets and what changed;
- ``set_reconciler``, ``chain_reconciler``: what is programmed vs desired,
  and the order writes and deletions must go in;
- ``dataplane``: the component that sequences them (``PolicyDataplane``).
"""
