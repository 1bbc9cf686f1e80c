"""host.docker.DockerAdapter against a real dockerd (listing, events) and
against things that are not Docker: only Docker's own "No such container"
is NotFound, anything else is doubt."""
import http.server
import os
import socketserver
import threading

import pytest

from calicoctl.errors import DockerError, DockerUnavailable, NotFound
from calicoctl.host.docker import ContainerEvent, DockerAdapter
from tests.harness.docker import DOCKER_SOCKET

pytestmark = pytest.mark.usefixtures("root_required")


def test_list_and_events_of_a_real_daemon(docker_daemon, make_container):
    adapter = DockerAdapter({"DOCKER_HOST": "unix://" + DOCKER_SOCKET})
    try:
        stream = adapter.events()
        container = make_container()
        assert container.id in adapter.list_container_ids()
        container.remove(force=True)
        seen = []
        for event in stream:
            if event.id == container.id:
                seen.append(event)
            if event.action == "destroy" and event.id == container.id:
                break
        stream.close()
        assert seen == [ContainerEvent(container.id, "start"), ContainerEvent(container.id, "destroy")]
        with pytest.raises(NotFound):
            adapter.inspect(container.id)
        assert container.id not in adapter.list_container_ids()
    finally:
        adapter.close()


class _NotDocker(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"404 page not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)


def test_a_404_that_is_not_docker_is_doubt_not_gone(tmp_path):
    path = str(tmp_path / "not-docker.sock")
    server = _UnixServer(path, _NotDocker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    adapter = DockerAdapter({"DOCKER_HOST": "unix://" + path})
    try:
        with pytest.raises(DockerError) as caught:
            adapter.inspect("a" * 64)
        assert not isinstance(caught.value, NotFound)
        assert "404" in str(caught.value)
    finally:
        adapter.close()
        server.shutdown()
        server.server_close()


def test_no_daemon_is_unavailable(tmp_path):
    adapter = DockerAdapter({"DOCKER_HOST": "unix://" + os.path.join(str(tmp_path), "none.sock")})
    try:
        for call in (lambda: adapter.inspect("a" * 64), adapter.list_container_ids, adapter.events):
            with pytest.raises(DockerUnavailable):
                call()
    finally:
        adapter.close()
