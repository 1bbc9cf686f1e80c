"""The key-value interface on etcd's v3 API, through etcd3gw (``DATASTORE_TYPE=etcdv3``).

etcd3gw speaks the v3 API's HTTP/JSON gateway (``/v3/...``): no grpc. We
use its client for the session, TLS, URLs and error mapping, and build the
range, txn and watch requests ourselves, for what its helpers leave out:
the header revision of a read (where a watch resumes), comparisons on
``mod_revision``, and a watch stream that reports compaction and its own
end instead of going quiet (docs/etcd-layout.md, "The v3 client").

v3 has no directories: a directory is the range of keys starting with
``<directory>/``. Keys that v2 gave a TTL are attached to a lease granted
for that many seconds. One watch request streams every event from a
revision on, in as few responses as etcd likes.
"""
import base64
import json

from calicoctl.datastore import etcdconn
from calicoctl.datastore.kv import Entry, Event, HistoryLost, KeyValueStore, Tree, tree_prefix
from calicoctl.errors import DatastoreError

API_PATH = "/v3/"
TXN_OPS = 100          # etcd refuses a txn of more than 128 operations by default


def encode(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode(text):
    return base64.b64decode(text).decode("utf-8")


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

    def __init__(self, settings, timeout=etcdconn.DEFAULT_TIMEOUT):
        import requests
        from etcd3gw import exceptions
        self.settings = settings
        self.timeout = timeout
        self.library_errors = (exceptions.Etcd3Exception, requests.RequestException)
        self._exceptions = exceptions
        self._requests = requests
        self._failover = etcdconn.Failover(
            settings, self._build_client,
            (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError))
        self._cluster_id = None

    def _build_client(self, endpoint):
        from etcd3gw.client import Etcd3Client
        session = self._requests.Session()
        # NOTE: requests would otherwise let the environment override our
        # settings: REQUESTS_CA_BUNDLE beats the CA we give, and *_PROXY
        # variables would send etcd traffic through a proxy.
        session.trust_env = False
        if self.settings.ca_cert:
            session.verify = self.settings.ca_cert
        if self.settings.cert:
            session.cert = (self.settings.cert, self.settings.key)
        return Etcd3Client(host=endpoint.host, port=endpoint.port, protocol=endpoint.scheme,
                           timeout=self.timeout, api_path=API_PATH, session=session)

    def _post(self, path, payload):
        try:
            return self._failover.call(lambda client: client.post(client.get_url(path), json=payload))
        except self._exceptions.Etcd3Exception as exc:
            detail = exc.detail_text or ""
            if "404 page not found" in detail:
                raise DatastoreError(api_missing(self._failover.current_url)) from None
            raise DatastoreError("etcd refused %s: %s" % (path, _message(detail))) from None

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
        response = self._failover.call(lambda client: self._open_watch(client, request, timeout))
        requests = self._requests
        try:
            for line in response.iter_lines(chunk_size=None):
                if line.strip():
                    yield from self._watch_events(json.loads(line))
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return   # quiet for ``timeout`` seconds, or the member went away: the caller watches again
        finally:
            response.close()

    def _open_watch(self, client, request, timeout):
        exceptions = self._exceptions
        try:
            response = client.session.post(client.get_url("/watch"), json=request, stream=True,
                                           timeout=(self.timeout, timeout))
        except self._requests.exceptions.Timeout as exc:
            raise exceptions.ConnectionTimeoutError(str(exc)) from None
        except self._requests.exceptions.ConnectionError as exc:
            raise exceptions.ConnectionFailedError(str(exc)) from None
        if response.status_code != 200:
            text = response.text
            response.close()
            if response.status_code == 404:
                raise DatastoreError(api_missing(client.base_url))
            raise DatastoreError("etcd refused a watch: %s" % _message(text))
        return response

    def _watch_events(self, message):
        if "error" in message:
            raise DatastoreError("etcd ended a watch: %s" % message["error"].get("message", message["error"]))
        result = message.get("result", {})
        header = result.get("header", {})
        if self._cluster_id and header.get("cluster_id") not in (None, self._cluster_id):
            raise HistoryLost("the etcd cluster ID changed")
        if int(result.get("compact_revision", 0)):
            raise HistoryLost("etcd compacted its history up to revision %s" % result["compact_revision"])
        if result.get("canceled"):
            raise HistoryLost("etcd cancelled the watch: %s" % result.get("cancel_reason", "no reason given"))
        current = int(header.get("revision", 0))
        for event in result.get("events", ()):
            kv = event["kv"]
            value = None if event.get("type") == "DELETE" else decode(kv.get("value", ""))
            yield Event(decode(kv["key"]), value, int(kv["mod_revision"]), max(current, int(kv["mod_revision"])))

    def check_api(self):
        self._post("/kv/range", {"key": encode("/calico/"), "limit": 1, "keys_only": True})


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
