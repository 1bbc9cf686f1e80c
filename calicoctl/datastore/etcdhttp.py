"""HTTP to etcd, on the standard library: the one client under both key-value stores.

Both of etcd's APIs we speak are HTTP with JSON: v2's ``/v2/keys`` and
v3's gRPC gateway (``/v3/...``). ``EtcdHttp`` does what they share:

- keep-alive connections (``http.client``) to each cluster member, opened
  on first use and again when the member closed one; a request takes an
  idle one (or opens one) and puts it back after, so threads sharing a
  client (the Docker plugins' server) each get their own;
- connecting and every ordinary request take at most ``timeout`` seconds;
  a watch passes its own ``wait``: that long without a byte is a quiet
  watch (``Quiet``), not a dead member;
- TLS through ``ssl`` when the endpoints are ``https``: the CA and client
  pair of the settings, the server's name checked. No proxy or CA from the
  environment is ever used;
- failover: a request that cannot reach a member goes to the next one, and
  the member that answered is asked first next time; when none answers,
  DatastoreUnavailable names every member (with the reason when it is TLS);
- streams (watches): a response read line by line as etcd writes it, on a
  connection of its own.

It knows nothing of keys or JSON shapes: ``kv_v2`` and ``kv_v3`` do.
"""
import http.client
import json
import select
import time

from calicoctl.errors import DatastoreError, DatastoreUnavailable, ValidationError

STREAM_READ = 65536
DEFAULT_TIMEOUT = 2.0
"""Seconds for connecting and for an ordinary request: short enough that
"etcd is down" is reported within seconds; watches pass their own, longer
wait per call."""
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


class Unreachable(Exception):
    """One member did not answer (refused, timed out, TLS failed, hung up)."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause

    @property
    def hint(self):
        """A short reason to show next to the member, when it is not simply 'nobody listens'."""
        text = repr(self.cause)
        if "SSL" in text or "certificate" in text.lower():
            return " (TLS handshake failed: check ETCD_CA_CERT_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE)"
        return ""


class Quiet(Exception):
    """Nothing came for a watch's ``wait`` seconds."""


class Reply:
    """A whole response: status, headers (case-insensitive) and body."""
    __slots__ = ("status", "headers", "body", "url")

    def __init__(self, status, headers, body, url):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise DatastoreError("etcd at %s answered %d, not in JSON: %s"
                                 % (self.url, self.status, self.text[:200])) from None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace").strip()


def parse_json(line, url):
    """A line of a Stream, parsed."""
    try:
        return json.loads(line)
    except ValueError:
        raise DatastoreError("etcd at %s sent a line that is not JSON: %r" % (url, line[:200])) from None


