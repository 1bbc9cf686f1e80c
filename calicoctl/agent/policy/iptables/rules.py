"""Pure rendering of Calico policy into iptables chains (filter table).

No I/O: every function here maps data (endpoints, profiles, tag placement)
to chain names and rule strings, so it is tested without a kernel. The rule
strings are written exactly as ``iptables-save`` prints them back, which is
what lets the dataplane diff the kernel's state against ours after a restart
and rewrite only what differs (a rule we spell differently is merely
rewritten once, never wrong).

Layout (for each IP family; Felix's model, docs/decisions.md "Policy dataplane")
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

``INPUT -j felix-INPUT`` and ``FORWARD -j felix-FORWARD`` are the only rules
we put in built-in chains. ``felix-FORWARD`` drops invalid and accepts
established traffic to and from workload interfaces, sends new traffic from
a workload through ``felix-FROM-ENDPOINT`` (its outbound policy) and to a
workload through ``felix-TO-ENDPOINT`` (inbound policy), and accepts what
survives. ``felix-INPUT`` does the same for traffic from a workload to the
host itself: outbound policy, then ``DefaultEndpointToHostAction`` (our
default RETURN: the host's own INPUT rules decide; same section).

Dispatch: a tree, not a list
~~~~~~~~~~~~~~~~~~~~~~~~~~~~
``felix-FROM-ENDPOINT`` must find the chain of the packet's interface
without testing every interface in turn (10,000 non-matching rules in a row
halve throughput). :class:`~calicoctl.agent.policy.iptables.chaintree.ChainTree` branches on successive characters of
the interface suffix: a node holding at most ``LEAF_MAX`` (16) interfaces
lists them (``-i cali1a2b3c4d5e6 -g felix-from-1a2b3c4d5e6``); a bigger one
has one ``-i cali1+ -g felix-FROM-EP-1`` entry per next character. With hex
suffixes a packet crosses about log16(N) chains of at most 17 rules each.
Every dispatch chain ends in DROP: an interface we have no endpoint for
gets nothing. Only interfaces that exist get an entry (Felix's "ready"
interfaces): an entry for a missing interface could never match, and every
chain reachable from INPUT/FORWARD costs time on each ruleset change (the
kernel re-validates the jump graph at every commit).

Endpoint and profile chains: the accept mark
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
``felix-to-<suffix>`` (inbound) jumps to each of the endpoint's profiles'
``felix-p-<profile>-i`` chain in order, returning as soon as the packet
carries ``ACCEPT_MARK``; ``felix-from-<suffix>`` does the same for the
``-o`` chains but only for packets whose source is one of the endpoint's own
addresses *and* whose MAC is the endpoint's (anti-spoofing). Right after
each dispatch, ``felix-FORWARD``/``felix-INPUT`` drop whatever came back
unmarked (so an endpoint chain needs no final verdict of its own: fewer
rules to load and to validate). In a profile chain an allow
rule is ``-g felix-ALLOW`` (which sets the mark and, being a goto, returns
straight to the endpoint chain: later rules of that profile are skipped), a
deny rule is ``-j DROP`` (so the first deny of any profile wins over later
profiles), and a packet matching nothing falls off the end, unmarked, and
the next profile is tried.
``felix-FORWARD`` clears the mark before each direction.

Control plane
~~~~~~~~~~~~~
Whatever its profiles allow, a workload may not open TCP connections to
the control plane's ports (etcd, BGP: ``calicoctl control-plane``). The
second rule of ``felix-INPUT`` drops them towards this host, on any of its
addresses (INPUT only sees traffic to the host itself); the first rule of
``felix-FORWARD`` drops them towards the protected addresses, one
``hash:ip`` set per family (``felix-cp-v4``/``-v6``: every Calico host,
etcd endpoint and BGP peer), so hosts joining and leaving change set
members, never rules. Both come before the established-traffic ACCEPT, so a
connection opened before the protection applied (a host that joins later,
the protection switched on) is cut as well, and long before POSTROUTING,
where NAT-outgoing could give the packet its host's address. A packet of
another protocol or port leaves at the port match, so traffic between
workloads pays one rule whatever the number of hosts.

Tags
~~~~
A tag rule (``src_tag``/``dst_tag``) matches the IPs of every endpoint in
the cluster whose profiles carry the tag. The dataplane gives a tag either
its own ``hash:ip`` ipset per family (``-m set --match-set felix-v4-<tag>
src``) or, once the budget of sets is spent (a kernel built with a fixed
IP_SET_MAX of 256 allows that many per network namespace, for everybody),
a *tag tree*: a :class:`ChainTree` over the hex digits of the member
addresses whose leaves set ``SRC_TAG_MARK`` / ``DST_TAG_MARK``. A rule using
tree tags clears those bits, calls the trees, then matches on the bits.
Per-packet cost stays logarithmic either way; a tree costs a few chains per
16 members instead of a set. (This kernel has no ``hash:ip,mark``, which
would have let one shared set serve every tag.)
"""
import hashlib
import ipaddress
from dataclasses import dataclass

