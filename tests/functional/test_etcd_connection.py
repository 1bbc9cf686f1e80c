"""How calicoctl reaches etcd: clusters with failover, TLS, and etcd being down,
on etcd v2 and on v3 (an etcd without the v2 API)."""
import json
import os
import signal
import time

import pytest

from tests.functional.clitools import assert_one_line_error, run_cli, run_cli_process
from tests.harness.etcd import (DATASTORES, EtcdServer, cluster_env, datastore_env, make_tls_material,
                                start_cluster, stop_all)
from tests.harness.util import free_port, wait_for
from tests.harness.watching import WatchEvents


# -- a 3-member cluster with one member stopped ------------------------------------------

@pytest.fixture(scope="module", params=DATASTORES)
def cluster(request, tmp_path_factory):
    members = start_cluster(str(tmp_path_factory.mktemp("cluster")), size=3, datastore=request.param)
    yield members
    stop_all(members)


def test_cluster_elects_a_new_leader_and_a_stopped_member_catches_up(cluster):
    assert len({m.client_port for m in cluster} | {m.peer_port for m in cluster}) == 6
    assert len(cluster[0].call("/v3/cluster/member/list")["members"]) == 3
    leader_name = cluster[0].leader_name()
    assert leader_name in {m.name for m in cluster}
    cluster[0].kv().put("/calico/cluster/before", "1")
    # Stop the leader itself: the other two must elect a new one.
    leader = next(m for m in cluster if m.name == leader_name)
    leader.stop()
    try:
        survivors = [m for m in cluster if m is not leader]
        new_leader = wait_for(lambda: survivors[0].leader_name() not in (None, leader_name)
                              and survivors[0].leader_name(), timeout=15, message="new leader")
        assert new_leader in {m.name for m in survivors}
        survivors[0].kv().put("/calico/cluster/after", "2")
        other = survivors[1].kv()          # v3 reads are linearizable (a quorum read)
        assert other.get("/calico/cluster/before").value == "1"
        assert other.get("/calico/cluster/after").value == "2"
    finally:
        leader.start()
    # The stopped member comes back and catches up.
    assert leader.kv().get("/calico/cluster/after").value == "2"


def test_cluster_with_first_member_stopped(cluster):
    stopped = cluster[0]
    # The stopped member comes first in ETCD_ENDPOINTS: every request must fail over.
    env = cluster_env(cluster)
    stopped.stop()
    try:
        result = run_cli_process(env, "profile add CLUSTERED")
        assert result.rc == 0, result.err
        assert result.out.strip() == "Created profile CLUSTERED."
        assert run_cli(env, "profile CLUSTERED tag add T").rc == 0
        assert run_cli(env, "profile CLUSTERED rule add inbound --at=1 deny tcp to ports 22").rc == 0
        assert run_cli(env, "pool add 10.20.0.0/16").rc == 0
        # What was written is there on a live member.
        kv = cluster[1].kv()
        assert json.loads(kv.get("/calico/v1/policy/profile/CLUSTERED/tags").value) == ["CLUSTERED", "T"]
        rules = json.loads(kv.get("/calico/v1/policy/profile/CLUSTERED/rules").value)
        assert rules["inbound_rules"][0] == {"action": "deny", "protocol": "tcp", "dst_ports": [22]}
        assert "10.20.0.0/16" in run_cli(env, "pool show").out
    finally:
        stopped.start()


def test_watch_moves_to_another_member_when_its_member_stops(cluster):
    """The agent's watcher on the first member; that member stops: the watch
    goes on from another one, missing nothing."""
    from calicoctl.agent.watcher import EtcdWatcher, Snapshot, Update
    from tests.harness.etcd import make_kv
    env = cluster_env(cluster)
    events = WatchEvents()
    watcher = EtcdWatcher(make_kv(env), events, watch_timeout=2.0, retry_interval=0.2).start()
    try:
        first = events.next(Snapshot, timeout=20)
        cluster[0].stop()
        writer = make_kv(cluster_env(cluster[1:]))
        for n in range(3):
            # A new leader may still be being elected: retry a refused write.
            wait_for(lambda n=n: writer.put("/calico/v1/failover/%d" % n, str(n)) is None, timeout=15,
                     interval=0.5, message="a write to the remaining members")
        seen = {}
        while len(seen) < 3:
            item = events.next((Snapshot, Update), timeout=20)
            if isinstance(item, Snapshot):
                seen.update((k, v) for k, v in item.items.items() if "/failover/" in k)
            elif "/failover/" in item.key:
                seen[item.key] = item.value
        assert seen == {"/calico/v1/failover/%d" % n: str(n) for n in range(3)}
        assert first.items == {} or "/calico/v1/failover/0" not in first.items
    finally:
        watcher.stop()
        cluster[0].start()


def test_cluster_endpoint_order_does_not_matter(cluster):
    env = dict(cluster_env(cluster), ETCD_ENDPOINTS=",".join(m.url for m in reversed(cluster)))
    cluster[2].stop()
    try:
        result = run_cli(env, "profile add REORDERED")
        assert result.rc == 0, result.err
        assert "REORDERED" in run_cli(env, "profile show").out
    finally:
        cluster[2].start()


@pytest.mark.parametrize("datastore", DATASTORES)
def test_all_members_down_names_every_endpoint(datastore):
    ports = [free_port() for _ in range(3)]
    env = dict(datastore_env(datastore), ETCD_ENDPOINTS=",".join("http://127.0.0.1:%d" % port for port in ports))
    started = time.monotonic()
    result = run_cli_process(env, "profile show")
    assert time.monotonic() - started < 5
    line = assert_one_line_error(result, rc=3)
    for port in ports:
        assert "127.0.0.1:%d" % port in line


