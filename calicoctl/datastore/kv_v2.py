"""The key-value interface on etcd's v2 API, through python-etcd (``DATASTORE_TYPE=etcdv2``).

v2 has real directories: a recursive read returns a tree of nodes, a
directory can be created empty and deleted only when empty. A revision
is a node's ``modifiedIndex`` (CAS with ``prevIndex``) or the response's
``X-Etcd-Index``. A watch is one long-poll request per event
(``?wait=true&waitIndex=N``); etcd keeps the last 1000 events.
"""
import logging

from calicoctl.datastore import etcdconn
from calicoctl.datastore.kv import Entry, Event, HistoryLost, KeyValueStore, Tree, tree_prefix
from calicoctl.errors import DatastoreError


class EtcdV2(KeyValueStore):
    datastore_type = "etcdv2"
    keys_per_event = 30       # one long poll per event (measured: 0.4 ms vs 0.012 ms a key)

    def __init__(self, settings, timeout=etcdconn.DEFAULT_TIMEOUT):
        import etcd
        self.settings = settings
        self.timeout = timeout
        self.library_errors = (etcd.EtcdException,)
        self._etcd = etcd
        self._failover = etcdconn.Failover(settings, self._build_client, (etcd.EtcdConnectionFailed,),
                                           passthrough=(etcd.EtcdWatchTimedOut,))
        _quiet_library_logging()

    def _build_client(self, endpoint):
        return _build_client(self.settings, endpoint, self.timeout)

    def _call(self, method, *args, **kwargs):
        try:
            return self._failover.call(lambda client: getattr(client, method)(*args, **kwargs))
        except self._etcd.EtcdKeyNotFound:
            raise
        except self._etcd.EtcdException as exc:
            if "404 page not found" in str(exc):
                raise DatastoreError(api_missing(self._failover.current_url)) from None
            raise

    # -- reads -----------------------------------------------------------------------

    def get(self, key):
        try:
            node = self._call("read", key)
        except self._etcd.EtcdKeyNotFound:
            return None
        if node.dir:
            return None
        return Entry(node.key, node.value, node.modifiedIndex, expires=node.ttl is not None)

    def tree(self, directory):
        try:
            result = self._call("read", directory, recursive=True)
        except self._etcd.EtcdKeyNotFound as exc:
            return Tree((), int((exc.payload or {}).get("index") or 0))
        raw = {"key": result.key, "dir": result.dir, "value": result.value,
               "modifiedIndex": result.modifiedIndex, "ttl": result.ttl, "nodes": result._children}
        return Tree(tuple(collect_leaves(raw)), result.etcd_index)

    def children(self, directory):
        try:
            result = self._call("read", directory)
        except self._etcd.EtcdKeyNotFound:
            return []
        prefix = tree_prefix(directory)
        names = {node.key[len(prefix):] for node in result.children
                 if node.key and node.key.startswith(prefix)}
        return sorted(name for name in names if name)

    def exists(self, directory):
        try:
            self._call("read", directory)
            return True
        except self._etcd.EtcdKeyNotFound:
            return False

    # -- writes ----------------------------------------------------------------------

    def put(self, key, value, ttl=None):
        self._call("write", key, value, ttl=ttl)

    def put_many(self, items):
        for key, value in items:
            self._call("write", key, value)

    def create(self, key, value, ttl=None):
        try:
            self._call("write", key, value, prevExist=False, ttl=ttl)
            return True
        except self._etcd.EtcdAlreadyExist:
            return False

    def _condition(self, key, revision, prev_value):
        """python-etcd's arguments for "at ``revision``" / "holds ``prev_value``",
        or None when the key is absent or holds something else. v2 refuses an
        empty prevValue: an empty value is compared through its index."""
        if revision is not None:
            return {"prevIndex": revision}
        if prev_value != "":
            return {"prevValue": prev_value}
        entry = self.get(key)
        return {"prevIndex": entry.revision} if entry is not None and entry.value == "" else None

    def swap(self, key, value, revision=None, prev_value=None):
        condition = self._condition(key, revision, prev_value)
        if condition is None:
            return False
        try:
            self._call("write", key, value, **condition)
            return True
        except (self._etcd.EtcdCompareFailed, self._etcd.EtcdKeyNotFound):
            return False

    def delete(self, key, prev_value=None):
        condition = {} if prev_value is None else self._condition(key, None, prev_value)
        if condition is None:
            return False
        try:
            self._call("delete", key, **condition)
            return True
        except (self._etcd.EtcdKeyNotFound, self._etcd.EtcdCompareFailed):
            return False

    def delete_tree(self, directory):
        try:
            self._call("delete", directory, recursive=True, dir=True)
            return True
        except self._etcd.EtcdKeyNotFound:
            return False

    def delete_empty_dir(self, directory):
        try:
            self._call("delete", directory, dir=True)
        except self._etcd.EtcdKeyNotFound:
            pass
        except self._etcd.EtcdDirNotEmpty:
            return False
        return True

    def make_dir(self, directory):
        try:
            self._call("write", directory, None, dir=True)
        except (self._etcd.EtcdNotFile, self._etcd.EtcdAlreadyExist):
            pass   # already there, perhaps with keys in it

    # -- watching --------------------------------------------------------------------

    def watch(self, directory, revision, timeout):
        etcd = self._etcd
        while True:
            try:
                result = self._call("read", directory, recursive=True, wait=True, waitIndex=revision,
                                    timeout=timeout)
            except etcd.EtcdWatchTimedOut:
                return
            except etcd.EtcdEventIndexCleared:
                raise HistoryLost("watch index %d was cleared from etcd's history" % revision) from None
            except etcd.EtcdClusterIdChanged:
                raise HistoryLost("the etcd cluster ID changed") from None
            event = parse_watch_result(result)
            revision = event.revision + 1
            yield event

    def check_api(self):
        self.exists("/")


