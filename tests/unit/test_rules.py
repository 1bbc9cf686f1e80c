"""Pure policy rendering (calicoctl.agent.policy.iptables.rules) and the iptables/ipset text
helpers it relies on. A tiny evaluator walks rendered chains the way the
kernel would, so tree dispatch is checked by behaviour, not only by text."""
import ipaddress
import random

import pytest

from calicoctl import model
from calicoctl.agent.policy.iptables import rules
from calicoctl.agent.policy.iptables.chaintree import Side, TagKind
from calicoctl.host import iptables


def set_resolver(tag, version, side):
    return rules.TagPlacement(TagKind.SET, rules.tag_set_name(tag, version))


def tree_resolver(tag, version, side):
    return rules.TagPlacement(TagKind.TREE, rules.tag_tree_root(tag, version, side))


def rule(**kwargs):
    return model.Rule(**kwargs)


def endpoint(name="cali0123456789a", profiles=("P",), v4=("10.0.0.1/32",), v6=(), mac="02:aa:bb:cc:dd:ee"):
    key = model.EndpointKey("h1", "docker", "w1", "e1")
    return model.Endpoint(key=key, name=name, mac=mac, profile_ids=tuple(profiles),
                          ipv4_nets=tuple(v4), ipv6_nets=tuple(v6))


# -- names --------------------------------------------------------------------------------

def test_short_names_are_kept_and_long_ones_hashed_to_16_chars():
    assert rules.shorten_name("web") == "web"
    assert rules.shorten_name("a" * 16) == "a" * 16
    long_name = rules.shorten_name("a" * 17)
    assert long_name.startswith("_") and len(long_name) == 16
    assert rules.shorten_name("a" * 17) != rules.shorten_name("a" * 18)
    # A real name starting with '_' never collides with a hashed one.
    assert rules.shorten_name("_x") != "_x" and len(rules.shorten_name("_x")) == 16


def test_every_chain_and_set_name_fits_the_kernel_limits():
    longest = "x" * 100
    names = [rules.profile_chain(longest, "inbound"), rules.profile_chain(longest, "outbound"),
             rules.endpoint_chain("inbound", "a" * 12), rules.endpoint_chain("outbound", "a" * 12),
             rules.tag_tree_root(longest, 6, Side.SRC), rules.make_tag_tree(longest, 6, Side.DST).node_name("ab"),
             rules.FROM_NODE_PREFIX + "a" * 11, rules.TO_NODE_PREFIX + "a" * 11]
    assert all(len(name) <= 28 for name in names), names
    assert all(rules.is_owned_chain(name) for name in names)
    assert len("felix-tmp-v6-" + rules.shorten_name(longest)) <= 31
    assert rules.is_owned_ipset(rules.tag_set_name(longest, 4))


def test_ownership_excludes_other_tools_chains():
    for name in ("DOCKER", "felix-POSTROUTING", "felix-PREROUTING", "KUBE-SERVICES", "INPUT"):
        assert not rules.is_owned_chain(name)
    assert not rules.is_owned_ipset("felix-all-ipam-pools")
    assert not rules.is_owned_ipset("felix-masq-ipam-pools")


# -- policy rules -----------------------------------------------------------------------------

def test_allow_and_deny_targets():
    assert rules.render_rule(rule(action="allow"), 4, set_resolver) == ["-g felix-ALLOW"]
    assert rules.render_rule(rule(action="deny"), 4, set_resolver) == ["-j DROP"]


def test_every_match_field_in_iptables_save_order():
    r = rule(action="deny", protocol="tcp", src_net="10.1.0.0/16", dst_net="10.2.0.0/24",
             src_tag="A", dst_tag="B", src_ports=(1, "10:20"), dst_ports=(80,))
    assert rules.render_rule(r, 4, set_resolver) == [
        "-s 10.1.0.0/16 -d 10.2.0.0/24 -p tcp -m multiport --sports 1,10:20 "
        "-m multiport --dports 80 -m set --match-set felix-v4-A src "
        "-m set --match-set felix-v4-B dst -j DROP"]


