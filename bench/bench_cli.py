"""CLI start-up: a whole ``calicoctl profile add`` process against a real etcd.

Reference, measured in the same run with the same interpreter:
``python -c "import etcd"`` (the one library a policy command cannot avoid;
``etcd3gw`` with ``DATASTORE_TYPE=etcdv3``, which every bench honours).
Runs alternate between the two so drift on a noisy machine hits both alike.
Target: median ratio at most 1.3.
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
TARGET = 1.3


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


def run(report):
    from tests.harness.etcd import DATASTORE_LIBRARY, EtcdServer, requested_datastore
    from tests.harness.util import REPO_ROOT

    workdir = tempfile.mkdtemp(prefix="bench-cli-")
    server = EtcdServer(os.path.join(workdir, "data"), datastore=requested_datastore()).start()
    library = DATASTORE_LIBRARY[server.datastore]
    try:
        env = dict(server.env, PATH=os.environ.get("PATH", os.defpath), PYTHONPATH=REPO_ROOT)
        command = calicoctl_command()
        reference = [sys.executable, "-c", "import " + library]
        cli_times, ref_times = [], []
        for index in range(WARMUP + RUNS):
            ref_ms, ref_proc = timed(reference, env, REPO_ROOT)
            if ref_proc.returncode != 0:
                raise RuntimeError("reference failed: %s" % ref_proc.stderr.strip())
            cli_ms, cli_proc = timed(command + ["profile", "add", "X%d" % index], env, REPO_ROOT)
            if cli_proc.returncode != 0 or not cli_proc.stdout.startswith("Created profile"):
                raise RuntimeError("calicoctl profile add failed (rc %d): %s"
                                   % (cli_proc.returncode, (cli_proc.stderr or cli_proc.stdout).strip()))
            if index >= WARMUP:
                cli_times.append(cli_ms)
                ref_times.append(ref_ms)
        report("calicoctl profile add X<i> (median of %d)" % RUNS, statistics.median(cli_times), "ms",
               'python -c "import %s"' % library, statistics.median(ref_times), target=TARGET)
        report("  fastest / slowest profile add", "%.1f / %.1f" % (min(cli_times), max(cli_times)), "ms")
        report("  fastest / slowest import " + library, "%.1f / %.1f" % (min(ref_times), max(ref_times)), "ms")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
