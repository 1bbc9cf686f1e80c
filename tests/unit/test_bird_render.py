"""calicoctl.agent.bgp.bird_config: etcd leaves -> BirdInputs -> BIRD 2 text.

The rendered text is also handed to the real ``bird -p`` (parse only, no
daemon, no kernel) when BIRD is installed, so a syntax slip fails here.
"""
import json
import shutil
import subprocess

import pytest

from calicoctl import model
from calicoctl.agent.bgp import bird_config
from calicoctl.host import bird as bird_host
from calicoctl.datastore import paths


def host_items(hostname, ip4, ip6=None, as_num=None):
    items = {paths.host_ip_addr(hostname, 4): ip4,
             paths.host_ip_addr(hostname, 6): ip6 or ""}
    if as_num is not None:
        items[paths.host_as_num(hostname)] = str(as_num)
    return items


def pool_items(*pools):
    return {paths.pool_key(pool["cidr"]): json.dumps(pool) for pool in pools}


def peer_json(ip, as_num):
    return json.dumps({"ip": ip, "as_num": as_num})


def two_hosts(**extra):
    items = {}
    items.update(host_items("calico-01", "172.17.8.101"))
    items.update(host_items("calico-02", "172.17.8.102"))
    items.update(pool_items({"cidr": "192.168.0.0/16"}))
    items[paths.BGP_GLOBAL_AS] = "64511"
    items[paths.BGP_NODE_MESH] = json.dumps({"enabled": True})
    items.update(extra)
    return items


def names(inputs):
    return [spec.protocol_name for spec in inputs.peers]


# -- calculate_bird_inputs -------------------------------------------------------

def test_no_ipv4_address_means_no_config():
    assert bird_config.calculate_bird_inputs(two_hosts(), "calico-03") is None
    items = two_hosts()
    items[paths.host_ip_addr("calico-01", 4)] = ""
    assert bird_config.calculate_bird_inputs(items, "calico-01") is None


def test_mesh_peers_every_other_host_with_its_as():
    items = two_hosts()
    items.update(host_items("calico-03", "172.17.8.103", as_num=64600))
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert inputs.router_id == "172.17.8.101"
    assert inputs.local_as == 64511
    assert [(s.kind, s.ip, s.as_num) for s in inputs.peers] == [
        ("Mesh", "172.17.8.102", 64511), ("Mesh", "172.17.8.103", 64600)]
    assert names(inputs) == ["Mesh_172_17_8_102", "Mesh_172_17_8_103"]


def test_as_number_precedence_host_then_global_then_default():
    items = two_hosts()
    assert bird_config.calculate_bird_inputs(items, "calico-01").local_as == 64511
    items[paths.BGP_GLOBAL_AS] = "65000"
    assert bird_config.calculate_bird_inputs(items, "calico-01").local_as == 65000
    assert bird_config.calculate_bird_inputs(items, "calico-01").peers[0].as_num == 65000
    items[paths.host_as_num("calico-01")] = "64999"
    assert bird_config.calculate_bird_inputs(items, "calico-01").local_as == 64999
    del items[paths.BGP_GLOBAL_AS]
    items[paths.host_as_num("calico-01")] = "not-a-number"
    assert bird_config.calculate_bird_inputs(items, "calico-01").local_as == 64511


def test_mesh_off_leaves_only_configured_peers():
    items = two_hosts()
    items[paths.BGP_NODE_MESH] = json.dumps({"enabled": False})
    assert bird_config.calculate_bird_inputs(items, "calico-01").peers == ()
    items[paths.host_peer("calico-01", "172.17.8.102")] = peer_json("172.17.8.102", 64513)
    items[paths.host_peer("calico-02", "172.17.8.101")] = peer_json("172.17.8.101", 64513)
    items[paths.global_peer("10.0.0.1")] = peer_json("10.0.0.1", 65001)
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert [(s.kind, s.ip, s.as_num) for s in inputs.peers] == [
        ("Node", "172.17.8.102", 64513), ("Global", "10.0.0.1", 65001)]


