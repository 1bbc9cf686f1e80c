"""Shared pytest fixtures: the real-component harness (tests/harness/).

Expensive components are session-scoped: one etcd on loopback, one Docker
daemon (reused if the machine already runs one) with a local ``busybox``
image, one simulated LAN.  Per-test fixtures only reset or add to them:
``etcd`` wipes /calico, ``make_container`` and ``make_simhost`` remove what
they made.

Tests under tests/functional and tests/system get the ``functional`` and
``system`` markers automatically; functional tests that take more than
about 2 s carry ``slow`` (``make check`` runs the others).
"""
import os

import pytest

from tests.harness.etcd import EtcdServer, make_kv

MARKERS = {
    "functional": "real kernel/etcd/Docker components, one at a time",
    "system": "whole calicoctl + agent on simulated hosts",
    "slow": "a functional test that takes more than about 2 s: make check leaves it out",
}

LAN_ETCD_PORT = 2379


def pytest_configure(config):
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", "%s: %s" % (name, description))


def pytest_collection_modifyitems(config, items):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        relative = os.path.relpath(str(item.path), tests_dir)
        tier = relative.split(os.sep, 1)[0]
        if tier in ("functional", "system"):
            item.add_marker(getattr(pytest.mark, tier))


def _is_root():
    return os.geteuid() == 0


@pytest.fixture(scope="session")
def root_required():
    """Skip the test unless running as root (namespaces, mounts, dockerd)."""
    if not _is_root():
        pytest.skip("needs root")


# -- etcd --------------------------------------------------------------------

class EtcdHandle:
    """What a test needs to talk to the session's etcd.

    :ivar authority: ``127.0.0.1:<port>``.
    :ivar env: ``{"ETCD_AUTHORITY": authority}`` for calicoctl/the agent
        (and ``DATASTORE_TYPE=etcdv2`` on the v2 etcd).
    :ivar server: the EtcdServer (stop/restart it only if you restore it).
    :ivar datastore: "etcdv3" or "etcdv2".
    """

    def __init__(self, server):
        self.server = server
        self.authority = server.authority
        self.datastore = server.datastore
        self.env = server.env

    def kv(self):
        """calicoctl's key-value store for this etcd, in its API (v3 or v2)."""
        return make_kv(self.env)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """One real etcd on loopback for the whole session, serving only the v3
    API (as Debian's etcd does unless told otherwise, and etcd 3.6 always)."""
    server = EtcdServer(str(tmp_path_factory.mktemp("etcd") / "data"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_v2_server(tmp_path_factory):
    """One real etcd with the v2 API on (next to v3) for the whole session."""
    server = EtcdServer(str(tmp_path_factory.mktemp("etcd-v2") / "data"), datastore="etcdv2")
    server.start()
    yield server
    server.stop()


def _wiped(server):
    if not server.running:
        # A test stopped or killed it: bring it back for the next one.
        server.start()
    server.wipe()
    return EtcdHandle(server)


@pytest.fixture
def etcd(etcd_server):
    """The session etcd (v3) with /calico wiped before the test."""
    yield _wiped(etcd_server)


@pytest.fixture
def etcd_v2(etcd_v2_server):
    """The session etcd serving v2, with /calico wiped in both its keyspaces."""
    yield _wiped(etcd_v2_server)


@pytest.fixture(params=("etcdv3", "etcdv2"))
def any_etcd(request):
    """The session etcd of each datastore in turn (v3 without the v2 API,
    then v2), /calico wiped. A module runs its tests on both by overriding
    ``etcd`` with a fixture returning ``any_etcd``."""
    yield _wiped(request.getfixturevalue("etcd_server" if request.param == "etcdv3" else "etcd_v2_server"))


# -- Docker ------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_daemon(root_required):
    """A docker-py client on a running dockerd with ``busybox:latest`` present."""
    from tests.harness.docker import ensure_busybox_image, ensure_dockerd

    daemon = ensure_dockerd()
    client = daemon.client()
    try:
        ensure_busybox_image(client)
        yield client
    finally:
        client.close()
        daemon.stop()


@pytest.fixture
def make_container(docker_daemon):
    """Factory: ``make_container(name=None)`` runs ``--net=none -tid busybox``
    and returns the docker-py Container; all are force-removed afterwards."""
    from tests.harness.docker import ContainerFactory

    factory = ContainerFactory(docker_daemon)
    yield factory
    factory.remove_all()


# -- simulated hosts ---------------------------------------------------------

@pytest.fixture(scope="session")
def lan(root_required):
    """One simulated LAN (172.17.8.0/24, gateway 172.17.8.1) for the session."""
    from tests.harness.simhost import Lan

    with Lan(name="calico-lan-%d" % os.getpid()) as the_lan:
        yield the_lan


class LanEtcd:
    """The session etcd as simulated hosts see it.

    :ivar authority: ``<lan gateway>:2379`` (forwarded to the loopback etcd).
    :ivar env: ``{"ETCD_AUTHORITY": authority}`` for commands run in a SimHost.
    :ivar local_authority: the same etcd from the test process.
    """

    def __init__(self, authority, local_authority):
        self.authority = authority
        self.local_authority = local_authority
        self.env = {"ETCD_AUTHORITY": authority}

    def kv(self):
        """calicoctl's key-value store for this etcd, from the test process."""
        return make_kv({"ETCD_AUTHORITY": self.local_authority})


@pytest.fixture(scope="session")
def _lan_etcd_forward(lan, etcd_server):
    forward = lan.expose(etcd_server.authority, LAN_ETCD_PORT, host=lan.gateway)
    yield forward
    forward.stop()


@pytest.fixture
def lan_etcd(_lan_etcd_forward, etcd):
    """The session etcd, wiped, reachable from SimHosts at gateway:2379."""
    return LanEtcd(_lan_etcd_forward.authority, etcd.authority)


def _simhosts(lan):
    """Yields a factory ``(name, ip, **kwargs)`` that starts SimHosts on ``lan``;
    stops them all when resumed."""
    from tests.harness.simhost import SimHost

    made = []

    def factory(name, ip, **kwargs):
        host = SimHost(name, ip, lan, **kwargs)
        made.append(host)
        return host.start()

    yield factory
    for host in made:
        host.stop()


@pytest.fixture
def make_simhost(lan, docker_daemon):
    """Factory: ``make_simhost(name, ip, ip6=None, **SimHost options)`` starts
    a SimHost on the session LAN; all are stopped after the test.

    Depends on ``docker_daemon`` because a SimHost binds Docker's socket into
    its /run when it starts: the daemon must be up first."""
    yield from _simhosts(lan)


@pytest.fixture(scope="module")
def make_module_simhost(lan, docker_daemon):
    """``make_simhost`` for hosts a whole module shares (starting one costs
    more than most tests): they are stopped at the end of the module."""
    yield from _simhosts(lan)
