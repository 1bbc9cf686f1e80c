"""The agent's path dispatcher: each etcd key parsed once, handed to whoever asked.

Each path is parsed once into a ``keys.Key`` (its ``Kind`` and parts). A
component says which kinds it needs (``Component.kinds``); the
``Dispatcher`` keeps the shared indexes (``indexes.Indexes``) current and
calls each component only for keys of its kinds:

- ``snapshot(items)`` builds a fresh ``Indexes`` from the whole snapshot and
  hands every component that same, consistent view (``on_snapshot``);
- ``update(path, value)`` applies one change: a value equal to what the
  view has is no change at all; a deleted directory becomes a deletion of
  each leaf the view had under it, so components only ever see leaves. The
  view is updated first, then each component of the key's kind gets
  ``on_update(key, value)``.

A resynchronisation after an error is a snapshot of the view's own leaves
(``resync``): new indexes, every component starting over from them. A
snapshot taken only to catch up with etcd (``catch_up``) is applied as the
updates that turn the view into it: components see only what differs.
"""
import logging

from calicoctl.agent.indexes import Indexes
from calicoctl.agent.keys import Kind, parse_key

LOG = logging.getLogger(__name__)


def _call_directly(method, *args):
    method(*args)
    return True


class Dispatcher:
    """Feeds components from one stream of etcd changes (see the module docstring).

    :param hostname: this host (the indexes tell its endpoints apart).
    :param components: the components, each with ``kinds``.
    :param call: ``call(bound_method, *args) -> ok``: how to call a
        component's ``on_snapshot`` (the agent's main loop logs and times
        it and returns False on an error); by default, directly.
    """

    def __init__(self, hostname, components, call=_call_directly):
        self.hostname = hostname
        self.components = list(components)
        self._call = call
        self._by_kind = {kind: [c for c in self.components if kind in c.kinds] for kind in Kind}
        self.indexes = Indexes(hostname)
        """The current view; replaced whole by each snapshot."""

    def snapshot(self, items):
        """A fresh view from ``items`` (path -> value of every leaf), handed to
        every component. Returns False if any component failed."""
        indexes = Indexes(self.hostname, previous=self.indexes)
        indexes.load(items)
        self.indexes = indexes
        ok = True
        for component in self.components:
            ok = self._call(component.on_snapshot, indexes) and ok
        return ok

    def resync(self):
        """Start every component over from the view's own leaves (etcd is not read)."""
        return self.snapshot(dict(self.indexes.items))

    def catch_up(self, items):
        """Bring the view to ``items`` (a later snapshot of every leaf) by
        updates, each leaf that differs once; returns False if any component failed."""
        current = self.indexes.items
        ok = True
        for path in [path for path in current if items.get(path) is None]:
            ok = self.update(path, None) and ok
        for path, value in items.items():
            if value is not None and current.get(path) != value:
                ok = self.update(path, value) and ok
        return ok

    def update(self, path, value):
        """One etcd change; returns False if any component failed.

        This is the agent's per-event path: components are called directly
        (no timing, no name formatting); ``call`` wraps the rarer, longer
        calls (``on_snapshot``)."""
        items = self.indexes.items
        if value is None and path not in items:
            keys = self.indexes.keys_under(path)     # a directory: each leaf below it
        elif items.get(path) == value:
            return True
        else:
            keys = (parse_key(path),)
        ok = True
        for key in keys:
            self.indexes.apply(key, value)
            for component in self._by_kind[key.kind]:
                try:
                    component.on_update(key, value)
                except Exception:  # logged; the agent resynchronises (component.py)
                    LOG.exception("%s failed on %s; will resynchronise", type(component).__name__, key.path)
                    ok = False
        return ok