from calicoctl.agent.policy.iptables.chaintree import LEAF_MAX, ChainTree, Side, TagKind
from calicoctl.rulemodel import ICMP_FAMILY

# -- marks (bits of skb->mark we own; other bits are left alone) -----------------
ACCEPT_MARK = 0x1000000
SRC_TAG_MARK = 0x2000000
DST_TAG_MARK = 0x4000000
TAG_MARKS = SRC_TAG_MARK | DST_TAG_MARK

# -- chain names ---------------------------------------------------------------------
CHAIN_INPUT = "felix-INPUT"
CHAIN_FORWARD = "felix-FORWARD"
CHAIN_ALLOW = "felix-ALLOW"
CHAIN_FROM_ROOT = "felix-FROM-ENDPOINT"
CHAIN_TO_ROOT = "felix-TO-ENDPOINT"
FROM_NODE_PREFIX = "felix-FROM-EP-"
TO_NODE_PREFIX = "felix-TO-EP-"
FROM_ENDPOINT_PREFIX = "felix-from-"
TO_ENDPOINT_PREFIX = "felix-to-"
PROFILE_PREFIX = "felix-p-"

# Every filter-table chain this module names starts with one of these; the
# dataplane owns exactly those and never touches any other chain.
OWNED_CHAIN_PREFIXES = (
    CHAIN_INPUT, CHAIN_FORWARD, CHAIN_ALLOW, CHAIN_FROM_ROOT, CHAIN_TO_ROOT,
    FROM_NODE_PREFIX, TO_NODE_PREFIX, FROM_ENDPOINT_PREFIX, TO_ENDPOINT_PREFIX,
    PROFILE_PREFIX, "felix-t4s-", "felix-t4d-", "felix-t6s-", "felix-t6d-",
)
CONTROL_PLANE_SET_PREFIX = "felix-cp-"
OWNED_IPSET_PREFIXES = ("felix-v4-", "felix-v6-", "felix-tmp-v4-", "felix-tmp-v6-",
                        CONTROL_PLANE_SET_PREFIX)

HOOKS = {"INPUT": "-j " + CHAIN_INPUT, "FORWARD": "-j " + CHAIN_FORWARD}
"""Built-in chain -> the one rule (iptables-save form) we insert at its top."""

BUILTIN_TARGETS = frozenset(("ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "LOG", "QUEUE",
                             "NFQUEUE", "MASQUERADE", "SNAT", "DNAT", "CONNMARK", "CT"))

MAX_NAME = 16                 # profile and tag names longer than this are hashed
MULTIPORT_SLOTS = 15          # a multiport match takes at most 15 ports (a range uses 2)
HOST_ACTIONS = ("RETURN", "ACCEPT", "DROP")
DEFAULT_HOST_ACTION = "RETURN"

# Protocols iptables-save prints by name (nft keeps a built-in table and
# /etc/protocols for the rest); numbers not listed here are written as
# numbers, and a restart rewrites such a chain once.
PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite",
                  47: "gre", 50: "esp", 51: "ah"}

# ICMPv6 a workload needs to reach its host with (neighbour discovery, MLD,
# router solicitation): accepted before policy, as Felix did.
ICMPV6_HOST_TYPES = (130, 131, 132, 133, 135, 136)
# UDP services of its host a workload reaches before any policy, per family:
# (name, source port or None, destination port).
HOST_UDP_SERVICES = {4: (("DHCP", 68, 67), ("DNS", None, 53)),
                     6: (("DHCPv6", 546, 547), ("DNS", None, 53))}

