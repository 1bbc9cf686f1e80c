"""What the node agent and BIRD say about this host (``calicoctl status``).

The agent reports itself twice (docs/etcd-layout.md, "Agent status"): a JSON file in
its run dir and the same JSON under ``/calico/felix/v1/host/<h>/status`` with
a 30 s TTL. The file tells us about the local process even when etcd is
down; the key tells us etcd still hears from it. BGP sessions come from
``birdc show protocols``, keeping only the protocols our BIRD config names
``Mesh_*``, ``Reflector_*``, ``Client_*``, ``Global_*`` and ``Node_*``
(docs/decisions.md, "Status"); etcd tells whether this host is a route
reflector.

Parsing and rendering are pure; the ``read_``/``query_`` functions do I/O.
"""
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

from calicoctl import identity
from calicoctl.errors import DatastoreUnavailable
from calicoctl.host import daemon
from calicoctl.identity import RUN_DIR

# The agent reports every 10 s; three missed reports mean trouble.
STALE_REPORT = 30.0

# How status names each kind of BGP session (host.bird.SESSION_KINDS).
PEER_TYPES = {"Mesh": "node-to-node mesh", "Reflector": "route reflector", "Client": "route reflector client",
              "Node": "node specific", "Global": "global"}


@dataclass(frozen=True)
class ControlPlaneReport:
    """What the agent says about the control-plane protection on its host.

    :ivar active: the protection is programmed in the kernel.
    :ivar problem: why the setting in etcd was not usable (defaults apply).
    """
    enabled: bool
    active: bool
    ports: tuple
    ipv4_addresses: int = 0
    ipv6_addresses: int = 0
    problem: Optional[str] = None


@dataclass(frozen=True)
class PluginsReport:
    """What the agent says about the Docker plugins it serves.

    :ivar sockets: the sockets it serves (empty: it could not, see ``problem``).
    """
    sockets: tuple
    problem: Optional[str] = None


@dataclass(frozen=True)
class AgentStatus:
    """The agent's own report (its JSON: docs/etcd-layout.md, "Agent status")."""
    pid: int
    started: float
    time: float
    in_sync: bool
    last_sync: Optional[float] = None
    local_endpoints: int = 0
    control_plane: Optional[ControlPlaneReport] = None
    docker_plugins: Optional[PluginsReport] = None      # None: not served
    cni_plugins: Optional[PluginsReport] = None         # None: an agent from before the CNI plugins
    dataplane: Optional[str] = None                      # "nftables" or "iptables" (None: an older agent)
    refused_rules: tuple = ()
    """Rules the kernel refused (RefusedRule), each a drop in its place."""


@dataclass(frozen=True)
class RefusedRule:
    profile: str
    direction: str
    position: int
    rule: str
    error: str


@dataclass(frozen=True)
class AgentState:
    """What we know about this host's agent.

    :ivar pid: pid of a live agent process (from the pid file), else None.
    :ivar local: its status file, if it names a live agent.
    :ivar reported: the status key in etcd (None: absent or expired).
    """
    pid: Optional[int]
    local: Optional[AgentStatus] = None
    reported: Optional[AgentStatus] = None

    @property
    def running(self):
        return self.pid is not None


@dataclass(frozen=True)
class BgpPeerRow:
    address: str
    peer_type: str
    state: str
    since: str
    info: str

    @property
    def version(self):
        return 6 if ":" in self.address else 4


@dataclass(frozen=True)
class StatusReport:
    """Everything ``calicoctl status`` shows, read at ``now``.

    :ivar bgp_peers: our BGP protocols in BIRD (BgpPeerRow), or None: BIRD
        could not be asked (``bird_error`` says why) or its answer is not a
        protocol table (``bird_output`` is that answer).
    :ivar unreachable: etcd could not be read (DatastoreUnavailable), so
        ``agent`` holds only what this host's files say.
    :ivar rr_cluster_id: this host is a route reflector with that cluster ID.
    """
    agent: AgentState
    now: float
    bgp_peers: Optional[list]
    bird_output: str
    bird_error: Optional[str]
    unreachable: Optional[Exception] = None
    rr_cluster_id: Optional[str] = None


# -- pure --------------------------------------------------------------------

