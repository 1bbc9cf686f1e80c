"""The calico and calico-ipam CNI plugins at the spec's level: the installed
binaries executed as a runtime executes them (CNI_* environment, the
configuration on stdin, the result or error on stdout), answered by the
agent's CNI back end (calicoctl.ops.cni_plugin behind its socket) with real
etcd and the kernel of a simulated host. Containers are bare network
namespaces, as a runtime makes them. What Podman does with the plugins is
in tests/system/test_cni_podman.py."""
import json
import os
import subprocess

import pytest

from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
from calicoctl.host import plugin_server
from calicoctl.ops import cni as install_ops
from calicoctl.ops import cni_logic as logic
from calicoctl.ops import cni_protocol as protocol
from calicoctl.ops.cni_plugin import CniPlugin
from tests.functional.containertools import calico_leaves, cali_links, claims, in_host, ip_json
from tests.harness.simhost import Sandbox
from tests.harness.util import run_in_threads

pytestmark = pytest.mark.usefixtures("root_required")

NETWORK = "netA"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory):
    """The plugin binaries as `calicoctl cni install` writes them."""
    directory = tmp_path_factory.mktemp("cni-bin")
    with open(install_ops.cni_client_path()) as handle:
        launcher = install_ops.render_launcher(handle.read(), install_ops.system_python())
    for name in protocol.PLUGINS:
        path = directory / name
        path.write_text(launcher)
        path.chmod(0o755)
    return str(directory)


@pytest.fixture(scope="module")
def cni_socket(etcd_server, host1, tmp_path_factory):
    """The agent's CNI back end on a private socket, working on host1."""
    directory = tmp_path_factory.mktemp("cni-agent")
    datastore = DatastoreClient(etcdconn.connect({"ETCD_AUTHORITY": etcd_server.authority}, timeout=10))
    plugin = CniPlugin(datastore, host1.name, host_netns=host1.netns_path, lock_dir=str(directory / "locks"))
    server = plugin_server.PluginServer("cni", str(directory / "cni.sock"), plugin.handle,
                                        handler=plugin_server.FrameHandler).start()
    yield server.path
    server.stop()


@pytest.fixture
def agent(seeded, cni_socket):
    return {"socket": cni_socket, "etcd": seeded.kv()}


@pytest.fixture
def sandboxes():
    """Factory: ``sandboxes(n)`` -> n started Sandboxes, all destroyed afterwards."""
    made = []

    def factory(count=1):
        new = [Sandbox("cni-ctr-%d" % (len(made) + i)).start() for i in range(count)]
        made.extend(new)
        return new
    yield factory
    for sandbox in made:
        sandbox.destroy()


def conf(version="1.0.0", plugin="calico", **changes):
    data = {"cniVersion": version, "name": NETWORK, "type": plugin, "ipam": {"type": "calico-ipam"}}
    data.update(changes)
    return data


def cni(bin_dir, agent, command, sandbox=None, data=None, plugin="calico", ifname="eth0", container=None,
        raw=None, **env):
    """Run one plugin binary; (exit status, stdout parsed or None, stderr)."""
    variables = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_IFNAME": ifname, "CNI_PATH": bin_dir,
                 "CALICO_CNI_SOCKET": agent["socket"] if agent else "/nonexistent/cni.sock"}
    if sandbox is not None:
        variables.update(CNI_CONTAINERID=container or "ctr-%s" % sandbox.name, CNI_NETNS=sandbox.netns_path)
    variables.update({key: value for key, value in env.items() if value is not None})
    for key in [key for key, value in env.items() if value is None]:
        variables.pop(key, None)
    stdin = raw if raw is not None else json.dumps(data if data is not None else conf(plugin=plugin)).encode()
    proc = subprocess.run([os.path.join(bin_dir, plugin)], input=stdin, env=variables, capture_output=True,
                          timeout=60)
    out = proc.stdout.decode()
    return proc.returncode, json.loads(out) if out.strip() else None, proc.stderr.decode()


def ok(call):
    status, out, err = call
    assert status == 0, (out, err)
    return out


def failed(call, code):
    status, out, err = call
    assert status != 0 and out["code"] == code, (status, out, err)
    assert out["msg"] and "Traceback" not in err
    return out


