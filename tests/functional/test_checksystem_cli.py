"""``calicoctl checksystem [--fix]`` inside a simulated host.

Each probe really creates (and removes) an ip(6)tables chain, ipsets and a
veth pair, so it runs only inside a SimHost's own network namespace, and
the test checks nothing is left behind there.
"""
import os

import pytest

from tests.functional.clitools import cli_command
from tests.harness.util import REPO_ROOT

pytestmark = pytest.mark.usefixtures("root_required")

FORWARDING = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def calicoctl(host, argv, env=None, user=None):
    prefix = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] if user else []
    full_env = {"PYTHONPATH": REPO_ROOT, "DOCKER_HOST": "unix:///run/docker.sock"}
    full_env.update(env or {})
    return host.run(prefix + cli_command() + argv.split(), env=full_env, cwd=REPO_ROOT, timeout=60)


def sysctls(host):
    result = host.run(["sysctl", "-n"] + list(FORWARDING))
    return result.stdout.split()


@pytest.fixture
def host(docker_daemon, make_simhost):
    # docker_daemon first: the SimHost binds Docker's socket into its /run.
    return make_simhost("chk-host", "172.17.8.141")


def leftovers(host):
    found = []
    for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        found += [line for line in host.run([tool]).stdout.splitlines() if "cali-chk" in line]
    found += host.run(["ipset", "list", "-n"]).stdout.split()
    found += [line for line in host.run(["nft", "list", "tables"]).stdout.splitlines() if "cali-chk" in line]
    found += [line for line in host.run(["ip", "-o", "link"]).stdout.splitlines() if "calichk" in line]
    return found


def test_healthy_host_passes(host):
    assert sysctls(host) == ["1", "1"]
    result = calicoctl(host, "checksystem")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert "System check passed" in result.stdout
    assert "nftables: nftables usable" in result.stdout        # what the agent will run
    assert leftovers(host) == []


def test_forwarding_off_fails_and_fix_turns_it_on(host):
    assert host.run(["sysctl", "-qw"] + ["%s=0" % name for name in FORWARDING]).returncode == 0
    result = calicoctl(host, "checksystem")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2
    assert "IPv4 forwarding is disabled" in errors[0] and "--fix" in errors[0]
    assert "IPv6 forwarding is disabled" in errors[1]
    assert "Traceback" not in result.stderr
    assert sysctls(host) == ["0", "0"]          # no --fix, no change

    fixed = calicoctl(host, "checksystem --fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert fixed.stdout.count("FIXED") == 2
    assert sysctls(host) == ["1", "1"]
    # The fix stayed inside the simulated host.
    with open("/proc/sys/net/ipv4/ip_forward") as handle:
        assert handle.read().strip() in ("0", "1")
    again = calicoctl(host, "checksystem")
    assert again.returncode == 0 and "FIXED" not in again.stdout
    assert leftovers(host) == []


def test_missing_tools_are_named(host, tmp_path):
    # A PATH holding everything but BIRD.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("iptables-nft", "ip6tables-nft", "iptables-nft-restore", "ip6tables-nft-restore",
                 "iptables-nft-save", "ip6tables-nft-save", "ipset", "setpriv"):
        for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if os.path.exists(os.path.join(directory, tool)):
                os.symlink(os.path.join(directory, tool), str(bin_dir / tool))
                break
    import sys
    result = host.run(["env", "PATH=%s" % bin_dir, sys.executable, "-m", "calicoctl", "checksystem"],
                      cwd=REPO_ROOT, env={"PYTHONPATH": REPO_ROOT})
    assert result.returncode == 1
    assert "ERROR: tools: Not installed (not found on PATH): bird, birdc." in result.stderr
    # The kernel probes themselves still passed.
    assert len([line for line in result.stderr.splitlines() if line.startswith("ERROR")]) == 1


def test_unreachable_docker_fails(host):
    result = calicoctl(host, "checksystem", env={"DOCKER_HOST": "unix:///run/no-such-docker.sock"})
    assert result.returncode == 1
    assert "ERROR: Docker: Docker is not reachable" in result.stderr
    assert "no-such-docker.sock" in result.stderr


def test_legacy_backend_probes_legacy_binaries(host):
    result = calicoctl(host, "checksystem", env={"CALICO_AGENT_IPTABLES_BACKEND": "legacy"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(host) == []
    bad = calicoctl(host, "checksystem", env={"CALICO_AGENT_IPTABLES_BACKEND": "bogus"})
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["Invalid iptables backend 'bogus': expected nft or legacy."]


def test_needs_root(host):
    result = calicoctl(host, "checksystem --fix", user=65534)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["This command must be run as root (try sudo)."]
