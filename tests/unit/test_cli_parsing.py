"""Command-line parsing: usage texts, the rule grammar, the etcd environment.

Pure: docopt against each command's usage, no etcd. Anything that reaches
the datastore is tested in tests/functional against a real etcd.
"""
import io

import pytest

from calicoctl import model
from calicoctl.cli import main, parse, parse_versions
from calicoctl.cli import bgp, endpoint, pool, profile
from calicoctl.cli.output import render_peer_tables
from calicoctl.datastore import etcdconn
from calicoctl.errors import ValidationError
from calicoctl.ops import policy

# An unreachable etcd: any test here that touched the datastore would fail fast.
NO_ETCD = {"ETCD_AUTHORITY": "127.0.0.1:1"}


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(argv.split() if isinstance(argv, str) else argv, env=NO_ETCD, stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def rule_from(argv):
    return profile.parse_rule_args(profile.parse_args(argv.split()))


# -- top level ---------------------------------------------------------------------

def test_no_arguments_prints_usage_and_fails():
    rc, out, _ = cli([])
    assert rc == 1 and "Usage: calicoctl <command>" in out


def test_unknown_command_prints_usage_on_stderr():
    rc, out, err = cli("frobnicate")
    assert rc == 1 and out == "" and "Usage: calicoctl <command>" in err


@pytest.mark.parametrize("command,first_pattern", [
    ("profile", "calicoctl profile show [--detailed]"),
    ("endpoint", "calicoctl endpoint show"),
    ("pool", "calicoctl pool (add|remove) <CIDRS>..."),
    ("bgp", "calicoctl bgp peer add <PEER_IP> as <AS_NUM>"),
    ("version", "calicoctl version"),
])
def test_help_for_every_command(command, first_pattern):
    rc, out, err = cli([command, "--help"])
    assert rc == 0 and err == ""
    assert first_pattern in out


def test_profile_help_shows_the_whole_rule_grammar():
    _, out, _ = cli("profile P rule add --help")
    assert "rule add (inbound|outbound)" in out and "rule remove (inbound|outbound)" in out
    assert "--at=<POSITION>" in out


@pytest.mark.parametrize("argv", [
    "profile", "profile add", "profile add A B", "profile P rule add sideways allow",
    "profile P rule add inbound permit", "profile P rule add inbound allow tcp from ports",
    "profile P rule add inbound allow icmp from ports 80", "profile P tag frob T",
    "pool", "pool add", "pool show --ipv4 --ipv6", "pool range add 10.0.0.1",
    "bgp peer add 1.2.3.4", "bgp node-mesh maybe", "bgp default-node-as 1 2",
    "endpoint", "endpoint E profile", "endpoint show --bogus",
])
def test_usage_errors_print_usage_and_exit_1(argv):
    rc, out, err = cli(argv)
    assert rc == 1
    assert out == ""
    assert err.startswith("Usage:") and "Traceback" not in err


def test_rule_usage_error_shows_full_usage():
    _, _, err = cli("profile P rule add inbound allow tcp from nowhere")
    assert "calicoctl profile add <PROFILE>" in err and "rule add (inbound|outbound)" in err


# -- profile usage ----------------------------------------------------------------------

@pytest.mark.parametrize("argv,expected", [
    ("profile show", {"show": True, "--detailed": False}),
    ("profile show --detailed", {"show": True, "--detailed": True}),
    ("profile add WEB", {"add": True, "<PROFILE>": "WEB"}),
    ("profile remove WEB --no-check", {"remove": True, "<PROFILE>": "WEB", "--no-check": True}),
    ("profile WEB tag show", {"tag": 1, "show": True, "<PROFILE>": "WEB"}),
    ("profile WEB tag add T", {"tag": 1, "add": True, "<TAG>": "T"}),
    ("profile WEB tag remove T", {"tag": 1, "remove": True, "<TAG>": "T"}),
    ("profile WEB rule show", {"rule": True, "show": True}),
    ("profile WEB rule json", {"rule": True, "json": True}),
    ("profile WEB rule update", {"rule": True, "update": True}),
    ("profile WEB rule remove outbound --at=3", {"remove": True, "outbound": True, "--at": "3"}),
    ("profile WEB rule add inbound --at 2 deny", {"add": True, "inbound": True, "--at": "2", "deny": True}),
    ("profile add show", {"add": True, "<PROFILE>": "show"}),
])
def test_profile_usage(argv, expected):
    args = profile.parse_args(argv.split())
    for key, value in expected.items():
        assert args[key] == value, key


@pytest.mark.parametrize("argv,rule", [
    ("allow", {"action": "allow"}),
    ("deny", {"action": "deny"}),
    ("allow tcp", {"action": "allow", "protocol": "tcp"}),
    ("allow udp to ports 53", {"action": "allow", "protocol": "udp", "dst_ports": [53]}),
    ("allow tcp from ports 1000-2000,22 to ports 80:90",
     {"action": "allow", "protocol": "tcp", "src_ports": ["1000:2000", 22], "dst_ports": ["80:90"]}),
    ("deny tcp from ports 1 tag A cidr 10.1.0.0/16 to ports 2 tag B cidr 10.2.3.4/16",
     {"action": "deny", "protocol": "tcp", "src_ports": [1], "src_tag": "A", "src_net": "10.1.0.0/16",
      "dst_ports": [2], "dst_tag": "B", "dst_net": "10.2.0.0/16"}),
    ("allow icmp", {"action": "allow", "protocol": "icmp"}),
    ("allow icmp type 8", {"action": "allow", "protocol": "icmp", "icmp_type": 8}),
    ("allow icmp type 3 code 4 from tag A to cidr 1.2.3.0/24",
     {"action": "allow", "protocol": "icmp", "icmp_type": 3, "icmp_code": 4, "src_tag": "A",
      "dst_net": "1.2.3.0/24"}),
    ("allow icmpv6 type 128", {"action": "allow", "protocol": "icmpv6", "icmp_type": 128}),
    ("allow from tag WEB", {"action": "allow", "src_tag": "WEB"}),
    ("allow to cidr fd00::/8", {"action": "allow", "dst_net": "fd00::/8"}),
    ("deny from cidr 10.0.0.0/8 to tag X", {"action": "deny", "src_net": "10.0.0.0/8", "dst_tag": "X"}),
])
def test_rule_grammar(argv, rule):
    built = rule_from("profile P rule add inbound " + argv)
    assert built.to_dict() == rule
    # The remove grammar is the same, so a rule can be removed as it was written.
    assert rule_from("profile P rule remove outbound " + argv) == built


@pytest.mark.parametrize("argv,message", [
    ("allow tcp to ports 70000", "Invalid ports"),
    ("allow tcp to ports 90:80", "Invalid ports"),
    ("allow tcp to ports 80,,81", "Invalid ports"),
    ("allow icmp type 255", "ICMP type"),
    ("allow icmp type 8 code x", "ICMP code"),
    ("allow icmp type 1.5", "ICMP type"),
    ("allow from tag bad!tag", "tag"),
    ("allow from cidr 10.0.0.0/33", "CIDR"),
    ("allow to cidr 10.1/16", "CIDR"),
])
def test_rule_grammar_values_refused(argv, message):
    with pytest.raises(ValidationError) as error:
        rule_from("profile P rule add inbound " + argv)
    assert message in str(error.value)


def test_select_usage_keeps_whole_patterns():
    doc = profile.select_usage(profile.__doc__, lambda block: " rule add " in block)
    assert "calicoctl profile add <PROFILE>" not in doc
    assert "(icmp|icmpv6) [(type <ICMPTYPE>" in doc
    assert " rule remove " not in doc.split("Description:")[0]
    assert "Options:" in doc and "--at=<POSITION>" in doc


# -- endpoint, pool, bgp usage -----------------------------------------------------------

def test_endpoint_usage():
    args = parse(endpoint.__doc__, "endpoint show --host=h1 --orchestrator=docker --workload=w "
                                   "--endpoint=e --detailed".split())
    assert (args["--host"], args["--orchestrator"], args["--workload"], args["--endpoint"]) == \
        ("h1", "docker", "w", "e")
    args = parse(endpoint.__doc__, "endpoint E1 profile append --host=h1 A B".split())
    assert args["<ENDPOINT_ID>"] == "E1" and args["append"] and args["<PROFILES>"] == ["A", "B"]
    assert endpoint.parse_filters(args) == {"hostname": "h1"}
    args = parse(endpoint.__doc__, "endpoint E1 profile set".split())
    assert args["set"] and args["<PROFILES>"] == []


def test_endpoint_filters_validated():
    args = parse(endpoint.__doc__, "endpoint E1 profile show --workload=a/b".split())
    with pytest.raises(ValidationError):
        endpoint.parse_filters(args)


def test_pool_usage():
    args = parse(pool.__doc__, "pool add 10.0.0.0/8 fd00::/64 --nat-outgoing".split())
    assert args["<CIDRS>"] == ["10.0.0.0/8", "fd00::/64"] and args["--nat-outgoing"] and not args["--ipip"]
    args = parse(pool.__doc__, "pool range add 10.0.0.1 10.0.0.9 --vxlan".split())
    assert args["range"] and args["<START_IP>"] == "10.0.0.1" and args["--vxlan"]
    assert parse(pool.__doc__, ["pool", "show", "--ipv6"])["--ipv6"]


def test_bgp_usage():
    args = parse(bgp.__doc__, "bgp peer add 1.2.3.4 as 64512".split())
    assert args["<PEER_IP>"] == "1.2.3.4" and args["<AS_NUM>"] == "64512"
    assert parse(bgp.__doc__, "bgp node-mesh off".split())["off"]
    assert parse(bgp.__doc__, "bgp default-node-as".split())["<AS_NUM>"] is None


# -- pure helpers of the command modules ----------------------------------------------------

def test_build_pool_keeps_each_cidr_version():
    from calicoctl.validate import parse_cidr
    args = {"--ipip": False, "--nat-outgoing": True, "--vxlan": False}
    pools = [pool.build_pool(parse_cidr(c), args) for c in ("fd00::/64", "10.0.0.0/8")]
    assert [p.version for p in pools] == [6, 4]
    assert all(p.masquerade for p in pools)
    with pytest.raises(ValidationError):
        pool.build_pool(parse_cidr("fd00::/64"), dict(args, **{"--ipip": True}))


def test_endpoint_summary_rows():
    def ep(host, orch, workload, ep_id):
        return model.Endpoint(key=model.EndpointKey(host, orch, workload, ep_id), name="cali" + ep_id)
    rows = endpoint.calculate_summary_rows([ep("h2", "docker", "w1", "e1"), ep("h1", "docker", "w1", "e2"),
                                            ep("h1", "docker", "w1", "e3"), ep("h1", "docker", "w2", "e4")])
    assert rows == [["h1", "docker", 2, 3], ["h2", "docker", 1, 1]]


def test_versions_from_ipv4_ipv6_options():
    assert parse_versions(parse(pool.__doc__, ["pool", "show"])) == (4, 6)
    assert parse_versions(parse(bgp.__doc__, "bgp peer show --ipv4".split())) == (4,)
    assert parse_versions(parse(bgp.__doc__, "bgp peer show --ipv6".split())) == (6,)


def test_peer_tables():
    peers = [model.BGPPeer(ip="10.0.0.2", as_num=64512), model.BGPPeer(ip="fd00::2", as_num=64513)]
    lines = render_peer_tables(peers[:1], (4, 6), heading=lambda v: "Peer v%d" % v,
                               missing=lambda v: "No IPv%d peers." % v)
    assert len(lines) == 4 and lines[1] == lines[3] == ""
    assert "| Peer v4  | AS Num |" in lines[0] and "| 10.0.0.2 | 64512  |" in lines[0]
    assert lines[2] == "No IPv6 peers."
    only_v6 = render_peer_tables(peers, (6,), heading=lambda v: "Peer v%d" % v, missing=str)
    assert len(only_v6) == 2 and "fd00::2" in only_v6[0] and "10.0.0.2" not in only_v6[0]


def test_profiles_edit_lines():
    from calicoctl.ops import endpoint as endpoint_ops

    def line(action, current, names):
        decide = {"append": policy.calculate_profiles_append,
                  "set": policy.calculate_profiles_set}.get(action)
        change = decide(current, names) if decide else policy.calculate_profiles_remove(current, names, "E1")
        return endpoint.render_profiles_edit(endpoint_ops.ProfilesEdit("E1", action, change))
    assert line("append", ("A",), ("A", "B")) == "Appended profile B to endpoint E1. (A already there.)"
    assert line("append", ("A", "B"), ("B", "A")) == "Endpoint E1 already has profiles B, A; nothing to do."
    assert line("remove", ("A", "B", "C"), ("C", "A")) == "Removed profiles C, A from endpoint E1."
    assert line("set", ("A",), ("A",)) == "Endpoint E1 already has exactly these profiles; nothing to do."
    assert line("set", ("A",), ()) == "Endpoint E1 now has no profiles (all its traffic is dropped)."
    assert line("set", ("A",), ("B", "A")) == "Set the profiles of endpoint E1 to B, A."


# -- etcd settings from the environment -----------------------------------------------------

def test_default_authority():
    settings = etcdconn.parse_settings({})
    assert [e.url for e in settings.endpoints] == ["http://127.0.0.1:2379"]


def test_authority_and_scheme():
    settings = etcdconn.parse_settings({"ETCD_AUTHORITY": "etcd.local:4001", "ETCD_SCHEME": "https",
                                        "ETCD_CA_CERT_FILE": "/ca.pem"})
    assert [e.url for e in settings.endpoints] == ["https://etcd.local:4001"]
    assert settings.ca_cert == "/ca.pem"


def test_endpoints_list_wins_over_authority():
    settings = etcdconn.parse_settings({"ETCD_AUTHORITY": "1.1.1.1:1",
                                        "ETCD_ENDPOINTS": "http://10.0.0.1:2379, https://[fd00::1]:2380"})
    assert [e.url for e in settings.endpoints] == ["http://10.0.0.1:2379", "https://[fd00::1]:2380"]


@pytest.mark.parametrize("env", [
    {"ETCD_AUTHORITY": "localhost"},
    {"ETCD_AUTHORITY": "localhost:0"},
    {"ETCD_AUTHORITY": "localhost:65536"},
    {"ETCD_AUTHORITY": "localhost:port"},
    {"ETCD_AUTHORITY": "http://localhost:2379"},
    {"ETCD_AUTHORITY": ":2379"},
    {"ETCD_SCHEME": "ftp"},
    {"ETCD_ENDPOINTS": "localhost:2379"},
    {"ETCD_ENDPOINTS": ","},
    {"ETCD_CERT_FILE": "/cert.pem"},
])
def test_bad_etcd_settings_refused(env):
    with pytest.raises(ValidationError):
        etcdconn.parse_settings(env)


LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])      # 253 characters