def test_missing_or_bad_mesh_setting_means_on():
    items = two_hosts()
    del items[paths.BGP_NODE_MESH]
    assert names(bird_config.calculate_bird_inputs(items, "calico-01")) == ["Mesh_172_17_8_102"]
    items[paths.BGP_NODE_MESH] = "{broken"
    assert names(bird_config.calculate_bird_inputs(items, "calico-01")) == ["Mesh_172_17_8_102"]


def test_one_session_per_address_node_beats_global_beats_mesh():
    items = two_hosts()
    items[paths.global_peer("172.17.8.102")] = peer_json("172.17.8.102", 64512)
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert [(s.kind, s.as_num) for s in inputs.peers] == [("Global", 64512)]
    items[paths.host_peer("calico-01", "172.17.8.102")] = peer_json("172.17.8.102", 64513)
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert [(s.kind, s.as_num) for s in inputs.peers] == [("Node", 64513)]


def test_global_peer_naming_this_host_is_kept():
    # The reference showed such a session as Idle; users see it is pointless.
    items = two_hosts()
    items[paths.BGP_NODE_MESH] = json.dumps({"enabled": False})
    items[paths.global_peer("172.17.8.101")] = peer_json("172.17.8.101", 64511)
    assert names(bird_config.calculate_bird_inputs(items, "calico-01")) == ["Global_172_17_8_101"]


def test_ipv6_sessions_only_with_an_ipv6_address_here():
    items = two_hosts()
    items.update(host_items("calico-02", "172.17.8.102", ip6="fd00::102"))
    items[paths.global_peer("fd00::99")] = peer_json("fd00::99", 65002)
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert inputs.ipv6 is None
    assert names(inputs) == ["Mesh_172_17_8_102"]
    items.update(host_items("calico-01", "172.17.8.101", ip6="fd00::101"))
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert inputs.ipv6 == "fd00::101"
    assert names(inputs) == ["Mesh_172_17_8_102", "Global_fd00__99", "Mesh_fd00__102"]


def test_invalid_peers_and_pools_are_ignored():
    items = two_hosts()
    items[paths.global_peer("10.0.0.1")] = "{not json"
    items[paths.global_peer("10.0.0.2")] = peer_json("10.0.0.2", "abc")
    # A v6 address filed under peer_v4 is not a v4 peer.
    items[paths.global_peers_dir(4) + "/fd00::5"] = peer_json("fd00::5", 65000)
    items[paths.pool_key("10.9.0.0/16")] = "nonsense"
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert names(inputs) == ["Mesh_172_17_8_102"]
    assert inputs.pools_v4 == ("192.168.0.0/16",)


def test_pools_split_by_family_and_tunnelled_ones_marked():
    items = two_hosts(**{})
    items.update(pool_items({"cidr": "10.10.0.0/16", "vxlan": True},
                            {"cidr": "10.20.0.0/16", "ipip": "tunl0"},
                            {"cidr": "fd80::/64"}))
    inputs = bird_config.calculate_bird_inputs(items, "calico-01")
    assert inputs.pools_v4 == ("10.10.0.0/16", "10.20.0.0/16", "192.168.0.0/16")
    assert inputs.pools_v6 == ("fd80::/64",)
    assert inputs.tunnelled_v4 == ("10.10.0.0/16",)
    inputs = bird_config.calculate_bird_inputs(items, "calico-01", ipip_tunnelled=True)
    assert inputs.tunnelled_v4 == ("10.10.0.0/16", "10.20.0.0/16")


def test_relevant_keys():
    assert bird_config.is_relevant_key(paths.BGP_NODE_MESH, "h")
    assert bird_config.is_relevant_key(paths.pool_key("10.0.0.0/8"), "h")
    assert bird_config.is_relevant_key(paths.global_config("InterfacePrefix"), "h")
    assert bird_config.is_relevant_key(paths.host_config("h", "InterfacePrefix"), "h")
    assert not bird_config.is_relevant_key(paths.host_config("other", "InterfacePrefix"), "h")
    assert not bird_config.is_relevant_key(paths.global_config("DefaultEndpointToHostAction"), "h")
    assert not bird_config.is_relevant_key(paths.endpoint_key("h", "docker", "w", "e"), "h")
    assert not bird_config.is_relevant_key(paths.profile_rules("P"), "h")


