"""BGP for the node: BIRD kept running with the configuration etcd calls for.

``BirdManager`` (an agent Component) renders the configuration with
``calicoctl.agent.bgp.bird_config``, writes ``<run-dir>/bird.cfg`` atomically
once BIRD has accepted the text, starts ``bird -f`` (``calicoctl.host.bird``),
asks it to re-read the file (``birdc configure``) when the text changes,
restarts it when it dies, adopts one a previous agent left running, and
stops it when the agent exits.
"""
import logging
import os
import time

from calicoctl import identity
from calicoctl.agent.bgp.bird_config import (KINDS, calculate_bird_inputs, is_relevant_key, parse_pools,
                                             render_bird_config)
from calicoctl.agent.component import Component
from calicoctl.host import bird as bird_host
from calicoctl.host import daemon

LOG = logging.getLogger(__name__)

# How often a dead BIRD is restarted at most (seconds between attempts).
RESTART_INTERVAL = 1.0
STOP_TIMEOUT = 5.0


class BirdManager(Component):
    """Keeps one BIRD running with the configuration etcd calls for.

    It reads its leaves (BGP settings, host addresses, peers, pools, the
    interface prefix) from the shared view.

    :param config: the AgentConfig (hostname, run_dir, log_dir).
    :param ipip_tunnelled: callable -> bool, True when the agent routes IPIP
        pools itself (the IPIP component's verdict on the kernel).
    """

    kinds = KINDS

    def __init__(self, config, ipip_tunnelled=lambda: False, bird_binary=bird_host.BIRD,
                 birdc_binary=bird_host.BIRDC):
        self.hostname = config.hostname
        # Absolute: BIRD runs with / as its working directory.
        self.run_dir = os.path.abspath(config.run_dir)
        self.log_dir = os.path.abspath(config.log_dir)
        self.config_path = os.path.join(self.run_dir, identity.BIRD_CONFIG)
        self.socket_path = os.path.join(self.run_dir, identity.BIRD_SOCKET)
        self.pid_path = os.path.join(self.run_dir, identity.BIRD_PID_FILE)
        self.log_path = os.path.join(self.log_dir, "bird.log")
        self._ipip_tunnelled = ipip_tunnelled
        self._bird = bird_binary
        self._birdc = birdc_binary
        self._items = {}
        """The view's leaves of our kinds (a live, read-only mapping)."""
        self._dirty = True
        self._wanted_text = None
        """The config text BIRD should be running with; None: BIRD should not run."""
        self._loaded_text = None
        """The text BIRD last read (at start or reload); differs while a reload is due."""
        self._daemon = None
        """The daemon.Daemon of a BIRD we started (None for an adopted one)."""
        self._pid = None
        self._last_start = -RESTART_INTERVAL
        self.restarts = 0
        """How often BIRD died and was started again (for tests and status)."""

    # -- Component interface -------------------------------------------------------
    def on_snapshot(self, view):
        self._items = view.leaves(self.kinds)
        self._dirty = True

    def on_update(self, key, value):
        if is_relevant_key(key, self.hostname):
            self._dirty = True

    def flush(self):
        if self._dirty:
            self._dirty = False
            # Only ask (the IPIP probe may touch the kernel) when it matters.
            ipip = any(pool.ipip for pool in parse_pools(self._items)) and bool(self._ipip_tunnelled())
            inputs = calculate_bird_inputs(self._items, self.hostname, ipip_tunnelled=ipip)
            self._wanted_text = render_bird_config(inputs) if inputs is not None else None
        self._apply()

    def tick(self, now):
        self._apply()     # restarts a dead BIRD; retries a reload that failed

    def close(self):
        self.stop_bird()

    # -- state -------------------------------------------------------------------------
    @property
    def pid(self):
        return self._pid

    @property
    def running(self):
        if self._daemon is not None:
            return self._daemon.exit_code() is None
        return self._pid is not None and bird_host.is_serving(self._pid, self.socket_path)

    def _apply(self):
        if self._wanted_text is None:
            if self._pid is not None:
                LOG.info("No IPv4 address recorded for %s: stopping BIRD", self.hostname)
                self.stop_bird()
            return
        if self._pid is None:
            self._adopt_running_bird()
        if not self.running:
            if time.monotonic() - self._last_start < RESTART_INTERVAL:
                return        # a BIRD that dies at once must not be restarted in a tight loop
            if self._pid is not None:
                LOG.warning("BIRD (pid %d) is not running; starting it again", self._pid)
                self.restarts += 1
            self._write_config(self._wanted_text)
            self._start()
            return
        if self._loaded_text != self._wanted_text:
            self._write_config(self._wanted_text)
            if self._reload():
                self._loaded_text = self._wanted_text

    def _write_config(self, text):
        """Write bird.cfg atomically, after BIRD itself has accepted the text."""
        def accept(temp):
            accepted, complaint = bird_host.check_config(temp, self._bird)
            if not accepted:
                # A bug in render_bird_config: keep the last good file.
                LOG.error("BIRD rejects the rendered configuration, keeping the old one: %s\n%s",
                          complaint, text)
            return accepted
        daemon.write_atomically(self.config_path, text, accept=accept)

    def _start(self):
        self._daemon = bird_host.start(self.config_path, self.socket_path, self.pid_path, self.log_path,
                                       self._bird)
        self._pid = self._daemon.pid
        self._last_start = time.monotonic()
        self._loaded_text = self._wanted_text
        LOG.info("Started BIRD (pid %d) with %s", self._pid, self.config_path)

    def _reload(self):
        accepted, code, text = bird_host.reconfigure(self.socket_path, self._birdc)
        if accepted:
            LOG.info("BIRD re-read %s", self.config_path)
            return True
        LOG.warning("birdc configure did not succeed (exit %d): %s", code, text)
        return False

    def _adopt_running_bird(self):
        """Take over a BIRD a previous agent started for this run dir, if alive."""
        pid = daemon.read_pid_file(self.pid_path)
        if pid is not None and bird_host.is_serving(pid, self.socket_path):
            self._pid = pid
            self._last_start = time.monotonic()
            self._loaded_text = None        # unknown: reload once
            LOG.info("Adopted running BIRD (pid %d)", pid)

    def stop_bird(self):
        """Stop BIRD by PID (SIGTERM, then SIGKILL); BIRD withdraws its routes."""
        pid, started = self._pid, self._daemon
        self._pid = self._daemon = None
        self._loaded_text = None
        if pid is None:
            return
        bird_host.stop(pid, STOP_TIMEOUT, popen=started.popen if started is not None else None)
        LOG.info("Stopped BIRD (pid %d)", pid)
