"""Pure rendering of Calico policy into one nftables table, ``inet calico``.

No I/O: names, set types, elements and rule texts (nft's own language),
tested without a kernel. The same policy as the iptables dataplane
(calicoctl.agent.policy.iptables.rules has Felix's model); only its shape differs.

Base chains and verdicts
~~~~~~~~~~~~~~~~~~~~~~~~
Three base chains are the table's only entries from netfilter's hooks; each
sends workload traffic on and lets everything else go (policy accept):

- ``forward-out`` (hook forward, priority -10): from a workload interface,
  through ``wl-forward-out`` to the sender's outbound policy (``from-wl``);
- ``forward-in`` (hook forward, priority -5): to a workload interface,
  through ``wl-forward-in`` to the receiver's inbound policy (``to-wl``);
- ``input`` (hook input, priority -10): from a workload to this host, through
  ``wl-to-host``: the control-plane ports, DHCP, DNS and neighbour discovery,
  then ``DefaultEndpointToHostAction`` (DROP, or the outbound policy).

A profile's allow rule is ``accept``, a deny ``drop``; a packet no rule
matches falls through to the endpoint's next profile, and after the last
one it is dropped. Each base chain jumps to its chain and drops what comes
back, so an empty chain (say, its rules refused by the kernel) drops
workload traffic rather than letting it through. An ``accept`` ends only the base chain it was reached
from, which is why the two directions have a base chain each: a packet
between two workloads is accepted by its sender's outbound policy in
``forward-out``, then judged by its receiver's inbound policy in
``forward-in``. (It also means an accept here does not override another
table's drop, such as Docker's FORWARD policy: see the dataplane.)

Endpoints are data, not chains
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A local endpoint is a handful of set elements:

- ``ep-addr4`` / ``ep-addr6`` (interface . address): a packet from a
  workload must come from one of its endpoint's addresses, and one to a
  workload must be for one of them (so a family the endpoint has no address
  of gets nothing, as in the iptables dataplane);
- ``ep-mac`` (interface . MAC), or ``ep-anymac`` (interface) for an endpoint
  that records no MAC: anti-spoofing by MAC;
- ``ps-<id>`` (interface): its *profile set*, the ordered list of its
  profiles. Each distinct list has one such set and two chains,
  ``ps-<id>-o`` and ``ps-<id>-i``, that jump to the profiles' chains in
  order; ``from-wl`` and ``to-wl`` test the interface against each
  profile set in turn: one rule per distinct list of profiles, not per
  endpoint.

At each commit the kernel validates the chains reachable from the hooks
(and the elements of verdict maps), never the elements of plain sets: with
endpoints as elements, adding one, or changing a profile's rules, costs the
same with 10,000 endpoints as with 100 (docs/dataplanes.md has the figures).

Tags and the control plane
~~~~~~~~~~~~~~~~~~~~~~~~~~
Every tag a local profile names has a set of addresses per family
(``t4-<tag>``, ``t6-<tag>``); the protected control-plane addresses are
``cp4`` / ``cp6``. Sets have no budget here: nftables sets are not a
per-namespace resource the way ipsets are.
"""
import hashlib
import ipaddress
import json

from calicoctl.agent.policy.iptables.rules import ICMPV6_HOST_TYPES, applies_to_family, shorten_name
from calicoctl.rulemodel import ICMP_FAMILY

TABLE = "calico"
FAMILY = "inet"
TABLE_REF = "%s %s" % (FAMILY, TABLE)

# Base chains: name -> what nft needs to hook it.
BASE_CHAINS = {
    "forward-out": "type filter hook forward priority -10; policy accept;",
    "forward-in": "type filter hook forward priority -5; policy accept;",
    "input": "type filter hook input priority -10; policy accept;",
}
FORWARD_OUT, FORWARD_IN, WL_TO_HOST = "wl-forward-out", "wl-forward-in", "wl-to-host"
FROM_WL, TO_WL = "from-wl", "to-wl"

EP_ADDR = {4: "ep-addr4", 6: "ep-addr6"}
EP_MAC = "ep-mac"
EP_ANY_MAC = "ep-anymac"
CONTROL_PLANE_SET = {4: "cp4", 6: "cp6"}
ADDRESS_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
IP_WORD = {4: "ip", 6: "ip6"}
NFPROTO = {4: "ipv4", 6: "ipv6"}

