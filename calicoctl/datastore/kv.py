"""The key-value interface every datastore module is written against.

Two implementations speak it: ``kv_v3.EtcdV3`` (etcd's v3 API, the
default) and ``kv_v2.EtcdV2`` (etcd's v2 API), both over our own HTTP
client (``etcdhttp``); ``etcdconn.connect`` picks one from
``DATASTORE_TYPE`` and ``etcdconn.check_api`` checks the data is in it.
Above this layer nothing knows which runs
(docs/etcd-layout.md, "v2 and v3").

Keys are the v2 layout's paths (``/calico/v1/...``) on both. What v2 calls
a directory is, on v3, every key starting with ``<directory>/``. A
``revision`` is v2's ``modifiedIndex`` / ``X-Etcd-Index`` or v3's
``mod_revision`` / header revision: it only ever grows, and a write can be
made conditional on it.

Failures: every method raises DatastoreUnavailable when no endpoint
answers and DatastoreError when etcd answers in a way we cannot use; an
absent key is None / False, a failed comparison False.
"""
from dataclasses import dataclass
from typing import Optional

from calicoctl.datastore.etcdhttp import DEFAULT_TIMEOUT, EtcdHttp


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    revision: int
    expires: bool = False
    """The key has a TTL (v2) or a lease (v3): it goes away by itself."""


@dataclass(frozen=True)
class Tree:
    """Every leaf under a directory, read at one ``revision`` of the store."""
    entries: tuple
    revision: int


@dataclass(frozen=True)
class Event:
    """One change seen by a watch.

    ``key`` None: nothing to apply (v2 created a directory), only the
    revision moves on. ``value`` None: deleted or expired. ``current`` is
    the store's revision when etcd sent the event, so ``current - revision``
    is how far behind the watcher is.
    """
    key: Optional[str]
    value: Optional[str]
    revision: int
    current: int


class HistoryLost(Exception):
    """A watch cannot resume where it was (the revision was compacted or
    cleared, or etcd's cluster was replaced): take a fresh tree."""


class KeyValueStore:
    """What the datastore needs from etcd. See the module docstring."""

    datastore_type = None
    data_elsewhere = None
    """The ``etcdconn.check_api`` message (with etcd's URL) when the data is in the other API."""
    keys_per_event = 1
    """How many keys a ``tree`` reads for what one ``watch`` event costs
    (the watcher weighs a snapshot against replaying a backlog with it)."""

    def __init__(self, settings, timeout=DEFAULT_TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self.http = EtcdHttp(settings, timeout)
        self._cluster_id = None
        """etcd's cluster ID when ``tree`` last read: a watch that finds
        another has lost its history (etcd was replaced or restored)."""

    def get(self, key):
        """The Entry at ``key``, or None."""
        raise NotImplementedError

    def tree(self, directory):
        """Tree of every leaf under ``directory`` (empty if there is none)."""
        raise NotImplementedError

    def children(self, directory):
        """Sorted names of the directory's immediate children (leaves or not)."""
        raise NotImplementedError

    def exists(self, directory):
        """True if ``directory`` has anything under it (v2: or exists empty)."""
        raise NotImplementedError

    def put(self, key, value, ttl=None):
        """Write ``value``; with ``ttl`` (seconds) the key expires unless written again."""
        raise NotImplementedError

    def put_many(self, items):
        """Write every (key, value) of ``items``, in as few requests as the API allows."""
        raise NotImplementedError

    def create(self, key, value, ttl=None):
        """Write only if ``key`` is absent; False if it was there."""
        raise NotImplementedError

    def swap(self, key, value, revision=None, prev_value=None):
        """Write only if the key is at ``revision`` (or holds ``prev_value``);
        False if not, or if it is absent. The write drops any TTL."""
        raise NotImplementedError

    def delete(self, key, prev_value=None):
        """Delete one key (only if it holds ``prev_value``, when given); False if not deleted."""
        raise NotImplementedError

    def delete_tree(self, directory):
        """Delete ``directory`` and everything under it; False if there was nothing."""
        raise NotImplementedError

    def delete_empty_dir(self, directory):
        """Delete ``directory`` if nothing is under it (v3 has nothing to delete);
        False if something is, checked atomically on v2."""
        raise NotImplementedError

    def make_dir(self, directory):
        """Create an empty directory if absent (v2 lists it; v3 has no directories)."""
        raise NotImplementedError

    def watch(self, directory, revision, timeout):
        """Iterate Events under ``directory`` from ``revision`` on, in order.

        Ends (without error) when nothing happened for ``timeout`` seconds,
        so the caller can look around and watch again from where it was.
        Raises HistoryLost when ``revision`` can no longer be replayed.
        """
        raise NotImplementedError


WATCH_GATHER = 0.01
"""Seconds a watch stream waits after taking what arrived before reading
again: a burst arriving event by event is taken several events a wake-up
(a wake-up costs the watching thread 100-200 us of system calls on our test
machine, decoding an event 7-10 us); an event after a quiet spell is
delivered at once (docs/scale.md, "Intake: the watch")."""


def tree_prefix(directory):
    """``directory`` with exactly one trailing slash: the prefix of its leaves."""
    return directory.rstrip("/") + "/"
