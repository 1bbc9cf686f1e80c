"""The CNI way: Podman (Debian's 4.3, CNI backend) on two simulated hosts,
each running `calicoctl node`, with networks made by `calicoctl cni install`
(configuration and plugins in the host's own directories), beside a Docker
container networked the seed's way in the same profile.

Policy is checked by traffic: containers of one network reach each other
across hosts and runtimes, containers of another do not. Podman 4.3's
libcni runs ADD and DEL only, so CHECK and GC are run here as a newer
runtime runs them: the plugin binary, with the result Podman cached."""
import json

import pytest

from calicoctl.identity import RUN_DIR
from tests.functional.containertools import calico_leaves
from tests.harness.util import wait_for

HOST_A = ("cni-a", "172.17.8.91")
HOST_B = ("cni-b", "172.17.8.92")
NETWORKS = ("netA", "netB")
DOCKER_IP = "192.168.200.5"


@pytest.fixture(scope="module")
def cluster(make_cluster):
    cluster = make_cluster()
    for name, ip in (HOST_A, HOST_B):
        host = cluster.add_host(name, ip, podman=True)
        for network in NETWORKS:
            cluster.calicoctl(host, "cni", "install", network, "--conf-dir", host.podman.conf_dir,
                              "--bin-dir", host.podman.bin_dir)
    return cluster


def hosts(cluster):
    return cluster.hosts[HOST_A[0]], cluster.hosts[HOST_B[0]]


