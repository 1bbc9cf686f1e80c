"""Host daemons: start one detached, run one in the foreground, stop one by pid.

``calicoctl node`` runs the agent as a plain host process instead of the
original's ``calico/node`` container (docs/decisions.md, "Running the node"), so
the supervision Docker used to give us lives here:

- a detached daemon gets a new session (no controlling terminal, not hit
  by the shell's Ctrl-C), ``/`` as working directory, stdin from
  /dev/null, stdout and stderr appended to a log file, and a pid file;
- a foreground daemon shares our process group (so systemd and a terminal
  reach it) and SIGTERM/SIGINT sent to us are passed on to it;
- stopping goes by pid: SIGTERM, wait, SIGKILL after the timeout. A pid
  file can outlive its process and the pid be reused, so callers check the
  command line (``process_matches``) before signalling.
"""
import errno
import os
import signal
import time

from calicoctl.host import run

POLL_INTERVAL = 0.05


class Daemon:
    """A daemon this process started.

    :ivar pid: its process id.
    :ivar popen: the subprocess.Popen, so its exit status can be read.
    """

    def __init__(self, popen):
        self.popen = popen
        self.pid = popen.pid

    def exit_code(self):
        """None while it runs, else its exit status (negative: killed by that signal)."""
        return self.popen.poll()


def start_detached(args, log_path, pid_file, env=None, pass_fds=()):
    """Start ``args`` as a detached daemon; return a Daemon.

    The pid file is written here, before the daemon may write its own, so
    a concurrent ``node stop`` always finds it. ``pass_fds`` are inherited.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        popen = run.spawn(args, stdin=run.DEVNULL, output=log_fd, cwd="/", env=env, new_session=True,
                          pass_fds=pass_fds)
    finally:
        os.close(log_fd)
    write_pid_file(pid_file, popen.pid)
    return Daemon(popen)


def start_foreground(args, pid_file, env=None, pass_fds=()):
    """Start ``args`` attached to our terminal and process group; return a
    Daemon. ``pass_fds`` are inherited."""
    popen = run.spawn(args, env=env, pass_fds=pass_fds)
    write_pid_file(pid_file, popen.pid)
    return Daemon(popen)


def notify_ready(env):
    """Tell the service manager we are ready (``READY=1`` to
    ``$NOTIFY_SOCKET``, as a systemd unit of ``Type=notify`` waits for);
    False when not started by one or it cannot be reached."""
    import socket
    address = env.get("NOTIFY_SOCKET") or ""
    if address.startswith("@"):
        address = "\0" + address[1:]          # an abstract socket
    if not address:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(b"READY=1")
    except OSError:
        return False
    return True


class forward_signals:
    """Context manager: while active, SIGTERM/SIGINT sent to us go to the daemon.

    Enter it before starting the daemon and ``attach`` the daemon once it
    runs, so a signal arriving in between is passed on too, not lost.
    ``received`` lists the signals that arrived, so the caller can tell a
    requested stop (exit 0) from a crash.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, daemon=None):
        self.daemon = daemon
        self.received = []
        self._previous = {}

    def attach(self, daemon):
        self.daemon = daemon
        if self.received:
            send_signal(daemon.pid, signal.SIGTERM)

    def _handle(self, signum, _frame):
        self.received.append(signum)
        if self.daemon is not None:
            # SIGTERM either way: the agent's clean shutdown path.
            send_signal(self.daemon.pid, signal.SIGTERM)

    def __enter__(self):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def write_atomically(path, text, mode=None, accept=None):
    """Write ``text`` to ``path`` through a temporary file and a rename, so
    readers (a status poller, a ``node stop``, a runtime executing a
    plugin, BIRD) never see a partial file; ``mode``: its permission bits.

    ``accept``: called with the temporary file's path before the rename; if
    it returns False the file is left as it was. Returns True if written.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = "%s.%d.tmp" % (path, os.getpid())
    with open(temp, "w") as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(temp, mode)
    if accept is not None and not accept(temp):
        os.unlink(temp)
        return False
    os.replace(temp, path)
    return True


def write_pid_file(path, pid):
    """Write ``pid`` to ``path`` atomically."""
    write_atomically(path, "%d\n" % pid)


def read_pid_file(path):
    """The pid in ``path``, or None when the file is missing or garbled."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def remove_pid_file(path, pid):
    """Remove ``path`` if it still names ``pid`` (a newer daemon's file stays)."""
    if read_pid_file(path) == pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def process_alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def process_cmdline(pid):
    """The argument list of ``pid``, or [] if it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def shares_namespaces(pid, kinds):
    """True if ``pid`` is in the same namespaces of each kind (``"mnt"``,
    ``"net"``, ...) as this process; False if it is gone."""
    try:
        return all(os.stat("/proc/%d/ns/%s" % (pid, kind)).st_ino == os.stat("/proc/self/ns/%s" % kind).st_ino
                   for kind in kinds)
    except OSError:
        return False


def process_matches(pid, markers, namespaces=()):
    """True if ``pid`` is alive, one of its arguments contains one of
    ``markers``, and it shares the ``namespaces`` kinds with this process."""
    if not process_alive(pid) or not shares_namespaces(pid, namespaces):
        return False
    return any(marker in arg for arg in process_cmdline(pid) for marker in markers)


def send_signal(pid, signum):
    """Signal ``pid``; False if it no longer exists."""
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise


def wait_exit(pid, timeout, popen=None):
    """Wait up to ``timeout`` s for ``pid`` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while True:
        if popen is not None:
            if popen.poll() is not None:
                return True
        elif not process_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def stop_process(pid, timeout=10.0, popen=None):
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL.

    Returns "stopped" (ended after SIGTERM), "killed" (needed SIGKILL) or
    "gone" (was not running).
    """
    alive = popen.poll() is None if popen is not None else process_alive(pid)
    if not alive or not send_signal(pid, signal.SIGTERM):
        return "gone"
    if wait_exit(pid, timeout, popen):
        return "stopped"
    send_signal(pid, signal.SIGKILL)
    wait_exit(pid, 5.0, popen)
    return "killed"
