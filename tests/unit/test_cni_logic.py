"""The decisions behind the CNI plugins (calicoctl.ops.cni_logic), and the
plugin binary's contract with the agent (calicoctl/cni_client.py), without
a kernel."""
import ast
import json
import sys

import netaddr

from calicoctl import cni_client, identity, model
from calicoctl.host.netlink import LinkInfo
from calicoctl.ops import cni_logic as logic
from calicoctl.ops import cni_protocol as protocol
from calicoctl.ops.container_logic import calculate_veth_name

NETNS = "/run/netns/c1"


def test_attachment_ids_and_host_names_differ_where_container_ids_share_a_prefix():
    # nerdctl's IDs begin with the namespace: a prefix of the ID would collide.
    first = logic.calculate_attachment_id("netA", "default-" + "a" * 56 + "0", "eth0")
    second = logic.calculate_attachment_id("netA", "default-" + "a" * 56 + "1", "eth0")
    assert first != second and len(first) == 32 and int(first, 16) >= 0
    assert calculate_veth_name(first, "cali") != calculate_veth_name(second, "cali")
    assert logic.calculate_attachment_id("netA", "c1", "eth1") != logic.calculate_attachment_id("netA", "c1", "eth0")
    assert logic.calculate_attachment_id("netB", "c1", "eth0") != logic.calculate_attachment_id("netA", "c1", "eth0")
    assert calculate_veth_name(first, "cali") == "cali" + first[:11]


def test_claim_owners_name_the_attachment():
    owner = logic.render_owner("h1", "netA", "c1", "eth0")
    assert owner == "h1/cni/netA/c1/eth0"
    assert logic.parse_owner(owner, "h1", "netA") == ("c1", "eth0")
    assert logic.parse_owner(owner, "h1", "netB") is None
    assert logic.parse_owner(owner, "h2", "netA") is None
    assert logic.parse_owner("h1/docker/abc", "h1", "netA") is None
    assert logic.parse_owner("", "h1", "netA") is None


def request(**changes):
    env = {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c1", "CNI_NETNS": NETNS, "CNI_IFNAME": "eth0"}
    data = {"cniVersion": "1.0.0", "name": "netA", "ipam": {"type": "calico-ipam"}}
    data.update(changes)
    return protocol.parse_request("calico", env, json.dumps(data).encode())


def test_add_results():
    add = request()
    host = LinkInfo(index=7, name="cali0123456789a", mac="ee:ee:ee:ee:ee:ee", up=True)
    cont = LinkInfo(index=2, name="eth0", mac="02:00:00:00:00:01", up=True)
    ips = [netaddr.IPAddress("192.168.3.4"), netaddr.IPAddress("fd80::4")]
    gateways = {4: "172.17.8.81", 6: "fd00:8::81"}
    result = protocol.render_result(logic.calculate_add_result(add, host, cont, ips, gateways), "1.0.0")
    assert result["interfaces"] == [{"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                                    {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": NETNS}]
    assert result["ips"] == [{"address": "192.168.3.4/32", "gateway": "172.17.8.81", "interface": 1},
                             {"address": "fd80::4/128", "gateway": "fd00:8::81", "interface": 1}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "172.17.8.81"}, {"dst": "::/0", "gw": "fd00:8::81"}]
    ipam = protocol.render_result(logic.calculate_ipam_result(add, ips[:1], {4: gateways[4]}), "0.4.0")
    assert ipam == {"cniVersion": "0.4.0", "routes": [{"dst": "0.0.0.0/0", "gw": "172.17.8.81"}],
                    "ips": [{"address": "192.168.3.4/32", "gateway": "172.17.8.81", "version": "4"}]}


PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "caliX"}, {"name": "eth0", "sandbox": NETNS}],
        "ips": [{"address": "192.168.3.4/32", "gateway": "172.17.8.81", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "172.17.8.81"}]}
OWNER = "h1/cni/netA/c1/eth0"


def healthy(**changes):
    endpoint = model.Endpoint(key=model.EndpointKey("h1", "cni", "c1", "e" * 32), name="caliX",
                              ipv4_nets=("192.168.3.4/32",), ipv4_gateway="172.17.8.81", container_interface="eth0")
    seen = dict(endpoint=endpoint, claims={"192.168.3.4": OWNER},
                host_link=LinkInfo(index=7, name="caliX", mac=None, up=True),
                container_link=LinkInfo(index=2, name="eth0", mac=None, up=True, peer_index=7),
                container_addresses=("192.168.3.4/32",), container_routes=(("default", "172.17.8.81"),
                                                                           ("172.17.8.81/32", None)),
                host_routes=("192.168.3.4/32",))
    seen.update(changes)
    return logic.Observation(**seen)


