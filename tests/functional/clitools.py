"""Running the real calicoctl from tests, and checking what it left in etcd.

``run_cli`` runs ``calicoctl.cli.main`` in-process (fast: no interpreter
start-up); ``run_cli_process`` runs the real command as a child process
(console script if installed, else ``python -m calicoctl``).
``assert_refused`` is the "bad input never hurts" check: one line on
stderr, the expected exit code, and not a single write to etcd.
"""
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from tests.harness.util import REPO_ROOT


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self):
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(env, argv, stdin=""):
    """calicoctl in this process with its own streams; argv is a list or a string."""
    from calicoctl.cli import main
    if isinstance(argv, str):
        argv = argv.split()
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), env=dict(env), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return CliResult(rc, out.getvalue(), err.getvalue())


def cli_command():
    """argv prefix that starts the real calicoctl as a process."""
    script = os.path.join(os.path.dirname(sys.executable), "calicoctl")
    if os.path.exists(script):
        return [script]
    found = shutil.which("calicoctl", path=os.path.join(REPO_ROOT, ".venv", "bin"))
    if found:
        return [found]
    return [sys.executable, "-m", "calicoctl"]


def process_env(env):
    """A clean environment for a child calicoctl: PATH plus the given variables."""
    child = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
    child["PYTHONPATH"] = REPO_ROOT
    child.update(env)
    return child


def run_cli_process(env, argv, stdin="", timeout=60):
    if isinstance(argv, str):
        argv = argv.split()
    proc = subprocess.run(cli_command() + list(argv), input=stdin, capture_output=True, text=True,
                          env=process_env(env), cwd=REPO_ROOT, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def dump_etcd(kv):
    """(revision, {key: (value, revision)}) of the whole keyspace (v2 or v3)
    of calicoctl's key-value store ``kv``.

    The revision moves on every write anywhere, so an equal dump before and
    after a command proves it wrote nothing (not even the same value again).
    """
    tree = kv.tree("/")
    return tree.revision, {entry.key: (entry.value, entry.revision) for entry in tree.entries}


def calico_values(kv):
    """{key: value} of every leaf under /calico (for readable assertions)."""
    return {entry.key: entry.value for entry in kv.tree("/calico").entries}


def assert_one_line_error(result, rc=1, contains=None):
    assert result.rc == rc, "expected rc %d, got %d; out=%r err=%r" % (rc, result.rc, result.out, result.err)
    assert len(result.err_lines) == 1, "expected one line on stderr, got %r" % (result.err,)
    assert "Traceback" not in result.err
    if contains is not None:
        assert contains.lower() in result.err.lower(), "%r not in %r" % (contains, result.err)
    return result.err_lines[0]


def assert_refused(etcd, argv, rc=1, contains=None, stdin=""):
    """The command fails with one clear line and etcd is exactly as before."""
    client = etcd.kv()
    before = dump_etcd(client)
    result = run_cli(etcd.env, argv, stdin=stdin)
    line = assert_one_line_error(result, rc=rc, contains=contains)
    assert dump_etcd(client) == before, "etcd changed after refused command %r" % (argv,)
    return line


def assert_ok(env, argv, contains=None, stdin=""):
    """The command succeeds (rc 0, nothing on stderr); returns its stdout."""
    result = run_cli(env, argv, stdin=stdin)
    assert result.rc == 0, "rc %d for %r: out=%r err=%r" % (result.rc, argv, result.out, result.err)
    assert result.err == "", result.err
    if contains is not None:
        assert contains.lower() in result.out.lower(), "%r not in %r" % (contains, result.out)
    return result.out
