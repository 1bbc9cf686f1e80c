"""Keep iptables' filter chains from dropping what ``inet calico`` accepted.

nftables runs every base chain registered on a hook, and a packet must be
accepted by all of them: our table's ``accept`` does not override the drop
policy Docker gives iptables' FORWARD chain once it enables forwarding (nor
a host firewall's INPUT rules). So while iptables' filter table exists
(``ip filter`` / ``ip6 filter``, as iptables-nft makes it), its FORWARD
chain gets, at the top, an accept for traffic from and to workload
interfaces, and its INPUT chain one from them when
``DefaultEndpointToHostAction`` is ACCEPT. That is safe because our table
has already dropped whatever policy denies; it is what the iptables
dataplane's jump to ``felix-FORWARD`` does too.

The rules carry a comment starting ``calico-nftables`` (``iptables-save``
shows them as ``-i cali+ -m comment --comment ... -j ACCEPT``), by which
they are found again and removed (dataplane switch, prefix change); no
other rule of those chains is touched, and a table that is not there is
not made. Written in-process through libnftables, so checking them every
few seconds costs no process. (iptables' legacy back end is out of sight of
nftables: with it, use the iptables dataplane.)
"""
import logging

from calicoctl.agent.policy.nftables.rules import quote
from calicoctl.errors import CalicoError

LOG = logging.getLogger(__name__)

COMMENT = "calico-nftables"
FAMILIES = ("ip", "ip6")


def wanted_rules(prefix, host_action):
    """{(chain, comment): rule text} to keep in each family's filter table (pure)."""
    workload = quote(prefix + "*")
    wanted = {
        ("FORWARD", "%s from %s*" % (COMMENT, prefix)): "iifname %s counter accept" % workload,
        ("FORWARD", "%s to %s*" % (COMMENT, prefix)): "oifname %s counter accept" % workload,
    }
    if host_action == "ACCEPT":
        wanted[("INPUT", "%s from %s*" % (COMMENT, prefix))] = "iifname %s counter accept" % workload
    return wanted


def plan_commands(family, listings, wanted):
    """nft commands that make ``family``'s filter table hold exactly our
    ``wanted`` rules (pure).

    :param listings: {chain: nft JSON objects of ``list chain``, or None
        when the chain does not exist}.
    """
    commands = []
    present = {}
    for chain, objects in listings.items():
        for item in objects or ():
            rule = item.get("rule")
            if rule and str(rule.get("comment", "")).startswith(COMMENT):
                present[(chain, rule["comment"])] = rule["handle"]
    for (chain, comment), handle in sorted(present.items()):
        if (chain, comment) not in wanted:
            commands.append("delete rule %s filter %s handle %d" % (family, chain, handle))
    for (chain, comment), text in sorted(wanted.items()):
        if listings.get(chain) is not None and (chain, comment) not in present:
            commands.append("insert rule %s filter %s %s comment %s" % (family, chain, text, quote(comment)))
    return commands


class Coexistence:
    """Checks and writes our rules in iptables' filter chains (see the module docstring).

    :param nft: a callable returning the dataplane's ``host.nftables.Nftables``.
    """

    def __init__(self, nft):
        self._nft = nft

    def check(self, prefix, host_action):
        self._apply(wanted_rules(prefix, host_action))

    def remove(self):
        """Take our rules out of iptables' chains (another dataplane takes over)."""
        self._apply({})

    def _apply(self, wanted):
        nft = self._nft()
        for family in FAMILIES:
            try:
                listings = {chain: nft.list_json("chain %s filter %s" % (family, chain))
                            for chain in ("FORWARD", "INPUT")}
                commands = plan_commands(family, listings, wanted)
                if commands:
                    nft.run("\n".join(commands) + "\n")
                    LOG.info("iptables' %s filter table: %s", family, "; ".join(commands))
            except CalicoError as exc:
                LOG.warning("Cannot keep our rules in iptables' %s filter table: %s", family, exc)
