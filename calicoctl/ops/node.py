"""Node lifecycle: register this host in etcd, start and stop its agent.

``calicoctl node`` (docs/decisions.md, "Running the node"):
choose the host's IP, write the global defaults and this host's keys, then
start ``calico-agent`` as a host daemon and wait until it reports that its
dataplane matches etcd. ``node stop`` stops the agent by pid and removes
the host's keys; with ``--force`` also its endpoints, releasing their IP
claims (the reference leaked them, calicoctl#519).

Workflows take their collaborators (datastore, environment, a listener or
``report`` callback for progress) as arguments and return what happened;
the CLI prints. ``calculate_``/``choose_`` functions are pure.
"""
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

from calicoctl import identity, model
from calicoctl.errors import AgentError, CalicoError, Conflict, NotFound
from calicoctl.host import daemon
from calicoctl.identity import RUN_DIR
from calicoctl.ops import bgp as bgp_ops
from calicoctl.ops import status as status_ops

DEFAULT_LOG_DIR = "/var/log/calico"
DEFAULT_POOLS = {4: "192.168.0.0/16", 6: "fd80:24e2:f998:72d6::/64"}
SYNC_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# The agent's stdout/stderr (tracebacks, anything before its logging is up);
# it writes its own log to agent.log next to it.
CONSOLE_LOG = "agent-console.log"
# Interfaces whose addresses never identify the host to other hosts.
EXCLUDED_INTERFACE_PREFIXES = ("lo", "docker", model.DEFAULT_INTERFACE_PREFIX, "veth", "vxlan.calico", "tunl")


@dataclass(frozen=True)
class NodeSettings:
    """This host's registration and where its agent keeps logs and run files.

    :ivar ip: this host's IPv4 address as other hosts reach it; given as
        None to ``start_node``, it is detected.
    :ivar reflector: the route reflector role to give the host (ops.bgp.ReflectorRole);
        None: it keeps the one it has.
    """
    hostname: str
    ip: Optional[str]
    ip6: Optional[str] = None
    as_num: Optional[int] = None
    log_dir: str = DEFAULT_LOG_DIR
    run_dir: str = RUN_DIR
    docker_plugins: bool = True
    reflector: Optional[bgp_ops.ReflectorRole] = None
    dataplane: Optional[str] = None
    """'nftables' or 'iptables'; None: the agent chooses (nftables where it can)."""


@dataclass(frozen=True)
class InterfaceAddress:
    """One address on a local interface.

    :ivar default_route: the interface carries a default route of that IP version.
    """
    ifname: str
    address: str
    version: int
    default_route: bool = False


@dataclass(frozen=True)
class AddressChoice:
    """The address this host registers with, found before anything is written.

    :ivar detected: the interface address chosen when no IP was given.
    :ivar warnings: given addresses that no local interface holds.
    """
    ip: str
    detected: Optional[InterfaceAddress]
    warnings: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RegisterResult:
    created_pools: Tuple[str, ...]
    previous_ip: Optional[str]       # another IP registered under this hostname
    reflector: Optional[bgp_ops.ReflectorChange] = None


@dataclass(frozen=True)
class StartResult:
    pid: int
    status: status_ops.AgentStatus
    seconds: float


@dataclass(frozen=True)
class NodeStart:
    """How ``start_node`` ended: an agent already ran (``running_pid``; only
    the route reflector role was changed, if asked: ``reflector``), a
    detached agent is in sync (``started``), or the foreground agent ended
    (``exit_code``, calicoctl's exit status). ``settings`` are those
    registered, with the detected IP."""
    running_pid: Optional[int] = None
    reflector: Optional[bgp_ops.ReflectorChange] = None
    settings: Optional[NodeSettings] = None
    started: Optional[StartResult] = None
    exit_code: Optional[int] = None
    switched_from: Optional[str] = None
    """The dataplane of the agent that was stopped to switch to another."""


@dataclass
class StopResult:
    agent_pid: Optional[int] = None
    agent_outcome: str = "not running"     # "stopped", "killed", "gone", "not running"
    endpoints_removed: List[str] = field(default_factory=list)
    claims_released: List[Tuple[str, str]] = field(default_factory=list)


# -- pure decisions ------------------------------------------------------------------

def _is_usable(address):
    import ipaddress
    ip = ipaddress.ip_address(address.address)
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not address.ifname.startswith(EXCLUDED_INTERFACE_PREFIXES)