# Rank = write order: a chain is written after every chain it refers to
# (and deleted before them), so a restore split into several batches never
# refers to a chain that is not there yet.
RANK_TAG_TREE = 0            # minus depth... see tag_tree_rank
RANK_ALLOW = 50
RANK_PROFILE = 60
RANK_ENDPOINT = 70
RANK_DISPATCH = 150          # minus depth
RANK_GLOBAL = 200


def shorten_name(name):
    """Profile/tag name as used inside chain and set names: at most 16
    characters. Longer names (and names starting with '_', to keep the two
    forms apart) become '_' + 15 hex digits of their SHA-256."""
    if len(name) <= MAX_NAME and not name.startswith("_"):
        return name
    return "_" + hashlib.sha256(name.encode()).hexdigest()[:MAX_NAME - 1]


def profile_chain(profile, direction):
    """``felix-p-<profile>-i`` (inbound) or ``-o`` (outbound)."""
    return "%s%s-%s" % (PROFILE_PREFIX, shorten_name(profile), "i" if direction == "inbound" else "o")


def endpoint_chain(direction, suffix):
    """``felix-to-<suffix>`` (inbound to the workload) / ``felix-from-<suffix>``."""
    return (TO_ENDPOINT_PREFIX if direction == "inbound" else FROM_ENDPOINT_PREFIX) + suffix


def tag_set_name(tag, version):
    return "felix-v%d-%s" % (version, shorten_name(tag))


def control_plane_set_name(version):
    """The set of addresses whose control-plane ports workloads may not reach."""
    return "%sv%d" % (CONTROL_PLANE_SET_PREFIX, version)


def tag_tree_root(tag, version, side):
    """Root chain of a tag tree for one ``Side`` of the packet."""
    return "felix-t%d%s-%s" % (version, side.value, shorten_name(tag))


def _tag_tree_node(tag, version, side, prefix):
    digest = hashlib.sha256(("%s/%s" % (tag, prefix)).encode()).hexdigest()[:16]
    return "felix-t%d%s-_%s" % (version, side.value, digest)


def is_owned_chain(name):
    return name.startswith(OWNED_CHAIN_PREFIXES)


def is_owned_ipset(name):
    return name.startswith(OWNED_IPSET_PREFIXES)


# -- small rendering helpers ------------------------------------------------------

