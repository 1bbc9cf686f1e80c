"""The multi-host components on their own, against real BIRD, VXLAN and iptables.

Two simulated hosts on a simulated LAN, an etcd inside the LAN, and
workloads that are plain network namespaces. No agent process: the test
drives each component through its Component interface (snapshot, update,
flush, tick, close) with this thread inside the host's network namespace,
exactly the calls the agent's main loop makes. The system tests with the
whole agent are in test_multihost_*.py beside this one.
"""
import json
import os
import signal
import time

import pytest

from calicoctl.agent.bgp.bird import BirdManager
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.routing.ipip import IpipManager
from calicoctl.agent.routing.nat import ALL_SET, CHAIN, MASQ_SET, NatOutgoing, render_nat_restore
from calicoctl.agent.routing.vxlan import DEVICE, VNI, VxlanManager
from calicoctl.datastore import paths
from calicoctl.host import netlink
from tests.harness.feed import feed
from tests.harness.simhost import Lan, SimHost
from tests.harness.util import netns_inode, pid_alive, pids_in_netns, wait_for
from tests.harness.multihost import (LanEtcdServer, NetnsWorkload, bird_protocols, route_to,
                                    tcp_peer_address)

pytestmark = pytest.mark.usefixtures("root_required")


class Rig:
    """A LAN with etcd and two hosts, shared by the tests of this module."""

    def __init__(self, base):
        self.base = base
        self.lan = Lan(name="calico-mhc-%d" % os.getpid(), subnet6="fd00:8::/64",
                       gateway6="fd00:8::1").create()
        self.etcd = LanEtcdServer(self.lan, os.path.join(base, "etcd", "data")).start()
        self.hosts = [SimHost("calico-0%d" % n, "172.17.8.10%d" % n, self.lan,
                              ip6="fd00:8::10%d" % n).start()
                      for n in (1, 2)]
        self.client = self.etcd.kv()

    def config(self, host):
        directory = os.path.join(self.base, host.name)
        os.makedirs(directory, exist_ok=True)
        return AgentConfig(hostname=host.name, log_dir=directory, run_dir=directory)

    def register_hosts(self):
        for host in self.hosts:
            self.client.put(paths.host_ip_addr(host.name, 4), host.ip)
            self.client.put(paths.host_ip_addr(host.name, 6), host.ip6)
        self.client.put(paths.BGP_GLOBAL_AS, "64511")
        self.client.put(paths.BGP_NODE_MESH, json.dumps({"enabled": True}))

    def items(self):
        """Every leaf under /calico, as the agent's snapshot has it."""
        return {entry.key: entry.value for entry in self.client.tree("/calico").entries}

    def write(self, key, value, components=()):
        """Write to etcd and hand the change to components (as the watch would)."""
        if value is None:
            self.client.delete(key)
        else:
            self.client.put(key, value)
        for host, component in components:
            in_host(host, lambda component=component: (feed(component).update(key, value), component.flush()))

    def close(self):
        for host in self.hosts:
            host.stop()
        self.etcd.stop()
        self.lan.destroy()


def in_host(host, action):
    """Run ``action()`` with this thread in ``host``'s network namespace."""
    with netlink.entered_netns(host.netns_path):
        return action()


def birds_in(host):
    """PIDs of the BIRDs in ``host``'s network namespace. (Simulated hosts
    share the PID namespace, so pgrep would count other tests' BIRDs too.)"""
    found = []
    for pid in pids_in_netns(netns_inode(host.pid)):
        try:
            with open("/proc/%d/comm" % pid) as handle:
                if handle.read().strip() == "bird":
                    found.append(pid)
        except OSError:
            continue
    return found


def start(host, component, items):
    in_host(host, lambda: (feed(component).snapshot(items), component.flush()))
    return component


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    the_rig = Rig(str(tmp_path_factory.mktemp("multihost-components")))
    try:
        yield the_rig
    finally:
        the_rig.close()


@pytest.fixture
def clean(rig):
    rig.etcd.wipe()
    rig.register_hosts()
    yield rig


