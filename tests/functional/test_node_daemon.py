"""Starting, waiting for and stopping the node agent as a host daemon.

The start/wait/stop logic of calicoctl.ops.node and calicoctl.host.daemon,
run against real processes: small stand-in agents that follow the agent's
status contract (docs/etcd-layout.md, "Agent status") and misbehave on purpose --
exit at once, never sync, report another pid, ignore SIGTERM. The real
agent behind the real CLI is tested in test_node_cli.py.

No kernel work happens here (the stand-ins only write files), so these
run in the test's own namespace, in temporary directories.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from calicoctl.errors import AgentError
from calicoctl.host import daemon
from calicoctl.ops import node as node_ops
from calicoctl.ops import status as status_ops
from tests.harness.util import REPO_ROOT, pid_alive, wait_for

STAND_IN = textwrap.dedent('''
    import json, os, signal, sys, time
    mode, run_dir = sys.argv[1], sys.argv[2]
    print("stand-in agent starting in mode", mode, flush=True)
    if mode == "exit":
        print("fatal: cannot reach etcd", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    started = time.time()
    time.sleep(0.3)
    pid = os.getpid() + (1 if mode == "wrong-pid" else 0)
    status = {"pid": pid, "started": started, "time": time.time(),
              "in_sync": mode not in ("never", "wrong-pid"), "last_sync": time.time(),
              "local_endpoints": 0}
    path = os.path.join(run_dir, "agent-status.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(status, handle)
    os.replace(path + ".tmp", path)
    while True:
        time.sleep(0.1)
''')


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "stand_in_agent.py"
    script.write_text(STAND_IN)
    settings = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", log_dir=str(tmp_path / "log"),
                                     run_dir=str(tmp_path / "run"))
    started = []

    def command(mode):
        return [sys.executable, str(script), mode, settings.run_dir]

    yield settings, command, started
    for pid in started:
        if pid_alive(pid):
            daemon.stop_process(pid, timeout=2)


def test_start_returns_once_in_sync_and_detaches(stand_in):
    settings, command, started = stand_in
    reports = []
    result = node_ops.start_agent(settings, os.environ, report=reports.append, timeout=10,
                                  command=command("sync"))
    started.append(result.pid)
    assert pid_alive(result.pid)
    assert result.status.pid == result.pid and result.status.in_sync
    assert 0.25 < result.seconds < 5
    # Detached: its own session, so the shell's signals and hang-ups miss it.
    assert os.getsid(result.pid) == result.pid
    assert daemon.read_pid_file(os.path.join(settings.run_dir, "agent.pid")) == result.pid
    with open(os.path.join(settings.log_dir, node_ops.CONSOLE_LOG)) as handle:
        assert "stand-in agent starting in mode sync" in handle.read()
    assert daemon.process_cmdline(result.pid)[1].endswith("stand_in_agent.py")
    assert os.readlink("/proc/%d/cwd" % result.pid) == "/"


@pytest.mark.slow
def test_start_reports_progress_while_waiting(stand_in, tmp_path):
    settings, command, started = stand_in
    slow = tmp_path / "slow.py"
    slow.write_text("import time, sys, runpy\ntime.sleep(2.2)\nsys.argv = sys.argv[1:]\n"
                    "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    reports = []
    result = node_ops.start_agent(settings, os.environ, report=reports.append, timeout=10,
                                  command=[sys.executable, str(slow)] + command("sync")[1:])
    started.append(result.pid)
    assert len(reports) >= 2
    assert reports == sorted(reports) and reports[0] >= 1.0


def test_agent_that_exits_at_once_is_reported_with_its_log(stand_in):
    settings, command, _ = stand_in
    with pytest.raises(AgentError) as error:
        node_ops.start_agent(settings, os.environ, timeout=10, command=command("exit"))
    message = str(error.value)
    assert "exited with code 3" in message
    assert "fatal: cannot reach etcd" in message
    assert "\n" not in message
    assert not os.path.exists(os.path.join(settings.run_dir, "agent.pid"))


@pytest.mark.parametrize("mode", ["never", "wrong-pid"])
@pytest.mark.slow
def test_agent_that_never_syncs_is_stopped_after_the_timeout(stand_in, mode):
    settings, command, started = stand_in
    begin = time.monotonic()
    with pytest.raises(AgentError) as error:
        node_ops.start_agent(settings, os.environ, timeout=1.5, command=command(mode))
    assert 1.4 < time.monotonic() - begin < 8
    assert "did not report in sync within 1 s" in str(error.value)
    pid_file = os.path.join(settings.run_dir, "agent.pid")
    assert not os.path.exists(pid_file)
    # Nothing of it is left running.
    with open(os.path.join(settings.run_dir, "agent-status.json")) as handle:
        pid = json.load(handle)["pid"] - (1 if mode == "wrong-pid" else 0)
    started.append(pid)
    assert not pid_alive(pid)


def test_stop_agent_by_pid_file(stand_in):
    settings, command, started = stand_in
    result = node_ops.start_agent(settings, os.environ, timeout=10, command=command("sync"))
    started.append(result.pid)
    # The stand-in is not called calico-agent: stop_agent must not touch it...
    assert node_ops.stop_agent(settings.run_dir, timeout=2) == (None, "not running")
    assert pid_alive(result.pid)
    assert status_ops.read_running_agent_pid(settings.run_dir) is None
    # ...while an agent (recognised by its command line) is stopped by SIGTERM.
    assert daemon.process_matches(result.pid, ("stand_in_agent",))
    assert daemon.stop_process(result.pid, timeout=5) == "stopped"
    assert not pid_alive(result.pid)
    assert daemon.stop_process(result.pid, timeout=1) == "gone"


def test_stop_kills_an_agent_ignoring_sigterm(stand_in):
    settings, command, started = stand_in
    result = node_ops.start_agent(settings, os.environ, timeout=10, command=command("ignore-term"))
    started.append(result.pid)
    begin = time.monotonic()
    assert daemon.stop_process(result.pid, timeout=0.5) == "killed"
    assert time.monotonic() - begin < 4
    assert not pid_alive(result.pid)


def test_pid_file_helpers(tmp_path):
    path = str(tmp_path / "sub" / "x.pid")
    assert daemon.read_pid_file(path) is None
    daemon.write_pid_file(path, 1234)
    assert daemon.read_pid_file(path) == 1234
    daemon.remove_pid_file(path, 999)            # another daemon's file stays
    assert daemon.read_pid_file(path) == 1234
    daemon.remove_pid_file(path, 1234)
    assert not os.path.exists(path)
    with open(path, "w") as handle:
        handle.write("garbage\n")
    assert daemon.read_pid_file(path) is None
    assert os.listdir(os.path.dirname(path)) == ["x.pid"]   # no temp files left


def test_atomic_write_keeps_the_old_file_when_the_new_text_is_not_accepted(tmp_path):
    path = str(tmp_path / "bird.cfg")
    seen = []

    def accept(temp):
        with open(temp) as handle:
            seen.append(handle.read())
        return seen[-1] != "bad"

    assert daemon.write_atomically(path, "good", accept=accept)
    assert not daemon.write_atomically(path, "bad", accept=accept)
    assert seen == ["good", "bad"]
    with open(path) as handle:
        assert handle.read() == "good"
    assert os.listdir(str(tmp_path)) == ["bird.cfg"]             # no temp file left


FOREGROUND_DRIVER = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, %(repo)r)
    from calicoctl.ops import node as node_ops
    settings = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", log_dir=sys.argv[1],
                                     run_dir=sys.argv[2])
    def synced(status):
        print("SYNCED", status.pid, flush=True)
    code = node_ops.run_agent_foreground(settings, os.environ, on_synced=synced, timeout=10,
                                         command=sys.argv[3:])
    print("EXIT", code, flush=True)
    sys.exit(code)
''')


@pytest.mark.parametrize("mode, signum, expected", [
    ("sync", signal.SIGTERM, 0),
    ("sync", signal.SIGINT, 0),
])
def test_foreground_passes_signals_on_and_exits_cleanly(stand_in, tmp_path, mode, signum, expected):
    settings, command, started = stand_in
    driver = tmp_path / "driver.py"
    driver.write_text(FOREGROUND_DRIVER % {"repo": REPO_ROOT})
    proc = subprocess.Popen([sys.executable, str(driver), settings.log_dir, settings.run_dir]
                            + command(mode), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        first = proc.stdout.readline()
        # The stand-in's own output comes first: it shares our stdout.
        while first.startswith("stand-in"):
            first = proc.stdout.readline()
        assert first.startswith("SYNCED ")
        agent_pid = int(first.split()[1])
        started.append(agent_pid)
        assert daemon.read_pid_file(os.path.join(settings.run_dir, "agent.pid")) == agent_pid
        # Foreground: same session as the driver, not detached.
        assert os.getsid(agent_pid) == os.getsid(proc.pid)
        os.kill(proc.pid, signum)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == expected
    assert "EXIT %d" % expected in out
    wait_for(lambda: not pid_alive(agent_pid), timeout=5, message="agent gone")
    assert not os.path.exists(os.path.join(settings.run_dir, "agent.pid"))


def test_foreground_agent_crash_is_its_exit_status(stand_in, tmp_path):
    settings, command, _ = stand_in
    driver = tmp_path / "driver.py"
    driver.write_text(FOREGROUND_DRIVER % {"repo": REPO_ROOT})
    proc = subprocess.run([sys.executable, str(driver), settings.log_dir, settings.run_dir]
                          + command("exit"), capture_output=True, text=True, timeout=20)
    assert proc.returncode == 3
    assert "fatal: cannot reach etcd" in proc.stderr
    assert "SYNCED" not in proc.stdout


DETACHED_DRIVER = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, %(repo)r)
    from calicoctl.errors import AgentError
    from calicoctl.ops import node as node_ops
    settings = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", log_dir=sys.argv[1],
                                     run_dir=sys.argv[2])
    print("WAITING", flush=True)
    try:
        node_ops.start_agent(settings, os.environ, timeout=60, command=sys.argv[3:])
    except AgentError as exc:
        print("ERROR", exc, flush=True)
        sys.exit(1)
''')


def test_signal_while_waiting_stops_the_half_started_agent(stand_in, tmp_path):
    settings, command, started = stand_in
    driver = tmp_path / "detached_driver.py"
    driver.write_text(DETACHED_DRIVER % {"repo": REPO_ROOT})
    proc = subprocess.Popen([sys.executable, str(driver), settings.log_dir, settings.run_dir]
                            + command("never"), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "WAITING\n"
        pid_file = os.path.join(settings.run_dir, "agent.pid")
        agent = wait_for(lambda: daemon.read_pid_file(pid_file), timeout=10, message="agent started")
        started.append(agent)
        wait_for(lambda: os.path.exists(os.path.join(settings.run_dir, "agent-status.json")),
                 timeout=10, message="agent running")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert "ERROR Interrupted while waiting for the agent to sync; it was stopped." in out
    wait_for(lambda: not pid_alive(agent), timeout=5, message="agent gone")
    assert not os.path.exists(pid_file)


def test_notify_ready_tells_a_service_manager(tmp_path):
    import socket
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        manager.settimeout(5)
        assert daemon.notify_ready({"NOTIFY_SOCKET": path}) is True
        assert manager.recv(100) == b"READY=1"
    assert daemon.notify_ready({}) is False
    assert daemon.notify_ready({"NOTIFY_SOCKET": str(tmp_path / "absent")}) is False