# -- route reflectors: the topology decision ---------------------------------------

def cluster(reflectors=("calico-01", "calico-02"), mesh=False, hosts=4, ip6=False):
    """``hosts`` hosts (calico-01 ...), ``reflectors`` with cluster ID 244.0.0.1."""
    items = {}
    for n in range(1, hosts + 1):
        items.update(host_items("calico-%02d" % n, "172.17.8.1%02d" % n, ip6="fd00::%d" % n if ip6 else None))
    for name in reflectors:
        items[paths.host_rr_cluster_id(name)] = "244.0.0.1"
    items.update(pool_items({"cidr": "192.168.0.0/16"}))
    items[paths.BGP_NODE_MESH] = json.dumps({"enabled": mesh})
    return items


def sessions(items, hostname):
    """(kind, ip, rr cluster id, rr client) of each session of ``hostname``."""
    return [(s.kind, s.ip, s.rr_cluster_id, s.rr_client)
            for s in bird_config.calculate_bird_inputs(items, hostname).peers]


def test_mesh_on_ignores_reflectors():
    items = cluster(mesh=True, hosts=3)
    assert sessions(items, "calico-01") == [("Mesh", "172.17.8.102", None, False),
                                            ("Mesh", "172.17.8.103", None, False)]
    assert sessions(items, "calico-03") == [("Mesh", "172.17.8.101", None, False),
                                            ("Mesh", "172.17.8.102", None, False)]


def test_mesh_off_reflectors_peer_each_other_and_serve_every_other_host():
    items = cluster()
    assert sessions(items, "calico-01") == [("Reflector", "172.17.8.102", "244.0.0.1", False),
                                            ("Client", "172.17.8.103", "244.0.0.1", True),
                                            ("Client", "172.17.8.104", "244.0.0.1", True)]


def test_mesh_off_other_hosts_peer_with_the_reflectors_only():
    items = cluster()
    assert sessions(items, "calico-04") == [("Reflector", "172.17.8.101", None, False),
                                            ("Reflector", "172.17.8.102", None, False)]
    # No reflector at all: no session between hosts.
    assert sessions(cluster(reflectors=()), "calico-04") == []


def test_reflector_sessions_over_ipv4_and_ipv6():
    items = cluster(reflectors=("calico-01",), hosts=2, ip6=True)
    assert sessions(items, "calico-01") == [("Client", "172.17.8.102", "244.0.0.1", True),
                                            ("Client", "fd00::2", "244.0.0.1", True)]
    assert sessions(items, "calico-02") == [("Reflector", "172.17.8.101", None, False),
                                            ("Reflector", "fd00::1", None, False)]


def test_reflection_stays_within_the_as():
    items = cluster(reflectors=("calico-01",), hosts=3)
    items[paths.host_as_num("calico-03")] = "65000"
    assert sessions(items, "calico-01") == [("Client", "172.17.8.102", "244.0.0.1", True),
                                            ("Client", "172.17.8.103", None, False)]


@pytest.mark.parametrize("stored", ["nonsense", "0.0.0.0", "244.0.0", "fd00::1", ""])
def test_invalid_cluster_id_is_not_a_reflector(stored):
    items = cluster(reflectors=("calico-01",), hosts=2)
    items[paths.host_rr_cluster_id("calico-02")] = stored
    items[paths.host_rr_cluster_id("calico-01")] = stored
    assert sessions(items, "calico-02") == []


def test_configured_peers_work_beside_reflectors_and_win_over_them():
    items = cluster(hosts=3)
    items[paths.global_peer("10.0.0.1")] = peer_json("10.0.0.1", 65001)
    items[paths.host_peer("calico-03", "172.17.8.101")] = peer_json("172.17.8.101", 64511)
    assert sessions(items, "calico-03") == [("Node", "172.17.8.101", None, False),
                                            ("Global", "10.0.0.1", None, False),
                                            ("Reflector", "172.17.8.102", None, False)]


