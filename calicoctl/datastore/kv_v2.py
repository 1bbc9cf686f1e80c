"""The key-value interface on etcd's v2 API (``DATASTORE_TYPE=etcdv2``).

We speak ``/v2/keys`` through ``etcdhttp``. v2 has real directories: a
recursive read returns a tree of nodes, a directory can be created empty
and deleted only when empty. A revision is a node's ``modifiedIndex``
(CAS with ``prevIndex``) or the response's ``X-Etcd-Index``. etcd keeps
the last 1000 events for watches (docs/etcd-layout.md, "The agent's watch").
"""
from urllib.parse import quote, urlencode

from calicoctl.datastore.etcdhttp import FORM, Quiet, parse_json
from calicoctl.datastore.kv import WATCH_GATHER, Entry, Event, HistoryLost, KeyValueStore, Tree, tree_prefix
from calicoctl.errors import DatastoreError

KEYS_PATH = "/v2/keys"
# etcd's v2 error codes we expect as answers (etcd's Documentation/v2/errorcode.md).
KEY_NOT_FOUND = 100
COMPARE_FAILED = 101
ALREADY_EXISTS = 105
DIR_NOT_EMPTY = 108
INDEX_CLEARED = 401
# Seconds a watch stream may be silent after delivering events before it is
# opened again, in case etcd stopped feeding it (see EtcdV2.watch).
STREAM_SILENCE = 1.0