def test_bgp_mesh_peers_restart_and_stop(clean, tmp_path):
    rig = clean
    h1, h2 = rig.hosts
    rig.client.put(paths.pool_key("192.168.0.0/16"), json.dumps({"cidr": "192.168.0.0/16"}))
    rig.client.put(paths.pool_key("fd80::/64"), json.dumps({"cidr": "fd80::/64"}))
    w1 = NetnsWorkload(h1, "wa", "192.168.0.1", ip6="fd80::1").create()
    w2 = NetnsWorkload(h2, "wb", "192.168.0.2", ip6="fd80::2").create()
    birds = [(host, BirdManager(rig.config(host))) for host in (h1, h2)]
    try:
        items = rig.items()
        for host, manager in birds:
            start(host, manager, items)
        b1, b2 = birds[0][1], birds[1][1]
        assert b1.running and b2.running

        # Mesh: each host learns the other's workload route, via the peer.
        wait_for(lambda: "via 172.17.8.102" in (route_to(h1, "192.168.0.2") or ""), 20,
                   message="route to w2 on calico-01")
        wait_for(lambda: "via 172.17.8.101" in (route_to(h2, "192.168.0.1") or ""), 20,
                   message="route to w1 on calico-02")
        assert "proto bird" in route_to(h1, "192.168.0.2")
        assert w1.ping("192.168.0.2") and w2.ping("192.168.0.1")
        rows = {row.name: row for row in bird_protocols(h1, b1.socket_path)}
        assert rows["Mesh_172_17_8_102"].info.startswith("Established")
        # IPv6 over its own sessions, next hop the peer's IPv6 address.
        wait_for(lambda: "via fd00:8::102" in (route_to(h1, "fd80::2", version=6) or ""), 20,
                   message="IPv6 route to w2 on calico-01")
        rows = {row.name: row for row in bird_protocols(h1, b1.socket_path)}
        assert rows["Mesh_fd00_8__102"].info.startswith("Established")
        # (The first packets may wait for neighbour discovery on three links.)
        wait_for(lambda: w1.ping("fd80::2") and w2.ping("fd80::1"), 10, message="IPv6 pings")

        # Mesh off: sessions go, routes go, traffic stops.
        rig.write(paths.BGP_NODE_MESH, json.dumps({"enabled": False}), birds)
        wait_for(lambda: route_to(h1, "192.168.0.2") is None, 15, message="route withdrawn")
        assert not w1.ping("192.168.0.2")
        assert "Mesh_172_17_8_102" not in open(b1.config_path).read()

        # Node-specific peers on both sides bring it back, under their own names.
        rig.write(paths.host_peer("calico-01", "172.17.8.102"),
                  json.dumps({"ip": "172.17.8.102", "as_num": 64511}), birds)
        rig.write(paths.host_peer("calico-02", "172.17.8.101"),
                  json.dumps({"ip": "172.17.8.101", "as_num": 64511}), birds)
        wait_for(lambda: route_to(h1, "192.168.0.2") is not None, 20, message="route back")
        assert w1.ping("192.168.0.2")
        rows = {row.name: row for row in bird_protocols(h1, b1.socket_path)}
        assert rows["Node_172_17_8_102"].info.startswith("Established")

        # BIRD killed: the next tick starts a new one, and the routes return.
        old_pid = b1.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: not b1.running, 5, message="BIRD dead")
        wait_for(lambda: route_to(h2, "192.168.0.1") is None, 15,
                   message="calico-02 dropping calico-01's routes")
        in_host(h1, lambda: b1.tick(time.monotonic()))
        assert b1.running and b1.pid != old_pid and b1.restarts == 1
        wait_for(lambda: route_to(h2, "192.168.0.1") is not None, 20, message="routes after restart")
        assert w2.ping("192.168.0.1")
    finally:
        for host, manager in birds:
            pid = manager.pid
            in_host(host, manager.close)
            assert pid is None or not pid_alive(pid)
        w1.delete()
        w2.delete()
    # A stopped BIRD withdraws what it installed.
    assert route_to(h1, "192.168.0.2") is None


