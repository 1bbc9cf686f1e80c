"""``calicoctl node`` / ``node stop`` on simulated hosts with the real agent.

Each test gets a fresh SimHost (own network, UTS and mount namespaces, so
its own /var/run/calico and /var/log/calico) and a wiped etcd that the host
reaches on the LAN. ``calicoctl`` runs as a real process inside the host,
and so does the agent it starts.
"""
import json
import os
import select
import signal
import subprocess

import pytest

from calicoctl import model
from calicoctl.datastore.client import DatastoreClient
from calicoctl.identity import RUN_DIR
from tests.functional.clitools import calico_values, cli_command, dump_etcd
from tests.harness.dataplanes import kernel
from tests.harness.util import REPO_ROOT, pid_alive, wait_for

pytestmark = pytest.mark.usefixtures("root_required")

needs_agent = pytest.mark.skipif(
    not os.path.exists(os.path.join(REPO_ROOT, "calicoctl", "agent", "__main__.py")),
    reason="the agent (calicoctl/agent/__main__.py) is not written yet")

HOST_IP = "172.17.8.151"
HOST_IP6 = "fd00:8::151"
DEFAULT_POOL_4 = "/calico/v1/ipam/v4/pool/192.168.0.0-16"
DEFAULT_POOL_6 = "/calico/v1/ipam/v6/pool/fd80:24e2:f998:72d6::-64"


def calicoctl(host, argv, env, user=None, timeout=90):
    prefix = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] if user else []
    full_env = {"PYTHONPATH": REPO_ROOT}
    full_env.update(env)
    argv = argv.split() if isinstance(argv, str) else argv
    return host.run(prefix + cli_command() + argv, env=full_env, cwd=REPO_ROOT, timeout=timeout)


def expected_keys(hostname, ip, ip6="", as_num=None):
    """Every key ``calicoctl node`` writes on an empty etcd (docs/etcd-layout.md, "Written by calicoctl node")."""
    keys = {
        "/calico/v1/Ready": "true",
        "/calico/v1/config/InterfacePrefix": "cali",
        "/calico/bgp/v1/global/as_num": "64511",
        "/calico/bgp/v1/global/node_mesh": json.dumps({"enabled": True}),
        DEFAULT_POOL_4: json.dumps({"cidr": "192.168.0.0/16"}),
        DEFAULT_POOL_6: json.dumps({"cidr": "fd80:24e2:f998:72d6::/64"}),
        "/calico/v1/host/%s/bird_ip" % hostname: ip,
        "/calico/v1/host/%s/config/DefaultEndpointToHostAction" % hostname: "RETURN",
        "/calico/v1/host/%s/config/marker" % hostname: "created",
        "/calico/bgp/v1/host/%s/ip_addr_v4" % hostname: ip,
        "/calico/bgp/v1/host/%s/ip_addr_v6" % hostname: ip6,
    }
    if as_num is not None:
        keys["/calico/bgp/v1/host/%s/as_num" % hostname] = str(as_num)
    return keys


def agent_written(key, hostname):
    """Keys the agent itself may write (its status, its tunnel endpoint)."""
    return key.startswith("/calico/felix/") or key == "/calico/v1/host/%s/vxlan" % hostname


def node_keys(client, hostname):
    return {key: value for key, value in calico_values(client).items() if not agent_written(key, hostname)}


def read_in_host(host, path):
    result = host.run(["cat", path])
    return result.stdout if result.returncode == 0 else None


def agent_pid(host):
    text = read_in_host(host, RUN_DIR + "/agent.pid")
    return int(text) if text and text.strip().isdigit() else None


