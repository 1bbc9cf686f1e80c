"""Docker, through docker-py: the only module that imports it.

calicoctl asks Docker one thing: which container is this name or (short)
ID, what is its full ID, is it running, and which process holds its
network namespace. ``DockerAdapter.inspect`` answers with a small
``ContainerInfo``; everything else about Docker stays out of the project.
The agent also lists the containers (``list_container_ids``), follows
their starts and removals (``events``, ``ContainerEvent``) and starts
those Docker gave up on for want of its plugins (``start``).

Only Docker's own "No such container" answer is NotFound: any other error,
a 404 from something that is not the daemon, or a daemon we cannot reach is
doubt (DockerError / DockerUnavailable), which nobody may take for "gone".

The client follows ``DOCKER_HOST`` (and ``DOCKER_TLS_VERIFY`` /
``DOCKER_CERT_PATH``) from the environment it is given, and pins an API
version so docker-py does not spend a round trip asking the daemon for one.
docker-py's exceptions become ours: an unknown container is NotFound, a
daemon we cannot reach is DockerUnavailable (exit 3), a socket we may not
open says how to fix it (exit 2).
"""
import contextlib
from dataclasses import dataclass

from calicoctl.errors import (DockerError, DockerUnavailable, NotFound, NotRoot,
                              ValidationError)

# Every daemon since Docker 1.12 speaks 1.24, and current ones still accept
# it; the fields we read have not changed since.
API_VERSION = "1.24"
TIMEOUT = 30
DEFAULT_HOST = "unix:///var/run/docker.sock"


class DockerPermissionDenied(NotRoot):
    """The Docker socket exists but we may not open it."""


@dataclass(frozen=True)
class ContainerInfo:
    id: str                   # the full 64-hex-digit ID
    name: str                 # without Docker's leading '/'
    pid: int                  # 0 when not running
    running: bool
    network_mode: str         # 'default', 'bridge', 'host', 'none', 'container:<id>', ...
    endpoint_ids: tuple = ()  # IDs of its endpoints on Docker networks (while it runs)
    status: str = ""          # State.Status: 'created', 'running', 'exited', ...
    error: str = ""           # State.Error: why Docker's last start of it failed ('' if none)
    restart_policy: str = ""  # HostConfig.RestartPolicy.Name: 'always', 'unless-stopped', 'no', ...
    network_ids: tuple = ()   # IDs of the Docker networks it is connected to (running or not)

    @property
    def netns_path(self):
        """Where the container's network namespace can be opened (running only)."""
        return "/proc/%d/ns/net" % self.pid

    @property
    def host_networked(self):
        return self.network_mode == "host"

    @property
    def shares_netns(self):
        """True if it uses another container's network namespace."""
        return self.network_mode.startswith("container:")


@dataclass(frozen=True)
class ContainerEvent:
    id: str                   # the container's full ID
    action: str               # 'start' or 'destroy' (the only ones asked for)


EVENT_ACTIONS = ("start", "destroy")


def parse_event(data):
    """Pure: one decoded event of Docker's stream -> ContainerEvent, or None
    for anything that is not a container's start or destroy."""
    if not isinstance(data, dict) or data.get("Type", "container") != "container":
        return None
    action = data.get("Action") or data.get("status")
    container_id = (data.get("Actor") or {}).get("ID") or data.get("id")
    if action not in EVENT_ACTIONS or not isinstance(container_id, str) or not container_id:
        return None
    return ContainerEvent(id=container_id, action=action)


def is_no_such_container(explanation):
    """Pure: does a 404's explanation come from the daemon saying the container does not exist?"""
    return "no such container" in str(explanation or "").lower()