def parse_agent_status(text):
    """The agent's status JSON -> AgentStatus, or None if it is not one."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        pid = data["pid"]
        if isinstance(pid, bool) or not isinstance(pid, int):
            return None
        last_sync = data.get("last_sync")
        return AgentStatus(pid=pid, started=float(data["started"]), time=float(data["time"]),
                           in_sync=data.get("in_sync") is True,
                           last_sync=float(last_sync) if last_sync is not None else None,
                           local_endpoints=int(data.get("local_endpoints") or 0),
                           control_plane=_parse_control_plane(data.get("control_plane")),
                           docker_plugins=_parse_plugins(data.get("docker_plugins")),
                           cni_plugins=_parse_cni(data.get("cni")),
                           dataplane=str(data["dataplane"]) if data.get("dataplane") else None,
                           refused_rules=tuple(RefusedRule(str(entry["profile"]), str(entry["direction"]),
                                                           int(entry["position"]), str(entry["rule"]),
                                                           str(entry["error"]))
                                               for entry in data.get("refused_rules") or ()))
    except (KeyError, TypeError, ValueError):
        return None


def _parse_control_plane(data):
    """The report's control_plane object -> ControlPlaneReport, or None (absent:
    an older agent; malformed: not ours to guess)."""
    if not isinstance(data, dict):
        return None
    try:
        addresses = data.get("addresses") or {}
        problem = data.get("problem")
        return ControlPlaneReport(enabled=data["enabled"] is True, active=data["active"] is True,
                                  ports=tuple(int(port) for port in data["ports"]),
                                  ipv4_addresses=int(addresses.get("4", 0)),
                                  ipv6_addresses=int(addresses.get("6", 0)),
                                  problem=str(problem) if problem is not None else None)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _parse_plugins(data):
    if not isinstance(data, dict) or not isinstance(data.get("sockets"), list):
        return None
    problem = data.get("problem")
    return PluginsReport(sockets=tuple(str(path) for path in data["sockets"]),
                         problem=str(problem) if problem is not None else None)


def _parse_cni(data):
    if not isinstance(data, dict):
        return None
    socket, problem = data.get("socket"), data.get("problem")
    return PluginsReport(sockets=(str(socket),) if socket else (),
                         problem=str(problem) if problem is not None else None)


def render_cni(report):
    """The line about the CNI plugins' back end (pure)."""
    if report is None:
        return []
    if report.problem is not None or not report.sockets:
        return ["WARNING: CNI plugins: %s." % (report.problem or "no socket served")]
    return ["CNI plugins: calico and calico-ipam served on %s." % report.sockets[0]]


def render_plugins(report):
    """Lines about the Docker plugins the agent serves (pure)."""
    if report is None:
        return ["Docker plugins: not served (calicoctl node --docker-plugins=false)."]
    if report.problem is not None or not report.sockets:
        return ["WARNING: Docker plugins: %s." % (report.problem or "no socket served")]
    return ["Docker plugins: network driver calico and IPAM driver calico-ipam on %s."
            % ", ".join(report.sockets)]


def render_control_plane(report):
    """Lines about the control-plane protection on this host (pure)."""
    if report is None:
        return ["Control-plane protection: not reported by this agent."]
    ports = "TCP " + ", ".join(str(port) for port in report.ports)
    if not report.enabled:
        lines = ["Control-plane protection: OFF (switched off in etcd: 'calicoctl control-plane "
                 "protection on' restores it)."]
    elif report.active:
        lines = ["Control-plane protection: active (%s closed to workloads on this host and on %d IPv4 "
                 "and %d IPv6 protected addresses)." % (ports, report.ipv4_addresses, report.ipv6_addresses)]
    else:
        lines = ["WARNING: control-plane protection is on but NOT programmed on this host yet (%s); "
                 "see the agent's log." % ports]
    if report.problem is not None:
        lines.append("WARNING: the control-plane setting in etcd is not valid (%s); the default ports "
                     "are protected." % report.problem)
    return lines


def calculate_peer_rows(rows):
    """[BgpPeerRow] of our BGP sessions among BIRD's protocols
    (host.bird.ProtocolRow), in BIRD's order; None stays None (BIRD's answer
    was not a protocol table: the caller shows it raw, as the original did)."""
    if rows is None:
        return None
    return [BgpPeerRow(address=row.session[1], peer_type=PEER_TYPES[row.session[0]], state=row.state,
                       since=row.since, info=row.info) for row in rows if row.session is not None]


def describe_duration(seconds):
    """72 -> '1m 12s'; 3700 -> '1h 1m'; 90000 -> '1d 1h'."""
    seconds = max(0, int(seconds))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return "%dd %dh" % (days, hours)
    if hours:
        return "%dh %dm" % (hours, minutes)
    if minutes:
        return "%dm %ds" % (minutes, seconds)
    return "%ds" % seconds


