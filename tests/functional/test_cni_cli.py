"""`calicoctl cni install` / `uninstall` against a real etcd, into temporary
configuration and plugin directories (never the machine's /etc/cni or
/opt/cni)."""
import json
import os
import subprocess

import pytest

from tests.functional.clitools import assert_ok, assert_refused, calico_values


@pytest.fixture
def dirs(tmp_path, etcd):
    assert_ok(etcd.env, "pool add 192.168.0.0/16 fd80::/64")
    return {"conf": str(tmp_path / "net.d"), "bin": str(tmp_path / "bin")}


def install(etcd, dirs, *args):
    return "cni install %s --conf-dir %s --bin-dir %s" % (" ".join(args), dirs["conf"], dirs["bin"])


def test_install_writes_the_conflist_and_the_plugins_and_makes_the_profile(etcd, dirs):
    out = assert_ok(etcd.env, install(etcd, dirs, "netA", "--subnet", "192.168.7.0/24", "--subnet", "fd80::/64"))
    conf_path = os.path.join(dirs["conf"], "netA.conflist")
    assert out.splitlines() == [
        "Installed CNI network netA (addresses from 192.168.7.0/24 and fd80::/64) in %s; plugins %s/calico, "
        "%s/calico-ipam." % (conf_path, dirs["bin"], dirs["bin"]),
        "Its profile netA was created."]
    with open(conf_path) as handle:
        assert json.load(handle) == {
            "cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.0.0", "1.1.0"], "name": "netA",
            "plugins": [{"type": "calico", "capabilities": {"ips": True},
                         "ipam": {"type": "calico-ipam", "subnets": ["192.168.7.0/24", "fd80::/64"]}}]}
    rules = json.loads(calico_values(etcd.kv())["/calico/v1/policy/profile/netA/rules"])
    assert rules["inbound_rules"] == [{"action": "allow", "src_tag": "netA"}]
    for name in ("calico", "calico-ipam"):
        path = os.path.join(dirs["bin"], name)
        assert os.access(path, os.X_OK)
        with open(path) as handle:
            assert handle.readline() == "#!/usr/bin/python3 -IS\n"
        # Started as a runtime starts it: the system python, nothing of ours on any path.
        proc = subprocess.run([path], input=b'{"cniVersion": "1.0.0"}', env={"CNI_COMMAND": "VERSION"},
                              capture_output=True, cwd="/")
        assert json.loads(proc.stdout)["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"], proc.stderr
    # Again: the same files, and the profile is left as it is.
    assert assert_ok(etcd.env, install(etcd, dirs, "netA")).endswith("Its profile netA exists.\n")
    assert "subnets" not in json.load(open(conf_path))["plugins"][0]["ipam"]


@pytest.mark.parametrize("args, words", [
    (["netA", "--subnet", "10.99.0.0/24"], "10.99.0.0/24 is not inside a Calico IPv4 pool (pools: 192.168.0.0/16)"),
    (["netA", "--subnet", "192.168.1.0/24", "--subnet", "192.168.2.0/24"], "at most one --subnet per IP version"),
    (["netA", "--subnet", "banana"], "Invalid subnet"),
    ([".bad"], "Invalid network name"),
    (["bad/name"], "Invalid network name"),
])
def test_install_refuses_bad_input_and_writes_nothing(etcd, dirs, args, words):
    assert_refused(etcd, install(etcd, dirs, *args), contains=words)
    assert not os.path.exists(dirs["conf"]) and not os.path.exists(dirs["bin"])


def test_other_configurations_are_not_touched_and_uninstall(etcd, dirs):
    os.makedirs(dirs["conf"])
    foreign = os.path.join(dirs["conf"], "bridge.conflist")
    with open(foreign, "w") as handle:
        json.dump({"cniVersion": "1.0.0", "name": "bridge", "plugins": [{"type": "bridge"}]}, handle)
    assert_refused(etcd, install(etcd, dirs, "bridge"), contains="does not configure Calico")
    assert_refused(etcd, "cni uninstall bridge --conf-dir %s" % dirs["conf"], contains="not removing it")
    assert os.path.exists(foreign)
    assert_ok(etcd.env, install(etcd, dirs, "netA"))
    out = assert_ok(etcd.env, "cni uninstall netA --conf-dir %s" % dirs["conf"])
    assert out.strip() == "Removed %s/netA.conflist (the plugins and profile netA stay)." % dirs["conf"]
    assert os.listdir(dirs["conf"]) == ["bridge.conflist"] and os.path.exists(os.path.join(dirs["bin"], "calico"))
    assert "Nothing to remove" in assert_ok(etcd.env, "cni uninstall netA --conf-dir %s" % dirs["conf"])