SET_TYPES = {
    EP_ADDR[4]: "type ifname . ipv4_addr;",
    EP_ADDR[6]: "type ifname . ipv6_addr;",
    EP_MAC: "type ifname . ether_addr;",
    EP_ANY_MAC: "type ifname;",
    CONTROL_PLANE_SET[4]: "type ipv4_addr;",
    CONTROL_PLANE_SET[6]: "type ipv6_addr;",
}
"""The sets every table has (profile sets and tag sets come and go)."""
PROFILE_SET_TYPE = "type ifname;"

DIRECTION_SUFFIX = {"inbound": "i", "outbound": "o"}


# -- names ----------------------------------------------------------------------------

def profile_chain(profile, direction):
    """``p-<profile>-o`` (outbound) / ``-i`` (inbound)."""
    return "p-%s-%s" % (shorten_name(profile), DIRECTION_SUFFIX[direction])


def profile_set_id(profiles):
    """A short, stable ID for an ordered list of profiles."""
    return hashlib.sha256(json.dumps(list(profiles)).encode()).hexdigest()[:12]


def profile_set(set_id):
    return "ps-" + set_id


def profile_set_chain(set_id, direction):
    return "ps-%s-%s" % (set_id, DIRECTION_SUFFIX[direction])


def tag_set(tag, version):
    return "t%d-%s" % (version, shorten_name(tag))


def tag_set_type(version):
    return "type %s;" % ADDRESS_TYPE[version]


# -- elements -------------------------------------------------------------------------

def quote(text):
    """An nft string literal (interface names: letters, digits, '_', '.', '-')."""
    return '"%s"' % text


def address_element(iface, address):
    return "%s . %s" % (quote(iface), address)


def mac_element(iface, mac):
    return "%s . %s" % (quote(iface), mac)


def endpoint_elements(iface, endpoint):
    """{set name: elements} that stand for one local endpoint (its profile
    set's set aside): addresses, and its MAC or the any-MAC mark."""
    elements = {EP_ADDR[version]: {address_element(iface, _address(address))
                                   for address in endpoint.addresses(version)} for version in (4, 6)}
    if endpoint.mac:
        elements[EP_MAC] = {mac_element(iface, endpoint.mac)}
        elements[EP_ANY_MAC] = set()
    else:
        elements[EP_MAC] = set()
        elements[EP_ANY_MAC] = {quote(iface)}
    return elements


def _address(text):
    return text if ":" not in text else ipaddress.ip_address(text).compressed


# -- profile rules ----------------------------------------------------------------------

def _render_ports(ports):
    """A port list (numbers and "lo:hi" ranges, as the rule model keeps them)."""
    rendered = [str(port).replace(":", "-") for port in ports]
    return rendered[0] if len(rendered) == 1 else "{ %s }" % ", ".join(rendered)


def render_rule(rule):
    """One policy rule -> list of nft rule texts (without ``add rule ...``).

    [] when the rule can match no packet of either family. A rule with a tag
    and no family of its own becomes one rule per family (tags are a set per
    family); the two sit side by side, so the order of rules is kept. A rule
    Felix accepts but the kernel cannot express is a drop in its place, as
    in the iptables dataplane.
    """
    versions = [version for version in (4, 6) if applies_to_family(rule, version)]
    if not versions:
        return []
    if rule.drop_reason is not None:
        family = "" if len(versions) == 2 else "meta nfproto %s " % NFPROTO[versions[0]]
        return ['%sdrop comment %s' % (family, quote("Unexpressible rule: %s" % rule.drop_reason))]
    groups = [[4], [6]] if (rule.src_tag or rule.dst_tag) and len(versions) == 2 else [versions]
    return [_render_one(rule, group) for group in groups]


def _render_one(rule, versions):
    words = []
    version = versions[0] if len(versions) == 1 else None
    if version is not None:
        words.append("meta nfproto %s" % NFPROTO[version])
    for net, tag, side in ((rule.src_net, rule.src_tag, "saddr"), (rule.dst_net, rule.dst_tag, "daddr")):
        if net is not None:
            words.append("%s %s %s" % (IP_WORD[version], side, ipaddress.ip_network(net, strict=False).compressed))
        if tag is not None:
            words.append("%s %s @%s" % (IP_WORD[version], side, tag_set(tag, version)))
    number = rule.protocol_number
    if number is not None:
        words.append("meta l4proto %d" % number)
    if rule.src_ports:
        words.append("th sport %s" % _render_ports(rule.src_ports))
    if rule.dst_ports:
        words.append("th dport %s" % _render_ports(rule.dst_ports))
    if rule.icmp_type is not None:
        kind = "icmp" if ICMP_FAMILY[number] == 4 else "icmpv6"
        words.append("%s type %d" % (kind, rule.icmp_type))
        if rule.icmp_code is not None:
            words.append("%s code %d" % (kind, rule.icmp_code))
    words.append("accept" if rule.action == "allow" else "drop")
    return " ".join(words)


