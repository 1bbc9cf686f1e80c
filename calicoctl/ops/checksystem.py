"""Does this host have what Calico needs? Find out by trying it.

The original looked for modules in /proc/modules and called modprobe
(docs/decisions.md, "checksystem"). A kernel may have everything built in
and no modprobe at all, so each feature is tested by using it, briefly,
in the caller's network namespace: an ip(6)tables chain in the filter table,
an ipset of each family, a rule with the ``set`` match, a veth pair. Every
probe removes what it created, even when a later step fails.

Forwarding sysctls are read from /proc/sys (per network namespace) and,
with ``fix``, switched on.

``run_checks`` returns CheckResults; it never prints and never raises for a
failed check, so ``calicoctl node`` can show the same results as warnings.
"""
import secrets
import shutil
from dataclasses import dataclass
from typing import Callable, Optional

from calicoctl.errors import CalicoError, ValidationError
from calicoctl.host.run import run_status
from calicoctl.identity import RUN_DIR

BACKENDS = ("nft", "legacy")
OTHER_TOOLS = ("ipset", "bird", "birdc")
FORWARDING_SYSCTLS = (("net.ipv4.ip_forward", 4), ("net.ipv6.conf.all.forwarding", 6))
MIN_DOCKER_API = (1, 16)
PROBE_PREFIX = "cali-chk-"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome.

    :ivar name: what was checked (short, e.g. "ip6tables filter table").
    :ivar ok: True when the host passes (possibly after a fix).
    :ivar message: the problem (or, when ok, what was found).
    :ivar fixed: True when ``fix`` changed the host to make it pass.
    :ivar noteworthy: shown even when it passes (what the host will run).
    """
    name: str
    ok: bool
    message: str = ""
    fixed: bool = False
    noteworthy: bool = False


# -- pure ----------------------------------------------------------------------

def parse_api_version(text):
    """'1.41' -> (1, 41); None if it is not a version."""
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


# -- probes ----------------------------------------------------------------------

def calculate_iptables_binaries(backend):
    """{ip version: iptables binary} of the backend the agent programs."""
    return {4: "iptables-%s" % backend, 6: "ip6tables-%s" % backend}


def calculate_required_tools(backend):
    tools = []
    for binary in calculate_iptables_binaries(backend).values():
        tools += [binary, binary + "-restore", binary + "-save"]
    return tools + list(OTHER_TOOLS)


def check_tools(backend="nft", which=shutil.which):
    required = calculate_required_tools(backend)
    missing = [tool for tool in required if which(tool) is None]
    if missing:
        return CheckResult("tools", False, "Not installed (not found on PATH): %s." % ", ".join(missing))
    return CheckResult("tools", True, "All of %s found." % ", ".join(required))


def _first_line(text):
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "no output"


def probe_iptables(binary, version):
    """Create a chain in the filter table, match an ipset in it, remove both.

    Returns (filter result, set-match result); the second is None when the
    first failed (nothing to put a rule in).
    """
    label = "%s filter table" % binary
    if shutil.which(binary) is None:
        return CheckResult(label, False, "%s is not installed." % binary), None
    chain = PROBE_PREFIX + secrets.token_hex(4)
    code, _, err = run_status([binary, "-w", "5", "-t", "filter", "-N", chain])
    if code != 0:
        return CheckResult(label, False, "Cannot create a chain in the IPv%d filter table: %s"
                           % (version, _first_line(err))), None
    try:
        filter_result = CheckResult(label, True, "IPv%d filter table usable." % version)
        set_result = _probe_set_match(binary, version, chain)
    finally:
        run_status([binary, "-w", "5", "-t", "filter", "-F", chain])
        run_status([binary, "-w", "5", "-t", "filter", "-X", chain])
    return filter_result, set_result


def _probe_set_match(binary, version, chain):
    label = "%s set match" % binary
    if shutil.which("ipset") is None:
        return CheckResult(label, False, "Cannot test the set match: ipset is not installed.")
    name = PROBE_PREFIX + secrets.token_hex(4)
    family = "inet" if version == 4 else "inet6"
    code, _, err = run_status(["ipset", "create", name, "hash:ip", "family", family])
    if code != 0:
        return CheckResult(label, False, "Cannot test the set match: no ipset: %s" % _first_line(err))
    try:
        code, _, err = run_status([binary, "-w", "5", "-t", "filter", "-A", chain,
                                   "-m", "set", "--match-set", name, "src", "-j", "RETURN"])
        if code != 0:
            return CheckResult(label, False, "The kernel rejects rules with the set match (xt_set): %s"
                               % _first_line(err))
        return CheckResult(label, True, "IPv%d rules can match ipsets." % version)
    finally:
        run_status([binary, "-w", "5", "-t", "filter", "-F", chain])
        run_status(["ipset", "destroy", name])


def probe_ipset():
    """Create and destroy a hash:ip set of each family."""
    if shutil.which("ipset") is None:
        return CheckResult("ipset hash:ip", False, "ipset is not installed.")
    for family in ("inet", "inet6"):
        name = PROBE_PREFIX + secrets.token_hex(4)
        code, _, err = run_status(["ipset", "create", name, "hash:ip", "family", family])
        if code != 0:
            return CheckResult("ipset hash:ip", False, "Cannot create a hash:ip ipset (family %s): %s"
                               % (family, _first_line(err)))
        run_status(["ipset", "destroy", name])
    return CheckResult("ipset hash:ip", True, "hash:ip sets (IPv4 and IPv6) can be created.")


def probe_nftables(required=False):
    """Can this host run the nftables dataplane? One batch that makes and
    removes a table with what the dataplane uses (a concatenated set, a base
    chain, a rule matching the set): all of it is checked, nothing stays.

    Not passing is a failure only when ``required`` (``--dataplane=nftables``);
    otherwise it says the agent will use iptables.
    """
    from calicoctl.host import nftables
    problem = nftables.probe()
    if problem is None:
        name = "inet " + PROBE_PREFIX + secrets.token_hex(4)
        probe = ["add table %s" % name,
                 "add set %s s { type ifname . ipv4_addr; }" % name,
                 "add chain %s c { type filter hook forward priority 0; policy accept; }" % name,
                 "add rule %s c iifname . ip saddr != @s drop" % name,
                 "delete table %s" % name]
        nft = nftables.Nftables()
        try:
            nft.run("\n".join(probe) + "\n")
        except CalicoError as exc:
            problem = str(exc)
        finally:
            nft.close()
    if problem is None:
        return CheckResult("nftables", True, "nftables usable (libnftables and the kernel's nf_tables): "
                           "the agent's dataplane unless --dataplane=iptables.", noteworthy=True)
    if required:
        return CheckResult("nftables", False, "nftables is not usable: %s." % problem)
    return CheckResult("nftables", True, "nftables is not usable (%s): the agent will use its iptables "
                       "dataplane." % problem, noteworthy=True)


def probe_veth():
    """Create and delete a veth pair."""
    from calicoctl.host import netlink
    name = "calichk" + secrets.token_hex(3)
    try:
        with netlink.Session() as session:
            session.create_veth(name, name + "p")
            session.delete_link(name)
    except CalicoError as exc:
        return CheckResult("veth", False, "Cannot create a veth pair: %s" % exc)
    return CheckResult("veth", True, "veth pairs can be created.")


def check_forwarding(fix):
    from calicoctl.host import sysctl
    results = []
    for name, version in FORWARDING_SYSCTLS:
        label = "IPv%d forwarding" % version
        value = sysctl.read(name.replace(".", "/"))
        if value is None:
            results.append(CheckResult(label, False, "%s does not exist (IPv%d disabled in this kernel?)."
                                       % (name, version)))
            continue
        if value == "1":
            results.append(CheckResult(label, True, "%s = 1." % name))
            continue
        if not fix:
            results.append(CheckResult(label, False, "IPv%d forwarding is disabled (%s = %s); "
                                       "run calicoctl checksystem --fix to enable it."
                                       % (version, name, value)))
            continue
        try:
            sysctl.write(name.replace(".", "/"), "1")
        except CalicoError as exc:
            results.append(CheckResult(label, False, "Could not enable %s: %s" % (name, exc)))
            continue
        if sysctl.read(name.replace(".", "/")) == "1":
            results.append(CheckResult(label, True, "Enabled %s." % name, fixed=True))
        else:
            results.append(CheckResult(label, False, "Could not enable %s." % name))
    return results


def check_docker(docker_version):
    """``docker_version()`` returns the daemon's API version or raises CalicoError."""
    try:
        version_text = docker_version()
    except CalicoError as exc:
        return CheckResult("Docker", False, "Docker is not reachable: %s" % exc)
    version = parse_api_version(version_text)
    if version is None:
        return CheckResult("Docker", False, "Docker reported an unreadable API version %r." % (version_text,))
    if version < MIN_DOCKER_API:
        return CheckResult("Docker", False, "Docker API version %s is too old: %d.%d or newer needed."
                           % (version_text, MIN_DOCKER_API[0], MIN_DOCKER_API[1]))
    return CheckResult("Docker", True, "Docker answers (API version %s)." % version_text)


