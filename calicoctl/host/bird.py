"""BIRD, the BGP daemon: check a configuration, start and stop it, ask it to
reload, and read its protocol table.

The agent supervises BIRD (``calicoctl.agent.bgp.bird``) and ``calicoctl status``
reads its BGP sessions (``calicoctl.ops.status``); both go through here.
Processes are started and stopped with ``calicoctl.host.daemon``, commands
run with ``calicoctl.host.run``.
"""
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import List, Optional

from calicoctl.host import daemon
from calicoctl.host.run import run_status

BIRD = "bird"
BIRDC = "birdc"
COMMAND_TIMEOUT = 10


# -- pure: session names ---------------------------------------------------------------

SESSION_KINDS = ("Node", "Global", "Reflector", "Client", "Mesh")
"""The kinds of BGP session the agent configures (calicoctl.agent.bird_config),
in the order that decides when one address is listed twice."""


def session_name(kind, ip):
    """The BIRD protocol name of a session: ``Mesh_10_0_0_2``, ``Node_fd00__2``."""
    return "%s_%s" % (kind, ip.replace(".", "_").replace(":", "_"))


def parse_session_name(name):
    """(kind, address) of a name ``session_name`` made, else None (another protocol)."""
    kind, _, suffix = name.partition("_")
    if kind not in SESSION_KINDS:
        return None
    for separator in (".", ":"):
        try:
            return kind, str(ipaddress.ip_address(suffix.replace("_", separator)))
        except ValueError:
            continue
    return None


# -- pure: the protocol table ------------------------------------------------------

@dataclass(frozen=True)
class ProtocolRow:
    """One row of ``birdc show protocols``."""
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str

    @property
    def session(self):
        """(kind, peer address) of a session the agent configured, else None."""
        return parse_session_name(self.name)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


def parse_protocols(text) -> Optional[List[ProtocolRow]]:
    """``birdc show protocols`` output -> its rows (pure).

    Returns None when there is no header row (BIRD answered something else,
    e.g. "Access restricted"). The header is matched without regard to case
    (BIRD 1 printed it in lower case). "Since" is a time, a date, or a date
    and a time, depending on BIRD's ``timeformat``; only words of that shape,
    two at most, are taken for it, so an Info text that starts with a number
    (an address, a port) stays in ``info``.
    """
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lower().split()[:4] == ["name", "proto", "table", "state"]:
            body = lines[index + 1:]
            break
    else:
        return None
    rows = []
    for line in body:
        words = line.split()
        if len(words) < 4:
            continue
        name, proto, table, state = words[:4]
        rest = words[4:]
        since = []
        while rest and len(since) < 2 and (_DATE_RE.match(rest[0]) or _TIME_RE.match(rest[0])):
            since.append(rest.pop(0))
        rows.append(ProtocolRow(name=name, proto=proto, table=table, state=state,
                                since=" ".join(since), info=" ".join(rest)))
    return rows


# -- effects -------------------------------------------------------------------------

def check_config(path, bird=BIRD):
    """Let BIRD parse the configuration at ``path`` (``bird -p``): (ok, BIRD's complaint)."""
    code, out, err = run_status([bird, "-p", "-c", path], timeout=COMMAND_TIMEOUT)
    return code == 0, (err or out).strip()


def start(config_path, socket_path, pid_path, log_path, bird=BIRD):
    """Start ``bird -f`` detached (own session: a signal meant for the caller's
    terminal group must not take BIRD down with it); returns a daemon.Daemon.

    Stale socket and pid files are removed first. The pid file is written at
    once (BIRD writes it too, once its config is read), so a supervisor
    restarted in between finds this BIRD.
    """
    for stale in (socket_path, pid_path):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    args = [bird, "-f", "-c", config_path, "-s", socket_path, "-P", pid_path]
    return daemon.start_detached(args, log_path, pid_path)


def reconfigure(socket_path, birdc=BIRDC):
    """``birdc configure``: (True if BIRD took the new config, exit status, its answer)."""
    code, out, err = run_status([birdc, "-s", socket_path, "configure"], timeout=COMMAND_TIMEOUT)
    text = (out + err).strip()
    accepted = code == 0 and ("Reconfigured" in text or "Reconfiguration in progress" in text
                              or "queued" in text.lower())
    return accepted, code, text


def show_protocols(socket_path, birdc=BIRDC):
    """``birdc show protocols``: (exit status, stdout, stderr); 127 when birdc is missing."""
    return run_status([birdc, "-s", socket_path, "show", "protocols"], timeout=COMMAND_TIMEOUT)


def is_serving(pid, socket_path):
    """True if ``pid`` is a live BIRD using the control socket ``socket_path``."""
    args = daemon.process_cmdline(pid)
    return (daemon.process_alive(pid) and bool(args) and os.path.basename(args[0]) == BIRD
            and socket_path in args)


def stop(pid, timeout, popen=None):
    """SIGTERM, then SIGKILL after ``timeout`` s (BIRD withdraws its routes as it goes)."""
    return daemon.stop_process(pid, timeout=timeout, popen=popen)
