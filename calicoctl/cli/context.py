"""The CLI's composition root: streams, environment and lazily built clients.

Commands receive a Context instead of reading ``os.environ`` or building
clients at import time. Tests (and the agent-less in-process runner) pass
their own env and streams.
"""
import os
import socket
import sys


class Context:
    def __init__(self, env=None, stdout=None, stderr=None, stdin=None):
        self.env = dict(os.environ if env is None else env)
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self._datastore = None
        self._docker = None

    # -- output -----------------------------------------------------------------

    def out(self, text=""):
        self.stdout.write(text + "\n")

    def err(self, text):
        self.stderr.write(text + "\n")

    # -- identity -----------------------------------------------------------------

    @property
    def hostname(self):
        """This host's name in etcd: CALICO_HOSTNAME, else the kernel's."""
        return self.env.get("CALICO_HOSTNAME") or socket.gethostname()

    def require_root(self):
        from calicoctl.errors import NotRoot
        if os.geteuid() != 0:
            raise NotRoot("This command must be run as root (try sudo).")

    # -- clients (built on first use) ------------------------------------------------

    @property
    def datastore(self):
        """The datastore client, once etcd was found to serve the API
        DATASTORE_TYPE names with the Calico data in it (``etcdconn.check_api``)."""
        if self._datastore is None:
            from calicoctl.datastore import etcdconn
            from calicoctl.datastore.client import DatastoreClient
            kv = etcdconn.connect(self.env)
            etcdconn.check_api(kv)
            self._datastore = DatastoreClient(kv)
        return self._datastore

    @property
    def docker(self):
        if self._docker is None:
            from calicoctl.host.docker import DockerAdapter
            self._docker = DockerAdapter(self.env)
        return self._docker

    def close(self):
        if self._docker is not None:
            self._docker.close()
