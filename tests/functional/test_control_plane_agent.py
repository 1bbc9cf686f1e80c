"""The real ``calico-agent`` with its etcd given by host name.

The agent resolves the name (through the system resolver, from the
simulated host's own ``/etc/hosts``, bind-mounted in its private mount
namespace, with no DNS server configured: no query leaves the host),
protects the address it finds, and says so in its status report; on
either policy dataplane.
"""
import json
import subprocess

import pytest

from calicoctl.identity import RUN_DIR
from tests.harness.dataplanes import DATAPLANES, agent_args, kernel, wipe
from tests.harness.util import wait_for

HOSTNAME = "cp-agent"
HOST_IP = "172.17.8.65"
ETCD_NAME = "etcd-by-name"
LOG_DIR = "/var/log/calico"


@pytest.fixture(scope="module")
def host(lan, make_module_simhost, tmp_path_factory):
    sim = make_module_simhost(HOSTNAME, HOST_IP)
    files = tmp_path_factory.mktemp("etc")
    hosts, resolv = files / "hosts", files / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n%s %s\n" % (lan.gateway, ETCD_NAME))
    resolv.write_text("")
    result = sim.run(["sh", "-ec", "mount --bind %s /etc/hosts; mount --bind %s /etc/resolv.conf"
                      % (hosts, resolv)], cwd="/")
    assert result.returncode == 0, result.stderr
    return sim


def status(host):
    try:
        return json.loads(host.run(["cat", RUN_DIR + "/agent-status.json"], cwd="/").stdout)
    except ValueError:
        return None


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_an_etcd_endpoint_given_by_name_is_resolved_and_protected(host, lan, lan_etcd, dataplane):
    # The other dataplane's run shared the host: none of its rules, log or status.
    wipe(host)
    host.run(["sh", "-c", "rm -rf %s/* %s/*" % (LOG_DIR, RUN_DIR)], cwd="/")
    port = int(lan_etcd.authority.rsplit(":", 1)[1])
    env = {"ETCD_ENDPOINTS": "http://%s:%d" % (ETCD_NAME, port), "ETCD_AUTHORITY": None}
    agent = host.popen(["calico-agent", "--hostname=%s" % HOSTNAME, "--log-dir=%s" % LOG_DIR,
                        "--run-dir=%s" % RUN_DIR] + agent_args(dataplane), env=env, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def protected():
            assert agent.poll() is None, "the agent exited"
            report = status(host)
            return report and report["pid"] == agent.pid and report["in_sync"] \
                and report["control_plane"]["addresses"]["4"] == 1 and report
        report = wait_for(protected, timeout=20, message="the agent protecting etcd's address")
        assert report["dataplane"] == dataplane
        assert report["control_plane"]["active"] is True
        assert report["control_plane"]["ports"] == sorted({179, 2379, 2380, port})
        assert kernel(host, dataplane).protected_addresses(4) == {lan.gateway}
        log = host.run(["cat", LOG_DIR + "/agent.log"], cwd="/").stdout
        assert "etcd endpoints resolved: %s -> %s" % (ETCD_NAME, lan.gateway) in log
    finally:
        agent.kill()
        agent.wait()