def parse_container_info(data):
    """Pure: docker's inspect JSON (a dict) -> ContainerInfo."""
    state = data.get("State") or {}
    host_config = data.get("HostConfig") or {}
    running = bool(state.get("Running")) and not state.get("Paused", False) \
        and not state.get("Restarting", False)
    networks = [net for net in ((data.get("NetworkSettings") or {}).get("Networks") or {}).values()
                if isinstance(net, dict)]
    return ContainerInfo(id=data["Id"], name=(data.get("Name") or "").lstrip("/"),
                         pid=int(state.get("Pid") or 0), running=running,
                         network_mode=host_config.get("NetworkMode") or "default",
                         endpoint_ids=tuple(sorted(net["EndpointID"] for net in networks if net.get("EndpointID"))),
                         status=state.get("Status") or "", error=state.get("Error") or "",
                         restart_policy=(host_config.get("RestartPolicy") or {}).get("Name") or "",
                         network_ids=tuple(sorted(net["NetworkID"] for net in networks if net.get("NetworkID"))))


@dataclass(frozen=True)
class NetworkInfo:
    """A Docker network as ``docker network inspect`` shows it: the endpoint
    IDs and addresses (bare IPs) of its containers, and its auxiliary addresses."""
    id: str
    name: str
    driver: str
    endpoint_ids: tuple = ()
    addresses: tuple = ()


def parse_network_info(data):
    """Pure: docker's network JSON (a dict) -> NetworkInfo."""
    endpoint_ids, addresses = [], []
    for container in (data.get("Containers") or {}).values():
        if container.get("EndpointID"):
            endpoint_ids.append(container["EndpointID"])
        for field in ("IPv4Address", "IPv6Address"):
            if container.get(field):
                addresses.append(container[field].split("/")[0])
    for config in (data.get("IPAM") or {}).get("Config") or ():
        addresses.extend(str(ip) for ip in (config.get("AuxiliaryAddresses") or {}).values())
    return NetworkInfo(id=data["Id"], name=data.get("Name") or "", driver=data.get("Driver") or "",
                       endpoint_ids=tuple(sorted(endpoint_ids)), addresses=tuple(sorted(addresses)))


