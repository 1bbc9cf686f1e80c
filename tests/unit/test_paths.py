"""The etcd key layout: builders match the reference's keys, parsers invert them."""
import pytest

from calicoctl.datastore import paths


def test_profile_keys():
    assert paths.profile_dir("WEB") == "/calico/v1/policy/profile/WEB"
    assert paths.profile_tags("WEB") == "/calico/v1/policy/profile/WEB/tags"
    assert paths.profile_rules("WEB") == "/calico/v1/policy/profile/WEB/rules"
    assert paths.parse_profile_key("/calico/v1/policy/profile/WEB/rules") == ("WEB", "rules")
    assert paths.parse_profile_key("/calico/v1/policy/profile/WEB/tags") == ("WEB", "tags")
    assert paths.parse_profile_key("/calico/v1/policy/profile/WEB/other") is None
    assert paths.parse_profile_key("/calico/v1/policy/profile/WEB") is None


def test_endpoint_key_round_trip():
    key = paths.endpoint_key("host1", "docker", "abc123", "ep0")
    assert key == "/calico/v1/host/host1/workload/docker/abc123/endpoint/ep0"
    assert paths.parse_endpoint_key(key) == ("host1", "docker", "abc123", "ep0")


@pytest.mark.parametrize("key", [
    "/calico/v1/host/host1/workload/docker/abc123/endpoint",
    "/calico/v1/host/host1/workload/docker/abc123/endpoint/ep0/extra",
    "/calico/v1/host/host1/bird_ip",
    "/calico/v1/host/host1/config/marker",
    "/calico/v2/host/host1/workload/docker/abc123/endpoint/ep0",
])
def test_non_endpoint_keys_not_parsed(key):
    assert paths.parse_endpoint_key(key) is None


def test_host_keys():
    assert paths.host_dir("h") == "/calico/v1/host/h"
    assert paths.host_bird_ip("h") == "/calico/v1/host/h/bird_ip"
    assert paths.host_config("h", "DefaultEndpointToHostAction") == \
        "/calico/v1/host/h/config/DefaultEndpointToHostAction"
    assert paths.host_workloads_dir("h") == "/calico/v1/host/h/workload"
    assert paths.orchestrator_dir("h") == "/calico/v1/host/h/workload/docker"
    assert paths.workload_dir("h", "docker", "w") == "/calico/v1/host/h/workload/docker/w"
    assert paths.global_config("InterfacePrefix") == "/calico/v1/config/InterfacePrefix"
    assert paths.READY == "/calico/v1/Ready"
    assert paths.felix_status("h") == "/calico/felix/v1/host/h/status"


@pytest.mark.parametrize("cidr,key", [
    ("10.0.0.0/8", "/calico/v1/ipam/v4/pool/10.0.0.0-8"),
    ("192.168.0.0/16", "/calico/v1/ipam/v4/pool/192.168.0.0-16"),
    ("fed0:8001::/64", "/calico/v1/ipam/v6/pool/fed0:8001::-64"),
])
def test_pool_keys_round_trip(cidr, key):
    assert paths.pool_key(cidr) == key
    assert paths.parse_pool_key(key) == cidr


def test_pool_key_parser_refuses_other_keys():
    assert paths.parse_pool_key("/calico/v1/ipam/v4/pool") is None
    assert paths.parse_pool_key("/calico/v1/ipam/v4/assignment/10.0.0.0-8/10.0.0.1") is None
    assert paths.parse_pool_key("/calico/v1/ipam/v5/pool/10.0.0.0-8") is None


def test_claim_keys():
    assert paths.claims_dir("10.0.0.0/8") == "/calico/v1/ipam/v4/assignment/10.0.0.0-8"
    assert paths.claim_key("10.0.0.0/8", "10.0.0.1") == "/calico/v1/ipam/v4/assignment/10.0.0.0-8/10.0.0.1"
    assert paths.claim_key("fd00::/64", "fd00::1") == "/calico/v1/ipam/v6/assignment/fd00::-64/fd00::1"


def test_bgp_keys():
    assert paths.BGP_GLOBAL_AS == "/calico/bgp/v1/global/as_num"
    assert paths.BGP_NODE_MESH == "/calico/bgp/v1/global/node_mesh"
    assert paths.global_peer("1.2.3.4") == "/calico/bgp/v1/global/peer_v4/1.2.3.4"
    assert paths.global_peer("fd00::1") == "/calico/bgp/v1/global/peer_v6/fd00::1"
    assert paths.host_ip_addr("h", 4) == "/calico/bgp/v1/host/h/ip_addr_v4"
    assert paths.host_ip_addr("h", 6) == "/calico/bgp/v1/host/h/ip_addr_v6"
    assert paths.host_as_num("h") == "/calico/bgp/v1/host/h/as_num"
    assert paths.host_peer("h", "10.0.0.2") == "/calico/bgp/v1/host/h/peer_v4/10.0.0.2"
    assert paths.host_peer("h", "fd00::2") == "/calico/bgp/v1/host/h/peer_v6/fd00::2"


def test_workload_name_keys():
    key = paths.workload_name_key("h", "docker", "abc")
    assert paths.parse_workload_name_key(key) == ("h", "docker", "abc")
    assert paths.parse_workload_name_key(paths.endpoint_key("h", "docker", "abc", "e")) is None
    assert paths.parse_workload_name_key(key + "/x") is None