def test_vxlan_pool_carries_traffic_without_bgp(clean):
    rig = clean
    h1, h2 = rig.hosts
    pool_key = paths.pool_key("10.65.0.0/16")
    rig.client.put(pool_key, json.dumps({"cidr": "10.65.0.0/16", "vxlan": True}))
    workloads = [NetnsWorkload(h1, "vx1", "10.65.0.1").create(),
                 NetnsWorkload(h2, "vx2", "10.65.0.2").create()]
    endpoint_keys = []
    for workload in workloads:
        key = paths.endpoint_key(workload.host.name, "docker", "w-" + workload.name, "e" + workload.name)
        rig.client.put(key, workload.endpoint_json())
        endpoint_keys.append(key)
    from calicoctl.datastore import etcdconn
    from calicoctl.datastore.client import DatastoreClient
    managers = []
    for host in (h1, h2):
        datastore = DatastoreClient(etcdconn.connect(rig.etcd.env))
        managers.append((host, VxlanManager(rig.config(host), datastore=datastore)))
    try:
        # Each publishes its tunnel endpoint; each then hears of the other's.
        for host, manager in managers:
            start(host, manager, rig.items())
        for host, _ in managers:
            record = json.loads(rig.client.get(paths.host_vxlan(host.name)).value)
            assert record["ip"] == host.ip and record["vni"] == VNI
            link = in_host(host, lambda: netlink.find_link(DEVICE))
            assert link.mac == record["mac"] and link.mtu == 1450
        for host, manager in managers:
            start(host, manager, rig.items())

        line = route_to(h1, "10.65.0.2")
        assert line is not None and "via 172.17.8.102 dev %s" % DEVICE in line and "onlink" in line
        assert workloads[0].ping("10.65.0.2") and workloads[1].ping("10.65.0.1")
        # No BGP anywhere: the only route to the far workload is the tunnel's.
        assert birds_in(h1) == [] and birds_in(h2) == []

        # The far endpoint goes: its route goes.
        rig.write(endpoint_keys[1], None, managers)
        assert route_to(h1, "10.65.0.2") is None
        assert route_to(h2, "10.65.0.1") is not None

        # No VXLAN pool left: device and record removed.
        rig.write(pool_key, None, managers)
        for host, _ in managers:
            assert in_host(host, lambda: netlink.find_link(DEVICE)) is None
            assert paths.host_vxlan(host.name) not in rig.items()
    finally:
        for workload in workloads:
            workload.delete()
        for host, _ in managers:
            in_host(host, lambda: netlink.delete_link(DEVICE))


def test_ipip_pool_is_skipped_with_a_reason_without_kernel_support(clean):
    rig = clean
    h1 = rig.hosts[0]
    rig.client.put(paths.pool_key("10.67.0.0/16"), json.dumps({"cidr": "10.67.0.0/16", "ipip": "tunl0"}))
    manager = start(h1, IpipManager(rig.config(h1)), rig.items())
    if manager.supported:
        assert in_host(h1, lambda: netlink.find_link("tunl0")).up
    else:
        assert manager.unsupported_reason
        assert not manager.routes_itself()
        pytest.skip("kernel without IP-in-IP: %s" % manager.unsupported_reason)


class IptablesNat:
    """NAT-outgoing of the iptables dataplane, and how to see it in the kernel."""
    @staticmethod
    def make(config):
        return NatOutgoing(config)

    @staticmethod
    def assert_programmed(host):
        saved = host.run(["iptables-nft-save", "-t", "nat"]).stdout
        assert "-A POSTROUTING -j %s" % CHAIN in saved
        assert "--match-set %s src" % MASQ_SET in saved
        # What the kernel reads back is exactly what we asked for: nothing left to do.
        from calicoctl.host.iptables import IptablesTable
        assert in_host(host, lambda: render_nat_restore(IptablesTable(4, "nat").read(), True)) is None

    @staticmethod
    def assert_removed(host):
        assert CHAIN not in host.run(["iptables-nft-save", "-t", "nat"]).stdout
        sets = host.run(["ipset", "list", "-n"]).stdout.split()
        assert MASQ_SET not in sets and ALL_SET not in sets


