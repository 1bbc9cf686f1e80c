"""A TCP port forwarder that crosses network namespaces.

The forwarder process binds its listening socket in the namespace it starts
in, then moves itself (``setns``) into the target namespace, so every
upstream connection it makes is opened there.  That lets test code in the
root namespace reach a server inside a simulated LAN, or simulated hosts
reach the etcd that the tests run on loopback, without touching the root
namespace's interfaces or routes.

Run as a script by :class:`PortForward`; stdlib only.
"""
import os
import select
import subprocess
import sys
import tempfile

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 10.0


class PortForward:
    """Forward ``listen_host:listen_port`` to ``target_host:target_port``.

    :param runner: object with ``popen`` (a Lan or SimHost) whose namespace
        the listening socket lives in; None for the caller's namespace.
    :param target_netns: path of the namespace upstream connections are made
        in (e.g. ``/proc/<pid>/ns/net``); None for the listening one.
    :ivar authority: ``listen_host:listen_port``.
    """

    def __init__(self, listen_host, listen_port, target_host, target_port,
                 runner=None, target_netns=None):
        self.listen_host = listen_host
        self.listen_port = int(listen_port)
        self.target_host = target_host
        self.target_port = int(target_port)
        self.runner = runner
        self.target_netns = target_netns
        self._process = None

    @property
    def authority(self):
        return "%s:%d" % (self.listen_host, self.listen_port)

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    def start(self):
        args = [sys.executable, os.path.abspath(__file__), self.listen_host,
                str(self.listen_port), self.target_netns or "-", self.target_host,
                str(self.target_port), str(os.getpid())]
        errors = tempfile.TemporaryFile()
        kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                      start_new_session=True)
        if self.runner is None:
            self._process = subprocess.Popen(args, **kwargs)
        else:
            self._process = self.runner.popen(args, **kwargs)
        readable, _, _ = select.select([self._process.stdout], [], [], READY_TIMEOUT)
        line = self._process.stdout.readline() if readable else b""
        self._process.stdout.close()
        if line.strip() != b"ready":
            self.stop()
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            errors.close()
            raise RuntimeError("port forward %s -> %s:%d failed to start: %s"
                               % (self.authority, self.target_host, self.target_port,
                                  message or "no output"))
        errors.close()
        return self

    def stop(self):
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self):
        return self.start() if self._process is None else self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "PortForward(%s -> %s:%d, pid=%s)" % (self.authority, self.target_host,
                                                    self.target_port, self.pid)


def _serve(listen_host, listen_port, target_netns, target_host, target_port, parent_pid):
    import ctypes
    import signal
    import socket
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    # Die with the harness so a crashed test run leaves no forwarder behind.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        return 1
    server = socket.create_server((listen_host, listen_port), backlog=128)
    if target_netns != "-":
        fd = os.open(target_netns, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (target_netns, os.strerror(err)))
        os.close(fd)

    def pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def handle(client):
        try:
            upstream = socket.create_connection((target_host, target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        back.start()
        pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        client, _ = server.accept()
        # Threads inherit the namespace set above: upstream sockets open there.
        threading.Thread(target=handle, args=(client,), daemon=True).start()


if __name__ == "__main__":
    host, port, netns, target, target_port, parent = sys.argv[1:7]
    sys.exit(_serve(host, int(port), netns, target, int(target_port), int(parent)))
