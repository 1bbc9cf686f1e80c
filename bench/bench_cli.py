"""CLI start-up: a whole ``calicoctl profile add`` process against a real etcd, on both APIs.

Two etcds: one serving only v3 (the default datastore), one with v2 on
(``DATASTORE_TYPE=etcdv2``). The reference, measured in the same run with
the same interpreter, is the interpreter's own start-up, ``python -c
pass``: what every command pays before it does anything. Runs alternate
between the three so drift on a noisy machine hits all alike.

Target (issue 18): a ``profile add`` on v3 costs no more than one on v2
did with python-etcd, measured here at 5.3 times the interpreter's
start-up (142 ms against 27 ms): at most 5 times ``python -c pass``.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("BENCH_RUNS", "25"))
WARMUP = 2
TARGET = 5.0


def calicoctl_command():
    """The installed console script next to this interpreter, else ``python -m calicoctl``."""
    script = os.path.join(os.path.dirname(sys.executable), "calicoctl")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "calicoctl"]


def timed(args, env, cwd):
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = (time.perf_counter() - started) * 1000.0
    return elapsed, proc


def profile_add(env, name, cwd):
    elapsed, proc = timed(calicoctl_command() + ["profile", "add", name], env, cwd)
    if proc.returncode != 0 or not proc.stdout.startswith("Created profile"):
        raise RuntimeError("calicoctl profile add failed (rc %d): %s"
                           % (proc.returncode, (proc.stderr or proc.stdout).strip()))
    return elapsed


def run(report):
    from tests.harness.etcd import DATASTORES, EtcdServer
    from tests.harness.util import REPO_ROOT

    workdir = tempfile.mkdtemp(prefix="bench-cli-")
    servers = {kind: EtcdServer(os.path.join(workdir, kind), datastore=kind).start() for kind in DATASTORES}
    try:
        base = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": REPO_ROOT}
        envs = {kind: dict(base, **server.env) for kind, server in servers.items()}
        times = {"pass": [], "etcdv3": [], "etcdv2": []}
        for index in range(WARMUP + RUNS):
            elapsed, proc = timed([sys.executable, "-c", "pass"], base, REPO_ROOT)
            if proc.returncode != 0:
                raise RuntimeError("python -c pass failed: %s" % proc.stderr.strip())
            sample = {"pass": elapsed}
            for kind in DATASTORES:
                sample[kind] = profile_add(envs[kind], "X%d" % index, REPO_ROOT)
            if index >= WARMUP:
                for key, value in sample.items():
                    times[key].append(value)
        start_up = statistics.median(times["pass"])
        report("calicoctl profile add, etcd v3 (median of %d)" % RUNS, statistics.median(times["etcdv3"]), "ms",
               'python -c "pass"', start_up, target=TARGET)
        report("calicoctl profile add, etcd v2 (median of %d)" % RUNS, statistics.median(times["etcdv2"]), "ms",
               'python -c "pass"', start_up, target=TARGET)
        for key, name in (("etcdv3", "profile add, v3"), ("etcdv2", "profile add, v2"), ("pass", "python -c pass")):
            report("  fastest / slowest " + name, "%.1f / %.1f" % (min(times[key]), max(times[key])), "ms")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