def choose_host_ip(addresses, version=4, route_source=None):
    """The address that best identifies this host to its peers, or None.

    Never loopback, link-local, docker0 or a workload interface. In order:
    the source address this host uses to reach etcd (``route_source``: the
    network the cluster shares, even where the default route points
    elsewhere, e.g. a Vagrant VM whose default route is a NAT interface with
    the same address on every VM); then an address on the interface with the
    default route; then the first in kernel order.
    """
    candidates = [a for a in addresses if a.version == version and _is_usable(a)]
    for candidate in candidates:
        if route_source is not None and candidate.address == route_source:
            return candidate
    for candidate in candidates:
        if candidate.default_route:
            return candidate
    return candidates[0] if candidates else None


def calculate_address_warnings(ip, ip6, addresses):
    """Warnings for a given --ip/--ip6 that no local interface holds."""
    import ipaddress
    local = {str(ipaddress.ip_address(a.address)) for a in addresses}
    warnings = []
    for flag, value in (("--ip", ip), ("--ip6", ip6)):
        if value and str(ipaddress.ip_address(value)) not in local:
            warnings.append("WARNING: %s=%s is not an address of any interface on this host; "
                            "other hosts may not reach it." % (flag, value))
    return warnings


def calculate_missing_pools(existing_pools):
    """Default pools to create: one per IP version that has none."""
    versions = {pool.version for pool in existing_pools}
    return [model.IPPool(cidr=DEFAULT_POOLS[v]) for v in (4, 6) if v not in versions]


def calculate_agent_command(settings, python=None, plugin_fds=None):
    """The agent's command line (same Python environment as this calicoctl);
    ``plugin_fds``: {plugin name: fd} of the plugin sockets it inherits."""
    return [python or sys.executable, "-m", identity.MODULE,
            "--hostname=%s" % settings.hostname,
            "--log-dir=%s" % settings.log_dir,
            "--run-dir=%s" % settings.run_dir] + ([] if settings.docker_plugins else ["--no-docker-plugins"]) \
        + (["--dataplane=%s" % settings.dataplane] if settings.dataplane else []) \
        + ([identity.render_plugin_fds(plugin_fds)] if plugin_fds else [])


def calculate_dataplane_switch(requested, running_status):
    """The running agent's dataplane when ``requested`` is another one (so the
    agent is restarted with it), else None (pure)."""
    current = running_status.dataplane if running_status is not None else None
    if requested is None or current is None or current == requested:
        return None
    return current


