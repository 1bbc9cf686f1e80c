"""Servers on unix sockets for the plugins the agent serves.

Docker finds a legacy plugin by its socket, ``/run/docker/plugins/<name>.sock``,
and POSTs JSON to it (``calicoctl.ops.plugin_protocol``). ``PluginServer``
serves one such socket from a thread, one thread per request (Docker makes
requests in parallel: fifty ``docker run`` at once are fifty CreateEndpoints).
``handle(path, body) -> (status, reply dict)`` does the work.

The socket may be bound by another process first (``listen``) and handed
over: ``calicoctl node`` binds both before anything slow, so Docker, which
looks for the files when it restores its containers at boot, finds them;
its requests wait in the backlog until the agent serves them.

The CNI plugin binaries speak something simpler (an HTTP client costs a
short-lived process more start-up time than its request takes): one request
per connection, read until the client shuts its side down, one reply, then
the server closes (``FrameHandler``; ``handle(request bytes) -> reply bytes``).
"""
import http.server
import json
import logging
import os
import socket
import socketserver
import threading

LOG = logging.getLogger(__name__)
PLUGIN_DIR = "/run/docker/plugins"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes a burst of connections (fifty
    # `docker run`s) fail with EAGAIN on a unix socket.
    request_queue_size = 256


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # the name http.server calls
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, reply = self.server.handle(self.path, body)
        data = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        LOG.debug("%s: " + fmt, self.server.name, *args)


class FrameHandler(socketserver.StreamRequestHandler):
    """One request frame in (until EOF), ``server.handle(frame)``'s bytes out."""

    def handle(self):
        self.wfile.write(self.server.handle(self.rfile.read()))


def socket_path(name, directory=PLUGIN_DIR):
    return os.path.join(directory, name + ".sock")


def socket_answers(path, timeout=2.0):
    """True if something accepts connections on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
        return True
    except OSError:
        return False


def listen(path):
    """A unix stream socket listening on ``path``.

    A socket file left by a dead process is replaced; one something still
    answers on is not (another agent serves it): RuntimeError. Only root may
    connect: whoever can has interfaces made in any namespace.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        if socket_answers(path):
            raise RuntimeError("%s is already served by another process" % path)
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(_Server.request_queue_size)
    except OSError:
        listener.close()
        raise
    return listener


class PluginServer:
    """Serves ``handle`` on ``path`` until ``stop``, on a socket it binds
    (``listen``: RuntimeError if another process serves it) or one it is given.
    ``handler``: the request handler class (HTTP by default, or ``FrameHandler``)."""

    def __init__(self, name, path, handle, handler=None):
        self.name = name
        self.path = path
        self._handle = handle
        self._handler = handler or _Handler
        self._server = None
        self._thread = None

    def start(self, listener=None):
        """Serve on ``listener`` (a socket listening on ``path``), else on one bound here."""
        if listener is None:
            listener = listen(self.path)
        server = _Server(self.path, self._handler, bind_and_activate=False)
        server.socket.close()
        server.socket = listener
        server.handle = self._handle
        server.name = self.name
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="plugin-%s" % self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = None


def post(path, url_path, body=None, timeout=10.0):
    """POST JSON to a plugin socket as Docker does: (status, reply). For
    checksystem and tests."""
    import http.client

    class _Connection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)

    connection = _Connection("localhost", timeout=timeout)
    try:
        data = json.dumps(body if body is not None else {}).encode("utf-8")
        connection.request("POST", url_path, body=data, headers={"Content-Type": CONTENT_TYPE})
        response = connection.getresponse()
        text = response.read().decode("utf-8")
        return response.status, json.loads(text) if text else {}
    finally:
        connection.close()