def codes(seen):
    check = request(prevResult=PREV)
    return [code for code, _ in logic.calculate_check_problems(check, logic.expected_addresses(check), OWNER, seen)]


def test_check_finds_each_difference_with_its_code():
    assert codes(healthy()) == []
    assert codes(healthy(endpoint=None)) == [protocol.CHECK_ENDPOINT]
    assert codes(healthy(claims={"192.168.3.4": None})) == [protocol.CHECK_ADDRESS]
    assert codes(healthy(claims={"192.168.3.4": "h2/docker/x"})) == [protocol.CHECK_ADDRESS]
    assert codes(healthy(host_link=None)) == [protocol.CHECK_INTERFACE]
    assert codes(healthy(host_link=LinkInfo(index=7, name="caliX", mac=None, up=False))) == [protocol.CHECK_INTERFACE]
    assert codes(healthy(container_link=None)) == [protocol.CHECK_INTERFACE]
    assert codes(healthy(container_link=LinkInfo(index=2, name="eth0", mac=None, up=True, peer_index=9))) \
        == [protocol.CHECK_INTERFACE]
    assert codes(healthy(container_addresses=())) == [protocol.CHECK_ADDRESS]
    assert codes(healthy(container_routes=())) == [protocol.CHECK_ROUTE]
    assert codes(healthy(host_routes=())) == [protocol.CHECK_ROUTE]


def test_check_reads_what_to_expect_from_prev_result():
    assert logic.expected_addresses(request(prevResult=PREV)) == ("192.168.3.4/32",)
    elsewhere = dict(PREV, interfaces=[{"name": "caliX"}, {"name": "eth0", "sandbox": "/other"}])
    assert code_of(lambda: logic.expected_addresses(request(prevResult=elsewhere))) == protocol.CHECK_INTERFACE
    assert code_of(lambda: logic.expected_addresses(request())) == protocol.INVALID_CONFIG
    # A route a later plugin put in the result is not ours to check.
    later = dict(PREV, routes=PREV["routes"] + [{"dst": "10.9.0.0/16", "gw": "192.168.3.1"}])
    check = request(prevResult=later)
    assert logic.calculate_check_problems(check, logic.expected_addresses(check), OWNER, healthy()) == []


def code_of(call):
    try:
        call()
    except protocol.CniError as exc:
        return exc.code
    raise AssertionError("no CniError")


def test_gc_selects_only_this_networks_attachments_that_are_not_valid():
    def endpoint(network, container, ifname):
        key = model.EndpointKey("h1", "cni", container, logic.calculate_attachment_id(network, container, ifname))
        return model.Endpoint(key=key, name="cali", container_interface=ifname)
    kept, gone, other = endpoint("netA", "c1", "eth0"), endpoint("netA", "c2", "eth0"), endpoint("netB", "c3", "eth0")
    valid = {("c1", "eth0")}
    assert logic.select_stale_endpoints([kept, gone, other], "netA", valid) == [gone]
    claims = [("192.168.0.0/16", "192.168.0.1", "h1/cni/netA/c1/eth0"),
              ("192.168.0.0/16", "192.168.0.2", "h1/cni/netA/c2/eth0"),
              ("192.168.0.0/16", "192.168.0.3", "h1/cni/netB/c3/eth0"),
              ("192.168.0.0/16", "192.168.0.4", "h2/cni/netA/c4/eth0"),
              ("192.168.0.0/16", "192.168.0.5", "h1/docker/c5"),
              ("192.168.0.0/16", "192.168.0.6", "")]
    assert logic.select_stale_claims(claims, "h1", "netA", valid) == [claims[1]]


# -- the plugin binary ------------------------------------------------------------------------

def test_the_plugin_binary_imports_only_the_standard_library():
    with open(cni_client.__file__) as handle:
        tree = ast.parse(handle.read())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert names and names <= set(sys.stdlib_module_names), names


def test_the_plugin_binary_speaks_the_agents_frames_and_versions():
    assert cni_client.SUPPORTED_VERSIONS == protocol.SUPPORTED_VERSIONS
    assert cni_client.SOCKET == "%s/%s" % (identity.RUN_DIR, identity.CNI_SOCKET)
    env = {"CNI_COMMAND": "DEL", "CNI_IFNAME": "eth0"}
    assert cni_client.encode_request("calico", env, b"{}") == protocol.encode_request("calico", env, b"{}")
    assert (cni_client.TRY_AGAIN_LATER, cni_client.NOT_AVAILABLE) == (protocol.TRY_AGAIN_LATER,
                                                                      protocol.NOT_AVAILABLE)