def _find_os_error(exc, depth=0):
    """The OSError buried in a requests/urllib3 exception chain, if any."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    for inner in list(getattr(exc, "args", ())) + [exc.__cause__, exc.__context__,
                                                   getattr(exc, "reason", None)]:
        if isinstance(inner, BaseException):
            found = _find_os_error(inner, depth + 1)
            if found is not None:
                return found
    return None


class DockerAdapter:
    """A lazily connected docker-py client for one environment."""

    def __init__(self, env):
        self.env = dict(env)
        self.host = self.env.get("DOCKER_HOST") or DEFAULT_HOST
        """Where the daemon is expected (for messages)."""
        self._client = None

    def _api(self):
        if self._client is None:
            import docker
            from docker.utils import kwargs_from_env
            try:
                kwargs = kwargs_from_env(environment=self.env)
                kwargs.setdefault("base_url", DEFAULT_HOST)
                self._client = docker.APIClient(version=API_VERSION, timeout=TIMEOUT, **kwargs)
            except docker.errors.DockerException as exc:
                raise ValidationError("Invalid Docker settings (DOCKER_HOST=%s): %s" % (self.host, exc)) from None
        return self._client

    def inspect(self, name_or_id):
        """ContainerInfo for a container name or (short) ID on this host."""
        if not name_or_id or "/" in name_or_id.lstrip("/"):
            raise ValidationError("Invalid container name or ID %r." % (name_or_id,))
        import docker
        api = self._api()
        try:
            with self._translated("inspect %s" % name_or_id):
                data = api.inspect_container(name_or_id)
        except docker.errors.NotFound as exc:
            if not is_no_such_container(exc.explanation):
                raise DockerError("Docker at %s answered an unexpected 404 for %s: %s"
                                  % (self.host, name_or_id, exc.explanation or exc)) from None
            raise NotFound("Container %s not found." % name_or_id) from None
        return parse_container_info(data)

    def list_container_ids(self, status=None):
        """Full IDs of every container Docker has (running or not; only those
        whose State.Status is ``status`` if given), as a frozenset."""
        api = self._api()
        with self._translated("list containers"):
            listed = api.containers(all=True, quiet=True, filters={"status": status} if status else None)
        return frozenset(entry["Id"] for entry in listed)

    def start(self, container_id):
        """``docker start``: NotFound if Docker has no such container, else
        DockerError with Docker's reason if it fails."""
        import docker
        api = self._api()
        try:
            with self._translated("start container %s" % container_id[:12]):
                api.start(container_id)
        except docker.errors.NotFound as exc:
            if is_no_such_container(exc.explanation):
                raise NotFound("Container %s not found." % container_id[:12]) from None
            raise DockerError("Docker refused to start container %s: %s"
                              % (container_id[:12], exc.explanation or exc)) from None

    def events(self):
        """Follow containers' starts and removals: an iterator of ContainerEvent.

        The subscription is made before this returns, so a listing taken
        afterwards misses nothing; the iterator ends when the stream drops
        (daemon restarted or gone). ``close`` ends it from another thread.
        """
        api = self._api()
        with self._translated("send events"):
            stream = api.events(decode=True, filters={"type": "container",
                                                      "event": list(EVENT_ACTIONS)})
        return _EventStream(stream, self._translated)

    def inspect_network(self, network_id):
        """NetworkInfo of a network, or None if Docker has none by that ID."""
        import docker
        api = self._api()
        try:
            with self._translated("inspect network %s" % network_id):
                return parse_network_info(api.inspect_network(network_id))
        except docker.errors.NotFound:
            return None

    def list_networks(self, driver):
        """NetworkInfo of every network of ``driver`` (with their containers)."""
        api = self._api()
        with self._translated("list networks"):
            ids = [net["Id"] for net in api.networks(filters={"driver": driver})]
        found = [self.inspect_network(network_id) for network_id in ids]
        return [info for info in found if info is not None]

    def try_create_network(self, name, driver, ipam_driver, options):
        """Ask Docker to create a network; returns its ID, or raises DockerError
        with Docker's reason (checksystem uses the refusal as a probe)."""
        api = self._api()
        import docker
        with self._translated("create network %s" % name):
            ipam = docker.types.IPAMConfig(driver=ipam_driver)
            return api.create_network(name, driver=driver, ipam=ipam, options=options)["Id"]

    def remove_network(self, network_id):
        import docker
        api = self._api()
        try:
            with self._translated("remove network %s" % network_id):
                api.remove_network(network_id)
        except docker.errors.NotFound:
            pass

    def server_api_version(self):
        """The daemon's API version string, e.g. '1.41' (checksystem)."""
        api = self._api()
        with self._translated("answer the version request"):
            return str(api.version(api_version=False).get("ApiVersion", ""))

    @contextlib.contextmanager
    def _translated(self, what):
        """docker-py / requests exceptions -> ours (docker.errors.NotFound passes through)."""
        import docker
        import requests
        try:
            yield
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            raise DockerError("Docker refused to %s: %s" % (what, exc.explanation or exc)) from None
        except requests.exceptions.Timeout:
            raise DockerUnavailable("Docker at %s did not answer within %d s."
                                    % (self.host, TIMEOUT)) from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException, OSError) as exc:
            raise self._connection_error(exc) from None

    def _connection_error(self, exc):
        cause = _find_os_error(exc)
        if isinstance(cause, PermissionError):
            return DockerPermissionDenied(
                "Permission denied on the Docker socket (%s): run as root, or as a member "
                "of the docker group." % self.host)
        return DockerUnavailable("Cannot reach Docker at %s: is the daemon running? (%s)"
                                 % (self.host, cause.strerror if cause is not None and cause.strerror
                                    else type(exc).__name__))

    def close(self):
        """Close the client (and with it any event stream, from any thread)."""
        if self._client is not None:
            self._client.close()
            self._client = None


_END = object()


class _EventStream:
    """Docker's event stream as ContainerEvents; ends when the stream drops."""

    def __init__(self, stream, translated):
        self._stream = stream
        self._translated = translated

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            with self._translated("stream events"):
                data = next(self._stream, _END)
            if data is _END:
                raise StopIteration
            event = parse_event(data)
            if event is not None:
                return event

    def close(self):
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001 - closing a stream that already broke
            pass