def render_agent_summary(state, now, hostname):
    """Lines describing the agent (pure)."""
    if not state.running:
        lines = ["calico-agent is not running on %s." % hostname]
        if state.reported is not None:
            lines.append("etcd still holds a status for it from %s ago (it expires within 30 s)."
                         % describe_duration(now - state.reported.time))
        return lines
    status = state.local if state.local is not None else state.reported
    if status is None:
        return ["calico-agent is running on %s (pid %d) but has not reported yet." % (hostname, state.pid)]
    lines = ["calico-agent is running on %s (pid %d), up %s." % (
        hostname, state.pid, describe_duration(now - status.started))]
    if status.in_sync:
        sync = "in sync with etcd"
    else:
        sync = "NOT in sync with etcd"
    if status.last_sync is not None:
        sync += ", last full sync %s ago" % describe_duration(now - status.last_sync)
    lines.append("Dataplane%s: %s; %d local endpoint(s); last report %s ago." % (
        " (%s)" % status.dataplane if status.dataplane else "", sync, status.local_endpoints,
        describe_duration(now - status.time)))
    for refused in status.refused_rules:
        lines.append("WARNING: profile %s, %s rule %d (%s): refused by the kernel (%s); it drops all "
                     "traffic in its place." % (refused.profile, refused.direction, refused.position,
                                                refused.rule, refused.error))
    lines += render_control_plane(status.control_plane)
    lines += render_plugins(status.docker_plugins)
    lines += render_cni(status.cni_plugins)
    if now - status.time > STALE_REPORT:
        lines.append("WARNING: the agent has not reported for %s (it reports every 10 s): is it hung?"
                     % describe_duration(now - status.time))
    elif state.reported is None:
        lines.append("WARNING: etcd holds no live status for this agent (it cannot reach etcd?).")
    return lines


# -- I/O -----------------------------------------------------------------------

def agent_pid_file(run_dir=RUN_DIR):
    return os.path.join(run_dir, identity.PID_FILE)


def agent_status_file(run_dir=RUN_DIR):
    return os.path.join(run_dir, identity.STATUS_FILE)


def read_running_agent_pid(run_dir=RUN_DIR):
    """The pid of this host's live agent, or None (stale pid files are ignored)."""
    pid = daemon.read_pid_file(agent_pid_file(run_dir))
    if pid is not None and daemon.process_matches(pid, identity.MARKERS):
        return pid
    return None


def read_local_status(run_dir=RUN_DIR):
    """The agent's status file, or None."""
    try:
        with open(agent_status_file(run_dir)) as handle:
            return parse_agent_status(handle.read())
    except OSError:
        return None


def read_agent_state(datastore, hostname, run_dir=RUN_DIR):
    """AgentState from the pid file, the status file and (if given) etcd.

    ``datastore`` may be None to skip etcd; etcd errors propagate.
    """
    pid = read_running_agent_pid(run_dir)
    local = read_local_status(run_dir)
    if local is not None and local.pid != pid:
        local = None          # a dead agent's last words
    reported = None
    if datastore is not None:
        text = datastore.get_agent_status(hostname)
        reported = parse_agent_status(text) if text else None
    return AgentState(pid=pid, local=local, reported=reported)


def query_bird_protocols(run_dir=RUN_DIR):
    """(rows or None, raw text, error or None) from ``birdc show protocols``.

    ``error`` says why BIRD could not be asked (not running, no birdc).
    """
    from calicoctl.host import bird
    socket_path = os.path.join(run_dir, identity.BIRD_SOCKET)
    if not os.path.exists(socket_path):
        return None, "", "BIRD is not running (no control socket %s)." % socket_path
    code, out, err = bird.show_protocols(socket_path)
    if code == 127:
        return None, "", "birdc is not installed, so BGP status is unknown."
    if code != 0:
        detail = (err or out).strip().splitlines()
        return None, out, "BIRD is not answering on %s: %s" % (
            socket_path, detail[-1] if detail else "exit %d" % code)
    return calculate_peer_rows(bird.parse_protocols(out)), out, None


def now():
    return time.time()


def read_status(connect, hostname, run_dir=RUN_DIR):
    """The StatusReport of this host: its agent, as etcd and its files tell,
    and its BGP sessions, as BIRD tells. ``connect()`` gives the datastore
    client. etcd being down (at connecting or after) is part of the report,
    not an error: the local half still says something useful."""
    unreachable = cluster_id = None
    try:
        datastore = connect()
        agent = read_agent_state(datastore, hostname, run_dir)
        cluster_id = datastore.get_rr_cluster_id(hostname)
    except DatastoreUnavailable as exc:
        unreachable = exc
        agent = read_agent_state(None, hostname, run_dir)
    read_at = now()
    peers, output, error = query_bird_protocols(run_dir)
    return StatusReport(agent, read_at, peers, output, error, unreachable, rr_cluster_id=cluster_id)
