"""etcd -> a stream of snapshots and updates, on a thread of its own.

``EtcdWatcher.run`` loops forever (until stopped):

1. snapshot: one recursive GET of ``/calico``; every leaf becomes
   ``Snapshot(items, index)``, where ``index`` is the response's
   ``X-Etcd-Index``;
2. watch: ``GET /calico?wait=true&recursive=true&waitIndex=<index+1>``;
   each answer becomes ``Update(key, value)`` (value None for a delete or
   expiry; a deleted directory arrives as its own key) and the next
   ``waitIndex`` is the event's ``modifiedIndex + 1``. A watch that simply
   times out is re-issued with the same index.
3. Anything that means our view may have a gap starts again at 1: the
   index was cleared from etcd's history (HTTP 401, ``EtcdEventIndexCleared``,
   more than 1000 events behind), the cluster ID changed (etcd was replaced
   or restored), or any connection error (etcd restarted or unreachable;
   ``Lost`` is reported first, and the snapshot is retried every
   ``retry_interval`` seconds until etcd answers). Meanwhile the dataplane is
   left exactly as it is.

Events go to ``emit`` (the main loop's queue); the main loop drains whatever
has queued up before flushing, which batches a burst of writes into one
dataplane cycle.
"""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional

from calicoctl.datastore import paths
from calicoctl.errors import CalicoError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    items: dict
    index: int


@dataclass(frozen=True)
class Update:
    key: str
    value: Optional[str]


@dataclass(frozen=True)
class Lost:
    reason: str


class ResyncNeeded(Exception):
    """Our view of etcd may have a gap: take a fresh snapshot."""


def collect_leaves(node, into):
    """Every non-directory leaf of a raw etcd v2 node dict -> into[key] = value."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("dir"):
            stack.extend(current.get("nodes", ()))
        elif "key" in current:
            into[current["key"]] = current.get("value")
    return into


def parse_watch_result(result):
    """(Update or None, next index) from a python-etcd watch EtcdResult."""
    next_index = result.modifiedIndex + 1
    if result.action in ("delete", "expire", "compareAndDelete"):
        return Update(result.key, None), next_index
    if getattr(result, "dir", False):
        return None, next_index        # a directory was created: no leaf yet
    return Update(result.key, result.value), next_index


class EtcdWatcher:
    """Snapshot + watch loop (see module docstring).

    :param connection: an ``etcdconn.EtcdConnection`` used only by this watcher.
    :param emit: callable receiving Snapshot / Update / Lost objects.
    """

    def __init__(self, connection, emit, prefix=paths.ROOT, watch_timeout=60.0, retry_interval=1.0):
        self.connection = connection
        self.emit = emit
        self.prefix = prefix
        self.watch_timeout = watch_timeout
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.run, name="etcd-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def run(self):
        lost = False
        while not self._stop.is_set():
            try:
                index = self._snapshot()
                lost = False
                self._watch(index)
            except ResyncNeeded as exc:
                LOG.info("Resynchronising with etcd: %s", exc)
            except CalicoError as exc:
                self._report_lost(str(exc), lost)
                lost = True
                self._stop.wait(self.retry_interval)
            except Exception as exc:  # python-etcd raises many kinds
                import etcd
                if isinstance(exc, (etcd.EtcdEventIndexCleared, etcd.EtcdClusterIdChanged)):
                    LOG.info("Resynchronising with etcd: %s", exc)
                    continue
                if isinstance(exc, etcd.EtcdException):
                    self._report_lost("%s: %s" % (type(exc).__name__, exc), lost)
                    lost = True
                    self._stop.wait(self.retry_interval)
                    continue
                LOG.exception("Unexpected error in the etcd watcher; resynchronising")
                self._report_lost("unexpected error: %r" % exc, lost)
                lost = True
                self._stop.wait(self.retry_interval)

    def _report_lost(self, reason, already):
        if not already:
            LOG.warning("Lost etcd (%s); keeping the dataplane as it is and retrying", reason)
            self.emit(Lost(reason))

    def _snapshot(self):
        import etcd
        started = time.monotonic()
        try:
            result = self.connection.read(self.prefix, recursive=True)
        except etcd.EtcdKeyNotFound as exc:
            index = int((exc.payload or {}).get("index") or 0)
            items = {}
        else:
            index = result.etcd_index
            items = {}
            raw = {"key": result.key, "dir": result.dir, "value": result.value,
                   "nodes": result._children}
            collect_leaves(raw, items)
        LOG.info("Snapshot of %s: %d keys at index %d in %.0f ms", self.prefix, len(items), index,
                 (time.monotonic() - started) * 1000)
        self.emit(Snapshot(items, index))
        return index

    def _watch(self, index):
        import etcd
        next_index = index + 1
        while not self._stop.is_set():
            try:
                result = self.connection.read(self.prefix, recursive=True, wait=True,
                                              waitIndex=next_index, timeout=self.watch_timeout)
            except etcd.EtcdWatchTimedOut:
                continue
            except etcd.EtcdEventIndexCleared:
                raise ResyncNeeded("watch index %d was cleared from etcd's history" % next_index) from None
            except etcd.EtcdClusterIdChanged:
                raise ResyncNeeded("the etcd cluster ID changed") from None
            update, next_index = parse_watch_result(result)
            if update is not None:
                self.emit(update)
