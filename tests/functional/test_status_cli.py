"""``calicoctl status`` on simulated hosts.

Without a node it says so and exits 0 (reference ST ``test_status``). The
BGP half is read from a real BIRD 2 answering on the host's
``/var/run/calico/bird.ctl``: here two simulated hosts run BIRD with the
protocol names our BIRD config uses, peer with each other over IPv4 and
IPv6, and ``status`` must show those sessions Established. The agent half
with a real agent is tested in test_node_cli.py.
"""
import os
import re

import pytest

from calicoctl.identity import RUN_DIR
from tests.functional.clitools import cli_command
from tests.harness.util import REPO_ROOT, wait_for

pytestmark = pytest.mark.usefixtures("root_required")

A_IP, B_IP = "172.17.8.143", "172.17.8.144"
A_IP6, B_IP6 = "fd00:8::143", "fd00:8::144"
NOBODY = "172.17.8.249"


def calicoctl(host, argv, env):
    full_env = {"PYTHONPATH": REPO_ROOT}
    full_env.update(env)
    return host.run(cli_command() + argv.split(), env=full_env, cwd=REPO_ROOT, timeout=60)


def test_status_without_node(lan_etcd, make_simhost):
    host = make_simhost("status-none", "172.17.8.142")
    result = calicoctl(host, "status", lan_etcd.env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "calico-agent is not running on status-none.",
        "BIRD is not running (no control socket /var/run/calico/bird.ctl).",
    ]


def test_status_with_etcd_unreachable_still_shows_local_state(make_simhost):
    host = make_simhost("status-noetcd", "172.17.8.142")
    result = calicoctl(host, "status", {"ETCD_AUTHORITY": "172.17.8.1:1"})
    assert result.returncode == 3
    assert "calico-agent is not running on status-noetcd." in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Cannot reach etcd" in result.stderr


def bird_config(router_id, peers):
    lines = ["router id %s;" % router_id, "protocol device { scan time 2; }"]
    for name, address, as_num in peers:
        channel = "ipv6" if ":" in address else "ipv4"
        lines.append("protocol bgp %s { local as 64511; neighbor %s as %d; connect retry time 1; "
                     "%s { import all; export none; }; }" % (name, address, as_num, channel))
    return "\n".join(lines) + "\n"


def start_bird(host, config, tmp_path):
    path = tmp_path / ("%s-bird.cfg" % host.name)
    path.write_text(config)
    process = host.popen(["bird", "-f", "-c", str(path), "-s", RUN_DIR + "/bird.ctl",
                          "-P", RUN_DIR + "/bird.pid"])
    wait_for(lambda: host.run(["test", "-S", RUN_DIR + "/bird.ctl"]).returncode == 0,
             timeout=10, message="BIRD control socket in %s" % host.name)
    return process


@pytest.mark.slow
def test_status_shows_bgp_sessions(lan_etcd, make_simhost, tmp_path):
    a = make_simhost("status-a", A_IP, ip6=A_IP6)
    b = make_simhost("status-b", B_IP, ip6=B_IP6)
    start_bird(a, bird_config(A_IP, [("Mesh_172_17_8_144", B_IP, 64511),
                                     ("Mesh_fd00_8__144", B_IP6, 64511),
                                     ("Node_172_17_8_249", NOBODY, 64600)]), tmp_path)
    start_bird(b, bird_config(B_IP, [("Mesh_172_17_8_143", A_IP, 64511),
                                     ("Mesh_fd00_8__143", A_IP6, 64511)]), tmp_path)

    def established():
        result = calicoctl(a, "status", lan_etcd.env)
        assert result.returncode == 0, result.stderr
        return result if result.stdout.count("Established") == 2 else None
    result = wait_for(established, timeout=40, interval=0.5, message="both sessions Established")
    out = result.stdout
    assert out.splitlines()[0] == "calico-agent is not running on status-a."
    v4, v6 = out.split("IPv4 BGP status\n")[1].split("IPv6 BGP status\n")
    assert "| Peer address | Peer type" in v4
    rows4 = [line for line in v4.splitlines() if line.startswith("| 172")]
    assert len(rows4) == 2
    assert re.match(r"^\| 172\.17\.8\.144 +\| node-to-node mesh \| up +\| [0-9:.]+ +\| Established +\|$",
                    rows4[0]), rows4[0]
    assert re.match(r"^\| 172\.17\.8\.249 +\| node specific +\| start +\| ", rows4[1]), rows4[1]
    rows6 = [line for line in v6.splitlines() if line.startswith("| fd00")]
    assert len(rows6) == 1 and "fd00:8::144" in rows6[0] and "Established" in rows6[0]
    # BIRD's own protocols (device1) are not peers.
    assert "device1" not in out


def test_status_when_bird_socket_is_dead(lan_etcd, make_simhost):
    host = make_simhost("status-dead", "172.17.8.145")
    # A stale socket file nobody listens on (BIRD crashed).
    code = "import socket; s = socket.socket(socket.AF_UNIX); s.bind('%s/bird.ctl')" % RUN_DIR
    import sys
    assert host.run([sys.executable, "-c", code]).returncode == 0
    result = calicoctl(host, "status", lan_etcd.env)
    assert result.returncode == 0, result.stderr
    assert "BIRD is not answering on /var/run/calico/bird.ctl" in result.stdout


@pytest.mark.skipif(not os.path.exists(os.path.join(REPO_ROOT, "calicoctl", "agent", "__main__.py")),
                    reason="the agent is not written yet")
@pytest.mark.slow
def test_status_of_two_real_nodes_in_a_mesh(lan_etcd, make_simhost):
    a = make_simhost("status-na", "172.17.8.147")
    b = make_simhost("status-nb", "172.17.8.148")
    for host in (a, b):
        result = calicoctl(host, "node --ip=%s" % host.ip, lan_etcd.env)
        assert result.returncode == 0, result.stdout + result.stderr

    def mesh_up(host, peer):
        result = calicoctl(host, "status", lan_etcd.env)
        assert result.returncode == 0, result.stderr
        rows = [line for line in result.stdout.splitlines() if line.startswith("| %s " % peer.ip)]
        return result.stdout if rows and "node-to-node mesh" in rows[0] and "Established" in rows[0] else None
    out = wait_for(lambda: mesh_up(a, b), timeout=60, interval=0.5, message="mesh Established on a")
    assert re.match(r"^calico-agent is running on status-na \(pid \d+\), up ", out)
    wait_for(lambda: mesh_up(b, a), timeout=30, interval=0.5, message="mesh Established on b")
    for host in (a, b):
        assert calicoctl(host, "node stop", lan_etcd.env).returncode == 0
    # BIRD went with the agent.
    after = calicoctl(a, "status", lan_etcd.env)
    assert "BIRD is not running" in after.stdout or "not answering" in after.stdout