_NO_QUOTE = set("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def render_comment(text):
    """``-m comment --comment ...`` quoted the way iptables-save quotes it."""
    text = text.replace('"', "'").replace("\\", "/")
    if text and all(c in _NO_QUOTE for c in text):
        return "-m comment --comment %s" % text
    return '-m comment --comment "%s"' % text


def render_mark(value, mask):
    return "0x%x/0x%x" % (value, mask)


def render_host_cidr(ip):
    """'10.0.0.1' -> '10.0.0.1/32' (canonical, as iptables-save prints it)."""
    if ":" not in ip and ip.count(".") == 3 and all(p.isdigit() and str(int(p)) == p for p in ip.split(".")):
        return ip + "/32"          # already canonical: skip the parse (cold start renders thousands)
    address = ipaddress.ip_address(ip)
    return "%s/%d" % (address.compressed, address.max_prefixlen)


def render_cidr(cidr):
    return ipaddress.ip_network(cidr, strict=False).compressed


def cidr_version(cidr):
    return ipaddress.ip_network(cidr, strict=False).version


def chain_references(rule):
    """Names of non-builtin chains a rule jumps or goes to."""
    words = rule.split()
    found = set()
    for index, word in enumerate(words[:-1]):
        if word in ("-j", "-g", "--jump", "--goto"):
            target = words[index + 1]
            if target not in BUILTIN_TARGETS:
                found.add(target)
    return found


def set_references(rule):
    """Names of the ipsets a rule matches on."""
    words = rule.split()
    return {words[index + 1] for index, word in enumerate(words[:-1]) if word == "--match-set"}


# -- policy rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class TagPlacement:
    """How a tag is matched in one family: by ipset or by a tag tree."""
    kind: TagKind
    name: str            # set name, or tree root chain name (for the side asked)




def _render_protocol(number):
    return PROTOCOL_NAMES.get(number, str(number))


def _port_chunks(ports):
    """Split a port list into multiport-sized chunks (a range counts 2)."""
    chunks, current, used = [], [], 0
    for port in ports:
        cost = 2 if isinstance(port, str) and ":" in port else 1
        if used + cost > MULTIPORT_SLOTS:
            chunks.append(current)
            current, used = [], 0
        current.append(str(port))
        used += cost
    if current:
        chunks.append(current)
    return chunks


def applies_to_family(rule, version):
    """False when the rule can never match a packet of this IP version."""
    if rule.ip_version is not None and rule.ip_version != version:
        return False
    for net in (rule.src_net, rule.dst_net):
        if net is not None and cidr_version(net) != version:
            return False
    family = ICMP_FAMILY.get(rule.protocol_number)
    if family is not None and family != version:
        return False
    return True


def render_rule(rule, version, resolve_tag):
    """One policy rule -> list of iptables rule strings (without ``-A chain``).

    Returns [] when the rule does not apply to this family. A rule Felix
    accepts but iptables cannot express becomes a DROP of everything, in
    its place (``Rule.drop_reason``), as Felix programs it.
    """
    if not applies_to_family(rule, version):
        return []
    if rule.drop_reason is not None:
        return [render_comment("Unexpressible rule: %s" % rule.drop_reason) + " -j DROP"]
    target = "-g " + CHAIN_ALLOW if rule.action == "allow" else "-j DROP"
    head = []
    if rule.src_net is not None:
        head += ["-s", render_cidr(rule.src_net)]
    if rule.dst_net is not None:
        head += ["-d", render_cidr(rule.dst_net)]
    number = rule.protocol_number
    if number is not None:
        head += ["-p", _render_protocol(number)]
    matches = []
    prelude = []
    tree_bits = 0
    for side, tag, mark, direction in ((Side.SRC, rule.src_tag, SRC_TAG_MARK, "src"),
                                       (Side.DST, rule.dst_tag, DST_TAG_MARK, "dst")):
        if tag is None:
            continue
        placement = resolve_tag(tag, version, side)
        if placement.kind is TagKind.SET:
            matches += ["-m", "set", "--match-set", placement.name, direction]
        else:
            prelude.append("-j " + placement.name)
            tree_bits |= mark
    if rule.icmp_type is not None:
        value = str(rule.icmp_type)
        if rule.icmp_code is not None:
            value += "/%d" % rule.icmp_code
        if version == 4:
            matches += ["-m", "icmp", "--icmp-type", value]
        else:
            matches += ["-m", "icmp6", "--icmpv6-type", value]
    if tree_bits:
        matches += ["-m", "mark", "--mark", render_mark(tree_bits, tree_bits)]
    src_chunks = _port_chunks(rule.src_ports) if rule.src_ports else [None]
    dst_chunks = _port_chunks(rule.dst_ports) if rule.dst_ports else [None]
    rendered = []
    if prelude:
        rendered.append("-j MARK --set-xmark %s" % render_mark(0, TAG_MARKS))
        rendered.extend(prelude)
    for src in src_chunks:
        for dst in dst_chunks:
            ports = []
            if src is not None:
                ports += ["-m", "multiport", "--sports", ",".join(src)]
            if dst is not None:
                ports += ["-m", "multiport", "--dports", ",".join(dst)]
            rendered.append(" ".join(head + ports + matches + [target]))
    return rendered


def referenced_tags(rules_obj):
    """{(tag, Side)} used by a profile's rules."""
    found = set()
    if rules_obj is None:
        return found
    for rule in tuple(rules_obj.inbound_rules) + tuple(rules_obj.outbound_rules):
        if rule.src_tag is not None:
            found.add((rule.src_tag, Side.SRC))
        if rule.dst_tag is not None:
            found.add((rule.dst_tag, Side.DST))
    return found


def render_profile_chains(profile, rules_obj, version, resolve_tag):
    """A profile's two chains for one family: {chain name: tuple of rules}.

    ``rules_obj`` None (missing or invalid in etcd) gives chains that drop
    everything: an endpoint using a profile we cannot read gets no traffic.
    """
    chains = {}
    for direction in ("inbound", "outbound"):
        name = profile_chain(profile, direction)
        if rules_obj is None:
            chains[name] = (render_comment("No valid rules for profile %s" % profile) + " -j DROP",)
            continue
        rendered = []
        for rule in getattr(rules_obj, direction + "_rules"):
            rendered.extend(render_rule(rule, version, resolve_tag))
        chains[name] = tuple(rendered)
    return chains


# -- endpoint chains -------------------------------------------------------------------

def render_endpoint_chains(suffix, endpoint, version):
    """The two chains of a local endpoint for one family: {name: rules}.

    Empty when the endpoint has no address of this family (its interface
    then gets no dispatch entry, so that family's traffic is dropped).
    """
    addresses = endpoint.addresses(version)
    if not addresses or not endpoint.profile_ids:
        return {}
    # Between profiles: stop once one accepted. After the last nothing: the
    # packet returns to felix-FORWARD/INPUT, which drops it unless marked.
    accepted = "-m mark --mark %s -j RETURN" % render_mark(ACCEPT_MARK, ACCEPT_MARK)
    inbound, outbound = [], []
    mac = ("-m mac --mac-source %s " % endpoint.mac.lower()) if endpoint.mac else ""
    for position, profile in enumerate(endpoint.profile_ids):
        if position:
            inbound.append(accepted)
            outbound.append(accepted)
        inbound.append("-j " + profile_chain(profile, "inbound"))
        out_chain = profile_chain(profile, "outbound")
        for address in addresses:
            outbound.append("-s %s %s-j %s" % (render_host_cidr(address), mac, out_chain))
    return {endpoint_chain("inbound", suffix): tuple(inbound),
            endpoint_chain("outbound", suffix): tuple(outbound)}


# -- global chains -----------------------------------------------------------------------

def render_control_plane_rules(version, interface_prefix, ports):
    """(felix-INPUT rules, felix-FORWARD rules) that keep workloads off the
    control plane's TCP ``ports``; nothing when ``ports`` is empty (off)."""
    workload = interface_prefix + "+"
    to_host, through = [], []
    for chunk in _port_chunks(ports):
        match = "-p tcp -m multiport --dports %s" % ",".join(chunk)
        to_host.append("%s -j DROP" % match)
        through.append("-i %s %s -m set --match-set %s dst -j DROP"
                       % (workload, match, control_plane_set_name(version)))
    return to_host, through


def render_global_chains(version, interface_prefix, host_action=DEFAULT_HOST_ACTION, protected_ports=()):
    """felix-INPUT, felix-FORWARD and felix-ALLOW for one family.

    ``protected_ports``: the control plane's TCP ports, () when its protection is off.
    """
    workload = interface_prefix + "+"
    protect_host, protect_others = render_control_plane_rules(version, interface_prefix, protected_ports)
    clear = "-j MARK --set-xmark %s" % render_mark(0, ACCEPT_MARK)
    unaccepted = "-m mark ! --mark %s -j DROP" % render_mark(ACCEPT_MARK, ACCEPT_MARK)
    forward = tuple(protect_others) + (
        "-i %s -m conntrack --ctstate INVALID -j DROP" % workload,
        "-o %s -m conntrack --ctstate INVALID -j DROP" % workload,
        "-i %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" % workload,
        "-o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" % workload,
        "-i %s %s" % (workload, clear),
        "-i %s -j %s" % (workload, CHAIN_FROM_ROOT),
        "-i %s %s" % (workload, unaccepted),
        "-o %s %s" % (workload, clear),
        "-o %s -j %s" % (workload, CHAIN_TO_ROOT),
        "-o %s %s" % (workload, unaccepted),
        "-i %s -j ACCEPT" % workload,
        "-o %s -j ACCEPT" % workload,
    )
    inp = ["! -i %s -j RETURN" % workload] + protect_host + [
        "-m conntrack --ctstate INVALID -j DROP",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    if version == 6:
        inp += ["-p ipv6-icmp -m icmp6 --icmpv6-type %d -j ACCEPT" % t for t in ICMPV6_HOST_TYPES]
    for _, source_port, port in HOST_UDP_SERVICES[version]:
        inp.append("-p udp -m udp %s--dport %d -j ACCEPT" % ("--sport %d " % source_port if source_port else "", port))
    if host_action == "DROP":
        inp.append("-j DROP")
    else:
        inp += [clear, "-j " + CHAIN_FROM_ROOT, unaccepted]
        if host_action == "ACCEPT":
            inp.append("-j ACCEPT")
    return {
        CHAIN_INPUT: tuple(inp),
        CHAIN_FORWARD: forward,
        CHAIN_ALLOW: ("-j MARK --set-xmark %s" % render_mark(ACCEPT_MARK, ACCEPT_MARK),),
    }


def global_rank(name):
    return RANK_ALLOW if name == CHAIN_ALLOW else RANK_GLOBAL


# -- trees of chains -------------------------------------------------------------------

def make_dispatch_tree(direction, interface_prefix, leaf_max=LEAF_MAX):
    """The tree behind ``felix-FROM-ENDPOINT`` ('outbound', matched on -i) or
    ``felix-TO-ENDPOINT`` ('inbound', matched on -o); keys are interface
    suffixes (the name without ``interface_prefix``)."""
    flag = "-i" if direction == "outbound" else "-o"
    root = CHAIN_FROM_ROOT if direction == "outbound" else CHAIN_TO_ROOT
    node_prefix = FROM_NODE_PREFIX if direction == "outbound" else TO_NODE_PREFIX
    return ChainTree(
        node_name=lambda prefix: node_prefix + prefix if prefix else root,
        match_exact=lambda key: "%s %s%s" % (flag, interface_prefix, key),
        match_prefix=lambda prefix: "%s %s%s+" % (flag, interface_prefix, prefix),
        target=lambda key: "-g " + endpoint_chain(direction, key),
        tail=("-j DROP",), leaf_max=leaf_max)


def ip_key(ip):
    """An address as the hex-digit key of a tag tree ('10.0.0.1' -> '0a000001')."""
    address = ipaddress.ip_address(ip)
    return "%0*x" % (address.max_prefixlen // 4, int(address))


def _key_address(key, version):
    value = int(key, 16)
    return (ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)).compressed


def _ip_prefix_cidr(prefix, version):
    bits = 32 if version == 4 else 128
    value = int(prefix.ljust(bits // 4, "0"), 16)
    network = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((value, len(prefix) * 4))
    return network.compressed


def make_tag_tree(tag, version, side, leaf_max=LEAF_MAX):
    """Tag tree: its root sets SRC_TAG_MARK (Side.SRC) / DST_TAG_MARK (Side.DST) for a
    packet whose source / destination is one of the keys (see ``ip_key``)."""
    flag = "-s" if side is Side.SRC else "-d"
    mark = SRC_TAG_MARK if side is Side.SRC else DST_TAG_MARK
    bits = 32 if version == 4 else 128
    action = "-j MARK --set-xmark %s" % render_mark(mark, mark)
    return ChainTree(
        node_name=lambda prefix: (_tag_tree_node(tag, version, side, prefix) if prefix
                                  else tag_tree_root(tag, version, side)),
        match_exact=lambda key: "%s %s/%d" % (flag, _key_address(key, version), bits),
        match_prefix=lambda prefix: "%s %s" % (flag, _ip_prefix_cidr(prefix, version)),
        target=lambda key: action,
        tail=(), leaf_max=leaf_max)


def dispatch_rank(depth):
    return RANK_DISPATCH - depth


def tag_tree_rank(depth):
    return RANK_TAG_TREE + 40 - depth


# -- hooks --------------------------------------------------------------------------------

def render_hook_insert(builtin):
    """The restore line that puts our hook at the top of a built-in chain."""
    return "-I %s 1 %s" % (builtin, HOOKS[builtin])


def calculate_missing_hooks(builtin_rules):
    """Built-in chains whose rules (dict chain -> list) lack our hook."""
    return sorted(chain for chain, rule in HOOKS.items() if rule not in builtin_rules.get(chain, ()))


def validate_interface_name(name, prefix):
    """The suffix of a workload interface name, or None if the name is not
    usable (wrong prefix, too long, characters chains cannot carry)."""
    if not isinstance(name, str) or not name.startswith(prefix) or len(name) > 15:
        return None
    suffix = name[len(prefix):]
    if not suffix or not all(c.isalnum() or c in "_.-" for c in suffix) or not suffix.isascii():
        return None
    return suffix

