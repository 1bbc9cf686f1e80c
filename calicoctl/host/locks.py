"""Per-workload locks between processes of one host (flock on a file).

``calicoctl container add`` and the agent's re-creation of a restarted
container's endpoints both hold the workload's lock while they look at and
change its networking, so two adds (or an add and a re-creation) of one
container never interleave. The kernel releases a lock when its holder
dies, so a crash never leaves one behind; the files themselves are empty
and live in the host's run directory (gone at reboot).
"""
import contextlib
import fcntl
import os

from calicoctl.identity import RUN_DIR

LOCK_DIR = os.path.join(RUN_DIR, "locks")


@contextlib.contextmanager
def workload_lock(workload_id, lock_dir=LOCK_DIR):
    """Hold the lock of ``workload_id`` (waiting for it) inside the block."""
    os.makedirs(lock_dir, exist_ok=True)
    path = os.path.join(lock_dir, "workload-%s.lock" % workload_id.replace("/", "_"))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