def parse_watch_result(result):
    """The Event of a python-etcd watch EtcdResult."""
    current = max(result.etcd_index or 0, result.modifiedIndex)
    if result.action in ("delete", "expire", "compareAndDelete"):
        return Event(result.key, None, result.modifiedIndex, current)
    if getattr(result, "dir", False):
        return Event(None, None, result.modifiedIndex, current)   # a directory was created: no leaf yet
    return Event(result.key, result.value, result.modifiedIndex, current)


def collect_leaves(node):
    """Entries of every non-directory leaf of a raw etcd v2 node dict."""
    leaves = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("dir"):
            stack.extend(current.get("nodes", ()))
        elif "key" in current:
            leaves.append(Entry(current["key"], current.get("value"), current.get("modifiedIndex", 0),
                                expires=current.get("ttl") is not None))
    return leaves


def api_missing(url):
    return ("etcd at %s does not serve the v2 API (etcd 3.4/3.5 need --enable-v2; 3.6 has none): "
            "set DATASTORE_TYPE=etcdv3, after 'calicoctl datastore migrate' if the data is in v2." % url)


def _build_client(settings, endpoint, timeout):
    import etcd
    import urllib3
    kwargs = dict(host=endpoint.host, port=endpoint.port, protocol=endpoint.scheme,
                  read_timeout=timeout, allow_reconnect=False)
    if settings.cert:
        kwargs["cert"] = (settings.cert, settings.key)
    if settings.ca_cert:
        kwargs["ca_cert"] = settings.ca_cert
    client = etcd.Client(**kwargs)
    # NOTE: urllib3 retries a failed connect three times by default, which
    # multiplies the wait for an unreachable member; we fail over instead.
    # other=0 as well: with total=None, an unlimited "other" budget retries a
    # TLS handshake failure (e.g. a rejected client certificate) forever.
    client.http.connection_pool_kw["retries"] = urllib3.Retry(
        total=None, connect=0, read=0, redirect=5, status=0, other=0)
    return client


def _quiet_library_logging():
    # python-etcd logs every failed request at ERROR; without a handler
    # Python would print those to stderr next to our own one-line message.
    logger = logging.getLogger("etcd")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