def endpoints(client):
    """{endpoint ID: endpoint JSON} of the CNI plugin's endpoints."""
    return {key.split("/")[-1]: json.loads(value) for key, value in calico_leaves(client, "/calico/v1/host").items()
            if "/workload/cni/" in key and "/endpoint/" in key}


def assert_nothing_left(agent, host1):
    assert cali_links(host1) == [] and endpoints(agent["etcd"]) == {} and claims(agent["etcd"]) == {}


def in_sandbox(sandbox):
    return ["nsenter", "-t", str(sandbox.pid), "-n", "--"]


# -- tests ----------------------------------------------------------------------------------

def test_version_is_answered_without_the_agent(bin_dir):
    for plugin in protocol.PLUGINS:
        out = ok(cni(bin_dir, None, "VERSION", plugin=plugin, data={"cniVersion": "0.4.0"}))
        assert out == {"cniVersion": "0.4.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}


def test_without_an_agent_every_command_fails_at_once_with_a_cni_error(bin_dir, sandboxes):
    (sandbox,) = sandboxes()
    error = failed(cni(bin_dir, None, "ADD", sandbox), protocol.TRY_AGAIN_LATER)
    assert "does not answer on /nonexistent/cni.sock" in error["msg"] and "calicoctl node" in error["msg"]
    failed(cni(bin_dir, None, "STATUS", data=conf("1.1.0")), protocol.NOT_AVAILABLE)


@pytest.mark.parametrize("version", protocol.SUPPORTED_VERSIONS)
def test_add_check_del(bin_dir, agent, host1, sandboxes, version):
    (sandbox,) = sandboxes()
    result = ok(cni(bin_dir, agent, "ADD", sandbox, conf(version)))
    assert result["cniVersion"] == version
    host_side, inside = result["interfaces"]
    assert host_side["name"].startswith("cali") and len(host_side["name"]) == 15
    assert inside == {"name": "eth0", "mac": inside["mac"], "sandbox": sandbox.netns_path}
    (ip,) = result["ips"]
    address = ip["address"].split("/")[0]
    assert ip["address"].endswith("/32") and address.startswith("192.168.") and ip["gateway"] == host1.ip
    assert ip["interface"] == 1 and ("version" in ip) == (version == "0.4.0")
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": host1.ip}]
    # The kernel: as `container add` makes it, seen with iproute2.
    (link,) = ip_json(in_sandbox(sandbox), ["addr", "show", "eth0"])
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == [address]
    assert link["address"] == inside["mac"]
    routes = ip_json(in_sandbox(sandbox), ["route"])
    assert {"dst": "default", "gateway": host1.ip} in [{k: r.get(k) for k in ("dst", "gateway")} for r in routes]
    host_routes = ip_json(in_host(host1), ["route", "show", "dev", host_side["name"]])
    assert [r["dst"] for r in host_routes] == [address]
    # etcd: an endpoint of orchestrator cni with the network's profile, made with profile add's rules.
    (endpoint,) = endpoints(agent["etcd"]).values()
    assert endpoint["profile_ids"] == [NETWORK] and endpoint["name"] == host_side["name"]
    assert endpoint["ipv4_nets"] == [ip["address"]] and endpoint["container_interface"] == "eth0"
    rules = json.loads(agent["etcd"].get("/calico/v1/policy/profile/%s/rules" % NETWORK).value)
    assert rules["inbound_rules"] == [{"action": "allow", "src_tag": NETWORK}]
    owner = "%s/cni/%s/ctr-%s/eth0" % (host1.name, NETWORK, sandbox.name)
    assert claims(agent["etcd"]) == {address: owner}

    ok(cni(bin_dir, agent, "CHECK", sandbox, conf(version, prevResult=result)))
    assert ok(cni(bin_dir, agent, "DEL", sandbox, conf(version, prevResult=result))) is None
    assert_nothing_left(agent, host1)
    assert "eth0" not in [link["ifname"] for link in ip_json(in_sandbox(sandbox), ["link", "show"])]
    # DEL again, and with the container's namespace gone: still success.
    ok(cni(bin_dir, agent, "DEL", sandbox, conf(version)))
    sandbox.destroy()
    ok(cni(bin_dir, agent, "DEL", None, conf(version), CNI_CONTAINERID="ctr-%s" % sandbox.name))


def test_dual_stack(bin_dir, agent, host1, sandboxes):
    (sandbox,) = sandboxes()
    data = conf("1.1.0", ipam={"type": "calico-ipam", "subnets": ["192.168.0.0/16", "fd80:24e2:f998:72d6::/64"]})
    result = ok(cni(bin_dir, agent, "ADD", sandbox, data))
    v4, v6 = result["ips"]
    assert v4["gateway"] == host1.ip and v6["gateway"] == host1.ip6 and v6["address"].endswith("/128")
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": host1.ip}, {"dst": "::/0", "gw": host1.ip6}]
    (link,) = ip_json(in_sandbox(sandbox), ["-6", "addr", "show", "eth0", "scope", "global"])
    assert [a["local"] + "/128" for a in link["addr_info"] if a] == [v6["address"]]   # ip -j lists {} for filtered ones
    ok(cni(bin_dir, agent, "CHECK", sandbox, dict(data, prevResult=result)))
    ok(cni(bin_dir, agent, "DEL", sandbox, dict(data, prevResult=result)))
    assert_nothing_left(agent, host1)


def test_check_reports_what_differs_with_its_code(bin_dir, agent, host1, sandboxes):
    (sandbox,) = sandboxes()
    result = ok(cni(bin_dir, agent, "ADD", sandbox))
    data = conf(prevResult=result)
    address = result["ips"][0]["address"]
    subprocess.run(in_sandbox(sandbox) + ["ip", "addr", "del", address, "dev", "eth0"], check=True)
    assert "Address %s is missing on eth0" % address in failed(cni(bin_dir, agent, "CHECK", sandbox, data),
                                                                protocol.CHECK_ADDRESS)["msg"]
    subprocess.run(in_host(host1) + ["ip", "link", "del", result["interfaces"][0]["name"]], check=True)
    error = failed(cni(bin_dir, agent, "CHECK", sandbox, data), protocol.CHECK_INTERFACE)
    assert "Host interface %s is missing" % result["interfaces"][0]["name"] in error["msg"]
    agent["etcd"].delete("/calico/v1/ipam/v4/assignment/192.168.0.0-16/%s" % address.split("/")[0])
    ok(cni(bin_dir, agent, "DEL", sandbox, data))
    failed(cni(bin_dir, agent, "CHECK", sandbox, data), protocol.CHECK_ENDPOINT)
    assert_nothing_left(agent, host1)


@pytest.mark.parametrize("env, data, raw, code, words", [
    ({}, None, b"{not json", protocol.DECODING_FAILURE, "Cannot decode the network configuration"),
    ({}, conf("0.3.1"), None, protocol.INCOMPATIBLE_VERSION, "Incompatible CNI version 0.3.1"),
    ({"CNI_IFNAME": None}, None, None, protocol.INVALID_ENVIRONMENT, "CNI_IFNAME"),
    ({"CNI_NETNS": None}, None, None, protocol.INVALID_ENVIRONMENT, "CNI_NETNS"),
    ({}, conf(name=None), None, protocol.INVALID_CONFIG, "Invalid network name"),
    ({}, conf(ipam={"type": "host-local", "subnet": "10.1.0.0/16"}), None, protocol.UNSUPPORTED_FIELD,
     "ipam.type 'host-local'"),
    ({}, conf(ipam={"type": "calico-ipam", "subnet": "10.99.0.0/24"}), None, protocol.INVALID_CONFIG,
     "10.99.0.0/24 is not inside a Calico IPv4 pool (pools: 192.168.0.0/16)"),
    ({}, conf(runtimeConfig={"ips": ["10.99.0.7"]}), None, protocol.INVALID_CONFIG,
     "IP 10.99.0.7 is not in any Calico IPv4 pool"),
    ({}, conf(ipam={"type": "calico-ipam", "subnet": "fd80:24e2:f998:72d6::/64"}), None, protocol.HOST_NOT_READY,
     "no IPv6 address in etcd"),
    ({"CNI_NETNS": "/proc/0/ns/net"}, None, None, protocol.UNKNOWN_CONTAINER, "/proc/0/ns/net"),
])
def test_a_failed_add_says_why_with_its_code_and_leaves_nothing(bin_dir, agent, host1, sandboxes, env, data, raw,
                                                                code, words):
    (sandbox,) = sandboxes()
    if code == protocol.HOST_NOT_READY:
        agent["etcd"].put("/calico/bgp/v1/host/%s/ip_addr_v6" % host1.name, "")
    error = failed(cni(bin_dir, agent, "ADD", sandbox, data, raw=raw, **env), code)
    assert words in error["msg"], error
    assert_nothing_left(agent, host1)


def test_adds_that_fail_half_way_undo_what_they_made_and_only_that(bin_dir, agent, host1, sandboxes):
    first, second, third = sandboxes(3)
    # The name is taken inside the container.
    subprocess.run(in_sandbox(first) + ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
                   check=True)
    failed(cni(bin_dir, agent, "ADD", first), protocol.INTERFACE_EXISTS)
    assert_nothing_left(agent, host1)
    # The address asked for is taken (claimed by another workload).
    agent["etcd"].put("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.9.9", "elsewhere/docker/x")
    failed(cni(bin_dir, agent, "ADD", second, conf(runtimeConfig={"ips": ["192.168.9.9"]})),
           protocol.ADDRESS_UNAVAILABLE)
    agent["etcd"].delete("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.9.9")
    assert_nothing_left(agent, host1)
    # The host side's name is taken (by an interface that is not ours): the claim made goes back.
    veth = "cali" + logic.calculate_attachment_id(NETWORK, "ctr-%s" % second.name, "eth0")[:11]
    subprocess.run(in_host(host1) + ["ip", "link", "add", veth, "type", "veth", "peer", "name", "taken0"],
                   check=True)
    failed(cni(bin_dir, agent, "ADD", second), protocol.INTERFACE_EXISTS)
    subprocess.run(in_host(host1) + ["ip", "link", "del", veth], check=True)
    assert_nothing_left(agent, host1)
    # The second ADD of one attachment is refused and does not touch the first.
    result = ok(cni(bin_dir, agent, "ADD", third, conf(runtimeConfig={"ips": ["192.168.9.9"]})))
    assert result["ips"][0]["address"] == "192.168.9.9/32"
    failed(cni(bin_dir, agent, "ADD", third), protocol.INTERFACE_EXISTS)
    assert len(endpoints(agent["etcd"])) == 1 and list(claims(agent["etcd"])) == ["192.168.9.9"]
    ok(cni(bin_dir, agent, "CHECK", third, conf(prevResult=result)))
    ok(cni(bin_dir, agent, "DEL", third, conf(prevResult=result)))
    assert_nothing_left(agent, host1)


def test_an_attachment_whose_interface_died_without_a_del_is_replaced_by_the_next_add(bin_dir, agent, host1,
                                                                                       sandboxes):
    (sandbox,) = sandboxes()
    first = ok(cni(bin_dir, agent, "ADD", sandbox))
    # As at a reboot: the namespace and its veth are gone, no DEL came.
    subprocess.run(in_host(host1) + ["ip", "link", "del", first["interfaces"][0]["name"]], check=True)
    second = ok(cni(bin_dir, agent, "ADD", sandbox))
    assert len(endpoints(agent["etcd"])) == 1
    assert list(claims(agent["etcd"])) == [second["ips"][0]["address"].split("/")[0]]
    ok(cni(bin_dir, agent, "CHECK", sandbox, conf(prevResult=second)))
    ok(cni(bin_dir, agent, "DEL", sandbox))
    assert_nothing_left(agent, host1)


def test_two_adds_of_one_attachment_at_once_make_one_endpoint(bin_dir, agent, host1, sandboxes):
    (sandbox,) = sandboxes()
    results = []
    assert run_in_threads(lambda: results.append(cni(bin_dir, agent, "ADD", sandbox)), [(), ()], 60) == []
    assert sorted(status for status, _, _ in results) == [0, 1]
    assert [out["code"] for status, out, _ in results if status] == [protocol.INTERFACE_EXISTS]
    assert len(endpoints(agent["etcd"])) == 1 and len(claims(agent["etcd"])) == 1
    ok(cni(bin_dir, agent, "DEL", sandbox))
    assert_nothing_left(agent, host1)


@pytest.mark.slow
def test_fifty_concurrent_adds_get_fifty_addresses(bin_dir, agent, host1, sandboxes):
    boxes = sandboxes(50)
    results = {}

    def add(sandbox):
        results[sandbox.name] = cni(bin_dir, agent, "ADD", sandbox)

    assert run_in_threads(add, [(box,) for box in boxes], 120) == []
    assert [status for status, _, _ in results.values()] == [0] * 50, [out for _, out, _ in results.values()]
    addresses = {out["ips"][0]["address"] for _, out, _ in results.values()}
    assert len(addresses) == 50 and len(claims(agent["etcd"])) == 50 and len(endpoints(agent["etcd"])) == 50
    assert len(cali_links(host1)) == 50

    def delete(sandbox):
        results[sandbox.name] = cni(bin_dir, agent, "DEL", sandbox)

    assert run_in_threads(delete, [(box,) for box in boxes], 120) == []
    assert [status for status, _, _ in results.values()] == [0] * 50
    assert_nothing_left(agent, host1)


def test_gc_releases_what_no_valid_attachment_holds(bin_dir, agent, host1, sandboxes):
    kept, crashed = sandboxes(2)
    kept_result = ok(cni(bin_dir, agent, "ADD", kept))
    ok(cni(bin_dir, agent, "ADD", crashed))
    ipam_only = ok(cni(bin_dir, agent, "ADD", crashed, plugin="calico-ipam", ifname="eth1"))
    other = ok(cni(bin_dir, agent, "ADD", crashed, conf(name="netB"), ifname="eth2"))
    valid = [{"containerID": "ctr-%s" % kept.name, "ifname": "eth0"}]
    gc = conf("1.1.0", **{"cni.dev/valid-attachments": valid})
    assert ok(cni(bin_dir, agent, "GC", data=gc)) is None
    # What the crashed container held in netA is gone (its calico-ipam claim
    # too); its netB attachment and the valid one are untouched.
    remaining = {ep["name"] for ep in endpoints(agent["etcd"]).values()}
    assert remaining == {kept_result["interfaces"][0]["name"], other["interfaces"][0]["name"]}
    assert ipam_only["ips"][0]["address"].split("/")[0] not in claims(agent["etcd"])
    assert set(cali_links(host1)) == remaining
    ok(cni(bin_dir, agent, "CHECK", kept, conf(prevResult=kept_result)))
    ok(cni(bin_dir, agent, "GC", data=conf("1.1.0", name="netB", **{"cni.dev/valid-attachments": []})))
    ok(cni(bin_dir, agent, "DEL", kept))
    assert_nothing_left(agent, host1)


def test_calico_ipam_alone(bin_dir, agent, host1, sandboxes):
    (sandbox,) = sandboxes()
    data = conf("0.4.0", plugin="ptp", ipam={"type": "calico-ipam", "subnet": "192.168.77.0/24"})
    result = ok(cni(bin_dir, agent, "ADD", sandbox, data, plugin="calico-ipam"))
    (ip,) = result["ips"]
    assert ip["address"].startswith("192.168.77.") and ip["gateway"] == host1.ip and ip["version"] == "4"
    assert "interfaces" not in result and cali_links(host1) == []
    assert claims(agent["etcd"]) == {ip["address"].split("/")[0]: "%s/cni/netA/ctr-%s/eth0" % (host1.name,
                                                                                                 sandbox.name)}
    ok(cni(bin_dir, agent, "CHECK", sandbox, dict(data, prevResult=result), plugin="calico-ipam"))
    ok(cni(bin_dir, agent, "DEL", sandbox, data, plugin="calico-ipam"))      # without prevResult: found by owner
    assert claims(agent["etcd"]) == {}
    failed(cni(bin_dir, agent, "CHECK", sandbox, dict(data, prevResult=result), plugin="calico-ipam"),
           protocol.CHECK_ADDRESS)


def test_status(bin_dir, agent):
    assert ok(cni(bin_dir, agent, "STATUS", data=conf("1.1.0"))) is None
    error = failed(cni(bin_dir, agent, "STATUS", data=conf("1.1.0", ipam={"type": "calico-ipam",
                                                                            "subnet": "10.99.0.0/24"})),
                   protocol.NOT_AVAILABLE)
    assert "not inside a Calico IPv4 pool" in error["msg"]


def test_host_interfaces_follow_the_interface_prefix(bin_dir, agent, host1, sandboxes):
    (sandbox,) = sandboxes()
    agent["etcd"].put("/calico/v1/config/InterfacePrefix", "tap")
    result = ok(cni(bin_dir, agent, "ADD", sandbox))
    assert result["interfaces"][0]["name"].startswith("tap") and len(result["interfaces"][0]["name"]) == 15
    ok(cni(bin_dir, agent, "DEL", sandbox))
    assert endpoints(agent["etcd"]) == {} and claims(agent["etcd"]) == {}