def calculate_agent_environment(env):
    """``env`` plus a PYTHONPATH that finds this calicoctl package even when
    it is not installed (the agent runs from ``/``), without systemd's
    NOTIFY_SOCKET (``calicoctl node`` is the unit's process, not the agent)."""
    import calicoctl
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(calicoctl.__file__)))
    result = dict(env)
    result.pop("NOTIFY_SOCKET", None)
    parts = [p for p in result.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        parts.insert(0, package_root)
    result["PYTHONPATH"] = os.pathsep.join(parts)
    return result


def calculate_foreground_exit(returncode, signals_received):
    """Exit status of ``calicoctl node --detach=false`` from the agent's."""
    import signal
    if signals_received and returncode in (0, -signal.SIGTERM, -signal.SIGINT):
        return 0
    if returncode < 0:
        return 128 - returncode
    return returncode


def is_in_sync_for(status, pid):
    return status is not None and status.pid == pid and status.in_sync


# -- host facts (I/O) --------------------------------------------------------------

def read_interface_addresses():
    """Every address on this host's interfaces, in kernel order."""
    from calicoctl.host import netlink
    with netlink.Session() as session:
        defaults = {version: {route.ifname for route in session.list_routes(version)
                              if route.dst == "default"}
                    for version in (4, 6)}
        return [InterfaceAddress(ifname=info.ifname, address=info.ip, version=info.version,
                                 default_route=info.ifname in defaults[info.version])
                for info in session.list_addresses() if info.ifname and info.ip]


def read_route_source(destination):
    """The local address used to reach destination (an IP string), or None."""
    from calicoctl.host import netlink
    with netlink.Session() as session:
        return session.route_source(destination)


def read_etcd_route_source(env):
    """Our address on the way to the first etcd endpoint, when it is given as an IP."""
    import ipaddress
    from calicoctl.datastore import etcdconn
    try:
        host = etcdconn.parse_settings(env).endpoints[0].host
        ipaddress.ip_address(host)
    except (CalicoError, ValueError):
        return None
    return read_route_source(host)


# -- start -------------------------------------------------------------------------

def start_node(datastore, settings, env, listener, detach=True, force=False):
    """``calicoctl node``: register this host (NodeSettings) and start its agent.

    While an agent already runs, only the route reflector role changes (if
    ``settings.reflector`` asks; its agent reconfigures BIRD). A role that
    would leave hosts without routes is refused first, unless ``force``
    (ops.bgp.plan_route_reflector). Failed system checks are
    warnings. Without ``settings.ip`` the host's address is detected
    (NotFound if it has none). Then the global defaults and this host's
    keys are written and the agent started: detached, this returns once it
    is in sync; in the foreground, once it ends.

    First of all, before anything that may be slow (etcd, the system
    checks, the agent's start-up), unless an agent runs, the Docker
    plugins' sockets are bound here and handed to the agent
    (``bind_plugin_sockets``), and a service manager waiting for us
    (systemd, ``Type=notify``) is told we are ready: Docker, ordered after
    us at boot, then finds the plugins when it restores its containers.

    ``listener`` hears each step as it happens (the CLI prints them):
    ``checks_failed(results)``, the checksystem.CheckResults that did not
    pass; ``address_chosen(choice)``, the AddressChoice, before anything is
    written; ``registered(settings, result)``, this host's keys are written
    (RegisterResult) and the agent starts next; then, detached,
    ``waiting(seconds)`` about once a second until it is in sync, or in the
    foreground ``synced(status)`` once it is (None: not within
    SYNC_TIMEOUT; it keeps running).
    """
    from calicoctl.ops import checksystem
    running = find_running_agent(settings.run_dir)
    switched_from = None
    if running is not None:
        switched_from = calculate_dataplane_switch(settings.dataplane, status_ops.read_local_status(settings.run_dir))
        if switched_from is not None:
            # The new agent removes what the old dataplane programmed once its own is in place.
            stop_agent(settings.run_dir)
            running = None
    with bind_plugin_sockets(settings.docker_plugins and running is None) as plugin_fds:
        daemon.notify_ready(env)
        reflector = None
        if settings.reflector is not None:
            reflector = bgp_ops.plan_route_reflector(datastore, settings.hostname, settings.reflector, force)
        if running is not None:
            if reflector is not None:
                bgp_ops.apply_route_reflector(datastore, settings.hostname, reflector)
            return NodeStart(running_pid=running, reflector=reflector)
        checks = checksystem.run_checks(fix=False, backend=checksystem.backend_from_env(env),
                                        dataplane=settings.dataplane)
        listener.checks_failed([result for result in checks if not result.ok])
        os.makedirs(settings.log_dir, exist_ok=True)
        route_source = read_etcd_route_source(env) if settings.ip is None else None
        choice = choose_addresses(settings, read_interface_addresses(), route_source)
        listener.address_chosen(choice)
        settings = replace(settings, ip=choice.ip)
        listener.registered(settings, register_node(datastore, settings, reflector))
        if not detach:
            code = run_agent_foreground(settings, env, on_synced=listener.synced, plugin_fds=plugin_fds)
            return NodeStart(settings=settings, exit_code=code, switched_from=switched_from)
        return NodeStart(settings=settings, started=start_agent(settings, env, report=listener.waiting,
                                                                plugin_fds=plugin_fds),
                         switched_from=switched_from)


@contextlib.contextmanager
def bind_plugin_sockets(wanted):
    """Bind the Docker plugins' sockets; yields {plugin name: fd} for the agent.

    Docker looks for a plugin's socket file when it restores its containers
    at boot and gives up on each container after about 15 s without it
    (docs/decisions.md, "Docker networks"); a bound socket holds what Docker
    sends in its backlog until the agent serves it. So they are bound before
    anything slow. Nothing is yielded unless ``wanted`` (False: the plugins
    are off, or an agent runs and serves them), nor when a socket cannot be
    bound (the agent then tries itself and reports why). On
    leaving, our copies are closed and a socket nobody serves any more
    (no agent took it, or the agent has ended) is removed: Docker then finds
    no plugin, not one that refuses connections.
    """
    from calicoctl.host import plugin_server
    from calicoctl.ops import plugin_protocol as protocol
    listeners = {}
    if wanted:
        try:
            for name in (protocol.NETWORK_DRIVER, protocol.IPAM_DRIVER):
                listeners[name] = plugin_server.listen(plugin_server.socket_path(name))
        except (OSError, RuntimeError):
            _close_plugin_sockets(listeners)
            listeners = {}
    try:
        yield {name: listener.fileno() for name, listener in listeners.items()}
    finally:
        _close_plugin_sockets(listeners)


def _close_plugin_sockets(listeners):
    from calicoctl.host import plugin_server
    for listener in listeners.values():
        path = listener.getsockname()
        listener.close()
        if not plugin_server.socket_answers(path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def choose_addresses(settings, addresses, route_source=None):
    """The AddressChoice for ``settings`` given this host's interface
    ``addresses`` (and, to detect the IP, ``route_source``: see choose_host_ip)."""
    detected = None
    if settings.ip is None:
        detected = choose_host_ip(addresses, route_source=route_source)
        if detected is None:
            raise NotFound("Could not find an IPv4 address for this host (only loopback, docker0 or "
                           "workload interfaces have one); give it with --ip.")
    return AddressChoice(ip=settings.ip or detected.address, detected=detected,
                         warnings=tuple(calculate_address_warnings(settings.ip, settings.ip6, addresses)))


# -- registration ----------------------------------------------------------------

def register_node(datastore, settings, reflector=None):
    """Write the global defaults and this host's keys; return what changed.

    Order as in the reference: default pools, global config and BGP
    defaults, Ready, then the host's own keys; last, the route reflector
    ReflectorChange ``reflector`` (from ops.bgp.plan_route_reflector), if any.
    """
    previous_ip = datastore.get_host_ip(settings.hostname, 4)
    created = []
    for pool in calculate_missing_pools(datastore.list_pools()):
        datastore.write_pool(pool)
        created.append(pool.cidr)
    datastore.ensure_global_config("InterfacePrefix", model.DEFAULT_INTERFACE_PREFIX)
    datastore.ensure_bgp_defaults()
    datastore.set_ready(True)
    datastore.register_host(settings.hostname, settings.ip, settings.ip6, settings.as_num)
    if reflector is not None:
        bgp_ops.apply_route_reflector(datastore, settings.hostname, reflector)
    return RegisterResult(created_pools=tuple(created),
                          previous_ip=previous_ip if previous_ip and previous_ip != settings.ip else None,
                          reflector=reflector)


# -- the agent -------------------------------------------------------------------

def find_running_agent(run_dir=RUN_DIR):
    return status_ops.read_running_agent_pid(run_dir)


def _console_log(settings):
    return os.path.join(settings.log_dir, CONSOLE_LOG)


def _last_log_line(path):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def _agent_failure(settings, what, exited):
    """AgentError quoting the most telling log line.

    A crash ends with its traceback in the console log; a hang is best
    explained by the last thing the agent logged.
    """
    logs = [os.path.join(settings.log_dir, "agent.log"), _console_log(settings)]
    if exited:
        logs.reverse()
    for path in logs:
        line = _last_log_line(path)
        if line:
            return AgentError("%s; last log line (%s): %s" % (what, path, line))
    return AgentError("%s; see %s." % (what, " and ".join(logs)))


def start_agent(settings, env, report=None, timeout=SYNC_TIMEOUT, command=None, plugin_fds=None):
    """Start the agent detached and wait until it reports in sync.

    ``report(seconds_waited)`` is called about once a second while waiting.
    On failure or timeout the half-started agent is stopped and AgentError
    raised. ``command`` replaces the agent's command line (tests);
    ``plugin_fds`` ({plugin name: fd}) are the plugin sockets it inherits.
    """
    os.makedirs(settings.log_dir, exist_ok=True)
    os.makedirs(settings.run_dir, exist_ok=True)
    pid_file = status_ops.agent_pid_file(settings.run_dir)
    started = time.monotonic()
    # A Ctrl-C or SIGTERM while we wait must not leave a half-started agent.
    with daemon.forward_signals() as forwarder:
        agent = daemon.start_detached(command or calculate_agent_command(settings, plugin_fds=plugin_fds),
                                      _console_log(settings), pid_file, env=calculate_agent_environment(env),
                                      pass_fds=(plugin_fds or {}).values())
        forwarder.attach(agent)
        try:
            return _wait_in_sync(settings, agent, forwarder, started, report, timeout)
        except BaseException:
            if agent.exit_code() is None:
                daemon.stop_process(agent.pid, timeout=STOP_TIMEOUT, popen=agent.popen)
            daemon.remove_pid_file(pid_file, agent.pid)
            raise


def _wait_in_sync(settings, agent, forwarder, started, report, timeout):
    next_report = started + 1.0
    while True:
        status = status_ops.read_local_status(settings.run_dir)
        if is_in_sync_for(status, agent.pid):
            return StartResult(pid=agent.pid, status=status, seconds=time.monotonic() - started)
        if forwarder.received:
            agent.popen.wait()
            raise AgentError("Interrupted while waiting for the agent to sync; it was stopped.")
        code = agent.exit_code()
        if code is not None:
            raise _agent_failure(settings, "The agent exited with code %d while starting" % code, True)
        now = time.monotonic()
        if now - started >= timeout:
            raise _agent_failure(settings, "The agent did not report in sync within %d s, so it was "
                                 "stopped (is etcd reachable from the agent?)" % timeout, False)
        if report is not None and now >= next_report:
            report(now - started)
            next_report += 1.0
        time.sleep(0.05)


def run_agent_foreground(settings, env, on_synced=None, timeout=SYNC_TIMEOUT, command=None, plugin_fds=None):
    """Run the agent attached; return calicoctl's exit status when it ends
    (``plugin_fds``: as for ``start_agent``).

    SIGTERM/SIGINT to us are passed to the agent, whose clean exit is then
    success. ``on_synced(status)`` is called once it first reports in sync,
    ``on_synced(None)`` if that has not happened within ``timeout`` (it keeps
    running: under systemd a slow etcd is not a reason to quit).
    """
    os.makedirs(settings.log_dir, exist_ok=True)
    os.makedirs(settings.run_dir, exist_ok=True)
    pid_file = status_ops.agent_pid_file(settings.run_dir)
    agent = None
    try:
        with daemon.forward_signals() as forwarder:
            agent = daemon.start_foreground(command or calculate_agent_command(settings, plugin_fds=plugin_fds),
                                            pid_file, env=calculate_agent_environment(env),
                                            pass_fds=(plugin_fds or {}).values())
            forwarder.attach(agent)
            started = time.monotonic()
            announced = False
            while agent.exit_code() is None and not announced and not forwarder.received:
                status = status_ops.read_local_status(settings.run_dir)
                if is_in_sync_for(status, agent.pid):
                    announced = True
                    if on_synced is not None:
                        on_synced(status)
                elif time.monotonic() - started >= timeout:
                    announced = True
                    if on_synced is not None:
                        on_synced(None)
                else:
                    time.sleep(0.05)
            returncode = agent.popen.wait()
            return calculate_foreground_exit(returncode, forwarder.received)
    finally:
        if agent is not None:
            if agent.exit_code() is None:       # we are unwinding on an error
                daemon.stop_process(agent.pid, timeout=STOP_TIMEOUT, popen=agent.popen)
            daemon.remove_pid_file(pid_file, agent.pid)


def stop_agent(run_dir=RUN_DIR, timeout=STOP_TIMEOUT):
    """Stop this host's agent if it runs: (pid or None, outcome)."""
    pid = find_running_agent(run_dir)
    if pid is None:
        return None, "not running"
    outcome = daemon.stop_process(pid, timeout=timeout)
    daemon.remove_pid_file(status_ops.agent_pid_file(run_dir), pid)
    return pid, outcome


# -- stop ------------------------------------------------------------------------

def stop_node(datastore, hostname, force=False, run_dir=RUN_DIR, timeout=STOP_TIMEOUT):
    """Stop the agent and remove this host from etcd.

    Refuses (Conflict) while the host has endpoints, unless ``force``: then
    the endpoints go too and their IP claims are released.
    """
    endpoints = datastore.list_endpoints(hostname=hostname)
    if endpoints and not force:
        raise Conflict("This host still has %d endpoint(s); remove them with 'calicoctl container "
                       "remove' (or 'docker rm' / 'podman rm' for containers on calico Docker or CNI "
                       "networks) first, or use 'calicoctl node stop --force' to delete them and release "
                       "their addresses." % len(endpoints))
    result = StopResult()
    result.agent_pid, result.agent_outcome = stop_agent(run_dir, timeout)
    addresses = [address for endpoint in endpoints for address in endpoint.addresses()]
    if addresses:
        result.claims_released = datastore.release_claims(addresses)
    result.endpoints_removed = [endpoint.endpoint_id for endpoint in endpoints]
    datastore.remove_host(hostname)
    return result