@pytest.mark.parametrize("authority,url", [
    ("etcd.example.com:4001", "http://etcd.example.com:4001"),
    ("etcd_1:2379", "http://etcd_1:2379"),                  # container names have underscores
    ("etcd.:2379", "http://etcd.:2379"),
    ("[fd00::1]:2379", "http://[fd00::1]:2379"),
    (LONGEST_NAME + ":2379", "http://%s:2379" % LONGEST_NAME),
    ("a" * 63 + ":1", "http://%s:1" % ("a" * 63)),
])
def test_good_etcd_hosts(authority, url):
    assert [e.url for e in etcdconn.parse_settings({"ETCD_AUTHORITY": authority}).endpoints] == [url]


@pytest.mark.parametrize("variable,value,reason", [
    ("ETCD_AUTHORITY", "exa#mple:2379", "characters a host name cannot have"),
    ("ETCD_AUTHORITY", "etcd host:2379", "characters a host name cannot have"),
    ("ETCD_AUTHORITY", "-etcd:2379", "characters a host name cannot have"),
    ("ETCD_AUTHORITY", "ëtcd:2379", "characters a host name cannot have"),
    ("ETCD_AUTHORITY", "h%s:2379", "characters a host name cannot have"),
    ("ETCD_AUTHORITY", "a..b:2379", "1 to 63 characters"),
    ("ETCD_AUTHORITY", "a" * 64 + ":2379", "1 to 63 characters"),
    ("ETCD_AUTHORITY", LONGEST_NAME + "d:2379", "253 characters"),
    ("ETCD_AUTHORITY", "10.0.0.256:2379", "not an IPv4 address"),
    ("ETCD_AUTHORITY", "[etcd]:2379", "not an IPv6 address"),
    ("ETCD_AUTHORITY", "etcd:70000", "1 to 65535"),
    ("ETCD_AUTHORITY", "etcd:+1", "1 to 65535"),
    ("ETCD_AUTHORITY", "fd00::1:2379", "host:port"),
    ("ETCD_ENDPOINTS", "http://exa#mple:2379", "expected a URL"),
    ("ETCD_ENDPOINTS", "http://etcd:2379/v2", "expected a URL"),
    ("ETCD_ENDPOINTS", "http://user@etcd:2379", "expected a URL"),
    ("ETCD_ENDPOINTS", "http://etcd:2379?x=1", "expected a URL"),
    ("ETCD_ENDPOINTS", "http://[fd00::zz]:2379", "expected a URL"),
    ("ETCD_ENDPOINTS", "http://etcd:0", "1 to 65535"),
    ("ETCD_ENDPOINTS", "http://etcd:99999", "1 to 65535"),
    ("ETCD_ENDPOINTS", "http://10.0.0.1:2379,http://e%tcd:2379", "characters a host name cannot have"),
    ("ETCD_ENDPOINTS", "https://" + "a" * 64 + ":2379", "1 to 63 characters"),
])
def test_malformed_etcd_hosts_and_ports_name_the_variable(variable, value, reason):
    with pytest.raises(ValidationError) as error:
        etcdconn.parse_settings({variable: value})
    assert variable in str(error.value) and reason in str(error.value)
