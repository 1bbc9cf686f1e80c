"""A real Docker daemon and a ``busybox`` image for tests and scripts.

``ensure_dockerd`` reuses a daemon that already answers on /run/docker.sock
(and then never stops it); otherwise it starts one with no iptables, no
bridge and its own pid file, and only that one is ever stopped.

``ensure_busybox_image`` builds ``busybox:latest`` locally from Debian's
static busybox (every applet linked in /bin), since no registry can be
reached.

No pytest import: scripts/demo.py uses this module too.
"""
import io
import os
import socket
import subprocess
import tarfile
import time

from tests.harness.util import pid_alive, remove_cgroup_parent, tail, terminate_pid, wait_for

DOCKER_SOCKET = "/run/docker.sock"
STATE_DIR = "/tmp/calico-harness-dockerd"
START_TIMEOUT = 30.0
BUSYBOX_BINARY = "/usr/bin/busybox"
BUSYBOX_IMAGE = "busybox:latest"
# Marks images this module built; bump the value when the rootfs recipe
# changes so old builds are replaced.
BUSYBOX_LABEL = "org.projectcalico.test-harness.busybox"
BUSYBOX_RECIPE = "1"


def docker_answers(socket_path=DOCKER_SOCKET, timeout=2.0):
    """True if a Docker daemon answers ``GET /_ping`` on ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    status = reply.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


class _DockerClients:
    """docker-py clients, in the test process, for a daemon at ``socket_path``."""

    @property
    def base_url(self):
        return "unix://" + self.socket_path

    def client(self, timeout=120):
        """A docker-py client for this daemon."""
        import docker  # lazy: importing the harness must stay cheap

        return docker.DockerClient(base_url=self.base_url, timeout=timeout)


class DockerDaemon(_DockerClients):
    """Handle on the Docker daemon the tests use.

    :ivar socket_path: the daemon's unix socket.
    :ivar owned: True if this harness started the daemon (and so may stop it).
    :ivar pid: PID of the daemon we started, else None.
    :ivar log_path: log of the daemon we started, else None.
    """

    def __init__(self, socket_path=DOCKER_SOCKET, owned=False, process=None, log_path=None,
                 pidfile=None):
        self.socket_path = socket_path
        self.owned = owned
        self._process = process
        self.log_path = log_path
        self.pidfile = pidfile

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    def stop(self):
        """Stop the daemon if (and only if) we started it, by PID."""
        if not self.owned or self._process is None:
            return
        # dockerd takes a while to shut its containers down cleanly.
        terminate_pid(self._process.pid, timeout=30.0, popen=self._process)
        self._process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "DockerDaemon(%s, owned=%s, pid=%s)" % (self.socket_path, self.owned, self.pid)


def ensure_dockerd(state_dir=STATE_DIR, socket_path=DOCKER_SOCKET, timeout=START_TIMEOUT,
                   extra_args=()):
    """Return a DockerDaemon answering on ``socket_path``, starting one if needed.

    ``extra_args`` go to dockerd (e.g. ``--data-root`` for a second daemon).
    """
    if docker_answers(socket_path):
        return DockerDaemon(socket_path=socket_path, owned=False)
    os.makedirs(state_dir, exist_ok=True)
    pidfile = os.path.join(state_dir, "dockerd.pid")
    log_path = os.path.join(state_dir, "dockerd.log")
    _clear_stale_pidfile(pidfile)
    args = [
        "dockerd",
        "--iptables=false", "--ip6tables=false", "--bridge=none",
        "-H", "unix://" + socket_path,
        "--pidfile", pidfile,
    ] + list(extra_args)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    daemon = DockerDaemon(socket_path=socket_path, owned=True, process=process,
                          log_path=log_path, pidfile=pidfile)

    def up():
        if process.poll() is not None:
            raise RuntimeError("dockerd exited with code %s; log %s:\n%s"
                               % (process.returncode, log_path, tail(log_path)))
        return docker_answers(socket_path)
    try:
        wait_for(up, timeout=timeout, interval=0.2, fatal=(RuntimeError,))
    except TimeoutError:
        daemon.stop()
        raise RuntimeError("dockerd did not answer on %s within %.0f s; log %s:\n%s"
                           % (socket_path, timeout, log_path, tail(log_path))) from None
    return daemon


def _clear_stale_pidfile(pidfile):
    # dockerd refuses to start if its pid file names a live process; a file
    # left by a crashed run of ours names a dead one, so remove it.
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return
    if pid and pid_alive(pid):
        raise RuntimeError("a dockerd from %s (pid %d) is alive but does not answer on "
                           "its socket" % (pidfile, pid))
    os.unlink(pidfile)


def busybox_rootfs_tar(busybox_binary=BUSYBOX_BINARY):
    """A tar (bytes) of a minimal root filesystem around a static busybox."""
    applets = subprocess.run([busybox_binary, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add_dir(name, mode=0o755):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.mtime = now
            tar.addfile(info)

        def add_file(name, data, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "etc", "root", "var", "home", "proc", "sys", "dev"):
            add_dir(directory, 0o700 if directory == "root" else 0o755)
        add_dir("tmp", 0o1777)
        with open(busybox_binary, "rb") as handle:
            add_file("bin/busybox", handle.read(), 0o755)
        for applet in applets:
            if applet == "busybox" or "/" in applet:
                continue
            info = tarfile.TarInfo("bin/" + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            info.mtime = now
            tar.addfile(info)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                               b"nobody:x:65534:65534:nobody:/home:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add_file("etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    return buffer.getvalue()


def ensure_busybox_image(client=None, image=BUSYBOX_IMAGE):
    """Make sure ``image`` exists locally, built by this module from busybox.

    An image of that name without our label (some other, possibly partial,
    local build) is replaced, so every applet the tests use is present.
    ``client`` is a docker-py DockerClient (one for /run/docker.sock is made
    if omitted).  Returns the image's ID.
    """
    import docker

    own_client = client is None
    if own_client:
        client = docker.DockerClient(base_url="unix://" + DOCKER_SOCKET, timeout=120)
    try:
        try:
            existing = client.images.get(image)
            labels = existing.attrs.get("Config", {}).get("Labels") or {}
            if labels.get(BUSYBOX_LABEL) == BUSYBOX_RECIPE:
                return existing.id
        except docker.errors.ImageNotFound:
            pass
        repository, _, tag = image.partition(":")
        changes = ['CMD ["sh"]', "LABEL %s=%s" % (BUSYBOX_LABEL, BUSYBOX_RECIPE)]
        client.api.import_image_from_data(busybox_rootfs_tar(), repository=repository,
                                          tag=tag or "latest", changes=changes)
        return client.images.get(image).id
    finally:
        if own_client:
            client.close()


class ContainerFactory:
    """Runs ``--net=none -tid busybox`` containers and removes them all at the end.

    ``factory(name=None, **options)`` returns the docker-py Container;
    ``remove_all()`` force-removes every container it made (gone already is fine).
    """

    def __init__(self, client):
        self.client = client
        self.made = []

    def __call__(self, name=None, **kwargs):
        import uuid
        name = name or "calico-test-%s" % uuid.uuid4().hex[:10]
        options = dict(detach=True, tty=True, stdin_open=True, network_mode="none", name=name)
        options.update(kwargs)
        container = self.client.containers.run(BUSYBOX_IMAGE, **options)
        self.made.append(container)
        return container

    def remove_all(self):
        import docker
        while self.made:
            try:
                self.made.pop().remove(force=True)
            except docker.errors.NotFound:
                pass


HOST_DOCKERD_STATE = "/tmp/calico-harness-hostdockerd"
# Paths as the simulated host sees them, in its private /run.
HOST_DOCKER_SOCKET = "/run/docker.sock"
HOST_EXEC_ROOT = "/run/docker"
HOST_PIDFILE = "/run/docker.pid"


class HostDockerd(_DockerClients):
    """A dockerd of its own for one simulated host (``SimHost(own_dockerd=True)``).

    It runs inside the host's network, UTS and mount namespaces with its own
    data root (on disk, under ``state_dir``), and its exec root, pid file and
    socket in the host's private /run, so inside the host it is the usual
    ``/run/docker.sock`` and a plugin socket in that host's
    ``/run/docker/plugins/`` is found by it. It supervises its own
    containerd (none answers in that /run), so containers, images and the
    containerd namespace are the host's alone. No bridge, no iptables,
    unless ``manages_iptables``: then Docker's default bridge (``bridge_ip``)
    and Docker's own iptables rules (FORWARD policy DROP, its chains,
    MASQUERADE), as a stock Docker host has them.

    ``start``/``stop``/``restart`` act on the one process by PID; ``stop``
    leaves containers in place (a restart policy brings them back) unless
    ``remove_containers``. From the test process the socket is reached
    through the holder's root: ``socket_path`` / ``client()``.
    """

    def __init__(self, host, state_dir=None, timeout=START_TIMEOUT, manages_iptables=False,
                 bridge_ip="10.199.0.1/24"):
        import secrets
        self.host = host
        self.manages_iptables = manages_iptables
        self.bridge_ip = bridge_ip
        unique = "%s-%s" % (host.name, secrets.token_hex(3))
        self.state_dir = state_dir or os.path.join(HOST_DOCKERD_STATE, unique)
        self.cgroup_parent = "calico-sim-" + unique
        self.data_root = os.path.join(self.state_dir, "data")
        self.log_path = os.path.join(self.state_dir, "dockerd.log")
        self.timeout = timeout
        self._process = None

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    def _outside(self, path):
        return "/proc/%d/root%s" % (self.host.pid, path)

    @property
    def socket_path(self):
        """The host's /run/docker.sock as the test process reaches it."""
        return self._outside(HOST_DOCKER_SOCKET)


    def start(self):
        """Start the daemon (if not running) and wait until it answers; returns self."""
        if self.running:
            return self
        os.makedirs(self.data_root, exist_ok=True)
        config = os.path.join(self.state_dir, "daemon.json")
        with open(config, "w") as handle:
            handle.write("{}\n")
        _clear_stale_pidfile(self._outside(HOST_PIDFILE))
        args = [
            "dockerd", "--config-file", config,
            "--data-root", self.data_root, "--exec-root", HOST_EXEC_ROOT,
            "--pidfile", HOST_PIDFILE, "-H", "unix://" + HOST_DOCKER_SOCKET,
            *(("--bip=%s" % self.bridge_ip, "--iptables=true") if self.manages_iptables else
              ("--bridge=none", "--iptables=false")), "--ip6tables=false",
            "--userland-proxy=false", "--shutdown-timeout=3",
            "--cgroup-parent=/" + self.cgroup_parent,
        ]
        with open(self.log_path, "ab") as log:
            self._process = self.host.popen(args, cwd="/", stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        process = self._process

        def up():
            if process.poll() is not None:
                raise RuntimeError("dockerd of %s exited with code %s; log %s:\n%s" % (
                    self.host.name, process.returncode, self.log_path, tail(self.log_path)))
            return docker_answers(self.socket_path)
        try:
            wait_for(up, timeout=self.timeout, interval=0.1, fatal=(RuntimeError,))
        except TimeoutError:
            self.stop()
            raise RuntimeError("dockerd of %s did not answer within %.0f s; log %s:\n%s" % (
                self.host.name, self.timeout, self.log_path, tail(self.log_path))) from None
        return self

    def stop(self, remove_containers=False):
        """Stop the daemon by PID (it stops its containers); with
        ``remove_containers`` force-remove every container first."""
        if not self.running:
            self._process = None
            return
        if remove_containers:
            self.remove_containers()
        terminate_pid(self._process.pid, timeout=30.0, popen=self._process)
        self._process = None

    def container_pids(self):
        """PIDs of the processes of its containers (its cgroup parent, in every hierarchy)."""
        pids = set()
        for controller in os.listdir("/sys/fs/cgroup"):
            for directory, _dirs, files in os.walk(os.path.join("/sys/fs/cgroup", controller, self.cgroup_parent)):
                if "cgroup.procs" in files:
                    with open(os.path.join(directory, "cgroup.procs")) as handle:
                        pids.update(int(pid) for pid in handle.read().split())
        return pids

    def reap(self):
        """After its process was killed (``SimHost.power_off``): wait for it."""
        if self._process is not None:
            self._process.wait(10)
            self._process = None

    def restart(self):
        """Stop and start again, as ``systemctl restart docker`` would."""
        self.stop()
        return self.start()

    def remove_containers(self):
        """Force-remove every container of this daemon (gone already is fine)."""
        import docker
        client = self.client(timeout=60)
        try:
            for container in client.containers.list(all=True):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
        finally:
            client.close()

    def destroy(self):
        """Stop (removing containers) and delete the data root."""
        import shutil
        if self.running:
            try:
                self.remove_containers()
            except Exception:  # noqa: BLE001 - a daemon in trouble is still stopped below
                pass
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        remove_cgroup_parent(self.cgroup_parent)

    def __repr__(self):
        return "HostDockerd(%s, pid=%s)" % (self.host.name, self.pid)
