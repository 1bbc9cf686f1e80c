"""The CNI plugins' back end inside the agent (docs/decisions.md, "CNI plugins").

``CniServer`` serves ``<run-dir>/cni.sock`` from the agent's process: the
``calico`` and ``calico-ipam`` binaries (calicoctl/cni_client.py) hand it
every invocation and ``calicoctl.ops.cni_plugin.CniPlugin`` answers it, on
the server's threads (one per request), with its own etcd connection, so a
container runtime never waits for the main loop nor the loop for it. It
takes no keys from the loop.
"""
import logging
import os

from calicoctl import identity
from calicoctl.agent.component import Component

LOG = logging.getLogger(__name__)


class CniServer(Component):
    def __init__(self, config, plugin_factory):
        """:param plugin_factory: builds the ops.cni_plugin.CniPlugin (with its
        own datastore client)."""
        self.config = config
        self.path = os.path.join(config.run_dir, identity.CNI_SOCKET)
        self._factory = plugin_factory
        self._server = None
        self._problem = None

    def start(self, wake):
        from calicoctl.host import plugin_server
        try:
            plugin = self._factory()
            self._server = plugin_server.PluginServer("cni", self.path, plugin.handle,
                                                      handler=plugin_server.FrameHandler).start()
            LOG.info("Serving the CNI plugins on %s", self.path)
        except (OSError, RuntimeError) as exc:
            self._problem = "cannot serve the CNI plugins: %s" % exc
            LOG.error("%s", self._problem)

    def close(self):
        if self._server is not None:
            self._server.stop()
            self._server = None

    def status(self):
        return {"cni": {"socket": self.path if self._server is not None else None, "problem": self._problem}}
