"""The nftables policy dataplane: one table (``inet calico``) programmed
through libnftables (docs/architecture.md, "The policy dataplanes").

- ``rules``: pure rendering of policy into nftables rules and sets;
- ``plan``: pure planner, the wanted table and what changed in it;
- ``transaction``: pure, wanted vs programmed -> one ordered batch;
- ``coexistence``: our accepts in iptables' FORWARD/INPUT;
- ``dataplane``: the component that sends the batches (``NftablesDataplane``).
"""
