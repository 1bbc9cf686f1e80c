"""calico-agent: the node agent's entry point and composition root.

Usage: calico-agent [--hostname=<H>] [--log-dir=<DIR>] [--run-dir=<DIR>] [--no-docker-plugins]
                    [--dataplane=auto|nftables|iptables] [--plugin-fds=calico:<FD>,calico-ipam:<FD>]

Builds everything and runs the main loop in the foreground: the
configuration (``config.AgentConfig``: command line and environment),
logging, the check that etcd serves the API ``DATASTORE_TYPE`` names, the
pid file (one agent per run directory), the etcd connections, the
components (``components.build_components``), the watcher
(``watcher.EtcdWatcher``) and the status reporter
(``status_reporter.StatusReporter``), then hands them to the loop
(``loop.Agent``, which the docstring of calicoctl/agent/loop.py describes).

The Docker plugins' sockets (``plugins.DockerPlugins``) are normally bound
by ``calicoctl node`` before it or this process does anything slow (etcd,
the API check below) and inherited (``--plugin-fds``): Docker, starting at
boot, finds them and its requests wait until they are served.

SIGTERM / SIGINT: close the components (BIRD is stopped; iptables, ipsets
and routes stay) and exit 0.
"""
import argparse
import logging
import os
import signal
import sys

from calicoctl import identity
from calicoctl.host import daemon

LOG = logging.getLogger(identity.MODULE)

LOG_FILE = "agent.log"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="calico-agent",
                                     description="Calico node agent: programs this host from etcd.")
    parser.add_argument("--hostname", default=None,
                        help="this host's name (default: $CALICO_HOSTNAME or the system hostname)")
    parser.add_argument("--log-dir", default=None, help="directory for agent.log (default /var/log/calico)")
    parser.add_argument("--run-dir", default=None,
                        help="directory for the pid and status files (default %s)" % identity.RUN_DIR)
    parser.add_argument("--dataplane", default=None,
                        help="the policy dataplane: nftables, iptables or auto (default: nftables where the "
                             "host supports it)")
    parser.add_argument("--no-docker-plugins", action="store_true",
                        help="do not serve the calico and calico-ipam Docker plugins")
    parser.add_argument(identity.PLUGIN_FDS_OPTION, dest="plugin_fds", type=identity.parse_plugin_fds,
                        default={}, help="the plugins' sockets, inherited already listening "
                        "(calicoctl node binds them): calico:<fd>,calico-ipam:<fd>")
    return parser.parse_args(argv)


def setup_logging(log_dir, level="INFO"):
    """Log to <log_dir>/agent.log (``level``) and stderr (WARNING). Returns the log path or None."""
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    formatter = logging.Formatter("%(asctime)s.%(msecs)03d [%(levelname)s] %(name)s %(process)d: %(message)s",
                                  "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(formatter)
    root.addHandler(console)
    path = os.path.join(log_dir, LOG_FILE)
    try:
        os.makedirs(log_dir, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError as exc:
        LOG.warning("Cannot write %s (%s); logging to stderr only", path, exc)
        return None
    handler.setFormatter(formatter)
    root.addHandler(handler)
    for each in (console, handler):
        each.addFilter(_quiet_libraries)
    return path


NOISY_LIBRARIES = ("pyroute2", "urllib3", "asyncio", "etcd")


def _quiet_libraries(record):
    """Drop libraries' debug/info output (every netlink message, every HTTP
    request), which would drown ours at DEBUG."""
    return record.levelno >= logging.WARNING or not record.name.startswith(NOISY_LIBRARIES)


def main(argv=None, env=None):
    """Run the agent; returns the process exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    from calicoctl.agent.config import AgentConfig, describe
    from calicoctl.errors import CalicoError
    try:
        config = AgentConfig.from_environment(env, hostname=args.hostname, log_dir=args.log_dir,
                                              run_dir=args.run_dir, dataplane=args.dataplane)
    except CalicoError as exc:
        sys.stderr.write("%s\n" % exc)
        return exc.exit_code
    if os.geteuid() != 0:
        sys.stderr.write("calico-agent must run as root.\n")
        return 2
    setup_logging(config.log_dir, config.log_level)
    try:
        os.makedirs(config.run_dir, exist_ok=True)
    except OSError as exc:
        LOG.error("Cannot create %s: %s", config.run_dir, exc)
        return 1
    from calicoctl.datastore import etcdconn
    try:
        settings = etcdconn.parse_settings(env)
        problem = check_datastore_api(etcdconn.connect(env))
    except CalicoError as exc:
        LOG.error("%s", exc)
        return exc.exit_code
    if problem:
        LOG.error("%s", problem)
        return 1
    config.docker_plugins = not args.no_docker_plugins
    config.plugin_fds = args.plugin_fds
    config.etcd_endpoints = tuple((endpoint.host, endpoint.port) for endpoint in settings.endpoints)
    pid_path = os.path.join(config.run_dir, identity.PID_FILE)
    other = daemon.read_pid_file(pid_path)
    # Only an agent in our mount and network namespaces (same run dir, same
    # dataplane) is a conflict; a pid reused by another simulated host's is not.
    if other and other != os.getpid() and daemon.process_matches(other, identity.MARKERS, ("mnt", "net")):
        LOG.error("Another agent (pid %d) is running for %s; not starting.", other, config.run_dir)
        return 1
    daemon.write_pid_file(pid_path, os.getpid())
    LOG.info("Starting calico-agent %s (pid %d): %s", _version(), os.getpid(), describe(config))

    from calicoctl.agent.components import build_components
    from calicoctl.agent.loop import Agent
    from calicoctl.agent.status_reporter import StatusReporter
    from calicoctl.agent.watcher import EtcdWatcher
    from calicoctl.datastore.client import DatastoreClient

    def watcher_factory(emit):
        return EtcdWatcher(etcdconn.connect(env), emit, watch_timeout=config.watch_timeout,
                           retry_interval=config.etcd_retry_interval)

    datastore = DatastoreClient(etcdconn.connect(env))
    reporter = StatusReporter(config, lambda: etcdconn.connect(env))
    reporter.start()
    agent = Agent(config, build_components(config, datastore, env), watcher_factory, reporter)
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    try:
        return agent.run()
    finally:
        daemon.remove_pid_file(pid_path, os.getpid())


def check_datastore_api(kv):
    """A message if etcd answers but not with the API ``DATASTORE_TYPE`` names
    (the agent then refuses to start), else None. An etcd that does not
    answer yet is no reason to refuse: the watcher waits for it."""
    from calicoctl.datastore import etcdconn
    from calicoctl.errors import DatastoreError, DatastoreUnavailable
    try:
        etcdconn.check_api(kv)
    except DatastoreUnavailable:
        return None
    except DatastoreError as exc:
        return "Not starting: %s" % exc
    return None


def _version():
    from calicoctl import __version__
    return __version__


if __name__ == "__main__":
    sys.exit(main())