class Stream:
    """A response etcd writes as it goes (a watch), on a connection of its own.

    ``lines()`` yields each line of the body as etcd sends it; it ends when
    etcd ends the response or the connection breaks, and raises Quiet when
    nothing came for ``wait`` seconds (which ``wait()`` changes). Close it
    when done (``with``).
    """

    def __init__(self, connection, response, url):
        self._connection = connection
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self.url = url

    def lines(self, gather=0.0):
        """Each line as etcd sends it. With ``gather`` (seconds), after the
        lines of one read the next read waits that long, so lines arriving
        one at a time are taken several a read (each read costs a thread
        wake-up and system calls); a line after a quiet spell is read as it
        arrives."""
        try:
            if self.response.chunked:
                yield from _split_lines(_chunked_body(self.response.fp.read1), gather)
            else:
                yield from _split_lines(self.response.read1, gather)
        except TimeoutError:
            raise Quiet() from None
        except (OSError, http.client.HTTPException):
            return                      # the member went away: the caller watches again

    def wait(self, seconds):
        """From now on, Quiet after ``seconds`` without a byte."""
        self._connection.sock.settimeout(seconds)

    def reply(self):
        """The rest of the body as a Reply (for a stream etcd refused)."""
        try:
            body = self.response.read()
        except (OSError, http.client.HTTPException):
            body = b""
        return Reply(self.status, self.headers, body, self.url)

    def close(self):
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EtcdHttp:
    """Requests to the first member of ``settings.endpoints`` that answers (see the module docstring)."""

    def __init__(self, settings, timeout):
        self.settings = settings
        self.timeout = timeout
        self._idle = [[] for _ in settings.endpoints]
        """Per member, its open connections no request is using."""
        self._current = 0
        self._tls = None

    @property
    def current_url(self):
        return self.settings.endpoints[self._current].url

    def request(self, method, path, body=None, content_type=None, wait=None):
        """The Reply of the first member that answers; with ``wait``, the
        body may take that long (a long poll), else Quiet."""
        return self._failover(lambda index: self._exchange(index, method, path, body, content_type, wait))

    def stream(self, method, path, body=None, content_type=None, wait=None):
        """A Stream (headers read, body not) from the first member that answers."""
        return self._failover(lambda index: self._open_stream(index, method, path, body, content_type, wait))

    def close(self):
        for idle in self._idle:
            while idle:
                idle.pop().close()

    # -- failover ------------------------------------------------------------------------

    def _failover(self, attempt):
        failures = []
        count = len(self._idle)
        for step in range(count):
            index = (self._current + step) % count
            try:
                result = attempt(index)
            except Unreachable as exc:
                failures.append(self.settings.endpoints[index].url + exc.hint)
                continue
            self._current = index
            return result
        raise DatastoreUnavailable("Cannot reach etcd at %s: is etcd running, and is "
                                   "ETCD_AUTHORITY/ETCD_ENDPOINTS right?" % ", ".join(failures))

    # -- one member ------------------------------------------------------------------------

    def _exchange(self, index, method, path, body, content_type, wait):
        connection = _take_idle(self._idle[index]) or self._connect(index)
        try:
            response = self._send(connection, method, path, body, content_type, wait)
            data = _read_body(response, wait)
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._idle[index].append(connection)
        return Reply(response.status, response.headers, data, self.settings.endpoints[index].url)

    def _open_stream(self, index, method, path, body, content_type, wait):
        connection = self._connect(index)
        try:
            response = self._send(connection, method, path, body, content_type, wait)
        except BaseException:
            connection.close()
            raise
        return Stream(connection, response, self.settings.endpoints[index].url)

    def _send(self, connection, method, path, body, content_type, wait):
        """Send a request and read the response's status and headers within
        ``timeout`` (etcd sends a watch's headers at once: a member that does
        not is hung); then the body may take ``wait``."""
        try:
            connection.sock.settimeout(self.timeout)
            connection.request(method, path, body, {"Content-Type": content_type} if content_type else {})
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(exc) from None
        if wait:
            connection.sock.settimeout(wait)
        return response

    def _connect(self, index):
        endpoint = self.settings.endpoints[index]
        if endpoint.scheme == "https":
            connection = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=self.timeout,
                                                     context=self._tls_context())
        else:
            connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.timeout)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise Unreachable(exc) from None
        return connection

    def _tls_context(self):
        if self._tls is None:
            self._tls = tls_context(self.settings)
        return self._tls


def _split_lines(read, gather):
    """Each non-empty line of the pieces ``read()`` returns until it returns
    nothing, waiting ``gather`` seconds after the lines of each piece."""
    pending = b""
    while True:
        data = read(STREAM_READ)
        if not data:
            return
        if b"\n" not in data:
            pending += data
            continue
        *complete, pending = (pending + data).split(b"\n") if pending else data.split(b"\n")
        for line in complete:
            if line:
                yield line
        if gather:
            time.sleep(gather)


def _chunked_body(read):
    """A ``read(size)`` of the body of a chunked response, from ``read``, a
    reader of the raw bytes after the headers: all the chunks one raw read
    brought in at once (http.client's own gives one chunk a call)."""
    buffer = b""
    finished = False

    def read_body(size):
        nonlocal buffer, finished
        body = []
        while not body and not finished:
            data = read(size)
            if not data:
                raise http.client.IncompleteRead(buffer)
            buffer += data
            while True:
                end_of_size = buffer.find(b"\r\n")
                if end_of_size < 0:
                    break
                length = int(buffer[:end_of_size].split(b";", 1)[0], 16)
                if length == 0:
                    finished = True
                    break
                start = end_of_size + 2
                if len(buffer) < start + length + 2:
                    break
                body.append(buffer[start:start + length])
                buffer = buffer[start + length + 2:]
        return b"".join(body)
    return read_body


def _read_body(response, wait):
    try:
        return response.read()
    except TimeoutError as exc:
        if wait:
            raise Quiet() from None
        raise Unreachable(exc) from None
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(exc) from None


def tls_context(settings):
    """The ssl context for the settings' CA and client pair; ValidationError
    naming the variable whose file cannot be loaded."""
    import ssl
    try:
        context = ssl.create_default_context(cafile=settings.ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError("Cannot load ETCD_CA_CERT_FILE %s: %s" % (settings.ca_cert, _reason(exc))) from None
    if settings.cert:
        try:
            context.load_cert_chain(settings.cert, settings.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError("Cannot load ETCD_CERT_FILE %s with ETCD_KEY_FILE %s: %s"
                                  % (settings.cert, settings.key, _reason(exc))) from None
    return context


def _reason(exc):
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def _take_idle(idle):
    """An idle connection from ``idle`` the member has not closed, or None.
    (list.pop is atomic: two threads never get the same one.)"""
    while True:
        try:
            connection = idle.pop()
        except IndexError:
            return None
        if not _closed_by_peer(connection):
            return connection
        connection.close()


def _closed_by_peer(connection):
    """True if an idle keep-alive connection was closed by the member (it
    is readable: an end of file, as no response is due)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
