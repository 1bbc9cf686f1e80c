"""Fixtures of the container tests (test_container_*.py); their helpers are
in containertools.py."""
import pytest

from tests.functional.containertools import HOST1, HOST2, seed, start_host


@pytest.fixture(scope="module")
def host1(lan, docker_daemon):
    """A simulated host (its own net/uts/mount namespaces) that plays the Docker host."""
    host = start_host(lan, HOST1)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def host2(lan, docker_daemon):
    host = start_host(lan, HOST2)
    yield host
    host.stop()


@pytest.fixture
def seeded(lan_etcd, host1):
    """host1, with the pools and host addresses `calicoctl node` and `pool add` would write."""
    seed(lan_etcd.kv(), [host1])
    return lan_etcd