def test_topology_from_models():
    def host(name, ip, cluster_id=None, as_num=None):
        return model.BgpHost(name, ipv4=ip, as_num=as_num, rr_cluster_id=cluster_id)
    hosts = [host("a", "10.0.0.1", "1.1.1.1"), host("b", "10.0.0.2"), host("c", None), host("d", "10.0.0.4")]
    assert [(s.kind, s.ip) for s in bird_config.calculate_topology_peers(hosts[1], hosts, False, 64511)] == [
        ("Reflector", "10.0.0.1")]
    assert [(s.kind, s.ip) for s in bird_config.calculate_topology_peers(hosts[0], hosts, False, 64511)] == [
        ("Client", "10.0.0.2"), ("Client", "10.0.0.4")]
    assert [s.kind for s in bird_config.calculate_topology_peers(hosts[1], hosts, True, 64511)] == ["Mesh", "Mesh"]


def test_reflector_ids_are_relevant_keys():
    assert bird_config.is_relevant_key(paths.host_rr_cluster_id("calico-01"), "calico-02")


# -- render_bird_config -------------------------------------------------------------

def render(items, hostname="calico-01", **kwargs):
    return bird_config.render_bird_config(bird_config.calculate_bird_inputs(items, hostname, **kwargs))


def test_render_is_deterministic():
    items = two_hosts()
    items.update(host_items("calico-03", "172.17.8.103"))
    reordered = dict(reversed(list(items.items())))
    assert render(items) == render(reordered)


def test_render_mesh_config_essentials():
    text = render(two_hosts())
    assert "router id 172.17.8.101;" in text
    assert "local 172.17.8.101 as 64511;" in text
    assert "protocol bgp Mesh_172_17_8_102 from calico_v4 {\n  neighbor 172.17.8.102 as 64511;\n}" in text
    assert "next hop self;" in text
    assert "learn;" in text
    assert 'interface -"cali*", -"vxlan.calico", -"tunl0", "*";' in text
    assert "if net ~ [ 192.168.0.0/16+ ] then {" in text
    assert "template bgp calico_v6" not in text


def test_render_reflector_sessions():
    text = render(cluster(hosts=3))
    assert ("protocol bgp Client_172_17_8_103 from calico_v4 {\n  neighbor 172.17.8.103 as 64511;\n"
            "  rr client;\n  rr cluster id 244.0.0.1;\n") in text
    assert "protocol bgp Reflector_172_17_8_102 from calico_v4 {\n  neighbor 172.17.8.102 as 64511;\n" \
           "  rr cluster id 244.0.0.1;\n" in text
    assert text.count("next hop self ebgp;") == 2
    client = render(cluster(hosts=3), "calico-03")
    assert "protocol bgp Reflector_172_17_8_101 from calico_v4 {\n  neighbor 172.17.8.101 as 64511;\n}" in client
    assert "rr client" not in client and "rr cluster id" not in client and "next hop self ebgp" not in client


def test_render_without_pools_exports_nothing():
    items = two_hosts()
    del items[paths.pool_key("192.168.0.0/16")]
    text = render(items)
    export_filter = text.split("filter calico_bgp_v4 {", 1)[1].split("}", 1)[0]
    assert export_filter.strip() == "reject;"


def test_render_tunnelled_pools_kept_out_of_the_kernel():
    items = two_hosts()
    items.update(pool_items({"cidr": "10.10.0.0/16", "vxlan": True}))
    text = render(items)
    kernel_filter = text.split("filter calico_kernel_v4 {", 1)[1].split("}", 1)[0]
    assert "if net ~ [ 10.10.0.0/16+ ] then reject;" in kernel_filter
    assert "192.168" not in kernel_filter


def test_render_interface_prefix_from_config():
    items = two_hosts()
    items[paths.global_config("InterfacePrefix")] = "tap"
    text = render(items)
    assert 'ifname ~ "tap*"' in text and '-"tap*"' in text


