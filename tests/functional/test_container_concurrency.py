"""Races: one IP wanted by two hosts at once, one container added twice at
once, and raw claims from many processes. Exactly one may win; losers
leave nothing behind."""
import json
import subprocess
import sys
import time

import pytest

from tests.functional.containertools import (REPO_ROOT, cali_links, claims, in_container, links,
    new_cali_links, seed, workload_keys)

pytestmark = pytest.mark.usefixtures("root_required")


def start_cli(host, argv, env):
    child_env = dict(env, PYTHONPATH=REPO_ROOT, CALICO_HOSTNAME=None, DOCKER_HOST=None)
    return host.popen([sys.executable, "-m", "calicoctl"] + list(argv), env=child_env, cwd=REPO_ROOT,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.mark.parametrize("ip", ["192.168.2.1", "fd80:24e2:f998:72d6::2:1"])
@pytest.mark.slow
def test_two_hosts_race_for_one_ip(lan_etcd, host1, host2, make_container, ip):
    client = lan_etcd.kv()
    seed(client, [host1, host2])
    for _attempt in range(3):
        c1, c2 = make_container(), make_container()
        known = {host.name: cali_links(host) for host in (host1, host2)}
        p1 = start_cli(host1, ["container", "add", c1.name, ip], lan_etcd.env)
        p2 = start_cli(host2, ["container", "add", c2.name, ip], lan_etcd.env)
        results = {host1.name: (finish(p1), c1, host1), host2.name: (finish(p2), c2, host2)}
        winners = [name for name, ((rc, _, _), _, _) in results.items() if rc == 0]
        assert len(winners) == 1, results
        for name, ((rc, _out, err), container, host) in results.items():
            if name in winners:
                assert claims(client) == {ip: "%s/docker/%s" % (name, container.id)}
                assert "eth1" in links(in_container(container))
            else:
                assert rc == 1 and "already assigned" in err and err.count("\n") == 1, err
                assert set(links(in_container(container))) == {"lo"}
                assert new_cali_links(host, known[host.name]) == []
        assert len(workload_keys(client)) == 2            # the winner's endpoint and name
        # Free the address for the next round.
        winner_container = results[winners[0]][1]
        winner_container.remove(force=True)
        client.delete_tree("/calico/v1/host")
        client.delete_tree("/calico/v1/ipam/v%d/assignment" % (6 if ":" in ip else 4))


def test_one_container_added_twice_at_once(lan_etcd, host1, make_container):
    client = lan_etcd.kv()
    seed(client, [host1])
    c1 = make_container()
    known = cali_links(host1)
    p1 = start_cli(host1, ["container", "add", c1.name, "192.168.2.10"], lan_etcd.env)
    p2 = start_cli(host1, ["container", "add", c1.name, "192.168.2.11"], lan_etcd.env)
    (rc1, _, err1), (rc2, _, err2) = finish(p1), finish(p2)
    assert sorted([rc1, rc2]) == [0, 1], (err1, err2)
    # One interface, one endpoint, one claim: the loser rolled its own back.
    assert set(links(in_container(c1))) == {"lo", "eth1"}
    assert len(new_cali_links(host1, known)) == 1
    assert len(claims(client)) == 1
    assert len([k for k in workload_keys(client) if "/endpoint/" in k]) == 1


def test_one_container_added_twice_with_different_interfaces(lan_etcd, host1, make_container):
    """Different --interface names pass the inside-name check, so only the
    workload lock keeps both adds from succeeding."""
    client = lan_etcd.kv()
    seed(client, [host1])
    for attempt in range(3):
        c1 = make_container()
        known = cali_links(host1)
        p1 = start_cli(host1, ["container", "add", c1.name, "192.168.2.%d" % (20 + 2 * attempt),
                               "--interface=eth1"], lan_etcd.env)
        p2 = start_cli(host1, ["container", "add", c1.name, "192.168.2.%d" % (21 + 2 * attempt),
                               "--interface=data0"], lan_etcd.env)
        (rc1, _, err1), (rc2, _, err2) = finish(p1), finish(p2)
        assert sorted([rc1, rc2]) == [0, 1], (err1, err2)
        loser_err = err1 if rc1 else err2
        assert "already has Calico networking" in loser_err and loser_err.count("\n") == 1
        inside = set(links(in_container(c1)))
        assert inside in ({"lo", "eth1"}, {"lo", "data0"})
        assert len(new_cali_links(host1, known)) == 1
        assert len([k for k in workload_keys(client) if "/endpoint/" in k and c1.id in k]) == 1
        endpoint_key = [k for k in workload_keys(client) if "/endpoint/" in k and c1.id in k][0]
        recorded = json.loads(client.get(endpoint_key).value)["container_interface"]
        assert {"lo", recorded} == inside


CLAIM_SCRIPT = """
import sys, time
sys.path.insert(0, %(repo)r)
from calicoctl.datastore import etcdconn
from calicoctl.datastore.client import DatastoreClient
client = DatastoreClient(etcdconn.connect({"ETCD_AUTHORITY": %(authority)r}))
client.get_claim("192.168.0.0/16", "192.168.3.3")      # connect before the start line
while time.time() < %(start)f:
    time.sleep(0.001)
print(client.claim_ip("192.168.0.0/16", "192.168.3.3", owner="proc-%%s" %% sys.argv[1]))
"""


@pytest.mark.slow
def test_many_processes_claim_one_ip_exactly_one_wins(etcd):
    start = time.time() + 2.0
    script = CLAIM_SCRIPT % {"repo": REPO_ROOT, "authority": etcd.authority, "start": start}
    processes = [subprocess.Popen([sys.executable, "-c", script, str(i)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(8)]
    outputs = [p.communicate(timeout=60) for p in processes]
    answers = [out.strip() for out, _ in outputs]
    assert sorted(answers) == ["False"] * 7 + ["True"], outputs
    winner = answers.index("True")
    assert etcd.kv().get("/calico/v1/ipam/v4/assignment/192.168.0.0-16/192.168.3.3").value == \
        "proc-%d" % winner