def address(host, name):
    out = host.podman.run("exec", name, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    (line,) = out.splitlines()
    return line.split()[3].split("/")[0]


def ping(host, name, ip):
    return host.podman.run("exec", name, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def wait_reach(host, name, ip):
    wait_for(lambda: ping(host, name, ip), timeout=40, interval=0.3, message="%s -> %s" % (name, ip))


def cni_endpoints(cluster, hostname=None):
    """{endpoint ID: endpoint JSON} of the CNI plugin's endpoints."""
    leaves = calico_leaves(cluster.etcd.kv(), "/calico/v1/host")
    return {key.split("/")[-1]: json.loads(value) for key, value in leaves.items()
            if "/workload/cni/" in key and "/endpoint/" in key
            and (hostname is None or "/host/%s/" % hostname in key)}


def cni_claims(cluster):
    return {key.rsplit("/", 1)[1]: value
            for key, value in calico_leaves(cluster.etcd.kv(), "/calico/v1/ipam/v4/assignment").items()
            if "/cni/" in value}


def cached_result(host, container_id, network="netA", ifname="eth0"):
    """The result libcni cached for an attachment (what a runtime passes as prevResult)."""
    text = host.run(["cat", "/var/lib/cni/results/%s-%s-%s" % (network, container_id, ifname)], cwd="/").stdout
    return json.loads(text)["result"]


def plugin(host, command, data, container_id=None, netns=None, ifname="eth0"):
    """Run the installed calico binary in ``host`` as a runtime does; (status, stdout JSON or None)."""
    env = {"CNI_COMMAND": command, "CNI_PATH": host.podman.bin_dir}
    if container_id:
        env.update(CNI_CONTAINERID=container_id, CNI_IFNAME=ifname, CNI_NETNS=netns or "")
    result = host.run([host.podman.bin_dir + "/calico"], env=env, input=json.dumps(data), cwd="/")
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else None


def netconf(network, version="1.1.0", **extra):
    data = {"cniVersion": version, "name": network, "type": "calico", "ipam": {"type": "calico-ipam"}}
    data.update(extra)
    return data


# -- tests ------------------------------------------------------------------------------------

def test_podman_and_docker_containers_reach_by_profile_and_nothing_else(cluster):
    a, b = hosts(cluster)
    a.podman.run_container("p1", "netA")
    b.podman.run_container("p2", "netA")
    b.podman.run_container("p3", "netB")
    docker = cluster.add_workload(a, "d1", DOCKER_IP, profiles=("netA",))
    p1, p2, p3 = address(a, "p1"), address(b, "p2"), address(b, "p3")
    assert len({p1, p2, p3, DOCKER_IP}) == 4 and all(ip.startswith("192.168.") for ip in (p1, p2, p3))
    wait_reach(a, "p1", p2)
    wait_reach(a, "p1", DOCKER_IP)
    assert ping(b, "p2", p1) and ping(b, "p2", DOCKER_IP)
    assert docker.ping(p1) and docker.ping(p2)
    assert not ping(b, "p3", p1) and not ping(a, "p1", p3) and not docker.ping(p3)
    # Endpoints like any other: shown, counted by the agent, and their profiles edited.
    shown = cluster.calicoctl(a, "endpoint", "show", "--detailed").stdout
    ids = {ep_id: ep for ep_id, ep in cni_endpoints(cluster).items()}
    assert len(ids) == 3 and all(ep_id in shown for ep_id in ids)
    assert sorted(ep["profile_ids"][0] for ep in ids.values()) == ["netA", "netA", "netB"]
    assert "CNI plugins: calico and calico-ipam served on /var/run/calico/cni.sock." \
        in cluster.calicoctl(a, "status").stdout
    # p1 and the Docker container
    wait_for(lambda: "2 local endpoint(s)" in cluster.calicoctl(a, "status").stdout, timeout=15, interval=0.5,
             message="status counting the local endpoints")
    (p3_id,) = [ep_id for ep_id, ep in ids.items() if ep["profile_ids"] == ["netB"]]
    cluster.calicoctl(b, "endpoint", p3_id, "profile", "append", "netA")
    wait_reach(b, "p3", p1)


def test_restart_keeps_one_endpoint_and_the_networking(cluster):
    a, b = hosts(cluster)
    before = cni_endpoints(cluster, a.name)
    a.podman.run("restart", "-t", "0", "p1")
    after = cni_endpoints(cluster, a.name)
    assert list(after) == list(before)             # the same attachment, the same endpoint
    wait_reach(a, "p1", address(b, "p2"))
    assert len(cni_claims(cluster)) == len(cni_endpoints(cluster))


def test_check_finds_a_deleted_host_interface_and_a_restart_repairs_it(cluster):
    a, _ = hosts(cluster)
    container_id = a.podman.container_ids()["p1"]
    result = cached_result(a, container_id)
    netns = result["interfaces"][1]["sandbox"]
    check = netconf("netA", result["cniVersion"], prevResult=result)
    assert plugin(a, "CHECK", check, container_id, netns) == (0, None)
    a.run(["ip", "link", "del", result["interfaces"][0]["name"]], cwd="/")
    status, error = plugin(a, "CHECK", check, container_id, netns)
    assert status == 1 and error["code"] == 110, error
    assert "Host interface %s is missing" % result["interfaces"][0]["name"] in error["msg"]
    a.podman.run("restart", "-t", "0", "p1")
    result = cached_result(a, container_id)
    netns = result["interfaces"][1]["sandbox"]
    assert plugin(a, "CHECK", netconf("netA", result["cniVersion"], prevResult=result), container_id, netns) \
        == (0, None)


def test_podman_run_with_ip_gets_that_address(cluster):
    _, b = hosts(cluster)
    b.podman.run_container("p6", "netA", "--ip", "192.168.201.7")
    assert address(b, "p6") == "192.168.201.7"
    assert cni_claims(cluster)["192.168.201.7"].startswith("%s/cni/netA/" % b.name)
    b.podman.run("rm", "-f", "-t", "0", "p6")
    assert "192.168.201.7" not in cni_claims(cluster)


def test_podman_rm_releases_the_address_and_the_endpoint(cluster):
    _, b = hosts(cluster)
    b.podman.run_container("p4", "netA")
    ip = address(b, "p4")
    assert ip in cni_claims(cluster)
    count = len(cni_endpoints(cluster))
    b.podman.run("rm", "-f", "-t", "0", "p4")
    assert ip not in cni_claims(cluster) and len(cni_endpoints(cluster)) == count - 1


def test_gc_collects_an_attachment_whose_del_never_came(cluster):
    """The agent is down when a container goes: Podman's DEL fails at once,
    the container goes anyway, and what it held stays until a GC."""
    a, _ = hosts(cluster)
    a.podman.run_container("p5", "netA")
    ip = address(a, "p5")
    pid = a.run(["cat", RUN_DIR + "/agent.pid"], cwd="/").stdout.strip()
    a.run(["kill", "-9", pid], cwd="/")
    a.podman.run("rm", "-f", "-t", "0", "p5", check=False)
    assert "p5" not in a.podman.container_ids() and ip in cni_claims(cluster)
    cluster.start_node(a)
    valid = [{"containerID": container_id, "ifname": "eth0"} for container_id in a.podman.container_ids().values()]
    assert plugin(a, "GC", netconf("netA", **{"cni.dev/valid-attachments": valid})) == (0, None)
    assert ip not in cni_claims(cluster)
    assert sorted(ep["container_interface"] for ep in cni_endpoints(cluster, a.name).values()) == ["eth0"]
    wait_reach(a, "p1", DOCKER_IP)
