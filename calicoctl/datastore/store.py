"""The etcd side of the datastore client: error translation, reads, CAS writes.

``EtcdStore`` holds the etcd connection (``etcdconn.EtcdConnection`` or a
python-etcd ``Client``) and the generic operations every part of
``DatastoreClient`` builds on. It is the boundary where python-etcd's
exceptions become ours: connection failures become DatastoreUnavailable
(exit 3), anything else unexpected from etcd becomes DatastoreError.

Read-modify-write of a value goes through ``update_value``: read the value
and its modifiedIndex, compute the new value, write with ``prevIndex``; if
someone else wrote in between, read again and retry. That is what lets
twenty concurrent ``endpoint <ID> profile append`` calls all land.
"""
import functools
from dataclasses import dataclass

from calicoctl.errors import CalicoError, DatastoreError, DatastoreUnavailable, NotFound, ValidationError

CAS_ATTEMPTS = 50


def translate_errors(method):
    """Turn python-etcd exceptions escaping ``method`` into CalicoErrors."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        import etcd
        try:
            return method(self, *args, **kwargs)
        except CalicoError:
            raise
        except etcd.EtcdConnectionFailed as exc:
            raise DatastoreUnavailable("Cannot reach etcd: %s" % exc) from None
        except etcd.EtcdException as exc:
            raise DatastoreError("etcd error in %s: %s" % (method.__name__, exc)) from None
    return wrapper


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
    def __init__(self, etcd_client):
        self.etcd = etcd_client

    # -- generic helpers ------------------------------------------------------

    def _get(self, key):
        """The value at key, or None when it is absent."""
        import etcd
        try:
            return self.etcd.read(key).value
        except etcd.EtcdKeyNotFound:
            return None

    def _exists(self, key):
        import etcd
        try:
            self.etcd.read(key)
            return True
        except etcd.EtcdKeyNotFound:
            return False

    def _delete(self, key, recursive=False):
        """Delete key (a dir when recursive); False if it was not there."""
        import etcd
        try:
            if recursive:
                self.etcd.delete(key, recursive=True, dir=True)
            else:
                self.etcd.delete(key)
            return True
        except etcd.EtcdKeyNotFound:
            return False

    def _leaves(self, prefix):
        """(key, value) of every leaf under prefix; empty if prefix is absent."""
        import etcd
        try:
            result = self.etcd.read(prefix, recursive=True)
        except etcd.EtcdKeyNotFound:
            return []
        return [(node.key, node.value) for node in result.leaves if not node.dir and node.key]

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

    @translate_errors
    def update_value(self, key, compute, create=False):
        """Compare-and-swap read-modify-write.

        ``compute(old_value)`` returns the new value (old_value is None when
        the key is absent and ``create`` is set); returning the old value
        unchanged skips the write. Raises NotFound if the key is absent and
        ``create`` is false. Returns an Update of the raw values: the one
        ``compute`` was last given and the one written (or kept).
        """
        import etcd
        for _ in range(CAS_ATTEMPTS):
            try:
                node = self.etcd.read(key)
                old_value, index = node.value, node.modifiedIndex
            except etcd.EtcdKeyNotFound:
                if not create:
                    raise NotFound("%s does not exist." % key) from None
                old_value, index = None, None
            new_value = compute(old_value)
            if new_value == old_value:
                return Update(old_value, old_value)
            try:
                if index is None:
                    self.etcd.write(key, new_value, prevExist=False)
                else:
                    self.etcd.write(key, new_value, prevIndex=index)
                return Update(old_value, new_value)
            except (etcd.EtcdCompareFailed, etcd.EtcdAlreadyExist, etcd.EtcdKeyNotFound):
                continue   # someone else wrote first: read again
        raise DatastoreError("Gave up updating %s after %d conflicting writes." % (key, CAS_ATTEMPTS))