def test_protocols_by_name_and_number():
    assert rules.render_rule(rule(protocol="udp"), 4, set_resolver) == ["-p udp -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol=6), 4, set_resolver) == ["-p tcp -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol=47), 4, set_resolver) == ["-p gre -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol=99), 6, set_resolver) == ["-p 99 -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol="icmpv6"), 6, set_resolver) == ["-p ipv6-icmp -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol="sctp", dst_ports=(5,)), 4, set_resolver) == [
        "-p sctp -m multiport --dports 5 -g felix-ALLOW"]


def test_icmp_type_and_code_per_family():
    assert rules.render_rule(rule(protocol="icmp", icmp_type=8), 4, set_resolver) == [
        "-p icmp -m icmp --icmp-type 8 -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol="icmp", icmp_type=3, icmp_code=4), 4, set_resolver) == [
        "-p icmp -m icmp --icmp-type 3/4 -g felix-ALLOW"]
    assert rules.render_rule(rule(protocol="icmpv6", icmp_type=128, icmp_code=0), 6, set_resolver) == [
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128/0 -g felix-ALLOW"]


def test_rules_that_cannot_match_a_family_are_left_out_of_it():
    assert rules.render_rule(rule(protocol="icmp"), 6, set_resolver) == []
    assert rules.render_rule(rule(protocol="icmpv6"), 4, set_resolver) == []
    assert rules.render_rule(rule(ip_version=6), 4, set_resolver) == []
    assert rules.render_rule(rule(ip_version=6), 6, set_resolver) == ["-g felix-ALLOW"]
    assert rules.render_rule(rule(src_net="10.0.0.0/8"), 6, set_resolver) == []
    assert rules.render_rule(rule(dst_net="fd00::/64"), 4, set_resolver) == []
    assert rules.render_rule(rule(dst_net="fd00::/64"), 6, set_resolver) == ["-d fd00::/64 -g felix-ALLOW"]


def test_ports_split_into_multiport_chunks_of_15_slots_with_ranges_counting_two():
    ports = tuple(range(1, 21))
    rendered = rules.render_rule(rule(protocol="tcp", dst_ports=ports), 4, set_resolver)
    assert rendered == ["-p tcp -m multiport --dports %s -g felix-ALLOW" % ",".join(map(str, range(1, 16))),
                        "-p tcp -m multiport --dports 16,17,18,19,20 -g felix-ALLOW"]
    ranges = tuple("%d:%d" % (i * 10, i * 10 + 5) for i in range(8))   # 16 slots
    rendered = rules.render_rule(rule(protocol="udp", src_ports=ranges), 4, set_resolver)
    assert len(rendered) == 2 and rendered[1] == "-p udp -m multiport --sports 70:75 -g felix-ALLOW"
    # Cross product of source and destination chunks.
    both = rules.render_rule(rule(protocol="tcp", src_ports=ports, dst_ports=ports), 4, set_resolver)
    assert len(both) == 4


def test_tree_tags_set_marks_then_match_them():
    rendered = rules.render_rule(rule(action="deny", protocol="tcp", src_tag="A", dst_tag="B"), 4,
                                 tree_resolver)
    assert rendered == ["-j MARK --set-xmark 0x0/0x6000000",
                        "-j felix-t4s-A",
                        "-j felix-t4d-B",
                        "-p tcp -m mark --mark 0x6000000/0x6000000 -j DROP"]


def test_referenced_tags_by_side():
    rules_obj = model.Rules(id="P", inbound_rules=(rule(src_tag="A"), rule(dst_tag="B")),
                            outbound_rules=(rule(src_tag="B"),))
    assert rules.referenced_tags(rules_obj) == {("A", Side.SRC), ("B", Side.DST), ("B", Side.SRC)}
    assert rules.referenced_tags(None) == set()


def test_profile_chains_keep_rule_order_and_missing_rules_drop():
    rules_obj = model.Rules(id="P", inbound_rules=(rule(action="deny", src_net="10.0.0.5/32"),
                                                   rule(action="allow")),
                            outbound_rules=())
    chains = rules.render_profile_chains("P", rules_obj, 4, set_resolver)
    assert chains == {"felix-p-P-i": ("-s 10.0.0.5/32 -j DROP", "-g felix-ALLOW"), "felix-p-P-o": ()}
    missing = rules.render_profile_chains("P", None, 4, set_resolver)
    assert all(rules_[-1].endswith("-j DROP") for rules_ in missing.values())


def test_default_profile_rules():
    chains = rules.render_profile_chains("P", model.Rules.default_for("P"), 4, set_resolver)
    assert chains == {"felix-p-P-i": ("-m set --match-set felix-v4-P src -g felix-ALLOW",),
                      "felix-p-P-o": ("-g felix-ALLOW",)}


# -- endpoint chains ----------------------------------------------------------------------------

def test_endpoint_chains_run_profiles_in_order_with_anti_spoofing():
    chains = rules.render_endpoint_chains("0123456789a", endpoint(profiles=("A", "B")), 4)
    assert chains["felix-to-0123456789a"] == (
        "-j felix-p-A-i", "-m mark --mark 0x1000000/0x1000000 -j RETURN", "-j felix-p-B-i")
    assert chains["felix-from-0123456789a"] == (
        "-s 10.0.0.1/32 -m mac --mac-source 02:aa:bb:cc:dd:ee -j felix-p-A-o",
        "-m mark --mark 0x1000000/0x1000000 -j RETURN",
        "-s 10.0.0.1/32 -m mac --mac-source 02:aa:bb:cc:dd:ee -j felix-p-B-o")


def test_endpoint_with_several_addresses_and_no_mac():
    chains = rules.render_endpoint_chains("x", endpoint(v4=("10.0.0.1/32", "10.0.0.2/32"), mac=None), 4)
    assert chains["felix-from-x"][:2] == ("-s 10.0.0.1/32 -j felix-p-P-o", "-s 10.0.0.2/32 -j felix-p-P-o")


def test_endpoint_without_addresses_of_a_family_gets_no_chains_there():
    assert rules.render_endpoint_chains("x", endpoint(v6=()), 6) == {}
    assert rules.render_endpoint_chains("x", endpoint(profiles=()), 4) == {}
    six = rules.render_endpoint_chains("x", endpoint(v6=("fd00::1/128",)), 6)
    assert six["felix-from-x"][0].startswith("-s fd00::1/128 ")


# -- global chains ------------------------------------------------------------------------------

def test_forward_chain_accepts_established_then_runs_policy_both_ways():
    forward = rules.render_global_chains(4, "cali")["felix-FORWARD"]
    assert forward.index("-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT") < \
        forward.index("-i cali+ -j felix-FROM-ENDPOINT") < forward.index("-o cali+ -j felix-TO-ENDPOINT")
    # What no profile accepted is dropped right after each dispatch.
    for flag, root in (("-i", "felix-FROM-ENDPOINT"), ("-o", "felix-TO-ENDPOINT")):
        position = forward.index("%s cali+ -j %s" % (flag, root))
        assert forward[position - 1] == "%s cali+ -j MARK --set-xmark 0x0/0x1000000" % flag
        assert forward[position + 1] == "%s cali+ -m mark ! --mark 0x1000000/0x1000000 -j DROP" % flag
    assert forward[-2:] == ("-i cali+ -j ACCEPT", "-o cali+ -j ACCEPT")


@pytest.mark.parametrize("action,tail", [
    ("RETURN", ("-j felix-FROM-ENDPOINT", "-m mark ! --mark 0x1000000/0x1000000 -j DROP")),
    ("ACCEPT", ("-j felix-FROM-ENDPOINT", "-m mark ! --mark 0x1000000/0x1000000 -j DROP", "-j ACCEPT")),
    ("DROP", ("-j DROP",)),
])
def test_input_chain_follows_the_endpoint_to_host_action(action, tail):
    chain = rules.render_global_chains(4, "tap", action)["felix-INPUT"]
    assert chain[0] == "! -i tap+ -j RETURN"
    assert chain[-len(tail):] == tail


def test_input_chain_lets_ipv6_neighbour_discovery_through():
    chain = rules.render_global_chains(6, "cali")["felix-INPUT"]
    assert "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT" in chain
    assert "-p udp -m udp --sport 546 --dport 547 -j ACCEPT" in chain


def test_missing_hooks():
    assert rules.calculate_missing_hooks({"INPUT": ["-j felix-INPUT"], "FORWARD": []}) == ["FORWARD"]
    assert rules.calculate_missing_hooks({"INPUT": ["-j X", "-j felix-INPUT"],
                                          "FORWARD": ["-j felix-FORWARD"]}) == []
    assert rules.render_hook_insert("INPUT") == "-I INPUT 1 -j felix-INPUT"


def test_interface_names():
    assert rules.validate_interface_name("cali0123456789a", "cali") == "0123456789a"
    assert rules.validate_interface_name("cali", "cali") is None
    assert rules.validate_interface_name("tap01", "cali") is None
    assert rules.validate_interface_name("cali0123456789ab", "cali") is None    # 16 chars
    assert rules.validate_interface_name("cali+x", "cali") is None


# -- chain references ---------------------------------------------------------------------------

def test_chain_references_skip_builtin_targets():
    assert rules.chain_references("-s 1.2.3.4/32 -j felix-p-A-o") == {"felix-p-A-o"}
    assert rules.chain_references("-i cali1+ -g felix-FROM-EP-1") == {"felix-FROM-EP-1"}
    assert rules.chain_references("-j MARK --set-xmark 0x1/0x1") == set()
    assert rules.chain_references("-j DROP") == set()


# -- trees ----------------------------------------------------------------------------------------

class Walker:
    """Evaluates dispatch and tag-tree chains for one packet, like the kernel."""

    def __init__(self, chains):
        self.chains = chains
        self.evaluated = 0

    def matches(self, words, packet):
        index = 0
        while index < len(words):
            word = words[index]
            if word in ("-i", "-o"):
                pattern = words[index + 1]
                name = packet[word]
                ok = name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern
                if not ok:
                    return False
                index += 2
            elif word in ("-s", "-d"):
                if ipaddress.ip_address(packet[word]) not in ipaddress.ip_network(words[index + 1]):
                    return False
                index += 2
            else:
                return True
        return True

    def run(self, chain, packet):
        """Follow gotos; returns the terminal target text ('-g x', '-j DROP',
        '-j MARK ...') or None for falling off the end."""
        while True:
            for text in self.chains[chain]:
                self.evaluated += 1
                words = text.split()
                if not self.matches(words, packet):
                    continue
                target_at = max(i for i, w in enumerate(words) if w in ("-g", "-j"))
                kind, target = words[target_at], words[target_at + 1]
                if kind == "-g" and target in self.chains:
                    chain = target
                    break
                return " ".join(words[target_at:])
            else:
                return None


def test_dispatch_tree_reaches_every_interface_through_short_chains():
    random.seed(7)
    suffixes = {"%011x" % random.getrandbits(44) for _ in range(5000)}
    tree = rules.make_dispatch_tree("outbound", "cali")
    written, deleted = tree.update(added=suffixes)
    assert not deleted
    assert all(len(chain) <= rules.LEAF_MAX + 1 for chain in written.values())
    walker = Walker(written)
    for suffix in random.sample(sorted(suffixes), 200):
        walker.evaluated = 0
        assert walker.run("felix-FROM-ENDPOINT", {"-i": "cali" + suffix}) == "-g felix-from-" + suffix
        assert walker.evaluated <= 4 * (rules.LEAF_MAX + 1)
    assert walker.run("felix-FROM-ENDPOINT", {"-i": "califfffffffff0"}) == "-j DROP"
    assert walker.run("felix-FROM-ENDPOINT", {"-i": "eth0"}) == "-j DROP"


def test_inbound_dispatch_matches_the_output_interface():
    tree = rules.make_dispatch_tree("inbound", "tap")
    written, _ = tree.update(added=["1", "2"])
    assert written["felix-TO-ENDPOINT"] == ("-o tap1 -g felix-to-1", "-o tap2 -g felix-to-2", "-j DROP")


def test_empty_dispatch_tree_drops():
    tree = rules.make_dispatch_tree("outbound", "cali")
    assert tree.update() == ({"felix-FROM-ENDPOINT": ("-j DROP",)}, set())


@pytest.mark.parametrize("leaf_max", [1, 2, 4, 16])
def test_incremental_tree_updates_equal_a_fresh_render(leaf_max):
    rng = random.Random(leaf_max)
    tree = rules.make_dispatch_tree("outbound", "cali", leaf_max=leaf_max)
    programmed, keys = {}, set()
    for _ in range(400):
        added, removed = set(), set()
        for _ in range(rng.randint(1, 6)):
            key = "".join(rng.choice("01ab") for _ in range(rng.randint(1, 5)))
            (removed if key in keys and rng.random() < 0.5 else added).add(key)
        added -= removed
        written, deleted = tree.update(added=added, removed=removed)
        keys = (keys | added) - removed
        assert not set(written) & deleted
        for name in deleted:
            del programmed[name]
        programmed.update(written)
        fresh = rules.make_dispatch_tree("outbound", "cali", leaf_max=leaf_max)
        assert programmed == fresh.update(added=keys)[0]
    assert tree.keys == keys


def test_unchanged_tree_writes_nothing():
    tree = rules.make_dispatch_tree("outbound", "cali")
    tree.update(added=["%03x" % i for i in range(100)])
    assert tree.update(added=["000"]) == ({}, set())
    assert tree.update(removed=["fff"]) == ({}, set())


def test_a_change_rewrites_only_its_path():
    tree = rules.make_dispatch_tree("outbound", "cali")
    tree.update(added=["%011x" % (i * 7919) for i in range(10000)])
    written, deleted = tree.update(added=["abcdef01234"])
    assert 1 <= len(written) <= 5 and not deleted


@pytest.mark.parametrize("version,make_ip", [
    (4, lambda i: "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)),
    (6, lambda i: "fd00::%x:%x" % (i * 977 >> 16, i * 977 & 0xffff)),
])
def test_tag_tree_marks_members_only(version, make_ip):
    members = [make_ip(i) for i in range(0, 3000, 3)]
    tree = rules.make_tag_tree("web", version, Side.SRC)
    written, _ = tree.update(added=[rules.ip_key(ip) for ip in members])
    root = rules.tag_tree_root("web", version, Side.SRC)
    walker = Walker(written)
    mark = "-j MARK --set-xmark 0x2000000/0x2000000"
    for ip in members[:100]:
        walker.evaluated = 0
        assert walker.run(root, {"-s": ip}) == mark
        assert walker.evaluated <= 12 * (rules.LEAF_MAX + 1)
    for ip in [make_ip(i) for i in range(1, 300, 3)]:
        assert walker.run(root, {"-s": ip}) is None


def test_host_cidrs_are_canonical():
    assert rules.render_host_cidr("10.0.0.1") == "10.0.0.1/32"
    assert rules.render_host_cidr("fd00:0::01") == "fd00::1/128"


def test_ip_keys():
    assert rules.ip_key("10.0.0.1") == "0a000001"
    assert rules.ip_key("fd00::1") == "fd" + "0" * 29 + "1"


# -- iptables / ipset text ------------------------------------------------------------------------

SAVE = """# Generated by iptables-nft-save
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:felix-p-A-i - [0:0]
:felix-empty - [0:0]
-A INPUT -j felix-INPUT
-A felix-p-A-i -m comment --comment "x y" -g felix-ALLOW
COMMIT
"""


def test_parse_iptables_save_reads_one_table():
    chains = iptables.parse_save(SAVE, "filter")
    assert chains == {"INPUT": ["-j felix-INPUT"], "FORWARD": [],
                      "felix-p-A-i": ['-m comment --comment "x y" -g felix-ALLOW'], "felix-empty": []}
    assert iptables.parse_save(SAVE, "nat") == {"POSTROUTING": ["-j MASQUERADE"]}


def test_render_restore_declares_writes_then_deletes():
    text = iptables.render_restore("filter", writes=[("a", ["-j DROP"]), ("b", [])], deletes=["c"],
                                   inserts=["-I INPUT 1 -j a"])
    assert text.splitlines() == ["*filter", ":a - [0:0]", ":b - [0:0]", ":c - [0:0]", "-A a -j DROP",
                                 "-X c", "-I INPUT 1 -j a", "COMMIT"]


def test_comments_are_quoted_like_iptables_save():
    assert rules.render_comment("plain_word-1") == "-m comment --comment plain_word-1"
    assert rules.render_comment('has space "q"') == "-m comment --comment \"has space 'q'\""
