"""NAT-outgoing with the nftables dataplane: table ``ip calico-nat``.

The same rule as calicoctl.agent.routing.nat (traffic from a masquerade pool to
anywhere outside every pool leaves with the host's address), in a table of
its own written through libnftables in the agent's process::

    table ip calico-nat {
        set masq-pools { type ipv4_addr; flags interval; auto-merge; }
        set all-pools  { type ipv4_addr; flags interval; auto-merge; }
        chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr @masq-pools ip daddr != @all-pools masquerade
        }
    }

Each change rewrites the table whole in one batch (pools change rarely; one
atomic transaction never shows half a rule); with no masquerade pool left
the table goes. On its first apply it removes the iptables NAT rule and
sets, should the iptables dataplane have left them.
"""
import logging

from calicoctl.agent.routing.nat import NatOutgoing
from calicoctl.host import nftables as nftables_mod

LOG = logging.getLogger(__name__)

TABLE_REF = "ip calico-nat"


def render_nat_table(masq, all_pools):
    """The batch that replaces the table with one for these CIDRs (pure)."""
    lines = ["add table %s" % TABLE_REF, "delete table %s" % TABLE_REF, "add table %s" % TABLE_REF]
    for name, cidrs in (("masq-pools", masq), ("all-pools", all_pools)):
        lines.append("add set %s %s { type ipv4_addr; flags interval; auto-merge; }" % (TABLE_REF, name))
        lines.append("add element %s %s { %s }" % (TABLE_REF, name, ", ".join(cidrs)))
    lines += ["add chain %s postrouting { type nat hook postrouting priority srcnat; policy accept; }" % TABLE_REF,
              "add rule %s postrouting ip saddr @masq-pools ip daddr != @all-pools masquerade" % TABLE_REF]
    return "\n".join(lines) + "\n"


def remove_nat_table(nft):
    """Delete the table if it is there; True if it was."""
    if nft.list_json("table %s" % TABLE_REF) is None:
        return False
    nft.run("delete table %s\n" % TABLE_REF)
    return True


class NftablesNatOutgoing(NatOutgoing):
    """NatOutgoing writing ``ip calico-nat`` (see the module docstring).

    :param nft: a ``host.nftables.Nftables`` (tests give one in a netns).
    :param cleanup: called once before the first apply: removes the other
        dataplane's NAT.
    """

    def __init__(self, config, nft=None, cleanup=None):
        super().__init__(config)
        self._nft = nftables_mod.LazyNftables(nft)
        self._cleanup = cleanup

    @property
    def nft(self):
        return self._nft.get()

    def close(self):
        self._nft.close()

    def apply_sets(self, wanted):
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None
        if wanted == self._applied:
            return
        if wanted is None:
            if remove_nat_table(self.nft):
                LOG.info("NAT-outgoing: no masquerade pool left; table %s removed", TABLE_REF)
        else:
            self.nft.run(render_nat_table(*wanted))
            LOG.info("NAT-outgoing: masquerading %s to outside %s", ", ".join(wanted[0]), ", ".join(wanted[1]))
        self._applied = wanted
