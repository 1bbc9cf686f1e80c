"""Intake: the CPU one etcd event costs the key-value layer's watch, on etcd v2 and v3.

What is measured is ``kv.watch`` alone (calicoctl.datastore.kv_v2 / kv_v3:
the HTTP reads, the JSON and the Event objects), the layer under the
agent's watcher, without the agent's own work on each event.

Method: one etcd serving both APIs. A thread of this process watches
/calico from the store's revision and counts events until it has seen
EVENTS of them; a separate process writes EVENTS endpoint records (one
``put`` each, so one revision each, as separate commands would) as fast
as etcd takes them. The figure is the watching thread's own CPU time
(``time.thread_time``: user + system of that thread, so neither the writer
nor the waiting counts) divided by the events it took.

- live: the watch is open and caught up when the burst starts (the
  agent's steady state: every event arrives as it is written);
- replay (v2: at most 900, v2 keeps the last 1000 events): the burst is
  written first, then the watch starts from before it and replays it
  from etcd's history (an agent coming back from a pause).

The reference is the issue's target for the watch layer (v3 at most 20 us
an event, v2 at most 60 us, of the agent's 100 us / 300 us per event).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

EVENTS = int(os.environ.get("BENCH_WATCH_EVENTS", "5000"))
REPLAY_EVENTS = 900
TARGET_US = {"etcdv2": 60.0, "etcdv3": 20.0}
PREFIX = "/calico/v1/host/bench/workload/docker/w%05d/endpoint/e"

ENDPOINT = json.dumps({"state": "active", "name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee",
                       "profile_ids": ["WEB", "STAGING"], "ipv4_nets": ["192.168.10.17/32"],
                       "ipv6_nets": [], "ipv4_gateway": "172.17.8.101", "ipv6_gateway": None,
                       "bench_sent": 0.0}).replace("0.0", "%.6f")

# Each value carries the time it was sent, for the delivery latency.
WRITER = r"""
import json, sys, time
from calicoctl.datastore import etcdconn
kv = etcdconn.connect(json.loads(sys.argv[1]))
for n in range(int(sys.argv[3])):
    kv.put(sys.argv[2] % n, sys.argv[4] % time.time())
"""


def write_burst(env, count):
    from tests.harness.util import REPO_ROOT
    subprocess.run([sys.executable, "-c", WRITER, json.dumps(env), PREFIX, str(count), ENDPOINT],
                   check=True, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def watch_cpu(kv, revision, count, during=None):
    """(CPU seconds this process's watching thread spends taking ``count``
    events from ``revision`` on, [(time received, value)]); ``during()``
    runs meanwhile, in this thread."""
    result = {}
    received = []

    def watch():
        started = time.thread_time()
        seen = 0
        next_revision = revision
        try:
            while seen < count:
                for event in kv.watch("/calico", next_revision, timeout=30):
                    received.append((time.time(), event.value))
                    seen += 1
                    next_revision = event.revision + 1
                    if seen == count:
                        break
                else:
                    raise RuntimeError("the watch went quiet after %d of %d events" % (seen, count))
            result["cpu"] = time.thread_time() - started
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            result["error"] = exc
        result["seen"] = seen

    thread = threading.Thread(target=watch, name="bench-watch")
    thread.start()
    if during is not None:
        time.sleep(0.5)               # the watch is open before the burst
        during()
    thread.join()
    if "error" in result:
        raise RuntimeError("watch failed after %d events: %r" % (result["seen"], result["error"]))
    return result["cpu"], received


def latencies_ms(received):
    """Sorted milliseconds from each value's writing to its arrival here."""
    return sorted((arrived - json.loads(value)["bench_sent"]) * 1000.0 for arrived, value in received)


def run(report):
    from tests.harness.etcd import EtcdServer, make_kv

    workdir = tempfile.mkdtemp(prefix="bench-watch-")
    server = EtcdServer(os.path.join(workdir, "data"), datastore="etcdv2").start()   # serves v2 and v3
    try:
        for datastore in ("etcdv3", "etcdv2"):
            env = dict(server.env, DATASTORE_TYPE=datastore)
            kv = make_kv(env)
            kv.delete_tree("/calico")
            revision = kv.tree("/calico").revision + 1
            live, received = watch_cpu(make_kv(env), revision, EVENTS,
                                       during=lambda env=env: write_burst(env, EVENTS))
            report("%s watch, live burst of %d: CPU an event" % (datastore, EVENTS), live / EVENTS * 1e6, "us",
                   "absolute target", TARGET_US[datastore], target=1.0)
            delays = latencies_ms(received)
            report("  written -> watched, median / 99th percentile", "%.1f / %.1f" % (
                statistics.median(delays), delays[len(delays) * 99 // 100]), "ms")
            kv.delete_tree("/calico")
            revision = kv.tree("/calico").revision + 1
            write_burst(env, REPLAY_EVENTS)
            replay, _ = watch_cpu(make_kv(env), revision, REPLAY_EVENTS)
            report("%s watch, replay of %d: CPU an event" % (datastore, REPLAY_EVENTS),
                   replay / REPLAY_EVENTS * 1e6, "us", "absolute target", TARGET_US[datastore], target=1.0)
            kv.delete_tree("/calico")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
