"""Real etcd servers for tests and scripts: single members, clusters, TLS.

Every server runs Debian's ``etcd`` (3.4) on free ports, with its own data
directory and log file. ``datastore="etcdv3"`` (the default) starts etcd
without ``--enable-v2``, as Debian's etcd and etcd 3.6 are, and leaves
DATASTORE_TYPE unset in ``env``; ``"etcdv2"`` enables the v2 API (next to
v3) and sets DATASTORE_TYPE=etcdv2.  A server can run inside a
network namespace by passing a ``runner`` (an object with a
``popen(args, **kw)`` method, such as :class:`tests.harness.simhost.Lan`).

No pytest import: scripts/demo.py uses this module too.
"""
import json
import os
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass

from tests.harness.util import free_port, kill_pid, tail, terminate_pid, wait_for

ETCD_BINARY = "etcd"
DATASTORES = ("etcdv3", "etcdv2")
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of a throwaway CA, a server pair and a client pair (PEM)."""
    directory: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def env(self):
        """Environment variables calicoctl reads to talk TLS to etcd."""
        return {
            "ETCD_SCHEME": "https",
            "ETCD_CA_CERT_FILE": self.ca_cert,
            "ETCD_CERT_FILE": self.client_cert,
            "ETCD_KEY_FILE": self.client_key,
        }


def make_tls_material(directory, server_ips=("127.0.0.1",), server_dns=("localhost",)):
    """Create a CA plus server and client certificates with the openssl CLI.

    The server certificate names ``server_ips`` and ``server_dns`` as
    subjectAltNames; the client certificate is for client authentication.
    EC P-256 keys keep this fast.
    """
    os.makedirs(directory, exist_ok=True)

    def path(name):
        return os.path.join(directory, name)

    def openssl(*args):
        result = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (args[0], result.stderr.strip()))

    key_args = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key_args, "-keyout", path("ca-key.pem"), "-out", path("ca.pem"),
            "-days", "3650", "-subj", "/CN=calico-test-ca")

    def issue(stem, common_name, extensions):
        ext_path = path(stem + ".ext")
        with open(ext_path, "w") as handle:
            handle.write(extensions)
        openssl("req", "-new", *key_args, "-keyout", path(stem + "-key.pem"),
                "-out", path(stem + ".csr"), "-subj", "/CN=" + common_name)
        openssl("x509", "-req", "-in", path(stem + ".csr"), "-CA", path("ca.pem"),
                "-CAkey", path("ca-key.pem"), "-CAcreateserial", "-days", "3650",
                "-out", path(stem + ".pem"), "-extfile", ext_path)

    sans = ["IP:%s" % ip for ip in server_ips] + ["DNS:%s" % name for name in server_dns]
    issue("server", "etcd-server",
          "basicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=serverAuth,clientAuth\n"
          "subjectAltName=%s\n" % ",".join(sans))
    issue("client", "calicoctl",
          "basicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\n")
    for name in os.listdir(directory):
        if name.endswith("key.pem"):
            os.chmod(path(name), 0o600)
    return TlsMaterial(directory=directory, ca_cert=path("ca.pem"), ca_key=path("ca-key.pem"),
                       server_cert=path("server.pem"), server_key=path("server-key.pem"),
                       client_cert=path("client.pem"), client_key=path("client-key.pem"))


def _url_host(host):
    return "[%s]" % host if ":" in host else host


class EtcdServer:
    """One etcd member, started and stopped by PID.

    :ivar authority: ``host:port`` of the client endpoint.
    :ivar url: ``http(s)://host:port`` of the client endpoint.
    :ivar peer_url: ``http://host:port`` of the peer endpoint.
    :ivar pid: PID of the running etcd, or None.
    :ivar log_path: where etcd's stdout and stderr go (appended across restarts).
    """

    def __init__(self, data_dir, host="127.0.0.1", client_port=None, peer_port=None,
                 name="default", tls=None, runner=None, initial_cluster=None,
                 initial_cluster_state="new", cluster_token="calico-test", datastore="etcdv3"):
        if datastore not in DATASTORES:
            raise ValueError("datastore must be one of %s" % (DATASTORES,))
        self.datastore = datastore
        self.data_dir = os.path.abspath(data_dir)
        self.host = host
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host)
        self.name = name
        self.tls = tls
        self.runner = runner
        self.initial_cluster = initial_cluster
        self.initial_cluster_state = initial_cluster_state
        self.cluster_token = cluster_token
        self.log_path = self.data_dir.rstrip("/") + ".log"
        self._process = None

    # -- addresses -----------------------------------------------------
    @property
    def authority(self):
        return "%s:%d" % (_url_host(self.host), self.client_port)

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return "%s://%s" % (self.scheme, self.authority)

    @property
    def peer_url(self):
        return "http://%s:%d" % (_url_host(self.host), self.peer_port)

    @property
    def pid(self):
        return self._process.pid if self._process is not None else None

    @property
    def env(self):
        """Environment for calicoctl/the agent to reach this server."""
        env = {"ETCD_AUTHORITY": self.authority}
        env.update(datastore_env(self.datastore))
        if self.tls:
            env.update(self.tls.env())
        return env

    def kv(self):
        """calicoctl's own key-value store for this server, in its datastore's API."""
        return make_kv(self.env)

    def wipe(self):
        """Delete /calico (in both keyspaces when this etcd serves v2 next to v3)."""
        wipe(self.env, both_apis=self.datastore == "etcdv2")

    # -- lifecycle -----------------------------------------------------
    def command(self):
        """The etcd command line for this member."""
        args = [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--enable-v2=%s" % ("true" if self.datastore == "etcdv2" else "false"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or "%s=%s" % (self.name, self.peer_url),
            "--initial-cluster-state", self.initial_cluster_state,
            "--initial-cluster-token", self.cluster_token,
        ]
        if self.tls:
            args += [
                "--cert-file", self.tls.server_cert,
                "--key-file", self.tls.server_key,
                "--trusted-ca-file", self.tls.ca_cert,
                "--client-cert-auth",
            ]
        return args

    def start(self, wait=True):
        """Start etcd; with ``wait``, block until it reports healthy."""
        if self.running:
            raise RuntimeError("etcd %s already running (pid %d)" % (self.name, self.pid))
        os.makedirs(os.path.dirname(self.data_dir), exist_ok=True)
        # etcd maps ETCD_* variables onto its flags; keep ours (ETCD_AUTHORITY,
        # ETCD_CERT_FILE, ...) from reconfiguring the server.
        cleaned = {key: None for key in os.environ if key.startswith("ETCD")}
        with open(self.log_path, "ab") as log:
            kwargs = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
            if self.runner is None:
                env = {k: v for k, v in os.environ.items() if k not in cleaned}
                self._process = subprocess.Popen(self.command(), env=env, **kwargs)
            else:
                self._process = self.runner.popen(self.command(), env=cleaned, **kwargs)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        """Block until /health answers true; raise with the log tail if not."""
        def ready():
            if self._process is None or self._process.poll() is not None:
                raise _Exited()
            # Check the port is ours: another server on it would answer too.
            return listens_on(self._process.pid, self.client_port) and self.healthy()
        try:
            wait_for(ready, timeout=timeout, interval=0.1, fatal=(_Exited,))
        except _Exited:
            code = self._process.returncode if self._process else None
            self._process = None
            raise RuntimeError("etcd %s exited (code %s) during start; log %s:\n%s"
                               % (self.name, code, self.log_path, tail(self.log_path))) from None
        except TimeoutError:
            self.kill()
            raise RuntimeError("etcd %s not healthy after %.0f s; log %s:\n%s"
                               % (self.name, timeout, self.log_path, tail(self.log_path))) from None

    def healthy(self):
        """True if the member answers its health check now."""
        if self.runner is not None:
            return self._healthy_via_runner()
        request = urllib.request.Request(self.url + "/health")
        try:
            with urllib.request.urlopen(request, timeout=2, context=self._ssl_context()) as resp:
                return json.loads(resp.read().decode()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def _healthy_via_runner(self):
        # The server lives in another network namespace: ask etcdctl there.
        args = ["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", self.url,
                "--command-timeout=2s", "endpoint", "health"]
        if self.tls:
            args += ["--cacert", self.tls.ca_cert, "--cert", self.tls.client_cert,
                     "--key", self.tls.client_key]
        probe = self.runner.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            return probe.wait(timeout=5) == 0
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.wait()
            return False

    def call(self, path, payload=None):
        """The JSON answer of this member's v3 gateway to ``payload`` POSTed
        at ``path`` (e.g. ``/v3/maintenance/status``): for what calicoctl's
        own store does not do (cluster membership, leadership, compaction)."""
        request = urllib.request.Request(self.url + path, data=json.dumps(payload or {}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5, context=self._ssl_context()) as resp:
            return json.loads(resp.read().decode())

    def leader_name(self):
        """The name of the member this one follows as leader, or None while there is none."""
        leader = self.call("/v3/maintenance/status").get("leader")
        names = {member["ID"]: member.get("name") for member in self.call("/v3/cluster/member/list")["members"]}
        return names.get(leader)

    def _ssl_context(self):
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls.ca_cert)
        context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return context

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    def stop(self):
        """SIGTERM etcd by PID and wait (SIGKILL after 10 s)."""
        if self._process is not None:
            terminate_pid(self._process.pid, popen=self._process)
        self._process = None

    def kill(self):
        """SIGKILL etcd by PID and wait."""
        if self._process is not None:
            kill_pid(self._process.pid, popen=self._process)
        self._process = None

    def restart(self, wait=True):
        """Stop (if running) and start again with the same data dir and ports."""
        self.stop()
        return self.start(wait=wait)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "EtcdServer(%s, %s, pid=%s)" % (self.name, self.url, self.pid)


def listens_on(pid, port):
    """True if process ``pid`` holds a TCP socket listening on ``port``.

    Reads /proc/<pid>/net (the process's own network namespace) and the
    process's file descriptors, so it works for servers in other namespaces.
    """
    listening = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        listening.add("socket:[%s]" % inode)
        except (OSError, StopIteration):
            continue
    if not listening:
        return False
    fd_dir = "/proc/%d/fd" % pid
    try:
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in listening:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


class _Exited(Exception):
    """etcd died while we waited for it."""


def start_cluster(base_dir, size=3, host="127.0.0.1", tls=None, runner=None, datastore="etcdv3"):
    """Start ``size`` members forming one cluster; return them, all healthy."""
    members = []
    for index in range(size):
        name = "member%d" % index
        members.append(EtcdServer(os.path.join(base_dir, name), host=host, name=name,
                                  tls=tls, runner=runner, datastore=datastore))
    initial = ",".join("%s=%s" % (m.name, m.peer_url) for m in members)
    try:
        for member in members:
            member.initial_cluster = initial
            member.start(wait=False)
        # A member is healthy only once the cluster has a leader, which needs
        # a quorum, so start them all before waiting on any.
        for member in members:
            member.wait_healthy()
    except Exception:
        stop_all(members)
        raise
    return members


def stop_all(members, graceful=False):
    """Stop every member of a cluster (ignores ones already stopped).

    By default members are SIGKILLed (etcd's WAL makes that safe): stopped
    gracefully, a leader whose peers are down spends up to 7 s trying to hand
    over leadership.  ``graceful=True`` uses stop() (SIGTERM) on each.
    """
    for member in members:
        if graceful:
            member.stop()
        else:
            member.kill()


def cluster_env(members):
    """Environment naming every member, for a client that fails over."""
    env = {"ETCD_ENDPOINTS": ",".join(m.url for m in members)}
    env.update(datastore_env(members[0].datastore if members else DATASTORES[0]))
    if members and members[0].tls:
        env.update(members[0].tls.env())
    return env


def requested_datastore():
    """The datastore benches and the demo run on: ``DATASTORE_TYPE`` of this process (etcdv3 when unset)."""
    from calicoctl.datastore import etcdconn
    return etcdconn.datastore_type(os.environ)


def datastore_env(datastore):
    """The DATASTORE_TYPE setting for ``datastore`` (none for the default, v3)."""
    return {} if datastore == DATASTORES[0] else {"DATASTORE_TYPE": datastore}


def make_kv(env, kind=None):
    """calicoctl's key-value store (``calicoctl.datastore.kv``) for an
    environment (speaking API ``kind`` if given)."""
    from calicoctl.datastore import etcdconn
    return etcdconn.connect(env, kind=kind)


def wipe(env, prefix="/calico", both_apis=False):
    """Delete ``prefix`` and everything under it (with ``both_apis``, in
    the v2 and the v3 keyspace: an etcd serving v2 serves v3 too); a
    missing key is fine."""
    kinds = DATASTORES if both_apis else (None,)
    for kind in kinds:
        make_kv(env, kind).delete_tree(prefix)