PLUGIN_PROBE_OPTION = "calico.checksystem-probe"


def probe_docker_plugins(docker, plugin_dir=None, run_dir=None):
    """Do the Docker plugins answer, and does Docker find them?

    Skipped (nothing returned) unless this host's agent runs and serves
    them. Each socket must answer /Plugin.Activate as its driver; then Docker
    is asked to create a network with both drivers and an option the calico
    driver refuses: our refusal coming back proves Docker found, activated
    and called both (the IPAM driver first), and nothing is created.
    """
    from calicoctl.errors import DockerError
    from calicoctl.host import plugin_server
    from calicoctl.ops import plugin_protocol as protocol
    from calicoctl.ops import status as status_ops
    run_dir = run_dir or RUN_DIR
    status = status_ops.read_local_status(run_dir)
    if status_ops.read_running_agent_pid(run_dir) is None or status is None or status.docker_plugins is None:
        return []
    results = []
    for name, interface in ((protocol.NETWORK_DRIVER, "NetworkDriver"), (protocol.IPAM_DRIVER, "IpamDriver")):
        label = "Docker plugin %s" % name
        path = plugin_server.socket_path(name, plugin_dir or plugin_server.PLUGIN_DIR)
        try:
            _, reply = plugin_server.post(path, "/Plugin.Activate")
        except (OSError, ValueError) as exc:
            results.append(CheckResult(label, False, "Nothing answers on %s (%s); see the agent's log."
                                       % (path, exc)))
            continue
        if interface not in (reply.get("Implements") or ()):
            results.append(CheckResult(label, False, "%s does not implement %s: %r." % (path, interface, reply)))
        else:
            results.append(CheckResult(label, True, "%s answers on %s." % (name, path)))
    if not all(result.ok for result in results):
        return results
    label = "Docker finds the plugins"
    probe_name = PROBE_PREFIX + secrets.token_hex(4)
    try:
        created = docker.try_create_network(probe_name, protocol.NETWORK_DRIVER, protocol.IPAM_DRIVER,
                                            {PLUGIN_PROBE_OPTION: "1"})
    except DockerError as exc:
        if PLUGIN_PROBE_OPTION in str(exc):
            results.append(CheckResult(label, True, "Docker found and called calico and calico-ipam."))
        else:
            results.append(CheckResult(label, False, "Docker cannot use the calico plugins: %s" % exc))
        return results
    except CalicoError as exc:
        results.append(CheckResult(label, False, "Cannot ask Docker: %s" % exc))
        return results
    docker.remove_network(created)
    results.append(CheckResult(label, False, "Docker created a network the calico driver should have "
                               "refused; is another plugin named calico installed?"))
    return results


