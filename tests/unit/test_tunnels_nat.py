"""Pure logic of the tunnel and NAT-outgoing components (agent/routing/tunnels.py, agent/routing/nat.py)."""
import json

from calicoctl import model
from calicoctl.agent.routing import nat, tunnels
from calicoctl.datastore import paths


def endpoint(host, ip, workload="w"):
    key = paths.endpoint_key(host, "docker", workload + ip, "e" + ip.replace(".", ""))
    value = json.dumps({"state": "active", "name": "cali123", "mac": None, "profile_ids": [],
                        "ipv4_nets": ["%s/32" % ip], "ipv6_nets": [],
                        "ipv4_gateway": None, "ipv6_gateway": None})
    return key, value


def vtep(host, ip, mac):
    return paths.host_vxlan(host), json.dumps({"ip": ip, "mac": mac, "vni": 4096})


def cluster_items():
    items = dict([
        (paths.pool_key("10.65.0.0/16"), json.dumps({"cidr": "10.65.0.0/16", "vxlan": True})),
        (paths.pool_key("192.168.0.0/16"), json.dumps({"cidr": "192.168.0.0/16"})),
        (paths.host_ip_addr("h1", 4), "172.17.8.101"),
        (paths.host_ip_addr("h2", 4), "172.17.8.102"),
        (paths.host_ip_addr("h3", 4), "172.17.8.103"),
        vtep("h1", "172.17.8.101", "02:00:00:00:00:01"),
        vtep("h2", "172.17.8.102", "02:00:00:00:00:02"),
        endpoint("h1", "10.65.0.1"),
        endpoint("h2", "10.65.0.2"),
        endpoint("h2", "192.168.0.2"),     # not in a VXLAN pool
        endpoint("h3", "10.65.0.3"),       # h3 has no VXLAN record (yet)
    ])
    return items


def plan_for(items, host="h1"):
    index = tunnels.TunnelIndex()
    index.load(items)
    return tunnels.calculate_vxlan_plan(host, index, 4096)


def test_vxlan_plan_routes_remote_vxlan_pool_workloads_to_their_vtep():
    plan = plan_for(cluster_items())
    assert plan.wanted and plan.local_ip == "172.17.8.101"
    assert plan.routes == {"10.65.0.2/32": "172.17.8.102"}
    assert plan.neighbours == {"172.17.8.102": "02:00:00:00:00:02"}
    assert plan.fdb == {"02:00:00:00:00:02": "172.17.8.102"}


def test_vxlan_plan_follows_updates_and_deletes():
    index = tunnels.TunnelIndex()
    index.load(cluster_items())
    key, value = vtep("h3", "172.17.8.103", "02:00:00:00:00:03")
    assert index.update(key, value) == {index.VTEPS}
    assert index.update(key, value) == set()     # unchanged: nothing to do
    assert index.update(*endpoint("h3", "10.65.0.9")) == {index.ENDPOINTS}
    plan = tunnels.calculate_vxlan_plan("h1", index, 4096)
    assert plan.routes == {"10.65.0.2/32": "172.17.8.102", "10.65.0.3/32": "172.17.8.103",
                           "10.65.0.9/32": "172.17.8.103"}
    # The whole host h2 goes (node stop; the dispatcher hands over each leaf
    # of the deleted directories): its routes, neighbour and FDB entry go.
    h2_leaves = [key for key in cluster_items()
                 if key.startswith((paths.host_dir("h2") + "/", paths.bgp_host_dir("h2") + "/"))]
    changed = set()
    for leaf in h2_leaves:
        changed |= index.update(leaf, None)
    assert changed == {index.VTEPS, index.ENDPOINTS, index.HOSTS}
    assert index.update(h2_leaves[0], None) == set()     # already gone
    plan = tunnels.calculate_vxlan_plan("h1", index, 4096)
    assert plan.routes == {"10.65.0.3/32": "172.17.8.103", "10.65.0.9/32": "172.17.8.103"}
    assert set(plan.neighbours) == {"172.17.8.103"}


def test_vxlan_plan_unwanted_without_pool_or_own_address():
    items = cluster_items()
    del items[paths.pool_key("10.65.0.0/16")]
    assert not plan_for(items).wanted
    items = cluster_items()
    assert not plan_for(items, host="h9").wanted


def test_vxlan_plan_ignores_foreign_vni_and_bad_records():
    items = cluster_items()
    items[paths.host_vxlan("h2")] = json.dumps({"ip": "172.17.8.102", "mac": "02:00:00:00:00:02", "vni": 7})
    items[paths.host_vxlan("h3")] = "{garbage"
    assert plan_for(items).routes == {}