class NftablesNat:
    """NAT-outgoing of the nftables dataplane (table ip calico-nat)."""
    @staticmethod
    def make(config):
        from calicoctl.agent.routing.nat_nftables import NftablesNatOutgoing
        return NftablesNatOutgoing(config)

    @staticmethod
    def assert_programmed(host):
        listed = host.run(["nft", "list", "table", "ip", "calico-nat"]).stdout
        assert "ip saddr @masq-pools ip daddr != @all-pools masquerade" in listed
        assert "10.66.0.0/16" in listed and "10.68.0.0/16" in listed

    @staticmethod
    def assert_removed(host):
        assert host.run(["nft", "list", "table", "ip", "calico-nat"]).returncode != 0


@pytest.mark.parametrize("dataplane", [IptablesNat, NftablesNat], ids=["iptables", "nftables"])
def test_nat_outgoing_masquerades_to_outside_pools_only(clean, dataplane):
    rig = clean
    h1 = rig.hosts[0]
    pool_key = paths.pool_key("10.66.0.0/16")
    rig.client.put(pool_key, json.dumps({"cidr": "10.66.0.0/16", "masquerade": True}))
    rig.client.put(paths.pool_key("10.68.0.0/16"), json.dumps({"cidr": "10.68.0.0/16"}))
    workload = NetnsWorkload(h1, "nat1", "10.66.0.1").create()
    inside_pools = NetnsWorkload(h1, "nat2", "10.68.0.2").create()
    nat = dataplane.make(rig.config(h1))

    def connect_from(source, target, port):
        return lambda: source.run(["busybox", "nc", "-w", "1", target, str(port)], input="hello\n")

    try:
        # Before: the LAN has no route back to 10.66/16, so nobody connects.
        assert tcp_peer_address(rig.lan, rig.lan.gateway, 7001, connect_from(workload, rig.lan.gateway, 7001),
                                timeout=2.5) is None
        start(h1, nat, rig.items())
        dataplane.assert_programmed(h1)
        # After: the peer outside the pools sees the host's address.
        assert tcp_peer_address(rig.lan, rig.lan.gateway, 7002,
                                connect_from(workload, rig.lan.gateway, 7002)) == h1.ip
        # Between pools nothing is rewritten.
        assert tcp_peer_address(inside_pools, "10.68.0.2", 7003,
                                connect_from(workload, "10.68.0.2", 7003)) == "10.66.0.1"

        # Masquerade off: rule, chain and sets are gone.
        rig.write(pool_key, json.dumps({"cidr": "10.66.0.0/16"}), [(h1, nat)])
        dataplane.assert_removed(h1)
        assert tcp_peer_address(rig.lan, rig.lan.gateway, 7004,
                                connect_from(workload, rig.lan.gateway, 7004), timeout=2.5) is None
    finally:
        in_host(h1, nat.close)
        workload.delete()
        inside_pools.delete()


def test_a_restarted_agent_adopts_the_running_bird_and_reloads_it(clean):
    rig = clean
    h1 = rig.hosts[0]
    first = start(h1, BirdManager(rig.config(h1)), rig.items())
    pid = first.pid
    # The agent dies without closing (SIGKILL): BIRD keeps running; a new
    # agent's manager takes it over instead of starting a second one.
    second = start(h1, BirdManager(rig.config(h1)), rig.items())
    try:
        assert second.pid == pid and second.running
        assert len(birds_in(h1)) == 1
        # A change is applied by reloading that BIRD, not by restarting it.
        rig.write(paths.BGP_NODE_MESH, json.dumps({"enabled": False}), [(h1, second)])
        assert second.pid == pid
        names = [row.name for row in bird_protocols(h1, second.socket_path)]
        assert not any(name.startswith("Mesh_") for name in names)
    finally:
        in_host(h1, second.close)
    assert not pid_alive(pid)
