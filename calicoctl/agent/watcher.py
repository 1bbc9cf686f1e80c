"""etcd -> a stream of snapshots and updates, on a thread of its own.

It speaks the key-value interface (``calicoctl.datastore.kv``), so it runs
the same on etcd v2 and v3. ``EtcdWatcher.run`` loops forever (until
stopped):

1. snapshot: one read of every leaf under ``/calico`` becomes
   ``Snapshot(items, revision)`` (v2: the response's ``X-Etcd-Index``; v3:
   its header revision);
2. watch from ``revision + 1``: each event becomes ``Update(key, value)``
   (value None for a delete or expiry; a deleted v2 directory arrives as
   its own key). v3 keeps one stream open; v2 replays what is already in
   etcd's history one request (a long poll) per event, then streams
   (calicoctl/datastore/kv_v2.py). A watch that was quiet for
   ``watch_timeout`` seconds is issued again from where it was.
3. Anything that means our view may have a gap starts again at 1: the
   revision is gone from etcd's history (v2 keeps 1000 events; v3 compacts),
   the cluster ID changed (etcd was replaced or restored), or any
   connection error (etcd restarted or unreachable; ``Lost`` is reported
   first, and the snapshot is retried every ``retry_interval`` seconds until
   etcd answers). Meanwhile the dataplane is left exactly as it is.
4. Falling behind: when an event is more than ``catch_up_limit`` revisions
   older than the store (a burst of writes, or a slow agent), the rest is
   not replayed one event (on v2: one request) at a time: a fresh snapshot
   catches up in one read. By default the limit is what a snapshot costs,
   counted in events: the store's keys at the last snapshot divided by the
   datastore's ``keys_per_event`` (v2 reads about 25 keys in a tree for the
   cost of replaying one event with a long poll; v3's stream replays an
   event for about the cost of a key), and never under ``CATCH_UP_MIN``. Such a snapshot, and one after the history was
   lost, is marked ``catch_up``: nothing went wrong, so the agent applies
   only its differences from what it has (as updates), rather than
   starting every component over.

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
    """The store's revision the items were read at (v2 index or v3 revision)."""
    catch_up: bool = False
    """Taken to catch up with a watch that fell behind or lost its history
    (not at start, nor after an error)."""


@dataclass(frozen=True)
class Update:
    key: str
    value: Optional[str]


@dataclass(frozen=True)
class Lost:
    reason: str


# How many revisions behind etcd the watcher may always be before it stops
# replaying events and takes a snapshot instead (step 4).
CATCH_UP_MIN = 20


class ResyncNeeded(Exception):
    """Our view of etcd may have a gap: take a fresh snapshot."""


def fallen_behind(event, limit):
    """Pure: True if ``event`` is more than ``limit`` revisions older than the store."""
    return event.current - event.revision > limit


class EtcdWatcher:
    """Snapshot + watch loop (see module docstring).

    :param kv: a ``kv.KeyValueStore`` used only by this watcher.
    :param emit: callable receiving Snapshot / Update / Lost objects.
    """

    def __init__(self, kv, emit, prefix=paths.ROOT, watch_timeout=60.0, retry_interval=1.0,
                 catch_up_limit=None):
        self.kv = kv
        self.emit = emit
        self.catch_up_limit = catch_up_limit
        """None: from the size of the store (see the module docstring)."""
        self._limit = catch_up_limit or CATCH_UP_MIN
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
        from calicoctl.datastore.kv import HistoryLost
        lost = catch_up = False
        while not self._stop.is_set():
            try:
                revision = self._snapshot(catch_up)
                lost = False
                self._watch(revision)
            except (ResyncNeeded, HistoryLost) as exc:
                LOG.info("Resynchronising with etcd: %s", exc)
                catch_up = True
                continue
            except CalicoError as exc:
                lost = self._lost(str(exc), lost)
            except Exception as exc:  # a bug must not end the watcher
                LOG.exception("Unexpected error in the etcd watcher; resynchronising")
                lost = self._lost("unexpected error: %r" % exc, lost)
            catch_up = False        # after an error: start every component over

    def _lost(self, reason, already):
        self._report_lost(reason, already)
        self._stop.wait(self.retry_interval)
        return True

    def _report_lost(self, reason, already):
        if not already:
            LOG.warning("Lost etcd (%s); keeping the dataplane as it is and retrying", reason)
            self.emit(Lost(reason))

    def _snapshot(self, catch_up=False):
        started = time.monotonic()
        tree = self.kv.tree(self.prefix)
        items = {entry.key: entry.value for entry in tree.entries}
        LOG.info("Snapshot of %s: %d keys at revision %d in %.0f ms", self.prefix, len(items), tree.revision,
                 (time.monotonic() - started) * 1000)
        if self.catch_up_limit is None:
            self._limit = max(CATCH_UP_MIN, len(items) // self.kv.keys_per_event)
        self.emit(Snapshot(items, tree.revision, catch_up))
        return tree.revision

    def _watch(self, revision):
        next_revision = revision + 1
        while not self._stop.is_set():
            for event in self.kv.watch(self.prefix, next_revision, self.watch_timeout):
                if fallen_behind(event, self._limit):
                    raise ResyncNeeded("%d revisions behind etcd: catching up with a snapshot"
                                       % (event.current - event.revision))
                next_revision = event.revision + 1
                if event.key is not None:
                    self.emit(Update(event.key, event.value))
                if self._stop.is_set():
                    return
