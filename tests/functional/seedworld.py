"""The seed demonstration's cluster as etcd holds it once the demonstration
has run, written straight into etcd (no agent, no Docker): the world the
``--output=json`` examples of docs/json-output.md and the ``policy`` /
``ipam`` command tests are read from.

calico-01 (172.17.8.101) runs workloads A, B, C and calico-02
(172.17.8.102) runs D and E; A, C and E are in PROF_A_C_E, B in PROF_B, D in
PROF_D. A also has an IPv6 address, and so does E. calico-02 is a route
reflector too (unused: the node-to-node mesh is on).
"""
import json

from calicoctl import model
from calicoctl.datastore import paths

HOSTS = {"calico-01": ("172.17.8.101", "fd00::101"), "calico-02": ("172.17.8.102", "fd00::102")}
POOLS = ("192.168.0.0/16", "fd80:24e2:f998:72d6::/64")
# letter -> (host, IPv4, IPv6 or None, profile, endpoint ID)
WORKLOADS = {
    "A": ("calico-01", "192.168.0.1", "fd80:24e2:f998:72d6::1", "PROF_A_C_E", "3f2a5c0d7e9b4c1a8d6e2f0a1b3c5d7e"),
    "B": ("calico-01", "192.168.0.2", None, "PROF_B", "8b1e4d2c6a0f4e3b9c7d5a1e2f4b6c8d"),
    "C": ("calico-01", "192.168.0.3", None, "PROF_A_C_E", "c5d7e9f1a3b54c6d8e0f2a4b6c8d0e1f"),
    "D": ("calico-02", "192.168.0.4", None, "PROF_D", "d2e4f6a8b0c24d3e5f7a9b1c3d5e7f9a"),
    "E": ("calico-02", "192.168.0.5", "fd80:24e2:f998:72d6::5", "PROF_A_C_E", "e7f9a1b3c5d74e8f0a2b4c6d8e0f1a3b"),
}
GLOBAL_PEER = ("172.17.8.200", 64567)
NODE_PEER = ("172.17.8.201", 64568)
REFLECTOR = ("calico-02", "1.0.0.1")        # a route reflector (the mesh stays on)
ENV = {"CALICO_HOSTNAME": "calico-01"}


def container_id(letter):
    return letter.lower() * 64


def endpoint_id(letter):
    return WORKLOADS[letter][4]


def write(kv):
    """Write the world into ``kv`` (calicoctl's key-value store)."""
    for host, (ip, ip6) in HOSTS.items():
        kv.put(paths.host_bird_ip(host), ip)
        kv.put(paths.host_ip_addr(host, 4), ip)
        kv.put(paths.host_ip_addr(host, 6), ip6)
        kv.put(paths.host_config(host, "DefaultEndpointToHostAction"), "RETURN")
    for cidr in POOLS:
        kv.put(paths.pool_key(cidr), model.IPPool(cidr=cidr).to_json())
    for name in sorted({workload[3] for workload in WORKLOADS.values()}):
        profile = model.Profile.new(name)
        kv.put(paths.profile_rules(name), profile.rules.to_json())
        kv.put(paths.profile_tags(name), model.render_tags_json(profile.tags))
    for letter, (host, ip, ip6, profile, endpoint) in WORKLOADS.items():
        workload = container_id(letter)
        owner = "%s/docker/%s" % (host, workload)
        kv.put(paths.claim_key(POOLS[0], ip), owner)
        if ip6:
            kv.put(paths.claim_key(POOLS[1], ip6), owner)
        kv.put(paths.workload_name_key(host, "docker", workload), "workload-%s" % letter)
        kv.put(paths.endpoint_key(host, "docker", workload, endpoint), json.dumps({
            "state": "active", "name": "cali" + endpoint[:11], "mac": "ee:ee:ee:ee:ee:0%s" % letter.lower(),
            "profile_ids": [profile], "ipv4_nets": [ip + "/32"], "ipv6_nets": [ip6 + "/128"] if ip6 else [],
            "ipv4_gateway": HOSTS[host][0], "ipv6_gateway": HOSTS[host][1] if ip6 else None}))
    kv.put(paths.host_rr_cluster_id(REFLECTOR[0]), REFLECTOR[1])
    kv.put(paths.global_peer(GLOBAL_PEER[0]), model.BGPPeer(*GLOBAL_PEER).to_json())
    kv.put(paths.host_peer("calico-01", NODE_PEER[0]), model.BGPPeer(*NODE_PEER).to_json())
