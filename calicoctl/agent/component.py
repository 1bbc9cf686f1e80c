"""The contract between the agent's main loop and the things it drives.

The main loop (``calicoctl.agent.loop``) reads etcd and hands each change
to the dispatcher (``dispatch.Dispatcher``), which keeps the shared view of
etcd (``indexes.Indexes``) and calls a component only for the kinds of keys
it asked for (``kinds``, a set of ``keys.Kind``): first ``on_snapshot``
with a fresh view built from a snapshot of the whole ``/calico`` tree, then
``on_update`` per changed leaf. Once per cycle (after it has fed a batch of
updates) the loop calls ``flush`` so each component applies what changed in
one go; about once a second it calls ``tick``.

All methods run on the main loop's thread, one at a time, so a component
needs no locks for its own state. A component that has work arriving from
elsewhere (a netlink socket, a child process) gets a ``wake`` callable in
``start``: calling ``wake(fn)`` from any thread queues ``fn()`` to run on the
main loop, which then flushes every component.

An exception escaping a component method is logged by the main loop, which
then resynchronises every component from a fresh view built from the leaves
the dispatcher has (``Dispatcher.resync``: ``on_snapshot`` with that view,
then ``flush``; etcd is not read again) rather than carry on with a
component in an unknown state: at once after a failed ``on_update``,
``RESYNC_BACKOFF`` seconds later after a failed ``flush`` or ``tick``, which
might fail again straight away.
"""


import logging
import time

from calicoctl.errors import CalicoError

LOG = logging.getLogger(__name__)


class Component:
    """Base class: every method is optional to override."""

    kinds = frozenset()
    """The ``keys.Kind`` of every key whose changes ``on_update`` gets."""

    def start(self, wake):
        """Called once before the first snapshot.

        :param wake: ``wake(fn)`` queues ``fn()`` to run on the main loop
            thread, followed by a ``flush`` of every component. Safe to call
            from any thread.
        """

    def on_snapshot(self, view):
        """Start over from ``view`` (an ``indexes.Indexes`` built from a
        snapshot); it stays current (the dispatcher updates it before each
        ``on_update``) until the next ``on_snapshot`` replaces it."""

    def on_update(self, key, value):
        """One etcd leaf changed: ``key`` a ``keys.Key`` of one of
        ``kinds``, ``value`` its new value or None (deleted; a deleted
        directory arrives as one deletion per leaf)."""

    def flush(self):
        """Apply pending changes (kernel, daemons) once per cycle."""

    def tick(self, now):
        """Called about once a second (supervision, periodic checks).

        :param now: ``time.monotonic()`` at the call.
        """

    def close(self):
        """The agent is exiting: release resources (the dataplane stays)."""

    def status(self):
        """Optional figures merged into the agent's status report (a dict)."""
        return {}


class ReconcilingComponent(Component):
    """A component that re-applies its whole desired state when anything changed.

    Subclasses call ``mark_dirty()`` from ``on_snapshot``/``on_update`` and
    implement ``apply()``; this class runs it once per cycle, retries soon
    after a failure, and re-applies every ``resync_interval`` seconds anyway
    (someone may have flushed a table or deleted a device behind our back).
    ``forget_kernel_state()`` is the hook to drop any cache of what is
    programmed before such a periodic or retried apply.
    """

    label = "component"
    resync_interval = 60.0
    retry_interval = 2.0

    def __init__(self):
        self._dirty = True
        self._next_resync = time.monotonic() + self.resync_interval

    def mark_dirty(self):
        self._dirty = True

    def apply(self):
        raise NotImplementedError

    def forget_kernel_state(self):
        """Drop cached knowledge of the kernel, so the next apply checks it."""

    def flush(self):
        if not self._dirty:
            return
        self._dirty = False
        try:
            self.apply()
        except CalicoError as exc:
            LOG.error("%s: could not apply the dataplane, retrying: %s", self.label, exc)
            self._dirty = True
            self.forget_kernel_state()
            self._next_resync = time.monotonic() + self.retry_interval

    def tick(self, now):
        if time.monotonic() >= self._next_resync:
            self._next_resync = time.monotonic() + self.resync_interval
            self.forget_kernel_state()
            self._dirty = True
            self.flush()
