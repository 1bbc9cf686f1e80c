"""The test harness itself works against the real components.

These run first-hand what every other functional and system test relies on:
etcd, dockerd with the local busybox image, and simulated hosts on a
simulated LAN. The harness's etcd clusters and TLS are tested where
calicoctl uses them, in test_etcd_connection.py.
"""
import os
import sys

import pytest

from calicoctl.identity import RUN_DIR
from tests.harness.etcd import EtcdServer, make_kv
from tests.harness.simhost import Lan, NamespaceError, SimHost
from tests.harness.util import pid_alive, wait_for

pytestmark = pytest.mark.usefixtures("root_required")


# -- etcd --------------------------------------------------------------------

def test_etcd_write_read_and_wipe(etcd):
    kv = etcd.kv()
    kv.put("/calico/v1/harness/key", "value")
    assert kv.get("/calico/v1/harness/key").value == "value"
    assert etcd.env == {"ETCD_AUTHORITY": etcd.authority}
    from tests.harness.etcd import wipe
    wipe(etcd.env)
    assert kv.get("/calico/v1/harness/key") is None
    wipe(etcd.env)  # nothing left to delete: still fine


@pytest.mark.parametrize("fixture", ["etcd", "etcd_v2"])
def test_etcd_fixtures_start_empty_in_every_keyspace(fixture, request):
    handle = request.getfixturevalue(fixture)
    for kind in ("etcdv3", "etcdv2") if handle.datastore == "etcdv2" else ("etcdv3",):
        kv = make_kv(handle.env, kind)
        assert not kv.exists("/calico")
        kv.put("/calico/leftover", "x")  # the next test's wipe must remove it


@pytest.mark.slow
def test_etcd_restart_keeps_data_and_ports(tmp_path):
    server = EtcdServer(str(tmp_path / "data")).start()
    try:
        server.kv().put("/calico/persist", "1")
        authority, old_pid = server.authority, server.pid
        server.restart()
        assert server.authority == authority
        assert server.pid != old_pid and not pid_alive(old_pid)
        assert server.kv().get("/calico/persist").value == "1"
        server.kill()
        assert not server.running
        server.start()
        assert server.kv().get("/calico/persist").value == "1"
    finally:
        server.stop()
    assert not server.running


def test_etcd_start_failure_reports_log(tmp_path):
    first = EtcdServer(str(tmp_path / "a")).start()
    try:
        # Same client port: the second etcd cannot bind and must fail loudly.
        clash = EtcdServer(str(tmp_path / "b"), client_port=first.client_port)
        with pytest.raises(RuntimeError) as error:
            clash.start()
        assert "address already in use" in str(error.value)
        assert not clash.running
    finally:
        first.stop()


# -- Docker ------------------------------------------------------------------

def test_docker_busybox_container_runs_echo(make_container, docker_daemon):
    container = make_container()
    container.reload()
    assert container.status == "running"
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    assert container.image.attrs["Config"]["Cmd"] == ["sh"]
    result = container.exec_run(["echo", "hi"])
    assert result.exit_code == 0
    assert result.output == b"hi\n"
    # Only a loopback interface: --net=none.
    links = container.exec_run(["ls", "/sys/class/net"]).output.decode().split()
    assert links == ["lo"]


def test_container_factory_names_and_removes_what_it_made(docker_daemon):
    # What the make_container fixture does at teardown, run here, so this
    # test needs no other test to have run before it.
    import docker

    from tests.harness.docker import ContainerFactory

    factory = ContainerFactory(docker_daemon)
    name = "calico-harness-teardown-check-%d" % os.getpid()
    try:
        container = factory(name=name)
        assert container.name == name
        assert docker_daemon.containers.get(name).status == "running"
    finally:
        factory.remove_all()
    with pytest.raises(docker.errors.NotFound):
        docker_daemon.containers.get(name)


# -- simulated hosts ---------------------------------------------------------

@pytest.fixture
def two_hosts(make_simhost):
    suffix = os.getpid() % 1000
    a = make_simhost("harness-a%d" % suffix, "172.17.8.201", ip6="fd00:8::201")
    b = make_simhost("harness-b%d" % suffix, "172.17.8.202", ip6="fd00:8::202")
    return a, b


def test_simhosts_ping_each_other(two_hosts):
    a, b = two_hosts
    result = a.run(["ping", "-c1", "-W1", b.ip])
    assert result.returncode == 0, result.stdout + result.stderr
    result = b.run(["ping", "-c1", "-W1", a.ip])
    assert result.returncode == 0, result.stdout + result.stderr
    result = a.run(["ping", "-6", "-c1", "-W1", b.ip6])
    assert result.returncode == 0, result.stdout + result.stderr
    # An address nobody has does not answer: ping can fail here.
    assert a.run(["ping", "-c1", "-W1", "172.17.8.250"]).returncode != 0


