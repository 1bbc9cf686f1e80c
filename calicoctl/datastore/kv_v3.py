"""The key-value interface on etcd's v3 API (``DATASTORE_TYPE=etcdv3``, the default).

We speak the v3 API's HTTP/JSON gateway (``/v3/...``, part of etcd since
3.4: no grpc) through ``etcdhttp``: range, txn and lease requests, and one
watch stream, with the header revision of a read (where a watch resumes),
comparisons on ``mod_revision``, and a watch that reports compaction and
its own end instead of going quiet (docs/etcd-layout.md, "The v3 client").
Keys and values travel base64-encoded; integers as JSON strings.

v3 has no directories: a directory is the range of keys starting with
``<directory>/``. Keys that v2 gave a TTL are attached to a lease granted
for that many seconds. One watch request streams every event from a
revision on, in as few responses as etcd likes.
"""
import base64
import binascii
import json

from calicoctl.datastore.etcdhttp import JSON, Quiet, parse_json
from calicoctl.datastore.kv import WATCH_GATHER, Entry, Event, HistoryLost, KeyValueStore, Tree, tree_prefix
from calicoctl.errors import DatastoreError

API_PATH = "/v3"
TXN_OPS = 100          # etcd refuses a txn of more than 128 operations by default


def encode(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode(text):
    return binascii.a2b_base64(text).decode("utf-8")


def range_end(prefix):
    """The first key after every key starting with ``prefix`` (an ASCII prefix)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _prefix_range(directory):
    prefix = tree_prefix(directory)
    return {"key": encode(prefix), "range_end": encode(range_end(prefix))}


def _entry(kv):
    return Entry(decode(kv["key"]), decode(kv.get("value", "")), int(kv.get("mod_revision", 0)),
                 expires=int(kv.get("lease", 0)) != 0)


class EtcdV3(KeyValueStore):
    datastore_type = "etcdv3"
    data_elsewhere = ("etcd at %s holds Calico data only in its v2 API, but DATASTORE_TYPE=etcdv3 (the default) "
                      "speaks v3: set DATASTORE_TYPE=etcdv2, or copy the data into v3 with "
                      "'calicoctl datastore migrate'.")

    def _post(self, path, payload):
        reply = self.http.request("POST", API_PATH + path, json.dumps(payload).encode(), JSON)
        if reply.status != 200:
            if reply.status == 404 and reply.text == "404 page not found":
                raise DatastoreError(api_missing(reply.url))
            raise DatastoreError("etcd refused %s: %s" % (path, _message(reply.text)))
        return reply.json()

    def _txn(self, compare, success):
        return self._post("/kv/txn", {"compare": compare, "success": success}).get("succeeded", False)

    def _lease(self, ttl):
        return int(self._post("/lease/grant", {"TTL": int(ttl)})["ID"])

    def _put_request(self, key, value, ttl=None):
        request = {"key": encode(key), "value": encode(value)}
        if ttl:
            request["lease"] = self._lease(ttl)
        return request

    # -- reads -----------------------------------------------------------------------

    def get(self, key):
        kvs = self._post("/kv/range", {"key": encode(key)}).get("kvs", ())
        return _entry(kvs[0]) if kvs else None

    def tree(self, directory):
        result = self._post("/kv/range", _prefix_range(directory))
        header = result.get("header", {})
        self._cluster_id = header.get("cluster_id")
        return Tree(tuple(_entry(kv) for kv in result.get("kvs", ())), int(header.get("revision", 0)))

    def children(self, directory):
        request = dict(_prefix_range(directory), keys_only=True)
        prefix = tree_prefix(directory)
        names = {decode(kv["key"])[len(prefix):].split("/", 1)[0]
                 for kv in self._post("/kv/range", request).get("kvs", ())}
        return sorted(name for name in names if name)

    def exists(self, directory):
        request = dict(_prefix_range(directory), count_only=True)
        return int(self._post("/kv/range", request).get("count", 0)) > 0

    # -- writes ----------------------------------------------------------------------

    def put(self, key, value, ttl=None):
        self._post("/kv/put", self._put_request(key, value, ttl))

    def put_many(self, items):
        items = list(items)
        for start in range(0, len(items), TXN_OPS):
            self._txn([], [{"request_put": self._put_request(key, value)}
                           for key, value in items[start:start + TXN_OPS]])

    def create(self, key, value, ttl=None):
        compare = [{"key": encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}]
        return self._txn(compare, [{"request_put": self._put_request(key, value, ttl)}])

    def swap(self, key, value, revision=None, prev_value=None):
        compare = {"key": encode(key), "result": "EQUAL"}
        if revision is not None:
            compare.update(target="MOD", mod_revision=revision)
        else:
            compare.update(target="VALUE", value=encode(prev_value))
        return self._txn([compare], [{"request_put": self._put_request(key, value)}])

    def delete(self, key, prev_value=None):
        if prev_value is None:
            return int(self._post("/kv/deleterange", {"key": encode(key)}).get("deleted", 0)) > 0
        compare = [{"key": encode(key), "target": "VALUE", "result": "EQUAL", "value": encode(prev_value)}]
        return self._txn(compare, [{"request_delete_range": {"key": encode(key)}}])

    def delete_tree(self, directory):
        return int(self._post("/kv/deleterange", _prefix_range(directory)).get("deleted", 0)) > 0

    def delete_empty_dir(self, directory):
        return not self.exists(directory)

    def make_dir(self, directory):
        """Nothing to do: v3 has no directories."""

    # -- watching --------------------------------------------------------------------

    def watch(self, directory, revision, timeout):
        request = {"create_request": dict(_prefix_range(directory), start_revision=revision)}
        with self.http.stream("POST", API_PATH + "/watch", json.dumps(request).encode(), JSON,
                               wait=timeout) as stream:
            if stream.status != 200:
                reply = stream.reply()
                if reply.status == 404:
                    raise DatastoreError(api_missing(reply.url))
                raise DatastoreError("etcd refused a watch: %s" % _message(reply.text))
            try:
                for line in stream.lines(WATCH_GATHER):
                    yield from self._watch_events(parse_json(line, stream.url))
            except Quiet:
                return     # the caller watches again from where it was

    def _watch_events(self, message):
        """The Events of one watch response (the costly part of intake: kept lean)."""
        result = message.get("result")
        if result is None:
            error = message.get("error", message)
            raise DatastoreError("etcd ended a watch: %s" % (error.get("message") or error))
        header = result.get("header", {})
        if self._cluster_id and header.get("cluster_id") not in (None, self._cluster_id):
            raise HistoryLost("the etcd cluster ID changed")
        events = result.get("events")
        if events is None:             # no events: created, cancelled, compacted or progress
            _check_watch_alive(result)
            return
        current = int(header.get("revision", 0))
        for event in events:
            kv = event["kv"]
            revision = int(kv["mod_revision"])
            yield Event(decode(kv["key"]), None if event.get("type") == "DELETE" else decode(kv.get("value", "")),
                        revision, current if current > revision else revision)


def _check_watch_alive(result):
    """HistoryLost if a watch response without events says the watch is over."""
    if int(result.get("compact_revision", 0)):
        raise HistoryLost("etcd compacted its history up to revision %s" % result["compact_revision"])
    if result.get("canceled"):
        raise HistoryLost("etcd cancelled the watch: %s" % result.get("cancel_reason", "no reason given"))


def api_missing(url):
    return ("etcd at %s does not serve the v3 API (etcd before 3.4 has no /v3 gateway): "
            "use DATASTORE_TYPE=etcdv2 with it." % url)


def _message(text):
    """The ``message`` (or ``error``) of an etcd JSON error body, else the text itself."""
    try:
        body = json.loads(text)
        return body.get("message") or body.get("error") or text
    except (ValueError, AttributeError):
        return (text or "").strip()
