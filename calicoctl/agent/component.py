"""The contract between the agent's main loop and the things it drives.

The main loop (``calicoctl.agent.__main__``) reads etcd and feeds every
component the same stream of keys: first a snapshot of the whole ``/calico``
tree, then one update per watch event. Once per cycle (after it has fed a
batch of updates) it calls ``flush`` so each component applies what changed
in one go; about once a second it calls ``tick``.

All methods run on the main loop's thread, one at a time, so a component
needs no locks for its own state. A component that has work arriving from
elsewhere (a netlink socket, a child process) gets a ``wake`` callable in
``start``: calling ``wake(fn)`` from any thread queues ``fn()`` to run on the
main loop, which then flushes every component.

An exception escaping a component method is logged by the main loop, which
then forces a full resync (a fresh snapshot) rather than carry on with a
component in an unknown state.
"""


class Component:
    """Base class: every method is optional to override."""

    def start(self, wake):
        """Called once before the first snapshot.

        :param wake: ``wake(fn)`` queues ``fn()`` to run on the main loop
            thread, followed by a ``flush`` of every component. Safe to call
            from any thread.
        """

    def on_snapshot(self, items):
        """Replace all state with ``items`` (dict key -> value of every leaf)."""

    def on_update(self, key, value):
        """One etcd change. ``value`` None means deleted; a deleted directory
        arrives as its own key with value None: drop everything under it."""

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
