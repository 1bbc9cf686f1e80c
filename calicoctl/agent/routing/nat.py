"""NAT-outgoing for ``--nat-outgoing`` pools (nat table, IPv4; docs/decisions.md, "NAT-outgoing").

Traffic from an address in a masquerade pool to anywhere outside *all*
pools leaves the host with the host's address (MASQUERADE); traffic between
pools never is rewritten. Two ``hash:net`` ipsets hold the CIDRs, so the
rule stays one line however many pools there are:

    -A calico-nat-outgoing -m set --match-set calico-masq-pools src
        -m set ! --match-set calico-all-pools dst -j MASQUERADE

and ``POSTROUTING`` jumps to ``calico-nat-outgoing`` (first rule). Sets are
refilled atomically (``Ipsets.replace``: fill a temporary set, swap it in);
iptables changes go in one ``iptables-restore --noflush`` batch that
touches only our chain and our one jump. With no masquerade pool left, the jump, the chain and both
sets are removed.
"""
import logging

from calicoctl.agent.component import ReconcilingComponent
from calicoctl.agent.keys import Kind
from calicoctl.agent.routing.tunnels import TunnelIndex
from calicoctl.host.ipsets import Ipsets
from calicoctl.host.iptables import IptablesTable

LOG = logging.getLogger(__name__)

CHAIN = "calico-nat-outgoing"
MASQ_SET = "calico-masq-pools"
ALL_SET = "calico-all-pools"
SET_TYPE = "hash:net"
RESYNC_INTERVAL = 60.0
RETRY_INTERVAL = 2.0


# -- pure ----------------------------------------------------------------------------

def calculate_nat_sets(pools):
    """(masquerade CIDRs, all CIDRs) of the IPv4 pools, or None when nothing
    is masqueraded (pure)."""
    v4 = sorted(pool.cidr for pool in pools if pool.version == 4)
    masq = sorted(pool.cidr for pool in pools if pool.version == 4 and pool.masquerade)
    if not masq:
        return None
    return tuple(masq), tuple(v4)


RULE = ("-m set --match-set %s src -m set ! --match-set %s dst -j MASQUERADE" % (MASQ_SET, ALL_SET))
JUMP = "-j %s" % CHAIN


def render_nat_restore(chains, active):
    """``iptables-restore --noflush`` input for the nat table (pure).

    :param chains: {chain: [rule, ...]} of the nat table now (rules as
        printed after ``-A <chain>``).
    :param active: whether the masquerade rule should exist.
    :return: the input text, or None if nothing needs doing.
    """
    has_chain = CHAIN in chains
    hooked = JUMP in chains.get("POSTROUTING", [])
    if active:
        if has_chain and hooked and chains[CHAIN] == [RULE]:
            return None
        lines = ["*nat", ":%s - [0:0]" % CHAIN, "-F %s" % CHAIN, "-A %s %s" % (CHAIN, RULE)]
        if not hooked:
            lines.append("-I POSTROUTING 1 %s" % JUMP)
    else:
        if not has_chain and not hooked:
            return None
        lines = ["*nat"]
        if hooked:
            lines.append("-D POSTROUTING %s" % JUMP)
        if has_chain:
            lines += ["-F %s" % CHAIN, "-X %s" % CHAIN]
    return "\n".join(lines + ["COMMIT"]) + "\n"


# -- effects ---------------------------------------------------------------------------

class NatOutgoing(ReconcilingComponent):
    """Keeps the masquerade rule and its ipsets in line with the pools."""

    label = "NAT-outgoing"
    kinds = frozenset((Kind.POOL,))
    resync_interval = RESYNC_INTERVAL
    retry_interval = RETRY_INTERVAL

    def __init__(self, config, ipsets=None, nat_table=None):
        super().__init__()
        self.index = TunnelIndex()
        """The view's TunnelIndex (its pools)."""
        self._ipsets = ipsets or Ipsets()
        # The same iptables back end as the policy dataplane: rules of both
        # kinds in one namespace would be two rule sets nobody sees at once.
        self._table = nat_table or IptablesTable(4, "nat", backend=getattr(config, "iptables_backend", "nft"))
        self._applied = "unknown"
        """The (masq, all) sets last applied, None for "removed"."""

    def on_snapshot(self, view):
        self.index = view.tunnels
        self.mark_dirty()

    def on_update(self, key, value):
        self.mark_dirty()

    def forget_kernel_state(self):
        # Someone may have flushed the nat table: check it again.
        self._applied = "unknown"

    def apply(self):
        self.apply_sets(calculate_nat_sets(self.index.pools.values()))

    def apply_sets(self, wanted):
        if wanted == self._applied:
            return
        table = self._table
        chains = table.read()
        if wanted is not None:
            for name, members in ((MASQ_SET, wanted[0]), (ALL_SET, wanted[1])):
                self._ipsets.replace(name, SET_TYPE, "inet", members)
            text = render_nat_restore(chains, True)
            if text:
                table.restore(text)
            LOG.info("NAT-outgoing: masquerading %s to outside %s", ", ".join(wanted[0]),
                     ", ".join(wanted[1]))
        else:
            text = render_nat_restore(chains, False)
            if text:
                table.restore(text)
                LOG.info("NAT-outgoing: no masquerade pool left; rule removed")
            # The rule no longer references them (absent already is fine).
            self._ipsets.destroy([MASQ_SET, ALL_SET])
        self._applied = wanted
