"""Explain is the truth: what ``calicoctl policy`` says of random policy is
what the kernel does, on two simulated hosts, one on each dataplane.

Twelve busybox containers on calico-01 and calico-02 (half of them with an
IPv6 address too) get random profiles: random tags, and inbound and
outbound rules of every form ``profile rule add`` accepts (allow or deny;
tcp or udp with source and destination ports, tags and CIDRs; icmp or
icmpv6 with a type and code; tags and CIDRs alone; CIDRs of both families),
around the ports probed, so that rules match and miss. ``policy matrix
--probe`` then asks, on each host, for every pair whose source lives there:
ping, TCP and UDP over IPv4, ping and TCP over IPv6; each cell holds the
verdict of the one evaluator ``policy explain`` uses and what real traffic
did. Every disagreement is printed with its case. A few ``policy explain
--probe`` calls check the command itself (to hosts' addresses and the
control plane too), and a firewall rule added inside a container shows
that a disagreement is caught (exit 4).

calico-01 runs the nftables dataplane and calico-02 the iptables one
(``HOSTS``): a pair on one host is decided by that host's dataplane alone
(both ways), a pair across hosts by one of each (the source's outbound
rules, the destination's inbound ones), so every profile's rules are
checked on both dataplanes in one cluster, and the two dataplanes side by
side as well.
"""
import json
import os
import random
import time

import pytest

from calicoctl import model, rulemodel
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError
from tests.harness.dataplanes import agent_args

HOSTS = (("calico-01", "172.17.8.101", "fd00:8::101", "nftables"),
         ("calico-02", "172.17.8.102", "fd00:8::102", "iptables"))
PER_HOST = 6
TCP_PORT, UDP_PORT, SOURCE_PORT = 8080, 5353, 40404
PROFILES = ("P0", "P1", "P2", "P3", "P4")
EXTRA_TAGS = ("T1", "T2")
SEED = int(os.environ.get("CALICO_EXPLAIN_SEED", "2112"))
IPV6_PREFIX = "fd80:24e2:f998:72d6::"


# -- random policy --------------------------------------------------------------------------

class PolicyMaker:
    """Random tags and rules around the workloads' addresses and the probed ports."""

    def __init__(self, rng, addresses4, addresses6):
        self.rng = rng
        self.addresses = {4: addresses4, 6: addresses6}

    def ports(self, probed):
        """A port list holding ``probed`` or not, as a number or inside a range."""
        return self.rng.choice([[probed], [probed + 1], ["%d:%d" % (probed - 5, probed + 5)],
                                ["%d:%d" % (probed + 1, probed + 9)], [22, probed], [80, 443]])

    def cidr(self):
        version = self.rng.choice((4, 4, 6))
        address = self.rng.choice(self.addresses[version])
        if version == 4:
            return self.rng.choice(["%s/32" % address, "192.168.0.0/24", "192.168.1.0/24", "192.168.0.0/16",
                                    "10.0.0.0/8"])
        return self.rng.choice(["%s/128" % address, IPV6_PREFIX + "/64", "fd99::/16"])

    def rule(self, tags):
        while True:
            protocol = self.rng.choice([None, "tcp", "udp", "icmp", "icmpv6"])
            values = {"action": self.rng.choice(["allow", "allow", "deny"])}
            if protocol:
                values["protocol"] = protocol
            for side, probed in (("src", SOURCE_PORT), ("dst", TCP_PORT if protocol == "tcp" else UDP_PORT)):
                if self.rng.random() < 0.3:
                    values[side + "_tag"] = self.rng.choice(tags)
                if self.rng.random() < 0.25:
                    values[side + "_net"] = self.cidr()
                if protocol in ("tcp", "udp") and self.rng.random() < 0.4:
                    values[side + "_ports"] = tuple(self.ports(probed))
            if protocol in ("icmp", "icmpv6") and self.rng.random() < 0.4:
                values["icmp_type"] = self.rng.choice([8, 0] if protocol == "icmp" else [128, 129])
                if self.rng.random() < 0.3:
                    values["icmp_code"] = self.rng.choice([0, 1])
            try:
                return rulemodel.Rule(**values).check_writable()
            except ValidationError:
                continue                         # a form rule add refuses (e.g. icmp to an IPv6 CIDR)

    def profile(self, name):
        tags = ([name] if self.rng.random() < 0.7 else []) + self.rng.sample(EXTRA_TAGS, self.rng.randint(0, 1))
        referable = list(PROFILES) + list(EXTRA_TAGS) + ["NOBODY"]
        inbound = [self.rule(referable) for _ in range(self.rng.randint(1, 4))]
        outbound = [self.rule(referable) for _ in range(self.rng.randint(0, 2))]
        if self.rng.random() < 0.7:
            outbound.append(rulemodel.Rule(action="allow"))
        return tags, model.Rules(id=name, inbound_rules=tuple(inbound), outbound_rules=tuple(outbound))


