"""Fixtures of the container tests (test_container_*.py); their helpers are
in containertools.py."""
import pytest

from tests.functional.containertools import HOST1, HOST2, seed


@pytest.fixture(scope="module")
def host1(make_module_simhost):
    """A simulated host (its own net/uts/mount namespaces) that plays the Docker host."""
    name, ip, ip6 = HOST1
    return make_module_simhost(name, ip, ip6=ip6)


@pytest.fixture(scope="module")
def host2(make_module_simhost):
    name, ip, ip6 = HOST2
    return make_module_simhost(name, ip, ip6=ip6)


@pytest.fixture
def seeded(lan_etcd, host1):
    """host1, with the pools and host addresses `calicoctl node` and `pool add` would write."""
    seed(lan_etcd.kv(), [host1])
    return lan_etcd