class EtcdV2(KeyValueStore):
    datastore_type = "etcdv2"
    data_elsewhere = ("etcd at %s holds Calico data only in its v3 API, but DATASTORE_TYPE=etcdv2 speaks v2: "
                      "unset DATASTORE_TYPE (etcdv3 is the default).")
    keys_per_event = 25       # one long poll per event replayed (measured: 0.17 ms vs 0.007 ms a key)

    def _request(self, method, key, query=None, form=None, answers=()):
        """The JSON reply to a request on ``key``: the node (or what
        happened to it), or an error whose ``errorCode`` is one of
        ``answers``; any other error is a DatastoreError."""
        path = KEYS_PATH + quote(key)
        if query:
            path += "?" + urlencode(query)
        reply = self.http.request(method, path, urlencode(form) if form else None, FORM if form else None)
        if reply.status == 404 and reply.text == "404 page not found":
            raise DatastoreError(api_missing(reply.url))
        body = reply.json()
        if "errorCode" in body and body["errorCode"] not in answers:
            raise DatastoreError(refusal(body))
        return body, reply.headers

    # -- reads -----------------------------------------------------------------------

    def get(self, key):
        body, _ = self._request("GET", key, answers=(KEY_NOT_FOUND,))
        node = body.get("node")
        if node is None or node.get("dir"):
            return None
        return _entry(node)

    def tree(self, directory):
        body, headers = self._request("GET", directory, {"recursive": "true"}, answers=(KEY_NOT_FOUND,))
        self._cluster_id = headers.get("X-Etcd-Cluster-Id")
        if "errorCode" in body:
            return Tree((), int(body.get("index") or 0))
        return Tree(tuple(collect_leaves(body["node"])), int(headers.get("X-Etcd-Index", 0)))

    def children(self, directory):
        body, _ = self._request("GET", directory, answers=(KEY_NOT_FOUND,))
        prefix = tree_prefix(directory)
        names = {node["key"][len(prefix):] for node in body.get("node", {}).get("nodes", ())
                 if node.get("key", "").startswith(prefix)}
        return sorted(name for name in names if name)

    def exists(self, directory):
        body, _ = self._request("GET", directory, answers=(KEY_NOT_FOUND,))
        return "errorCode" not in body

    # -- writes ----------------------------------------------------------------------

    def put(self, key, value, ttl=None):
        self._request("PUT", key, form=_value_form(value, ttl))

    def put_many(self, items):
        for key, value in items:
            self.put(key, value)

    def create(self, key, value, ttl=None):
        body, _ = self._request("PUT", key, form=dict(_value_form(value, ttl), prevExist="false"),
                                answers=(ALREADY_EXISTS,))
        return "errorCode" not in body

    def _condition(self, key, revision, prev_value):
        """The request's parameters for "at ``revision``" / "holds ``prev_value``",
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
        body, _ = self._request("PUT", key, form=dict(_value_form(value), **condition),
                                answers=(COMPARE_FAILED, KEY_NOT_FOUND))
        return "errorCode" not in body

    def delete(self, key, prev_value=None):
        condition = {} if prev_value is None else self._condition(key, None, prev_value)
        if condition is None:
            return False
        body, _ = self._request("DELETE", key, condition, answers=(KEY_NOT_FOUND, COMPARE_FAILED))
        return "errorCode" not in body

    def delete_tree(self, directory):
        body, _ = self._request("DELETE", directory, {"recursive": "true", "dir": "true"},
                                answers=(KEY_NOT_FOUND,))
        return "errorCode" not in body

    def delete_empty_dir(self, directory):
        body, _ = self._request("DELETE", directory, {"dir": "true"}, answers=(KEY_NOT_FOUND, DIR_NOT_EMPTY))
        return body.get("errorCode") != DIR_NOT_EMPTY

    def make_dir(self, directory):
        # Already there (perhaps with keys in it), or a key by that name: leave it.
        self._request("PUT", directory, form={"dir": "true", "prevExist": "false"}, answers=(ALREADY_EXISTS,))

    # -- watching --------------------------------------------------------------------

    def watch(self, directory, revision, timeout):
        """Events from ``revision`` on: those already in etcd's history one
        long poll each (etcd answers such a poll with that one event), and
        once caught up, every live event on one stream.

        A stream's ``X-Etcd-Index`` is the store's index when it opened: an
        event above it is live; one at or below it came from history, and
        etcd sends nothing more on that stream. etcd stops feeding a stream
        whose reader fell 100 events behind, without ending it: a stream
        silent for STREAM_SILENCE after events is opened again from the next
        index (its first event then comes from history if any was missed).
        """
        path = KEYS_PATH + quote(directory) + "?wait=true&recursive=true&waitIndex="
        caught_up = False
        try:
            while True:
                if not caught_up:
                    reply = self.http.request("GET", path + str(revision), wait=timeout)
                    current = self._watch_index(reply.status, reply.headers, reply.json)
                    event = parse_event(reply.json(), current)
                    yield event
                    revision = event.revision + 1
                    caught_up = revision > current
                    continue
                with self.http.stream("GET", path + "%d&stream=true" % revision, wait=timeout) as stream:
                    current = self._watch_index(stream.status, stream.headers, lambda: stream.reply().json())
                    fed = False
                    try:
                        for line in stream.lines(WATCH_GATHER):
                            event = parse_event(parse_json(line, stream.url), current)
                            yield event
                            revision = event.revision + 1
                            if event.revision <= current:
                                break              # from history: replay the rest one poll each
                            if not fed:
                                fed = True
                                stream.wait(STREAM_SILENCE)
                    except Quiet:
                        if not fed:
                            return                 # nothing for ``timeout`` seconds
                    caught_up = revision > current
                # silent after events, or ended (the member went away): go on from ``revision``
        except Quiet:
            return

    def _watch_index(self, status, headers, body):
        """The store's index a watch response was opened at; HistoryLost if
        the watch cannot resume there (``body()`` reads the refusal)."""
        if status != 200:
            if status == 404 and headers.get("Content-Type", "").startswith("text/plain"):
                raise DatastoreError(api_missing(self.http.current_url))
            error = body()
            if error.get("errorCode") == INDEX_CLEARED:
                raise HistoryLost("the watch index was cleared from etcd's history: %s"
                                  % error.get("cause", ""))
            raise DatastoreError(refusal(error))
        cluster_id = headers.get("X-Etcd-Cluster-Id")
        if self._cluster_id and cluster_id not in (None, self._cluster_id):
            raise HistoryLost("the etcd cluster ID changed")
        return int(headers.get("X-Etcd-Index", 0))


def parse_event(message, current):
    """The Event of one v2 watch response (a dict): ``current`` is the store's
    index the response was opened at."""
    node = message["node"]
    revision = node["modifiedIndex"]
    if current < revision:
        current = revision
    if message["action"] in ("delete", "expire", "compareAndDelete"):
        return Event(node["key"], None, revision, current)
    if node.get("dir"):
        return Event(None, None, revision, current)   # a directory was created: no leaf yet
    return Event(node["key"], node.get("value", ""), revision, current)


def collect_leaves(node):
    """Entries of every non-directory leaf of a raw etcd v2 node dict."""
    leaves = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("dir"):
            stack.extend(current.get("nodes", ()))
        elif "key" in current:
            leaves.append(_entry(current))
    return leaves


def _entry(node):
    return Entry(node["key"], node.get("value", ""), node.get("modifiedIndex", 0), expires=node.get("ttl") is not None)


def _value_form(value, ttl=None):
    return {"value": value, "ttl": int(ttl)} if ttl else {"value": value}


def refusal(error):
    """One line for an etcd v2 error body."""
    cause = error.get("cause")
    return "etcd refused the request: %s%s" % (error.get("message", error), " (%s)" % cause if cause else "")


def api_missing(url):
    return ("etcd at %s does not serve the v2 API (etcd 3.4/3.5 need --enable-v2; 3.6 has none): "
            "set DATASTORE_TYPE=etcdv3, after 'calicoctl datastore migrate' if the data is in v2." % url)