# -- the world ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(make_cluster):
    cluster = make_cluster(subnet6="fd00:8::/64", gateway6="fd00:8::1")
    hosts = [cluster.add_host(name, ip, ip6=ip6, node_args=agent_args(dataplane))
             for name, ip, ip6, dataplane in HOSTS]
    workloads = []
    for number in range(2 * PER_HOST):
        host = hosts[number // PER_HOST]
        ip = "192.168.%d.%d" % (number // PER_HOST, number % PER_HOST + 1)
        load = cluster.add_workload(host, "w%02d" % number, ip)
        load.ip6 = None
        if number % 2 == 0:
            load.ip6 = "%s%x" % (IPV6_PREFIX, number + 1)
            cluster.calicoctl(host, "container", load.name, "ip", "add", load.ip6)
        pid = str(container_pid(load))
        # Port unreachable answers UDP probes: no rate limit on them, so none is lost.
        host.run(["nsenter", "-t", pid, "-n", "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0",
                  "net.ipv6.icmp.ratelimit=0"], cwd="/", check=True)
        load.container.exec_run(["nc", "-ll", "-p", str(TCP_PORT), "-e", "echo", "hello"], detach=True)
        workloads.append(load)
    rng = random.Random(SEED)
    maker = PolicyMaker(rng, [load.ip for load in workloads], [load.ip6 for load in workloads if load.ip6])
    kv = cluster.etcd.kv()
    for name in PROFILES:
        tags, rules = maker.profile(name)
        kv.put(paths.profile_tags(name), model.render_tags_json(tags))
        kv.put(paths.profile_rules(name), rules.to_json())
    for number, load in enumerate(workloads):
        chosen = [] if number == 3 else rng.sample(PROFILES, rng.randint(1, 2))
        if chosen:
            cluster.calicoctl(load.host, "endpoint", load.endpoint_id, "profile", "set", *chosen)
    return cluster, hosts, workloads


def container_pid(load):
    load.container.reload()
    return load.container.attrs["State"]["Pid"]


def matrix(cluster, host, parties, traffic):
    result = cluster.calicoctl(host, "policy", "matrix", *parties, *traffic, "--probe", "-o", "json", check=False)
    assert result.returncode in (0, 4), result.stderr
    return json.loads(result.stdout)


def settled_matrix(cluster, host, parties, traffic, timeout):
    """The matrix once the kernel agrees in every cell, or the last one after
    ``timeout`` s: the policy does not change, but the agents (and BGP) need
    a moment to program it after the world is built."""
    deadline = time.monotonic() + timeout
    while True:
        answer = matrix(cluster, host, parties, traffic)
        if answer["disagreements"] == 0 or time.monotonic() > deadline:
            return answer
        time.sleep(1)


def disagreements(answer, traffic):
    return ["%s -> %s %s: policy says %s (%s), the kernel: %s" % (
        cell["packet"]["source"], cell["packet"]["destination"], " ".join(traffic) or "ping", cell["verdict"],
        cell["decided_by"]["text"], cell["observed"]["detail"])
        for cell in answer["cells"] if cell["agrees"] is False]


# -- the tests ------------------------------------------------------------------------------------

TRAFFIC = {
    "ping": (),
    "tcp": ("--protocol=tcp", "--port=%d" % TCP_PORT, "--source-port=%d" % SOURCE_PORT),
    "udp": ("--protocol=udp", "--port=%d" % UDP_PORT, "--source-port=%d" % SOURCE_PORT),
}


def test_explain_agrees_with_the_kernel_on_every_probed_case(world):
    cluster, hosts, workloads = world
    plans = [("IPv4", [load.endpoint_id for load in workloads], name) for name in ("ping", "tcp", "udp")]
    plans += [("IPv6", [load.ip6 for load in workloads if load.ip6], name) for name in ("ping", "tcp")]
    # Probes start from the host's own workloads, so each host's cases go
    # out through its dataplane (calico-01 nftables, calico-02 iptables).
    cases = {host.name: 0 for host in hosts}
    allowed, problems = 0, []
    for family, parties, name in plans:
        for host in hosts:
            answer = settled_matrix(cluster, host, parties, TRAFFIC[name],
                                    timeout=5 if sum(cases.values()) else 30)
            probed = [cell for cell in answer["cells"] if cell["observed"] is not None]
            cases[host.name] += len(probed)
            allowed += sum(cell["verdict"] == "allowed" for cell in probed)
            problems += ["%s from %s: %s" % (family, host.name, line)
                         for line in disagreements(answer, TRAFFIC[name])]
    print("seed %d: cases per host %s, %d allowed" % (SEED, cases, allowed))
    assert not problems, "\n".join(problems)
    assert min(cases.values()) >= 200, cases
    total = sum(cases.values())
    assert 0.15 * total <= allowed <= 0.85 * total, "the random policy should allow some and deny some"


@pytest.mark.parametrize("on", [0, 1], ids=[spec[3] for spec in HOSTS])
def test_explain_probe_to_hosts_and_the_control_plane(world, on):
    cluster, hosts, workloads = world
    own, other = HOSTS[on], HOSTS[1 - on]
    source = next(load for load in workloads if load.host is hosts[on] and load.ip6)
    targets = [(own[1], "7070"), (own[1], "2379"), (other[1], "179"), (other[1], "7070"),
               (own[2], "7070"), (other[2], "2379")]
    for address, port in targets:
        result = cluster.calicoctl(hosts[on], "policy", "explain", source.name, address, "--protocol=tcp",
                                   "--port=" + port, "--probe", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "as the policy says" in result.stdout
        if port in ("2379", "179"):
            assert result.stdout.startswith("DENIED") and "1. control plane: TCP port %s" % port in result.stdout


def test_a_kernel_that_disagrees_is_caught(world):
    """A firewall rule inside the destination container is something policy
    cannot know: an allowed ping now fails, and explain exits 4."""
    cluster, hosts, workloads = world
    answer = matrix(cluster, hosts[0], [load.endpoint_id for load in workloads], TRAFFIC["ping"])
    cell = next(cell for cell in answer["cells"] if cell["verdict"] == "allowed" and cell["agrees"])
    target = next(load for load in workloads if load.endpoint_id == cell["to"])
    source = next(load for load in workloads if load.endpoint_id == cell["from"])
    drop = ["-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"]
    nsenter = ["nsenter", "-t", str(container_pid(target)), "-n"]
    target.host.run(nsenter + ["iptables", "-I", "INPUT"] + drop, cwd="/", check=True)
    try:
        result = cluster.calicoctl(source.host, "policy", "explain", source.endpoint_id, target.ip, "--probe",
                                   check=False)
        assert result.returncode == 4, result.stdout + result.stderr
        assert result.stdout.startswith("ALLOWED") and "the kernel DISAGREES" in result.stdout
    finally:
        target.host.run(nsenter + ["iptables", "-D", "INPUT"] + drop, cwd="/", check=True)
