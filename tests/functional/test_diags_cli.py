"""``calicoctl diags`` on a simulated host: what the tarball holds.

The host has a chain, an ipset and a route of its own so the dumps can be
told apart from the machine's, a log file, a run-dir file, and keys in etcd
for itself and for another host (which must stay out of the tarball).
"""
import os
import re
import shutil
import sys
import tarfile

import pytest

from calicoctl.identity import RUN_DIR
from tests.functional.clitools import cli_command
from tests.harness.util import REPO_ROOT

pytestmark = pytest.mark.usefixtures("root_required")


def calicoctl(host, argv, env):
    full_env = {"PYTHONPATH": REPO_ROOT}
    full_env.update(env)
    return host.run(cli_command() + argv, env=full_env, cwd=REPO_ROOT, timeout=120)


@pytest.fixture
def host(lan_etcd, make_simhost):
    host = make_simhost("diags-host", "172.17.8.146")
    script = "\n".join([
        "iptables-nft -N diags-marker-chain",
        "ipset create diags-marker-set hash:ip",
        "nft add table inet diags-marker-table",
        "ip route add 10.77.0.0/16 via 172.17.8.1",
        "echo 'agent log line 1' > /var/log/calico/agent.log",
        "mkdir -p /var/log/calico/bird && echo 'bird says hi' > /var/log/calico/bird/current",
        "echo '{\"pid\": 1}' > %s/agent-status.json" % RUN_DIR,
    ])
    result = host.run(["sh", "-ec", script])
    assert result.returncode == 0, result.stderr
    client = lan_etcd.kv()
    client.put("/calico/v1/host/diags-host/bird_ip", "172.17.8.146")
    client.put("/calico/bgp/v1/host/diags-host/ip_addr_v4", "172.17.8.146")
    client.put("/calico/v1/host/other-host/bird_ip", "172.17.8.99")
    client.put("/calico/v1/config/InterfacePrefix", "cali")
    return host


@pytest.fixture
def cleanup():
    made = []
    yield made
    for path in made:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def tarball_path(result, cleanup):
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Diags saved to (\S+\.tar\.gz)$", result.stdout, re.M)
    assert match, result.stdout
    cleanup.append(match.group(1))
    return match.group(1)


def read_members(path):
    with tarfile.open(path) as tar:
        return {member.name: (tar.extractfile(member).read().decode() if member.isfile() else None)
                for member in tar.getmembers()}


def test_diags_tarball_contents(host, lan_etcd, cleanup):
    result = calicoctl(host, ["diags"], lan_etcd.env)
    path = tarball_path(result, cleanup)
    assert ".tar.gz" in result.stdout                    # what the reference ST checks
    members = read_members(path)
    d = "diagnostics/"
    assert "diags-marker-chain" in members[d + "iptables-save.txt"]
    assert members[d + "ip6tables-save.txt"].startswith("# ip6tables-save")
    assert "diags-marker-set" in members[d + "ipset-list.txt"]
    assert "table inet diags-marker-table" in members[d + "nft-ruleset.txt"]
    assert members[d + "dataplane.txt"].startswith("unknown")     # the status file names no agent
    assert "10.77.0.0/16 via 172.17.8.1 dev eth0" in members[d + "ip-route-v4.txt"]
    assert d + "ip-route-v6.txt" in members
    assert "eth0" in members[d + "ip-link.txt"]
    assert "172.17.8.146/24" in members[d + "ip-addr.txt"]
    assert members[d + "hostname.txt"].splitlines()[1] == "diags-host"
    etcd_dump = members[d + "etcd.txt"]
    assert "/calico/v1/host/diags-host/bird_ip = 172.17.8.146" in etcd_dump
    assert "/calico/bgp/v1/host/diags-host/ip_addr_v4 = 172.17.8.146" in etcd_dump
    assert "/calico/v1/config/InterfacePrefix = cali" in etcd_dump
    assert "other-host" not in etcd_dump
    assert members[d + "logs/agent.log"] == "agent log line 1\n"
    assert members[d + "logs/bird/current"] == "bird says hi\n"
    assert members[d + "run/agent-status.json"] == '{"pid": 1}\n'
    # BIRD is not running: noted, not fatal.
    assert "bird-protocols.txt: birdc exited" in members[d + "NOTES.txt"]
    assert "Traceback" not in result.stderr


def test_diags_notes_missing_tools_and_etcd(host, cleanup, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables-save", "ip", "date", "hostname"):
        found = shutil.which(tool)
        os.symlink(found, str(bin_dir / tool))
    result = host.run(["env", "PATH=%s" % bin_dir, sys.executable, "-m", "calicoctl", "diags",
                       "--log-dir=/var/log/nonexistent"],
                      env={"PYTHONPATH": REPO_ROOT, "ETCD_AUTHORITY": "172.17.8.1:1"},
                      cwd=REPO_ROOT, timeout=120)
    path = tarball_path(result, cleanup)
    assert "Note: ipset-list.txt: ipset is not installed." in result.stderr
    assert "Cannot reach etcd" in result.stderr
    assert "Note: logs: /var/log/nonexistent does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    members = read_members(path)
    notes = members["diagnostics/NOTES.txt"]
    assert "ipset is not installed" in notes and "ip6tables-save is not installed" in notes
    assert "diagnostics/ipset-list.txt" not in members
    assert "diags-marker-chain" in members["diagnostics/iptables-save.txt"]
    assert "diagnostics/etcd.txt" not in members
