"""The etcd side of the datastore client: reads, CAS writes.

``EtcdStore`` holds the key-value store (``kv.KeyValueStore``: etcd v2 or
v3, from ``etcdconn.connect``) and the generic operations every part of
``DatastoreClient`` builds on. The key-value layer reports an unreachable
etcd as DatastoreUnavailable (exit 3) and anything else it cannot use as
DatastoreError.

Read-modify-write of a value goes through ``update_value``: read the value
and its revision, compute the new value, write only if the key is still at
that revision; if someone else wrote in between, read again and retry.
That is what lets twenty concurrent ``endpoint <ID> profile append`` calls
all land.
"""
from dataclasses import dataclass

from calicoctl.errors import DatastoreError, NotFound, ValidationError

CAS_ATTEMPTS = 50


def ip_versions(version):
    """The IP versions a ``version`` filter (None = both) stands for."""
    return (4, 6) if version is None else (version,)


@dataclass(frozen=True)
class Update:
    """What a compare-and-swap update did: ``old`` is the value the write was
    computed from (None: the key was absent), ``new`` the value stored now."""
    old: object
    new: object

    @property
    def changed(self):
        return self.new != self.old


class EtcdStore:
    def __init__(self, kv):
        self.kv = kv

    # -- generic helpers ------------------------------------------------------

    def _get(self, key):
        """The value at key, or None when it is absent."""
        entry = self.kv.get(key)
        return None if entry is None else entry.value

    def _exists(self, directory):
        return self.kv.exists(directory)

    def _delete(self, key, recursive=False):
        """Delete key (a directory when recursive); False if it was not there."""
        return self.kv.delete_tree(key) if recursive else self.kv.delete(key)

    def _leaves(self, prefix):
        """(key, value) of every leaf under prefix; empty if prefix is absent."""
        return [(entry.key, entry.value) for entry in self.kv.tree(prefix).entries]

    def _valid_models(self, directories, from_json, key_filter=None):
        """Models parsed from the leaves of directories; malformed ones are skipped
        (data another writer got wrong must not break listing the rest)."""
        found = []
        for directory in directories:
            for key, value in self._leaves(directory):
                if key_filter is not None and key_filter(key) is None:
                    continue
                try:
                    found.append(from_json(value))
                except ValidationError:
                    continue
        return found

    def update_value(self, key, compute, create=False):
        """Compare-and-swap read-modify-write.

        ``compute(old_value)`` returns the new value (old_value is None when
        the key is absent and ``create`` is set); returning the old value
        unchanged skips the write. Raises NotFound if the key is absent and
        ``create`` is false. Returns an Update of the raw values: the one
        ``compute`` was last given and the one written (or kept).
        """
        for _ in range(CAS_ATTEMPTS):
            entry = self.kv.get(key)
            if entry is None and not create:
                raise NotFound("%s does not exist." % key)
            old_value = None if entry is None else entry.value
            new_value = compute(old_value)
            if new_value == old_value:
                return Update(old_value, old_value)
            if entry is None:
                written = self.kv.create(key, new_value)
            else:
                written = self.kv.swap(key, new_value, revision=entry.revision)
            if written:
                return Update(old_value, new_value)
            # someone else wrote first: read again
        raise DatastoreError("Gave up updating %s after %d conflicting writes." % (key, CAS_ATTEMPTS))