def backend_from_env(env):
    """The iptables back end the agent will use: CALICO_AGENT_IPTABLES_BACKEND, else nft."""
    return env.get("CALICO_AGENT_IPTABLES_BACKEND") or "nft"


def run_checks(fix=False, docker_version: Optional[Callable[[], str]] = None, backend="nft",
               plugin_probe: Optional[Callable[[], list]] = None, dataplane=None):
    """Every check, in order; Docker is skipped when ``docker_version`` is None,
    the Docker plugins when ``plugin_probe`` (probe_docker_plugins) is.

    ``backend`` is the iptables backend the agent programs ("nft" or
    "legacy", CALICO_AGENT_IPTABLES_BACKEND): its binaries are the ones tried.
    ``dataplane``: the one asked for (None: the agent's default).
    """
    if backend not in BACKENDS:
        raise ValidationError("Invalid iptables backend %r: expected nft or legacy." % (backend,))
    results = [check_tools(backend)]
    for version, binary in sorted(calculate_iptables_binaries(backend).items()):
        filter_result, set_result = probe_iptables(binary, version)
        results.append(filter_result)
        if set_result is not None:
            results.append(set_result)
    results.append(probe_ipset())
    results.append(probe_nftables(required=dataplane == "nftables"))
    results.append(probe_veth())
    results.extend(check_forwarding(fix))
    if docker_version is not None:
        results.append(check_docker(docker_version))
        if plugin_probe is not None and results[-1].ok:
            results.extend(plugin_probe())
    return results

