"""`calicoctl control-plane ...` against a real etcd."""
import json

import pytest

from calicoctl.datastore import paths
from tests.functional.clitools import (assert_ok, assert_refused, dump_etcd, run_cli, run_cli_process)

KEY = paths.control_plane_protection()


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    return any_etcd


def stored(etcd):
    entry = etcd.kv().get(KEY)
    return None if entry is None else json.loads(entry.value)


def test_show_without_a_setting_shows_the_defaults_and_writes_nothing(etcd):
    before = dump_etcd(etcd.kv())
    lines = assert_ok(etcd.env, "control-plane").splitlines()
    assert lines[0] == "Control-plane protection is on (the default)."
    assert "2379, 2380, 179 (the default)" in lines[1]
    assert assert_ok(etcd.env, "control-plane show").splitlines() == lines
    assert dump_etcd(etcd.kv()) == before


def test_switch_off_and_on_and_set_ports(etcd):
    assert assert_ok(etcd.env, "control-plane protection off").startswith("Control-plane protection switched off")
    assert stored(etcd) == {"enabled": False, "ports": [2379, 2380, 179]}
    assert assert_ok(etcd.env, "control-plane show").startswith("Control-plane protection is OFF")
    before = dump_etcd(etcd.kv())
    assert "already off; nothing to do" in assert_ok(etcd.env, "control-plane protection off")
    assert dump_etcd(etcd.kv()) == before
    assert_ok(etcd.env, "control-plane ports 4001,179", contains="ports set to 4001, 179.")
    assert stored(etcd) == {"enabled": False, "ports": [4001, 179]}       # still off
    assert_ok(etcd.env, "control-plane protection on", contains="switched on")
    assert stored(etcd) == {"enabled": True, "ports": [4001, 179]}
    out = assert_ok(etcd.env, "control-plane show")
    assert out.splitlines()[:2] == [
        "Control-plane protection is on.",
        "Protected TCP ports: 4001, 179, plus the port of every etcd endpoint each host's agent uses."]
    assert_ok(etcd.env, "control-plane ports --default", contains="2379, 2380, 179 (the default)")
    assert stored(etcd) == {"enabled": True, "ports": [2379, 2380, 179]}
    before = dump_etcd(etcd.kv())
    assert "already 2379, 2380, 179" in assert_ok(etcd.env, "control-plane ports 2379,2380,179")
    assert dump_etcd(etcd.kv()) == before


def test_nothing_to_do_on_an_unset_key_writes_nothing(etcd):
    before = dump_etcd(etcd.kv())
    assert "already on" in assert_ok(etcd.env, "control-plane protection on")
    assert "nothing to do" in assert_ok(etcd.env, "control-plane ports --default")
    assert dump_etcd(etcd.kv()) == before
    assert stored(etcd) is None


def test_a_broken_stored_value_is_shown_and_can_be_replaced(etcd):
    etcd.kv().put(KEY, '{"enabled": false, "ports": "all"}')
    out = assert_ok(etcd.env, "control-plane show")
    assert out.startswith("Control-plane protection is on.")             # what the agents do with it
    assert "WARNING: the stored setting is not valid (Invalid control-plane protection: ports must be a list.)" \
        in out
    # Even "on" with the defaults writes now: it repairs the value.
    assert_ok(etcd.env, "control-plane protection on", contains="replaced a stored setting that was not valid")
    assert stored(etcd) == {"enabled": True, "ports": [2379, 2380, 179]}


@pytest.fixture
def configured(etcd):
    assert_ok(etcd.env, "control-plane ports 2379,179")
    return etcd


@pytest.mark.parametrize("argv,contains", [
    ("control-plane ports 0", "Invalid control-plane port 0"),
    ("control-plane ports 65536", "Invalid control-plane port 65536"),
    ("control-plane ports 99999999999999999999", "Invalid control-plane port"),
    ("control-plane ports 2379,,179", "Invalid control-plane port ''"),
    ("control-plane ports 2379,", "Invalid control-plane port ''"),
    ("control-plane ports ,", "Invalid control-plane ports ','"),
    ("control-plane ports abc", "Invalid control-plane port 'abc'"),
    ("control-plane ports 2379:2380", "Invalid control-plane port '2379:2380'"),
    ("control-plane ports 179,179", "Control-plane port 179 is given twice"),
    ("control-plane ports", "Usage:"),
    ("control-plane ports 179 --default", "Usage:"),
    ("control-plane protection", "Usage:"),
    ("control-plane protection maybe", "Usage:"),
    ("control-plane protection on off", "Usage:"),
    ("control-plane shwo", "Usage:"),
])
def test_mistakes_leave_etcd_unchanged(configured, argv, contains):
    if contains == "Usage:":
        client = configured.kv()
        before = dump_etcd(client)
        result = run_cli(configured.env, argv)
        assert result.rc == 1 and "Traceback" not in result.err and result.out == ""
        assert result.err.startswith("Usage:")
        assert dump_etcd(client) == before
    else:
        assert_refused(configured, argv, contains=contains)


def test_etcd_unreachable_is_exit_3(etcd):
    for argv in ("control-plane show", "control-plane protection off", "control-plane ports 179"):
        result = run_cli({"ETCD_AUTHORITY": "127.0.0.1:1"}, argv)
        assert result.rc == 3 and len(result.err_lines) == 1 and "Cannot reach etcd" in result.err


def test_real_process(etcd):
    result = run_cli_process(etcd.env, "control-plane protection off")
    assert result.rc == 0 and result.err == ""
    result = run_cli_process(etcd.env, ["control-plane", "ports", "x"])
    assert result.rc == 1 and result.err.strip() == (
        "Invalid control-plane port 'x': expected a number from 1 to 65535.")
    assert run_cli_process(etcd.env, "control-plane").out.startswith("Control-plane protection is OFF")