def test_render_interface_prefix_of_the_host_over_the_global_one():
    # The same decision as the policy dataplane and the routes (model.interface_prefix).
    items = two_hosts()
    items[paths.global_config("InterfacePrefix")] = "tap"
    items[paths.host_config("calico-01", "InterfacePrefix")] = "wl"
    items[paths.host_config("calico-02", "InterfacePrefix")] = "other"
    text = render(items)
    assert 'ifname ~ "wl*"' in text and '-"wl*"' in text and "tap" not in text and "other" not in text
    items[paths.host_config("calico-01", "InterfacePrefix")] = "x" * 13      # invalid: the default
    assert 'ifname ~ "cali*"' in render(items)


BIRD = shutil.which("bird")


@pytest.mark.skipif(BIRD is None, reason="bird (Debian bird2) is not installed")
@pytest.mark.parametrize("case", ["mesh", "no-pools", "v6-and-peers", "mesh-off-tunnels", "reflector"])
def test_bird_accepts_the_rendered_config(case, tmp_path):
    items = two_hosts()
    if case == "reflector":
        items = cluster(hosts=4, ip6=True)
        items[paths.host_as_num("calico-04")] = "65000"      # a plain eBGP session, no rr options
    if case == "no-pools":
        del items[paths.pool_key("192.168.0.0/16")]
    elif case == "v6-and-peers":
        items.update(host_items("calico-01", "172.17.8.101", ip6="fd00::101", as_num=64600))
        items.update(host_items("calico-02", "172.17.8.102", ip6="fd00::102"))
        items.update(pool_items({"cidr": "fd80:24e2:f998:72d6::/64"}))
        items[paths.global_peer("fd00::99")] = peer_json("fd00::99", 65002)
        items[paths.host_peer("calico-01", "10.0.0.1")] = peer_json("10.0.0.1", 4200000000)
    elif case == "mesh-off-tunnels":
        items[paths.BGP_NODE_MESH] = json.dumps({"enabled": False})
        items.update(pool_items({"cidr": "10.10.0.0/16", "vxlan": True},
                                {"cidr": "10.20.0.0/16", "ipip": "tunl0", "masquerade": True}))
    path = tmp_path / "bird.cfg"
    path.write_text(render(items, ipip_tunnelled=True))
    result = subprocess.run([BIRD, "-p", "-c", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + path.read_text()


def test_parse_bird_protocols():
    text = (
        "BIRD 2.0.12 ready.\n"
        "Name       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     20:40:41.535  \n"
        "Mesh_172_17_8_102 BGP        ---        up     20:40:42.300  Established   \n"
        "Global_172_17_8_101 BGP        ---        start  20:40:46.682  Idle          BGP Error: Bad BGP identifier\n")
    rows = bird_host.parse_protocols(text)
    assert [r.name for r in rows] == ["device1", "Mesh_172_17_8_102", "Global_172_17_8_101"]
    assert rows[1].state == "up" and rows[1].info == "Established"
    assert rows[2].since == "20:40:46.682"
    assert rows[2].info == "Idle BGP Error: Bad BGP identifier"


# Where the two parsers this project once had disagreed, the agent's took
# any number-led word with ':' or '-' for the time, and knew only BIRD 2's
# capitalised header. One parser now, and these pin down its choice.

def test_protocol_table_info_that_starts_with_a_number_stays_info():
    text = ("Name       Proto      Table      State  Since         Info\n"
            "Node_10_0_0_3 BGP     ---        start  20:40:10.440  10.0.0.3:179 unreachable\n"
            "Mesh_10_0_0_4 BGP     ---        start  2024-05-01 10:00:00  2-way  \n")
    rows = bird_host.parse_protocols(text)
    assert [(r.since, r.info) for r in rows] == [("20:40:10.440", "10.0.0.3:179 unreachable"),
                                                  ("2024-05-01 10:00:00", "2-way")]


def test_protocol_table_header_in_any_case():
    text = "name     proto    table    state  since       info\nMesh_10_0_0_2 BGP master up 20:40:11 Established\n"
    assert [(r.name, r.state, r.info) for r in bird_host.parse_protocols(text)] == [
        ("Mesh_10_0_0_2", "up", "Established")]
    assert bird_host.parse_protocols("BIRD 2.0.12 ready.\nAccess restricted\n") is None
