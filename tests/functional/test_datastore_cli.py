"""DATASTORE_TYPE and ``calicoctl datastore migrate`` on a real etcd.

The session's v2 etcd serves both APIs (``--enable-v2``): migrate copies
its v2 keyspace into its v3 keyspace. A v3-only etcd (as Debian's and 3.6
are) tells a v2 client clearly what to set, and the agent refuses to start
against it. Commands and the agent speaking the API that holds no Calico
data, when the other one does, say so and what to do.
"""
import os
import subprocess
import sys

import pytest

from calicoctl.datastore import etcdconn
from calicoctl.errors import DatastoreError
from tests.functional.clitools import assert_one_line_error, assert_ok, run_cli, run_cli_process
from tests.harness.etcd import make_kv
from tests.harness.util import REPO_ROOT


@pytest.fixture
def both(etcd_v2):
    """The session v2 etcd's v2 and v3 keyspaces, both wiped: (v2 env, v2 store, v3 store)."""
    yield etcd_v2.env, etcd_v2.kv(), make_kv(etcd_v2.env, "etcdv3")
    etcd_v2.server.wipe()


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
    v3.put("/calico/v1/policy/profile/OTHER/tags", '["OTHER"]')       # as a v3 command wrote it
    v3.put("/calico/v1/policy/profile/OTHER/rules", '{"inbound_rules": [], "outbound_rules": []}')
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


def test_migrate_without_the_v2_api_is_one_clear_line(etcd):
    line = assert_one_line_error(run_cli(etcd.env, "datastore migrate"), rc=1)
    assert "does not serve the v2 API" in line


@pytest.mark.parametrize("value", ["etcdv4", "etcd", "v3"])
def test_wrong_datastore_type_is_one_line_exit_1(etcd, value):
    result = run_cli_process(dict(etcd.env, DATASTORE_TYPE=value), "profile show")
    line = assert_one_line_error(result, rc=1)
    assert "DATASTORE_TYPE" in line and value in line


def test_v2_commands_against_an_etcd_without_v2_name_the_setting(etcd):
    env = dict(etcd.env, DATASTORE_TYPE="etcdv2")
    line = assert_one_line_error(run_cli_process(env, "profile show"), rc=1)
    assert "does not serve the v2 API" in line and "DATASTORE_TYPE=etcdv3" in line


def test_commands_on_the_api_without_the_data_name_the_fix(both):
    """v3 (the default) finds nothing under /calico while v2 holds data: every
    command says so, writes nothing, and names DATASTORE_TYPE=etcdv2 and
    migrate; after a migrate v3 works. The other way round names v3."""
    v2_env, v2, v3 = both
    assert_ok(v2_env, "profile add WEB")
    v3_env = {key: value for key, value in v2_env.items() if key != "DATASTORE_TYPE"}
    for argv in ("profile show", "profile add DB", "pool add 10.9.0.0/16"):
        line = assert_one_line_error(run_cli_process(v3_env, argv), rc=1)
        assert "only in its v2 API" in line and "DATASTORE_TYPE=etcdv2" in line, line
        assert "calicoctl datastore migrate" in line
    assert not v3.exists("/calico")
    assert_ok(v2_env, "datastore migrate")
    assert "WEB" in assert_ok(v3_env, "profile show")

    v2.delete_tree("/calico")
    line = assert_one_line_error(run_cli(v2_env, "profile show"), rc=1)
    assert "only in its v3 API" in line and "unset DATASTORE_TYPE" in line


def test_the_check_asks_the_other_api_only_when_this_one_holds_nothing(both):
    _, v2, v3 = both
    v3.put("/calico/v1/Ready", "true")
    asked = []
    request = v3.http.request
    v3.http.request = lambda *args, **kwargs: asked.append(args[1]) or request(*args, **kwargs)
    etcdconn.check_api(v3)
    assert len(asked) == 1
    v3.delete_tree("/calico")
    v2.put("/calico/felix/v1/host/h1/status", "{}", ttl=60)    # expiring: nothing to migrate
    etcdconn.check_api(v3)
    v2.put("/calico/v1/Ready", "true")
    with pytest.raises(DatastoreError, match="only in its v2 API"):
        etcdconn.check_api(v3)


def run_agent(env, tmp_path):
    child = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": REPO_ROOT}
    child.update(env)
    return subprocess.run([sys.executable, "-m", "calicoctl.agent", "--hostname=kvcheck",
                           "--log-dir=%s" % tmp_path, "--run-dir=%s" % tmp_path],
                          env=child, capture_output=True, text=True, timeout=30)


def test_agent_refuses_a_datastore_type_its_etcd_does_not_serve(root_required, etcd, tmp_path):
    result = run_agent({"ETCD_AUTHORITY": etcd.authority, "DATASTORE_TYPE": "etcdv2"}, tmp_path)
    assert result.returncode == 1
    assert "does not serve the v2 API" in result.stderr and "DATASTORE_TYPE=etcdv3" in result.stderr
    assert not os.path.exists(tmp_path / "agent.pid")
    wrong = run_agent({"ETCD_AUTHORITY": etcd.authority, "DATASTORE_TYPE": "zookeeper"}, tmp_path)
    assert wrong.returncode == 1 and "Invalid DATASTORE_TYPE 'zookeeper'" in wrong.stderr


def test_agent_refuses_to_start_on_the_api_without_the_data(root_required, both, tmp_path):
    v2_env, v2, _ = both
    v2.put("/calico/v1/Ready", "true")
    result = run_agent({key: value for key, value in v2_env.items() if key != "DATASTORE_TYPE"}, tmp_path)
    assert result.returncode == 1
    assert "only in its v2 API" in result.stderr and "calicoctl datastore migrate" in result.stderr
    assert not os.path.exists(tmp_path / "agent.pid")