def stop_node(host, env):
    result = calicoctl(host, "node stop --force", env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def host(lan_etcd, make_simhost):
    return make_simhost("node-a", HOST_IP, ip6=HOST_IP6)


# -- start, rerun, status, stop --------------------------------------------------

@needs_agent
@pytest.mark.slow
def test_node_start_autodetects_writes_every_key_and_stops(host, lan_etcd):
    # Decoys: docker0 (never chosen) and a second interface without the default route.
    setup = ("ip link add docker0 type veth peer name docker0p && ip addr add 172.17.0.1/16 dev docker0"
             " && ip link add eth1 type veth peer name eth1p && ip addr add 10.200.0.5/24 dev eth1")
    assert host.run(["sh", "-ec", setup]).returncode == 0
    client = lan_etcd.kv()
    result = calicoctl(host, "node", lan_etcd.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No IP provided. Using detected IP %s (on eth0)." % HOST_IP in result.stdout
    assert "Created default IP pool 192.168.0.0/16." in result.stdout
    assert "Created default IP pool fd80:24e2:f998:72d6::/64." in result.stdout
    assert "waiting for it to sync with etcd" in result.stdout
    assert "Calico node is running on node-a" in result.stdout
    assert result.stderr == ""

    assert node_keys(client, "node-a") == expected_keys("node-a", HOST_IP)

    pid = agent_pid(host)
    assert pid is not None and pid_alive(pid)
    assert "pid %d" % pid in result.stdout
    cmdline = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
    assert b"calicoctl.agent" in cmdline and b"--hostname=node-a" in cmdline
    assert os.getsid(pid) == pid                 # detached: a session of its own
    status = json.loads(read_in_host(host, RUN_DIR + "/agent-status.json"))
    assert status["pid"] == pid and status["in_sync"] is True
    reported = json.loads(client.get("/calico/felix/v1/host/node-a/status").value)
    assert reported["pid"] == pid
    assert host.run(["test", "-s", "/var/log/calico/agent.log"]).returncode == 0

    # Again: already running, nothing written.
    before = node_keys(client, "node-a")
    again = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert again.returncode == 0, again.stderr
    assert "already running on node-a (calico-agent pid %d)" % pid in again.stdout
    assert node_keys(client, "node-a") == before
    assert agent_pid(host) == pid

    shown = calicoctl(host, "status", lan_etcd.env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("calico-agent is running on node-a (pid %d), up " % pid)
    assert "in sync with etcd" in shown.stdout

    stopped = calicoctl(host, "node stop", lan_etcd.env)
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped calico-agent (pid %d)." % pid in stopped.stdout
    assert not pid_alive(pid)
    assert agent_pid(host) is None
    remaining = calico_values(client)
    assert not any("/host/node-a" in key for key in remaining), remaining
    # Cluster-wide settings stay for the other hosts.
    assert remaining["/calico/v1/Ready"] == "true"
    assert DEFAULT_POOL_4 in remaining
    after = calicoctl(host, "status", lan_etcd.env)
    assert after.returncode == 0
    assert after.stdout.startswith("calico-agent is not running on node-a.")


@needs_agent
@pytest.mark.slow
def test_node_start_with_options_keeps_existing_pools(host, lan_etcd):
    client = lan_etcd.kv()
    client.put("/calico/v1/ipam/v4/pool/10.9.0.0-16", json.dumps({"cidr": "10.9.0.0/16"}))
    client.put("/calico/bgp/v1/global/as_num", "64999")
    # Another machine registered this name before, with another IP.
    client.put("/calico/bgp/v1/host/node-a/ip_addr_v4", "172.17.8.99")
    argv = "node --ip=%s --ip6=%s --as=64600 --log-dir=/var/log/calico/custom" % (HOST_IP, HOST_IP6)
    result = calicoctl(host, argv, lan_etcd.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "detected" not in result.stdout
    assert "Created default IP pool fd80:24e2:f998:72d6::/64." in result.stdout
    assert "192.168.0.0/16" not in result.stdout
    warning = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warning) == 1
    assert warning[0].startswith("WARNING: hostname node-a was registered with IP 172.17.8.99, now %s."
                                 % HOST_IP)

    keys = expected_keys("node-a", HOST_IP, HOST_IP6, as_num=64600)
    del keys[DEFAULT_POOL_4]
    keys["/calico/v1/ipam/v4/pool/10.9.0.0-16"] = json.dumps({"cidr": "10.9.0.0/16"})
    keys["/calico/bgp/v1/global/as_num"] = "64999"        # never overwritten
    assert node_keys(client, "node-a") == keys
    assert host.run(["test", "-s", "/var/log/calico/custom/agent.log"]).returncode == 0

    # Restart without --as: the per-node AS goes, so the global one applies.
    assert calicoctl(host, "node stop", lan_etcd.env).returncode == 0
    result = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert result.returncode == 0, result.stdout + result.stderr
    values = calico_values(client)
    assert "/calico/bgp/v1/host/node-a/as_num" not in values
    assert values["/calico/bgp/v1/host/node-a/ip_addr_v6"] == ""
    assert result.stderr == ""                              # same IP as registered: no warning
    stop_node(host, lan_etcd.env)


@needs_agent
@pytest.mark.slow
def test_node_warns_about_an_ip_not_on_this_host(host, lan_etcd):
    result = calicoctl(host, "node --ip=172.17.8.222", lan_etcd.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ("WARNING: --ip=172.17.8.222 is not an address of any interface on "
                                     "this host; other hosts may not reach it.")
    assert lan_etcd.kv().get("/calico/v1/host/node-a/bird_ip").value == "172.17.8.222"
    stop_node(host, lan_etcd.env)


@needs_agent
def test_node_foreground_stops_cleanly_on_sigterm(host, lan_etcd):
    env = {"PYTHONPATH": REPO_ROOT}
    env.update(lan_etcd.env)
    process = host.popen(cli_command() + ["node", "--ip=%s" % HOST_IP, "--detach=false"], env=env,
                         cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []

        def running_line():
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                line = process.stdout.readline()
                lines.append(line)
                return "in the foreground (calico-agent pid" in line
            assert process.poll() is None, "calicoctl exited: %s" % process.stderr.read()
            return False
        wait_for(running_line, timeout=40, interval=0, message="foreground node running")
        pid = agent_pid(host)
        assert pid is not None and pid_alive(pid)
        # Not detached: the agent shares calicoctl's session.
        assert os.getsid(pid) == os.getsid(process.pid)
        # nsenter execs calicoctl: the Popen's pid is calicoctl itself.
        assert b"calicoctl" in open("/proc/%d/cmdline" % process.pid, "rb").read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines) + out + err
    assert "Calico node stopped." in out
    assert "Traceback" not in err
    assert not pid_alive(pid)
    assert agent_pid(host) is None
    # The registration stays (a systemd restart picks it up again).
    assert lan_etcd.kv().get("/calico/v1/host/node-a/bird_ip").value == HOST_IP


# -- stop with endpoints ------------------------------------------------------------

def add_endpoint(datastore, hostname, workload, endpoint_id, ips):
    key = model.EndpointKey(hostname, "docker", workload, endpoint_id)
    nets4 = tuple("%s/32" % ip for ip in ips if ":" not in ip)
    nets6 = tuple("%s/128" % ip for ip in ips if ":" in ip)
    datastore.write_endpoint(model.Endpoint(key=key, name="cali" + endpoint_id[:11],
                                            mac="ee:ee:ee:ee:ee:ee", ipv4_nets=nets4, ipv6_nets=nets6))
    for ip in ips:
        pool = "fd80:24e2:f998:72d6::/64" if ":" in ip else "192.168.0.0/16"
        assert datastore.claim_ip(pool, ip)


@pytest.fixture
def registered(lan_etcd):
    """This host and another one registered, each with endpoints holding IP claims."""
    datastore = DatastoreClient(lan_etcd.kv())
    for pool in ("192.168.0.0/16", "fd80:24e2:f998:72d6::/64"):
        datastore.write_pool(model.IPPool(cidr=pool))
    datastore.set_ready(True)
    datastore.register_host("node-a", HOST_IP)
    datastore.register_host("node-b", "172.17.8.152")
    add_endpoint(datastore, "node-a", "w1", "ep1aaaaaaaaaaaa", ["192.168.0.1", "fd80:24e2:f998:72d6::1"])
    add_endpoint(datastore, "node-a", "w2", "ep2aaaaaaaaaaaa", ["192.168.0.2"])
    add_endpoint(datastore, "node-b", "w3", "ep3bbbbbbbbbbbb", ["192.168.0.3"])
    return datastore


def test_node_stop_refuses_while_endpoints_exist(host, lan_etcd, registered):
    client = lan_etcd.kv()
    before = dump_etcd(client)
    result = calicoctl(host, "node stop", lan_etcd.env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "still has 2 endpoint(s)" in lines[0] and "--force" in lines[0]
    assert result.stdout == ""
    assert dump_etcd(client) == before


def test_node_stop_force_removes_endpoints_and_releases_claims(host, lan_etcd, registered):
    result = calicoctl(host, "node stop --force", lan_etcd.env)
    assert result.returncode == 0, result.stderr
    assert "calico-agent was not running." in result.stdout
    assert "Removed 2 endpoint(s) and released 3 IP address(es)." in result.stdout
    values = calico_values(lan_etcd.kv())
    assert not any("node-a" in key for key in values), values
    assert registered.list_claims("192.168.0.0/16") == ["192.168.0.3"]
    assert registered.list_claims("fd80:24e2:f998:72d6::/64") == []
    assert [ep.endpoint_id for ep in registered.list_endpoints()] == ["ep3bbbbbbbbbbbb"]
    assert values["/calico/v1/host/node-b/bird_ip"] == "172.17.8.152"
    # Nothing left to stop: still fine.
    again = calicoctl(host, "node stop", lan_etcd.env)
    assert again.returncode == 0, again.stderr


@needs_agent
@pytest.mark.slow
def test_node_stop_force_stops_a_running_agent(host, lan_etcd, registered):
    result = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert result.returncode == 0, result.stdout + result.stderr
    pid = agent_pid(host)
    refused = calicoctl(host, "node stop", lan_etcd.env)
    assert refused.returncode == 1
    assert pid_alive(pid)                      # a refusal stops nothing
    stopped = calicoctl(host, "node stop --force", lan_etcd.env)
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped calico-agent (pid %d)." % pid in stopped.stdout
    assert not pid_alive(pid)
    assert registered.list_claims("192.168.0.0/16") == ["192.168.0.3"]


# -- refusals ----------------------------------------------------------------------

def test_node_needs_root(host, lan_etcd):
    client = lan_etcd.kv()
    before = dump_etcd(client)
    for argv in ("node", "node stop"):
        result = calicoctl(host, argv, lan_etcd.env, user=65534)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == ["This command must be run as root (try sudo)."]
    assert dump_etcd(client) == before
    assert agent_pid(host) is None


@pytest.mark.parametrize("argv, fragment", [
    ("node --ip=172.17.8", "IPv4 address for --ip"),
    ("node --ip=fd00::1", "is not an IPv4 address"),
    ("node --ip6=172.17.8.151", "is not an IPv6 address"),
    ("node --as=abcde", "Invalid AS number"),
    ("node --as=4294967296", "Invalid AS number"),
    ("node --detach=maybe", "--detach"),
    ("node --rr-cluster-id=244.0.0", "Invalid route reflector cluster ID '244.0.0'"),
    ("node --rr-cluster-id=fd00::1", "Invalid route reflector cluster ID"),
])
def test_node_invalid_options_refused(host, lan_etcd, argv, fragment):
    client = lan_etcd.kv()
    before = dump_etcd(client)
    result = calicoctl(host, argv, lan_etcd.env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert dump_etcd(client) == before
    assert agent_pid(host) is None


def test_last_reflector_stays_one_while_hosts_would_learn_no_routes(host, lan_etcd):
    client = lan_etcd.kv()
    client.put("/calico/bgp/v1/global/node_mesh", json.dumps({"enabled": False}))
    client.put("/calico/bgp/v1/host/node-a/ip_addr_v4", HOST_IP)
    client.put("/calico/bgp/v1/host/node-a/rr_cluster_id", "244.0.0.1")
    before = dump_etcd(client)
    result = calicoctl(host, "node --ip=%s --rr-cluster-id=none" % HOST_IP, lan_etcd.env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Not making node-a an ordinary node: it is the last route reflector"), result.stderr
    assert "--force" in lines[0]
    assert dump_etcd(client) == before
    assert agent_pid(host) is None


def test_node_with_etcd_down_is_exit_3_and_starts_nothing(host):
    result = calicoctl(host, "node --ip=%s" % HOST_IP, {"ETCD_AUTHORITY": "172.17.8.1:1"})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Cannot reach etcd" in lines[0], result.stderr
    assert agent_pid(host) is None
    assert "Traceback" not in result.stderr


@needs_agent
@pytest.mark.slow
def test_node_restarts_after_the_agent_was_killed(host, lan_etcd):
    first = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert first.returncode == 0, first.stdout + first.stderr
    old = agent_pid(host)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), timeout=5, message="agent killed")
    assert agent_pid(host) == old                       # a stale pid file stays behind
    status = calicoctl(host, "status", lan_etcd.env)
    assert status.stdout.startswith("calico-agent is not running on node-a.")
    second = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already running" not in second.stdout
    new = agent_pid(host)
    assert new != old and pid_alive(new)
    stop_node(host, lan_etcd.env)
    assert not pid_alive(new)


@needs_agent
@pytest.mark.slow
def test_node_switches_the_dataplane_of_a_running_node_and_removes_the_other(host, lan_etcd):
    nftables, iptables = kernel(host, "nftables"), kernel(host, "iptables")
    first = calicoctl(host, "node --ip=%s" % HOST_IP, lan_etcd.env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Dataplane (nftables): in sync" in calicoctl(host, "status", lan_etcd.env).stdout
    assert nftables.present() and not iptables.present()
    same = calicoctl(host, "node --ip=%s --dataplane=nftables" % HOST_IP, lan_etcd.env)
    assert same.returncode == 0 and "already running" in same.stdout and "Switched" not in same.stdout
    old = agent_pid(host)
    switched = calicoctl(host, "node --ip=%s --dataplane=iptables" % HOST_IP, lan_etcd.env)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert "Switched the policy dataplane from nftables to iptables." in switched.stdout
    assert agent_pid(host) != old and not pid_alive(old)
    assert "Dataplane (iptables): in sync" in calicoctl(host, "status", lan_etcd.env).stdout
    assert iptables.present() and not nftables.present()
    back = calicoctl(host, "node --ip=%s --dataplane=nftables" % HOST_IP, lan_etcd.env)
    assert back.returncode == 0 and "from iptables to nftables" in back.stdout
    assert nftables.present() and not iptables.present()
    stop_node(host, lan_etcd.env)