def test_remote_routes_for_ipip_use_host_addresses():
    index = tunnels.TunnelIndex()
    items = cluster_items()
    items[paths.pool_key("10.70.0.0/16")] = json.dumps({"cidr": "10.70.0.0/16", "ipip": "tunl0"})
    items.update([endpoint("h3", "10.70.0.3")])
    index.load(items)
    pools = index.pools_where(lambda pool: bool(pool.ipip))
    assert tunnels.calculate_remote_routes("h1", pools, index.endpoint_list(), index.host_ips) == {
        "10.70.0.3/32": "172.17.8.103"}


def test_vxlan_tunnel_model_round_trip_and_validation():
    tunnel = model.VxlanTunnel.from_json('{"ip": "10.0.0.1", "mac": "02:AA:00:00:00:01", "vni": 4096}')
    assert tunnel.mac == "02:aa:00:00:00:01"
    assert model.VxlanTunnel.from_json(tunnel.to_json()) == tunnel
    import pytest
    from calicoctl.errors import ValidationError
    for bad in ('{"ip": "fd00::1", "mac": "02:00:00:00:00:01", "vni": 1}',
                '{"ip": "10.0.0.1", "mac": "nope", "vni": 1}',
                '{"ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "vni": 0}',
                '{"ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "vni": true}'):
        with pytest.raises(ValidationError):
            model.VxlanTunnel.from_json(bad)


# -- NAT-outgoing -------------------------------------------------------------------

def pools(*specs):
    return [model.IPPool(cidr=cidr, masquerade=masq) for cidr, masq in specs]


def test_nat_sets_only_when_something_masquerades():
    assert nat.calculate_nat_sets(pools(("10.0.0.0/8", False))) is None
    assert nat.calculate_nat_sets(pools(("10.0.0.0/8", True), ("192.168.0.0/16", False),
                                        ("fd00::/64", True))) == (
        ("10.0.0.0/8",), ("10.0.0.0/8", "192.168.0.0/16"))


def test_nat_restore_adds_chain_and_hook_once():
    text = nat.render_nat_restore({"POSTROUTING": ["-j DOCKER_POSTROUTING"]}, True)
    assert text.splitlines() == [
        "*nat", ":calico-nat-outgoing - [0:0]", "-F calico-nat-outgoing",
        "-A calico-nat-outgoing " + nat.RULE, "-I POSTROUTING 1 -j calico-nat-outgoing", "COMMIT"]
    in_place = {"POSTROUTING": ["-j calico-nat-outgoing"], "calico-nat-outgoing": [nat.RULE]}
    assert nat.render_nat_restore(in_place, True) is None
    tampered = {"POSTROUTING": ["-j calico-nat-outgoing"], "calico-nat-outgoing": []}
    assert "-I POSTROUTING" not in nat.render_nat_restore(tampered, True)


def test_nat_restore_removal_touches_only_ours():
    chains = {"POSTROUTING": ["-j OTHER", "-j calico-nat-outgoing"], "calico-nat-outgoing": [nat.RULE],
              "OTHER": ["-j MASQUERADE"]}
    text = nat.render_nat_restore(chains, False)
    assert text.splitlines() == ["*nat", "-D POSTROUTING -j calico-nat-outgoing",
                                 "-F calico-nat-outgoing", "-X calico-nat-outgoing", "COMMIT"]
    assert nat.render_nat_restore({"POSTROUTING": ["-j OTHER"]}, False) is None


def test_tunnel_routes_follow_each_endpoint_without_a_pass_over_the_others():
    index = tunnels.TunnelIndex()
    index.load(cluster_items())
    routes = tunnels.TunnelRoutes("h1")
    pools = index.pools_where(lambda pool: pool.vxlan)
    gateways = {"h2": "172.17.8.102", "h3": "172.17.8.103"}
    assert routes.rebuild(index, pools, gateways) == {"10.65.0.2/32": "172.17.8.102", "10.65.0.3/32": "172.17.8.103"}
    moved, value = endpoint("h2", "10.65.0.7")
    index.update(moved, value)
    assert routes.update(index, [moved]) == {"10.65.0.7/32": "172.17.8.102"}
    outside, value = endpoint("h3", "192.168.0.9")          # not in a VXLAN pool: no route
    index.update(outside, value)
    assert routes.update(index, [outside]) == {}
    # Two endpoints naming one network: the route stays while either does.
    twin, value = endpoint("h3", "10.65.0.7", workload="twin")
    index.update(twin, value)
    assert routes.update(index, [twin]) == {}                # the first claim keeps its gateway
    index.update(moved, None)
    assert routes.update(index, [moved]) == {"10.65.0.7/32": "172.17.8.103"}
    index.update(twin, None)
    assert routes.update(index, [twin]) == {"10.65.0.7/32": None}
    # What is left is what a rebuild gives.
    assert routes.routes == tunnels.TunnelRoutes("h1").rebuild(index, pools, gateways)
