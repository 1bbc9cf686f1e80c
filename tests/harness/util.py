"""Small helpers shared by the real-component test harness.

Nothing here imports pytest, so scripts (the demo, the benchmarks) can use the
harness as well as the tests.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(REPO_ROOT, ".venv", "bin")

# Ports handed out by this process, so two calls never return the same port
# even before the first one is bound.
_handed_out_ports = set()


def wait_for(predicate, timeout=10.0, interval=0.1, message=None, fatal=()):
    """Call ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet", except those of
    the types in ``fatal``, which propagate at once.  On timeout raise
    ``TimeoutError`` carrying ``message`` and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - the component may simply not be up yet
            last_error = exc
        if time.monotonic() >= deadline:
            text = message or "condition not met"
            if last_error is not None:
                text += " (last error: %r)" % (last_error,)
            raise TimeoutError("%s after %.1f s" % (text, timeout))
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    """Return a TCP port nobody listens on.

    Ports come from 20000-32767, below Linux's ephemeral range, so an
    outgoing connection cannot grab the port between this check and the
    server binding it.
    """
    for _ in range(1000):
        port = random.randint(20000, 32767)
        if port in _handed_out_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host if _is_local(host) else "127.0.0.1", port))
            except OSError:
                continue
        _handed_out_ports.add(port)
        return port
    raise RuntimeError("no free TCP port found")


def _is_local(host):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def tail(path, lines=40):
    """Last ``lines`` lines of a text file, or a note that it is missing."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return "<no log: %s>" % exc
    return "\n".join(data.splitlines()[-lines:])


def path_with_venv(path):
    """``path`` (a PATH value) with the repo's .venv/bin, and the running
    interpreter's venv bin directory, in front, so ``calicoctl`` resolves."""
    front = [VENV_BIN]
    if sys.prefix != sys.base_prefix:
        front.append(os.path.dirname(sys.executable))
    parts = [p for p in (path or os.defpath).split(os.pathsep) if p]
    result = []
    for part in front + parts:
        if part not in result:
            result.append(part)
    return os.pathsep.join(result)


def remove_cgroup_parent(name, root="/sys/fs/cgroup"):
    """Remove the cgroup ``name`` we made under every controller (left empty
    once the containers in it are gone); what is not there is fine."""
    for controller in os.listdir(root):
        try:
            os.rmdir(os.path.join(root, controller, name))
        except OSError:
            pass


def terminate_pid(pid, timeout=10.0, popen=None):
    """SIGTERM one process we started, wait, then SIGKILL if it lingers.

    ``popen`` (its subprocess.Popen) is reaped when given; otherwise we poll
    for the PID to vanish.  Returns True if the process is gone.
    """
    return _signal_and_wait(pid, signal.SIGTERM, timeout, popen) or \
        _signal_and_wait(pid, signal.SIGKILL, 5.0, popen)


def kill_pid(pid, popen=None):
    """SIGKILL one process we started and wait for it."""
    return _signal_and_wait(pid, signal.SIGKILL, 5.0, popen)


def _signal_and_wait(pid, sig, timeout, popen):
    if popen is not None and popen.poll() is not None:
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        if popen is not None:
            popen.poll()
        return True
    if popen is not None:
        try:
            popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def pid_alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            # The state follows the parenthesised command name.
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def netns_inode(pid):
    """The inode number of a process's network namespace, or None."""
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None


def pids_in_netns(inode, exclude=()):
    """PIDs of every process whose network namespace has this inode."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude:
            continue
        if netns_inode(pid) == inode:
            found.append(pid)
    return found


def run_in_threads(function, argument_lists, timeout):
    """Call ``function(*arguments)`` for each of ``argument_lists`` at once,
    each on a thread of its own; wait up to ``timeout`` seconds for each.
    Returns the exceptions raised (an empty list when every call returned)."""
    import threading
    errors = []

    def call(arguments):
        try:
            function(*arguments)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)
    threads = [threading.Thread(target=call, args=(arguments,)) for arguments in argument_lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


def run_bench_driver(host, script, config, env=None, timeout=1200):
    """Run ``script --driver <config as JSON>`` in ``host`` (a bench's timed
    part, inside the simulated host) and return the JSON it prints."""
    result = host.run([sys.executable, os.path.abspath(script), "--driver", json.dumps(config)],
                      env=env, cwd=REPO_ROOT, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError("bench driver failed: %s" % result.stderr.strip()[-2000:])
    return json.loads(result.stdout)
