"""Fixtures of the container tests (test_container_*.py; their helpers are
in containertools.py) and of the tests that drive a policy dataplane in a
module's ``host``."""
import pytest

from tests.functional.containertools import HOST1, HOST2, seed
from tests.harness.dataplanes import wipe
from tests.harness.multihost import remove_netns_workloads


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


@pytest.fixture
def clean(host):
    """The module's ``host`` with no state of either policy dataplane and no
    netns workloads, before and after the test."""
    wipe(host)
    remove_netns_workloads(host)
    yield host
    wipe(host)
    remove_netns_workloads(host)
