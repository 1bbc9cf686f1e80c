"""The Docker plugins inside the agent: the calico network driver and the
calico-ipam IPAM driver (docs/decisions.md, "Docker networks").

``DockerPlugins`` serves both sockets in Docker's plugin directory from
the agent's process, so they live and die with it (same supervision, same
pid, same logs). Requests are answered on the servers' own threads with
their own etcd connection: a slow Docker or etcd never stalls the main
loop, nor the loop them. About every ``plugin_reconcile_interval`` seconds
(and at start) a thread reconciles this host's plugin state with Docker
(``DockerPlugin.reconcile``).

The first time Docker answers after the agent started, that thread also
starts the containers Docker gave up on because the plugins were not there
when it started (``DockerPlugin.start_abandoned``: Docker started before
the agent at boot), and logs each. Until then it tries every
``STARTUP_RETRY`` seconds.
"""
import logging
import threading
import time

from calicoctl.agent.component import Component

LOG = logging.getLogger(__name__)

STARTUP_RETRY = 1.0


class DockerPlugins(Component):
    def __init__(self, config, plugin_factory):
        """:param plugin_factory: builds the ops.network.DockerPlugin (with its
        own datastore and Docker clients)."""
        self.config = config
        self._factory = plugin_factory
        self._plugin = None
        self._servers = []
        self._problem = None
        self._next_reconcile = 0.0
        self._reconciling = threading.Lock()
        self._abandoned_started = False     # start_abandoned has run since the agent started
        self._postponed = None              # why the last reconciliation was postponed

    def start(self, wake):
        import socket

        from calicoctl.host import plugin_server
        from calicoctl.ops import plugin_protocol as protocol
        try:
            self._plugin = self._factory()
            for name, routes in ((protocol.NETWORK_DRIVER, self._plugin.network_routes()),
                                 (protocol.IPAM_DRIVER, self._plugin.ipam_routes())):
                path = plugin_server.socket_path(name, self.config.plugin_dir)
                fd = self.config.plugin_fds.get(name)
                listener = socket.socket(fileno=fd) if fd is not None else None
                server = plugin_server.PluginServer(name, path, self._handler(routes))
                self._servers.append(server.start(listener))
                LOG.info("Serving Docker plugin %s on %s%s", name, path,
                         " (bound by calicoctl node)" if listener is not None else "")
        except (OSError, RuntimeError) as exc:
            self._problem = "cannot serve the Docker plugins: %s" % exc
            LOG.error("%s", self._problem)
            self.close()

    @staticmethod
    def _handler(routes):
        from calicoctl.ops import plugin_protocol as protocol

        def on_bug(exc):
            LOG.error("Docker plugin request failed", exc_info=exc)

        def handle(path, body):
            started = time.monotonic()
            status, reply = protocol.dispatch(routes, path, body, on_bug=on_bug)
            LOG.info("%s -> %d%s (%.0f ms)", path, status, " Err: %s" % reply["Err"] if "Err" in reply else "",
                     (time.monotonic() - started) * 1000)
            return status, reply
        return handle

    def tick(self, now):
        if not self._servers or now < self._next_reconcile:
            return
        self._next_reconcile = now + (self.config.plugin_reconcile_interval if self._abandoned_started
                                      else STARTUP_RETRY)
        if self._reconciling.acquire(blocking=False):
            threading.Thread(target=self._reconcile, name="plugin-reconcile", daemon=True).start()

    def _reconcile(self):
        from calicoctl.errors import CalicoError
        try:
            # First the endpoints of containers that died unseen: their
            # addresses are free again for those started next.
            self._plugin.reconcile()
            if not self._abandoned_started:
                self._start_abandoned()
            self._postponed = None
        except CalicoError as exc:
            if str(exc) != self._postponed:         # once per cause, not every STARTUP_RETRY
                LOG.info("Docker plugin reconciliation postponed: %s", exc)
            self._postponed = str(exc)
        except Exception:  # a bug here must not end the thread silently
            LOG.exception("Docker plugin reconciliation failed")
        finally:
            self._reconciling.release()

    def _start_abandoned(self):
        outcomes = self._plugin.start_abandoned()
        if not outcomes:
            LOG.info("No container was waiting for the calico plugins")
        for container, problem in outcomes:
            if problem is None:
                LOG.info("Started container %s (%s, restart policy %s): Docker had given up on it because "
                         "the calico plugins were not there yet", container.name, container.id[:12],
                         container.restart_policy)
            else:
                LOG.error("Container %s (%s), which Docker gave up on because the calico plugins were not "
                          "there yet, does not start: %s", container.name, container.id[:12], problem)
        self._abandoned_started = True

    def close(self):
        while self._servers:
            self._servers.pop().stop()

    def status(self):
        sockets = [server.path for server in self._servers]
        return {"docker_plugins": {"sockets": sockets, "problem": self._problem}}
