"""The agent's status report: where it goes (the loop decides when).

The loop (loop.Agent) reports after each successful (re)sync, whenever the
components' figures change and every ``status_interval`` seconds:
``{"pid", "started", "time", "in_sync", "last_sync", "local_endpoints",
"control_plane"}``. ``control_plane`` is the policy dataplane's account of
the control-plane protection: ``{"enabled", "active", "ports",
"addresses": {"4", "6"}, "problem"}`` ("active": programmed in the kernel).
While it serves the Docker plugins it adds ``"docker_plugins":
{"sockets", "problem"}`` (calicoctl.agent.plugins), and ``"cni":
{"socket", "problem"}`` for the CNI plugins' back end (calicoctl.agent.cni).

``StatusReporter`` writes it to ``<run-dir>/agent-status.json`` at once
and, from a thread of its own so that a dead etcd never stalls the loop,
to ``/calico/felix/v1/host/<hostname>/status`` with a 30 s TTL (on etcd
v3: a lease).
"""
import json
import logging
import os
import threading

from calicoctl import identity
from calicoctl.host import daemon

LOG = logging.getLogger(identity.MODULE)


class StatusReporter:
    """Writes the status file at once and the etcd key from a thread."""

    def __init__(self, config, connection_factory):
        self.config = config
        self.path = os.path.join(config.run_dir, identity.STATUS_FILE)
        self._connection_factory = connection_factory
        self._latest = None
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._event.set()

    def report(self, status):
        text = json.dumps(status)
        try:
            daemon.write_atomically(self.path, text)
        except OSError as exc:
            LOG.warning("Cannot write %s: %s", self.path, exc)
        self._latest = text
        self._event.set()

    def _run(self):
        from calicoctl.datastore import paths
        connection = None
        while not self._stop.is_set():
            self._event.wait()
            self._event.clear()
            if self._stop.is_set():
                return
            text = self._latest
            try:
                if connection is None:
                    connection = self._connection_factory()
                connection.put(paths.felix_status(self.config.hostname), text, ttl=self.config.status_ttl)
            except Exception as exc:  # noqa: BLE001 - any etcd failure: try at the next report
                LOG.info("Cannot report status to etcd: %s", exc)
                connection = None