def test_simhosts_have_own_hostname_and_network(two_hosts):
    a, b = two_hosts
    assert a.run(["hostname"]).stdout.strip() == a.name
    assert b.run(["hostname"]).stdout.strip() == b.name
    route = a.run(["ip", "route", "show", "default"]).stdout
    assert "via 172.17.8.1 dev eth0" in route
    assert a.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert b.ip in b.run(["ip", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert a.ip not in b.run(["ip", "-4", "addr", "show"]).stdout


def test_simhosts_have_private_run_and_calico_dirs(two_hosts):
    a, b = two_hosts
    marker = "harness-marker-%d" % os.getpid()
    for directory in ("/run", RUN_DIR, "/var/log/calico", "/var/lib/calico"):
        path = "%s/%s" % (directory, marker)
        assert a.run(["sh", "-c", "echo a > %s" % path]).returncode == 0
        assert a.run(["cat", path]).stdout == "a\n"
        assert b.run(["test", "-e", path]).returncode == 1, path
        assert not os.path.exists(path), "leaked onto the real filesystem: " + path


def test_simhost_reaches_docker(two_hosts, docker_daemon, make_container):
    a, _ = two_hosts
    container = make_container()
    result = a.run(["docker", "ps", "--format", "{{.Names}}"])
    assert result.returncode == 0, result.stderr
    assert container.name in result.stdout.split()


def test_simhost_environment_and_workdir(two_hosts, tmp_path):
    a, _ = two_hosts
    result = a.run(["sh", "-c", 'echo "$HARNESS_VAR|$PATH"; pwd'],
                   env={"HARNESS_VAR": "set"}, cwd=str(tmp_path))
    variable, path = result.stdout.splitlines()[0].split("|")
    assert variable == "set"
    assert path.split(":")[0].endswith("/.venv/bin")
    assert result.stdout.splitlines()[1] == str(tmp_path)
    # A plain string runs through sh -c.
    assert a.run("echo $((40 + 2))").stdout == "42\n"


def test_simhost_stop_ends_processes_and_removes_port(lan):
    host = SimHost("harness-stop", "172.17.8.210", lan).start()
    holder = host.pid
    tracked = host.popen(["sleep", "300"])
    # A daemonised process we do not hold a handle on (like a detached agent).
    host.run(["sh", "-c", "setsid sleep 301 >/dev/null 2>&1 < /dev/null &"])
    untracked = wait_for(lambda: [p for p in _pids_of(host) if p not in (holder, tracked.pid)],
                         timeout=5, message="daemonised sleep")
    assert lan.run(["ip", "link", "show", host.port_name]).returncode == 0
    host.stop()
    assert tracked.poll() is not None
    assert not pid_alive(holder)
    assert not any(pid_alive(p) for p in untracked)
    assert lan.run(["ip", "link", "show", host.port_name]).returncode != 0
    host.stop()  # twice is fine


def _pids_of(host):
    from tests.harness.util import netns_inode, pids_in_netns
    return pids_in_netns(netns_inode(host.pid))


def test_simhost_partial_start_cleans_up(lan):
    host = SimHost("bad name", "172.17.8.211", lan)  # hostname(1) rejects it
    with pytest.raises(NamespaceError):
        host.start()
    assert host.pid is None
    assert lan.run(["ip", "link", "show", host.port_name]).returncode != 0
    host.stop()


def test_simhost_same_name_after_crash(lan):
    first = SimHost("harness-crash", "172.17.8.212", lan).start()
    # Simulate a crashed run: the holder dies without any cleanup.
    os.kill(first.pid, 9)
    wait_for(lambda: not pid_alive(first.pid), timeout=5)
    second = SimHost("harness-crash", "172.17.8.212", lan).start()
    try:
        assert second.run(["hostname"]).stdout.strip() == "harness-crash"
        assert second.run(["ping", "-c1", "-W1", lan.gateway]).returncode == 0
    finally:
        second.stop()
        first.stop()


def test_lan_etcd_reachable_from_simhost(lan_etcd, make_simhost):
    host = make_simhost("harness-etcd", "172.17.8.220")
    lan_etcd.kv().put("/calico/from-root", "hello")
    code = ("import base64, json, urllib.request; print(base64.b64decode(json.load(urllib.request.urlopen("
            "'http://%s/v3/kv/range', data=b'{\"key\": \"L2NhbGljby9mcm9tLXJvb3Q=\"}', timeout=5))"
            "['kvs'][0]['value']).decode())" % lan_etcd.authority)
    result = host.run([sys.executable, "-c", code], env=lan_etcd.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello"


def test_etcd_inside_lan_namespace(tmp_path):
    # etcd runs inside the LAN (runner=lan) on the gateway address; a host on
    # the LAN reaches it directly, the test process through lan.publish().
    with Lan(name="harness-etcd-lan", subnet="10.99.0.0/24", gateway="10.99.0.1") as own_lan:
        server = EtcdServer(str(tmp_path / "data"), host=own_lan.gateway, client_port=2379,
                            peer_port=2380, runner=own_lan).start()
        try:
            local = own_lan.publish(2379, host=own_lan.gateway)
            make_kv({"ETCD_AUTHORITY": local.authority}).put("/calico/in-lan", "yes")
            with SimHost("harness-lanhost", "10.99.0.5", own_lan) as host:
                result = host.run(["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", server.url,
                                   "get", "--print-value-only", "/calico/in-lan"])
                assert result.returncode == 0, result.stderr
                assert result.stdout.strip() == "yes"
        finally:
            server.stop()
    assert not own_lan.alive