# -- TLS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=DATASTORES)
def tls_etcd(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    material = make_tls_material(str(base / "pki"))
    server = EtcdServer(str(base / "data"), tls=material, datastore=request.param).start()
    yield server
    server.stop()


def test_tls_commands_work(tls_etcd):
    env = tls_etcd.env
    assert tls_etcd.url.startswith("https://127.0.0.1:")
    assert env["ETCD_SCHEME"] == "https" and env["ETCD_CERT_FILE"] == tls_etcd.tls.client_cert
    assert tls_etcd.call("/v3/maintenance/status")["version"]
    result = run_cli_process(env, "profile add SECURE")
    assert result.rc == 0, result.err
    assert run_cli(env, "bgp peer add 10.0.0.5 as 64512").rc == 0
    assert "SECURE" in run_cli(env, "profile show").out
    assert json.loads(tls_etcd.kv().get("/calico/v1/policy/profile/SECURE/tags").value) == ["SECURE"]


def test_tls_through_endpoints_list(tls_etcd):
    env = dict(tls_etcd.env)
    del env["ETCD_SCHEME"]
    env["ETCD_ENDPOINTS"] = "https://127.0.0.1:%d,%s" % (free_port(), tls_etcd.url)
    result = run_cli(env, "profile add SECURE2")
    assert result.rc == 0, result.err


def test_tls_without_client_certificate_fails_cleanly(tls_etcd):
    env = dict(datastore_env(tls_etcd.datastore), ETCD_AUTHORITY=tls_etcd.authority, ETCD_SCHEME="https",
               ETCD_CA_CERT_FILE=tls_etcd.tls.ca_cert)
    line = assert_one_line_error(run_cli(env, "profile show"), rc=3)
    assert tls_etcd.url in line and "TLS handshake failed" in line


def test_plain_http_to_tls_etcd_fails_cleanly(tls_etcd):
    result = run_cli(dict(datastore_env(tls_etcd.datastore), ETCD_AUTHORITY=tls_etcd.authority), "profile show")
    assert result.rc in (1, 3)
    assert_one_line_error(result, rc=result.rc)


# -- etcd down, bad settings ---------------------------------------------------------------------

@pytest.mark.parametrize("datastore", DATASTORES)
@pytest.mark.slow
def test_etcd_down_exit_3_fast_one_line(tmp_path, datastore):
    server = EtcdServer(str(tmp_path / "data"), datastore=datastore).start()
    env = server.env
    assert run_cli(env, "profile add BEFORE").rc == 0
    server.stop()
    for argv in ("profile add X", "profile show", "endpoint E profile append A", "pool add 10.0.0.0/8",
                 "bgp node-mesh off", "profile P rule update"):
        started = time.monotonic()
        result = run_cli_process(env, argv, stdin='{"id": "P", "inbound_rules": [], "outbound_rules": []}')
        elapsed = time.monotonic() - started
        line = assert_one_line_error(result, rc=3)
        assert server.authority in line, line
        assert elapsed < 5, "%s took %.1f s" % (argv, elapsed)
        assert result.out == ""


@pytest.mark.parametrize("datastore", DATASTORES)
@pytest.mark.slow
def test_hung_etcd_exit_3_within_5_seconds(tmp_path, datastore):
    """etcd accepts connections but never answers (SIGSTOP): a timeout, not a hang."""
    server = EtcdServer(str(tmp_path / "data"), datastore=datastore).start()
    env = server.env
    os.kill(server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = run_cli_process(env, "profile show")
        elapsed = time.monotonic() - started
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.stop()
    line = assert_one_line_error(result, rc=3)
    assert server.authority in line
    assert elapsed < 5, "took %.1f s" % elapsed


def test_default_authority_is_named_when_nothing_listens():
    # Nothing is configured: the default 127.0.0.1:2379 is tried and named.
    result = run_cli({}, "profile show")
    if result.rc == 0:
        pytest.skip("an etcd really listens on 127.0.0.1:2379 here")
    line = assert_one_line_error(result, rc=3)
    assert "127.0.0.1:2379" in line


@pytest.mark.parametrize("env", [
    {"ETCD_AUTHORITY": "localhost"},
    {"ETCD_AUTHORITY": "localhost:99999"},
    {"ETCD_AUTHORITY": "http://127.0.0.1:2379"},
    {"ETCD_SCHEME": "gopher"},
    {"ETCD_ENDPOINTS": "127.0.0.1:2379"},
    # Malformed hosts are bad input, not an unreachable etcd (exit 3).
    {"ETCD_AUTHORITY": "exa#mple:2379"},
    {"ETCD_AUTHORITY": "a" * 64 + ".example.com:2379"},
    {"ETCD_AUTHORITY": ".".join(["a" * 63] * 4) + ":2379"},
    {"ETCD_AUTHORITY": "[not-v6]:2379"},
    {"ETCD_ENDPOINTS": "http://exa#mple:2379"},
    {"ETCD_ENDPOINTS": "http://127.0.0.1:0"},
    {"ETCD_ENDPOINTS": "http://bad_host!:2379"},
])
def test_bad_settings_exit_1(env):
    result = run_cli_process(env, "profile show")
    line = assert_one_line_error(result, rc=1)
    assert "ETCD_" in line