def referenced_tags(rules_obj):
    """Tags a profile's rules name (either side)."""
    if rules_obj is None:
        return set()
    return {tag for rule in tuple(rules_obj.inbound_rules) + tuple(rules_obj.outbound_rules)
            for tag in (rule.src_tag, rule.dst_tag) if tag is not None}


def render_profile_chains(profile, rules_obj):
    """{chain name: rules} of a profile, both directions, both families.

    ``rules_obj`` None (missing or invalid in etcd): chains that drop
    everything, so an endpoint using a profile we cannot read gets nothing.
    """
    chains = {}
    for direction in ("inbound", "outbound"):
        name = profile_chain(profile, direction)
        if rules_obj is None:
            chains[name] = ('drop comment %s' % quote("No valid rules for profile %s" % profile),)
            continue
        rendered = []
        for rule in getattr(rules_obj, direction + "_rules"):
            rendered.extend(render_rule(rule))
        chains[name] = tuple(rendered)
    return chains


def render_profile_set_chains(set_id, profiles):
    """The chains of one profile set: each profile in turn, then drop."""
    return {profile_set_chain(set_id, direction):
            tuple("jump " + profile_chain(profile, direction) for profile in profiles) + ("drop",)
            for direction in ("inbound", "outbound")}


# -- the fixed chains ---------------------------------------------------------------------

def render_dispatch_chains(set_ids):
    """``from-wl`` and ``to-wl``: anti-spoofing and the per-family address
    check, then one rule per profile set (sorted IDs: a stable order)."""
    from_wl = ["meta nfproto %s iifname . %s saddr != @%s drop" % (NFPROTO[v], IP_WORD[v], EP_ADDR[v])
               for v in (4, 6)]
    from_wl.append("iifname != @%s iifname . ether saddr != @%s drop" % (EP_ANY_MAC, EP_MAC))
    to_wl = ["meta nfproto %s oifname . %s daddr != @%s drop" % (NFPROTO[v], IP_WORD[v], EP_ADDR[v])
             for v in (4, 6)]
    for set_id in sorted(set_ids):
        from_wl.append("iifname @%s goto %s" % (profile_set(set_id), profile_set_chain(set_id, "outbound")))
        to_wl.append("oifname @%s goto %s" % (profile_set(set_id), profile_set_chain(set_id, "inbound")))
    return {FROM_WL: tuple(from_wl) + ("drop",), TO_WL: tuple(to_wl) + ("drop",)}


def _ports_match(ports):
    return "meta l4proto tcp th dport %s" % _render_ports(ports)


def render_global_chains(interface_prefix, host_action, protected_ports=()):
    """The base chains and the chains they go to (profile sets aside).

    ``protected_ports``: the control plane's TCP ports, () when its
    protection is off.
    """
    workload = quote(interface_prefix + "*")
    established = ("ct state invalid drop", "ct state established,related accept")
    protect_others = tuple("%s %s daddr @%s drop" % (_ports_match(protected_ports), IP_WORD[v], CONTROL_PLANE_SET[v])
                           for v in (4, 6)) if protected_ports else ()
    protect_host = (_ports_match(protected_ports) + " drop",) if protected_ports else ()
    to_host = protect_host + established + (
        "meta nfproto ipv6 icmpv6 type { %s } accept" % ", ".join(str(t) for t in ICMPV6_HOST_TYPES),
        "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
        "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
        "udp dport 53 accept",
        "drop" if host_action == "DROP" else "goto " + FROM_WL,
    )
    # Every path below ends in a verdict. Should a chain be empty (its rules
    # refused by the kernel), the jump returns here and the drop after it
    # holds: a broken table fails closed.
    return {
        "forward-out": ("iifname %s jump %s" % (workload, FORWARD_OUT), "iifname %s drop" % workload),
        "forward-in": ("oifname %s jump %s" % (workload, FORWARD_IN), "oifname %s drop" % workload),
        "input": ("iifname %s jump %s" % (workload, WL_TO_HOST), "iifname %s drop" % workload),
        FORWARD_OUT: protect_others + established + ("goto " + FROM_WL,),
        FORWARD_IN: established + ("goto " + TO_WL,),
        WL_TO_HOST: to_host,
    }


def chain_references(rule):
    """Chains a rule jumps or goes to."""
    words = rule.split()
    return {words[index + 1] for index, word in enumerate(words[:-1]) if word in ("jump", "goto")}


def set_references(rule):
    """Named sets a rule matches on."""
    return {word[1:] for word in rule.split() if word.startswith("@")}
