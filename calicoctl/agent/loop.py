"""The agent's main loop and its batching (``Agent``).

- an ``EtcdWatcher`` thread (watcher.py) turns etcd into Snapshot / Update /
  Lost events on a queue; components may queue work too
  (``Component.start(wake)``);
- the loop takes whatever is queued (so a burst becomes one cycle), feeds it
  to every component, then flushes each once; about once a second it calls
  ``tick``. Work arriving within the gathering window of the last flush (a
  burst trickling in) is gathered until the window has passed, so a burst
  costs a few cycles, not one per event, while a change after a quiet spell
  is flushed at once. The window is ``BURST_CYCLE``, or longer while cycles
  take long (``gathering_window``: an agent starved of CPU gathers more
  per cycle instead of falling further behind); a snapshot the watcher took
  only to catch up is fed as the updates that differ from the view
  (``Dispatcher.catch_up``);
- after each successful (re)sync, whenever the components' figures change
  and every ``status_interval`` seconds it hands a status report to the
  reporter (status_reporter.py, which says what is in it and where it goes).

Components are fed through a ``dispatch.Dispatcher``: it parses each key
once (keys.py), keeps the shared view of etcd (``indexes.Indexes``: every
leaf, each endpoint parsed once, the tunnel and local-endpoint indexes) and
calls each component only for the kinds of keys it registered for.

One component (``lifecycle.WorkloadLifecycle``) also follows Docker, in a
thread of its own: it keeps this host's containers networked through
restarts and releases what removed ones held.

Robustness: the view holds every etcd leaf seen. If a component raises (a
bug, or the kernel surprising us), the error is logged and every component
starts over from a fresh view built from those leaves, as from a snapshot,
which makes the dataplane re-read the kernel and repair it; the agent does
not exit.
While etcd is unreachable the dataplane is left alone and ``in_sync`` is
false; when etcd answers again a new snapshot resynchronises everything.

Built and started by the composition root (calicoctl/agent/__main__.py).
"""
import gc
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

from calicoctl import identity
from calicoctl.agent.dispatch import Dispatcher
from calicoctl.agent.watcher import Lost, Snapshot, Update

LOG = logging.getLogger(identity.MODULE)

TICK_INTERVAL = 1.0
RESYNC_BACKOFF = 5.0
SLOW_CALL = 0.25          # component calls slower than this are logged
BURST_CYCLE = 0.05        # seconds: at most one cycle this often while work keeps arriving,
GATHER_PER_CYCLE = 4.0    # or, when a cycle took longer, this many times as long as the last one took,
MAX_GATHER = 1.0          # but never longer than this.


@dataclass(frozen=True)
class Wake:
    """Work a component queued for the main loop."""
    function: object


def gathering_window(cycle, items):
    """How long to gather work after a flush, given how long the last cycle
    (feeding and flushing its batch) took and how many items its batch had
    (pure): ``BURST_CYCLE``; during a burst (a batch of several items), or
    ``GATHER_PER_CYCLE`` times the cycle when that is longer (at most
    ``MAX_GATHER``), so that cycles take a bounded share of the agent's time
    however slowly it runs. A lone change that made a slow cycle (BIRD
    reconfigured, say) does not make the next lone change wait longer."""
    if items <= 1:
        return BURST_CYCLE
    return min(MAX_GATHER, max(BURST_CYCLE, GATHER_PER_CYCLE * cycle))


