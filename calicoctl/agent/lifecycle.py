"""Workloads keep their networking through restarts, reboots and removal.

A component of the agent with a thread of its own that follows Docker:
when it connects (agent start, Docker appearing, the event stream
reconnecting after a drop or a daemon restart) it subscribes to Docker's
events, then lists the containers and checks every Docker workload of this
host in etcd; after that it handles each container ``start`` and
``destroy`` event. Per workload (decisions in ``ops.lifecycle_logic``):

- container running: re-create any endpoint that lost its veth (the old
  namespace died), in the new namespace (``ops.container.restore_container``,
  the code ``container add`` uses);
- Docker says "No such container" (and the listing agrees): release the
  claims and remove the endpoints and record, as ``calicoctl container
  remove`` does, log it, and leave a note for a week
  (``ops.container.release_removed_container``) so that a later ``container
  remove`` says the networking went with the container;
- stopped, or any doubt (an error, Docker unreachable): nothing.

Only this host's workloads are ever looked at, and only those whose ID is a
Docker container ID. Docker not running is said once in the log; the
thread keeps trying and picks Docker up when it appears.

The thread has its own Docker client and its own etcd connection, and does
not use the main loop: the dataplane learns of re-created interfaces from
the kernel as of any other.
"""
import logging
import threading

from calicoctl.agent.component import Component
from calicoctl.errors import CalicoError, DatastoreUnavailable, DockerUnavailable, NotFound
from calicoctl.ops.container_logic import ORCHESTRATOR
from calicoctl.ops.lifecycle_logic import Action, Presence, decide_workload, is_docker_container_id

LOG = logging.getLogger(__name__)

RETRY_INTERVAL = 1.0


class WorkloadLifecycle(Component):
    """See the module docstring.

    :param docker_factory: makes a DockerAdapter (one per connection).
    :param datastore_factory: makes the DatastoreClient this thread uses.
    """

    def __init__(self, config, docker_factory, datastore_factory, retry_interval=RETRY_INTERVAL):
        self.hostname = config.hostname
        self._docker_factory = docker_factory
        self._datastore_factory = datastore_factory
        self._datastore = None
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload-lifecycle", daemon=True)
        self._stream = None
        self._said_unreachable = False
        self._lock = threading.Lock()

    # -- Component ----------------------------------------------------------------------
    def start(self, wake):
        self._thread.start()

    def close(self):
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()      # ends a blocked read of the event stream
        self._thread.join(timeout=2.0)

    # -- the thread ---------------------------------------------------------------------
    def _run(self):
        while not self._stop.is_set():
            docker = self._docker_factory()
            try:
                self._follow(docker)
            except DockerUnavailable as exc:
                if not self._said_unreachable:
                    LOG.warning("Docker is not reachable (%s); workloads are checked once it answers", exc)
                    self._said_unreachable = True
            except CalicoError as exc:
                LOG.warning("Following Docker failed, listing again soon: %s", exc)
            except Exception:  # a bug here must not end the thread
                LOG.exception("Following Docker failed, listing again soon")
            finally:
                docker.close()
            self._stop.wait(self.retry_interval)

    def _follow(self, docker):
        """Subscribe, list, then handle events until the stream drops."""
        stream = docker.events()
        with self._lock:
            self._stream = stream
        try:
            self._check_all(docker)
            if self._said_unreachable:
                LOG.info("Docker at %s answers again", docker.host)
            self._said_unreachable = False
            for event in stream:
                if self._stop.is_set():
                    return
                self._check_one(docker, event.id, listed=None)
            if not self._stop.is_set():
                LOG.info("Docker's event stream ended; listing the containers again")
        finally:
            with self._lock:
                self._stream = None
            stream.close()

    def _datastore_client(self):
        if self._datastore is None:
            self._datastore = self._datastore_factory()
        return self._datastore

    def _check_all(self, docker):
        listed = docker.list_container_ids()
        workloads = self._datastore_client().list_workloads(self.hostname, ORCHESTRATOR)
        for workload in workloads:
            if is_docker_container_id(workload.workload_id):
                self._check_one(docker, workload.workload_id, listed=workload.workload_id in listed)

    def _check_one(self, docker, workload_id, listed):
        """``_check``, where trouble with this one workload does not hold up
        the others; Docker or etcd unreachable does (the caller lists again)."""
        try:
            self._check(docker, workload_id, listed)
        except (DockerUnavailable, DatastoreUnavailable):
            raise
        except CalicoError as exc:
            LOG.error("Container %s: cannot restore or release its networking: %s", workload_id[:12], exc)

    def _check(self, docker, workload_id, listed):
        """Decide and act for one container of this host (if it is a workload here)."""
        from calicoctl.ops import container as container_ops
        datastore = self._datastore_client()
        workload = datastore.get_workload(self.hostname, ORCHESTRATOR, workload_id)
        if workload is None:
            return
        presence = _presence(docker, workload_id)
        action = decide_workload(workload_id, presence, listed)
        label = "%s (%s)" % (workload_id[:12], workload.name or "no name")
        if action is Action.RESTORE:
            result = container_ops.restore_container(datastore, docker, self.hostname, workload_id)
            if result.restored:
                LOG.info("Container %s restarted: re-created endpoint(s) %s",
                         label, ", ".join(result.restored))
            for problem in result.problems:
                LOG.error("Container %s: cannot restore %s", label, problem)
        elif action is Action.RELEASE:
            try:
                result = container_ops.release_removed_container(datastore, docker, self.hostname, workload_id)
            except NotFound:
                return      # removed meanwhile (calicoctl container remove)
            if result.removed_by_docker:
                return      # released meanwhile (another check of ours)
            LOG.info("Container %s was removed from Docker: released %s, removed its endpoint(s) %s",
                     label, ", ".join(result.released) or "no address",
                     ", ".join(ep.endpoint_id for ep in result.workload.endpoints) or "(none)")


def _presence(docker, workload_id):
    """Presence of a container; DockerUnavailable propagates (the caller retries)."""
    try:
        info = docker.inspect(workload_id)
    except NotFound:
        return Presence.GONE
    except DockerUnavailable:
        raise
    except CalicoError as exc:
        LOG.warning("Docker could not say what became of container %s: %s", workload_id[:12], exc)
        return Presence.UNKNOWN
    return Presence.RUNNING if info.running else Presence.STOPPED
