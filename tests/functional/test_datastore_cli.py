"""DATASTORE_TYPE and ``calicoctl datastore migrate`` on a real etcd.

The session etcd serves both APIs (``--enable-v2``): migrate copies its v2
keyspace into its v3 keyspace. A v3-only etcd (as 3.6 is) tells a v2
client clearly what to set, and the agent refuses to start against it.
"""
import os
import subprocess
import sys

import pytest

from tests.functional.clitools import assert_one_line_error, assert_ok, run_cli, run_cli_process
from tests.harness.etcd import make_kv
from tests.harness.util import REPO_ROOT


@pytest.fixture
def both(etcd):
    """The session etcd's v2 and v3 keyspaces, both wiped: (env, v2 store, v3 store)."""
    v3 = make_kv(dict(etcd.env, DATASTORE_TYPE="etcdv3"))
    v3.delete_tree("/calico")
    yield etcd.env, etcd.kv(), v3
    v3.delete_tree("/calico")


def values(kv):
    return {entry.key: entry.value for entry in kv.tree("/calico").entries}


def test_migrate_copies_v2_into_v3_and_is_idempotent(both):
    env, v2, v3 = both
    assert_ok(env, "profile add WEB")
    assert_ok(env, "pool add 10.5.0.0/16")
    assert_ok(env, "bgp peer add 10.0.0.9 as 64520")
    v2.put("/calico/felix/v1/host/h1/status", "{}", ttl=60)      # transient: left out
    expected = {key: value for key, value in values(v2).items() if "/felix/" not in key}
    out = assert_ok(env, "datastore migrate")
    assert out.strip() == "Copied %d keys from etcd v2 to v3 (0 already there). Left out 1 keys with a TTL." \
        % len(expected)
    assert values(v3) == expected
    # The same commands read the same data through v3.
    v3_env = dict(env, DATASTORE_TYPE="etcdv3")
    assert "WEB" in assert_ok(v3_env, "profile show")
    assert "10.5.0.0/16" in assert_ok(v3_env, "pool show")
    again = assert_ok(env, "datastore migrate")
    assert again.startswith("Nothing to migrate: etcd v3 already holds the %d keys of v2." % len(expected))
    # After more v2 changes only those are copied.
    assert_ok(env, "profile add DB")
    assert assert_ok(env, "datastore migrate").startswith("Copied 2 keys from etcd v2 to v3 (%d already there)"
                                                           % len(expected))


def test_migrate_refuses_to_overwrite_other_v3_data_without_force(both):
    env, v2, v3 = both
    assert_ok(env, "profile add WEB")
    v3_env = dict(env, DATASTORE_TYPE="etcdv3")
    assert_ok(v3_env, "profile add OTHER")
    before = values(v3)
    line = assert_one_line_error(run_cli(env, "datastore migrate"), rc=1, contains="--force")
    assert "/calico/v1/policy/profile/OTHER" in line
    assert values(v3) == before
    out = assert_ok(env, "datastore migrate --force")
    assert "removed 2 keys only v3 had" in out
    assert values(v3) == values(v2)


def test_migrate_of_an_empty_store_says_so(both):
    env, _, v3 = both
    assert assert_ok(env, "datastore migrate").strip() == "Nothing to migrate: etcd v2 holds no keys under /calico."
    assert values(v3) == {}


def test_migrate_without_the_v2_api_is_one_clear_line(etcd_v3_server):
    line = assert_one_line_error(run_cli(etcd_v3_server.env, "datastore migrate"), rc=1)
    assert "does not serve the v2 API" in line


@pytest.mark.parametrize("value", ["etcdv4", "etcd", "v3"])
def test_wrong_datastore_type_is_one_line_exit_1(etcd, value):
    result = run_cli_process(dict(etcd.env, DATASTORE_TYPE=value), "profile show")
    line = assert_one_line_error(result, rc=1)
    assert "DATASTORE_TYPE" in line and value in line


def test_v2_commands_against_an_etcd_without_v2_name_the_setting(etcd_v3_server):
    env = {"ETCD_AUTHORITY": etcd_v3_server.authority}
    line = assert_one_line_error(run_cli_process(env, "profile show"), rc=1)
    assert "does not serve the v2 API" in line and "DATASTORE_TYPE=etcdv3" in line


def run_agent(env, tmp_path):
    child = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": REPO_ROOT}
    child.update(env)
    return subprocess.run([sys.executable, "-m", "calicoctl.agent", "--hostname=kvcheck",
                           "--log-dir=%s" % tmp_path, "--run-dir=%s" % tmp_path],
                          env=child, capture_output=True, text=True, timeout=30)


def test_agent_refuses_a_datastore_type_its_etcd_does_not_serve(root_required, etcd_v3_server, tmp_path):
    result = run_agent({"ETCD_AUTHORITY": etcd_v3_server.authority}, tmp_path)
    assert result.returncode == 1
    assert "does not serve the v2 API" in result.stderr and "DATASTORE_TYPE=etcdv3" in result.stderr
    assert not os.path.exists(tmp_path / "agent.pid")
    wrong = run_agent({"ETCD_AUTHORITY": etcd_v3_server.authority, "DATASTORE_TYPE": "zookeeper"}, tmp_path)
    assert wrong.returncode == 1 and "Invalid DATASTORE_TYPE 'zookeeper'" in wrong.stderr