class Agent:
    """The main loop (see the module docstring)."""

    def __init__(self, config, components, watcher_factory, reporter):
        self.config = config
        self.components = components
        self.queue = queue.Queue()
        self.watcher = watcher_factory(self.queue.put)
        self.reporter = reporter
        self.started = time.time()
        self.in_sync = False
        self.last_sync = None
        self.dispatcher = Dispatcher(config.hostname, components, call=self._call)
        self._stopping = threading.Event()
        self._have_snapshot = False
        self._resync_due = None
        self._reported_figures = None
        self._last_flush = -MAX_GATHER
        self._gather = BURST_CYCLE
        """The current gathering window (``gathering_window``)."""

    def wake(self, function):
        self.queue.put(Wake(function))

    def request_stop(self, *_):
        self._stopping.set()

    def run(self):
        for component in self.components:
            component.start(self.wake)
        self.watcher.start()
        self.report()
        next_tick = next_status = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                timeout = max(0.0, min(next_tick, next_status) - now, 0.0)
                batch = self._take_batch(min(timeout, 0.5))
                if batch:
                    self._handle(batch)
                if self._resync_due is not None and time.monotonic() >= self._resync_due:
                    self._resync_from_view("retrying after an error")
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_INTERVAL
                    if self._have_snapshot:
                        self._call_all("tick", now)
                        self._report_if_changed()
                if now >= next_status:
                    next_status = now + self.config.status_interval
                    self.report()
        finally:
            self.watcher.stop()
            for component in self.components:
                try:
                    component.close()
                except Exception:  # closing must reach every component
                    LOG.exception("Error closing %s", type(component).__name__)
            self.reporter.stop()
        LOG.info("Agent stopped")
        return 0

    def _take_batch(self, timeout):
        """Everything queued (waiting up to ``timeout`` for the first item);
        within the gathering window of the last flush, also what arrives until then."""
        try:
            first = self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
        except queue.Empty:
            return []
        return [first] + self._take_until(self._last_flush + self._gather)

    def _take_until(self, deadline):
        """Whatever is queued, and whatever arrives before ``deadline``
        (``time.monotonic()``; nothing is waited for if it is past)."""
        more = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                more.append(self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait())
            except queue.Empty:
                return more

    def _handle(self, batch):
        handling = time.monotonic()
        # A snapshot replaces everything before it in the batch.
        last_snapshot = max((i for i, item in enumerate(batch) if isinstance(item, Snapshot)), default=None)
        synced = False
        fed = False
        for position, item in enumerate(batch):
            if isinstance(item, Update):
                # Before the first snapshot there is nothing to update: it replaces all.
                if (last_snapshot is not None and position < last_snapshot) or not self._have_snapshot:
                    continue
                self._after_calls(self.dispatcher.update(item.key, item.value), "on_update")
                fed = True
            elif isinstance(item, Snapshot):
                if position != last_snapshot:
                    continue
                if item.catch_up and self._have_snapshot:
                    # Nothing went wrong: only what differs, as updates.
                    self._after_calls(self.dispatcher.catch_up(item.items), "on_update")
                    fed = True
                    continue
                self._have_snapshot = True
                self._after_calls(self.dispatcher.snapshot(item.items), "on_snapshot")
                synced = fed = True
            elif isinstance(item, Lost):
                if self.in_sync:
                    self.in_sync = False
                    self.report()
            elif isinstance(item, Wake):
                try:
                    item.function()
                except Exception:  # a component's bug must not stop the agent
                    LOG.exception("Error in queued work")
                fed = True
        if not (fed and self._have_snapshot):
            return
        started = time.monotonic()
        ok = self._call_all("flush")
        self._last_flush = time.monotonic()
        self._gather = gathering_window(self._last_flush - handling, len(batch))
        LOG.debug("Cycle of %d events flushed in %.1f ms (next window %.0f ms)", len(batch),
                  (self._last_flush - started) * 1000, self._gather * 1000)
        if synced:
            if ok:
                self.in_sync = True
                self.last_sync = time.time()
                LOG.info("In sync with etcd (%d keys)", len(self.dispatcher.indexes.items))
                self.report()
                # The indexes built from the snapshot live until the next
                # one: keep them out of the collector's way (long pauses
                # with tens of thousands of endpoints).
                gc.collect()
                gc.freeze()
            else:
                self.in_sync = False
        self._report_if_changed()

    @staticmethod
    def _call(method, *args):
        """Call one component's bound ``method``, logging slow calls; False on any error."""
        name = "%s.%s" % (type(method.__self__).__name__, method.__name__)
        started = time.monotonic()
        try:
            method(*args)
        except Exception:  # see module docstring: log, then resync
            LOG.exception("%s failed; will resynchronise", name)
            return False
        elapsed = time.monotonic() - started
        if elapsed > SLOW_CALL and method.__name__ != "on_snapshot":
            LOG.info("%s took %.0f ms", name, elapsed * 1000)
        elif elapsed > 0.02:
            LOG.debug("%s took %.1f ms", name, elapsed * 1000)
        return True

    def _call_all(self, method, *args):
        """Call ``method`` on every component; False (and a resync later) on any error."""
        ok = True
        for component in self.components:
            ok = self._call(getattr(component, method), *args) and ok
        return self._after_calls(ok, method)

    def _after_calls(self, ok, method):
        if not ok and self._resync_due is None:
            # A bad update: resynchronise at once; anything else (a flush or
            # tick that failed) may fail again, so not more than every few seconds.
            delay = 0.0 if method == "on_update" else RESYNC_BACKOFF
            self._resync_due = time.monotonic() + delay
        return ok

    def _resync_from_view(self, reason):
        LOG.warning("Resynchronising every component from the last known etcd state (%s)", reason)
        self._resync_due = None
        if not self._have_snapshot:
            return
        self._after_calls(self.dispatcher.resync(), "on_snapshot")
        if self._call_all("flush"):
            self.in_sync = True
            self.last_sync = time.time()
            self.report()

    def figures(self):
        """The components' status figures: local_endpoints summed, the rest merged."""
        figures = {"local_endpoints": 0}
        for component in self.components:
            try:
                status = component.status()
                figures["local_endpoints"] += int(status.get("local_endpoints", 0))
                figures.update((key, value) for key, value in status.items() if key != "local_endpoints")
            except Exception:  # noqa: BLE001 - status must never break the loop
                pass
        return figures

    def report(self):
        self._reported_figures = figures = self.figures()
        status = {"pid": os.getpid(), "started": self.started, "time": time.time(),
                  "in_sync": self.in_sync, "last_sync": self.last_sync}
        status.update(figures)
        self.reporter.report(status)

    def _report_if_changed(self):
        if self.in_sync and self.figures() != self._reported_figures:
            self.report()
