"""Adding members to an ipset: the agent's netlink client against ``ipset restore``.

In a scratch network namespace (the bench's thread enters it, so both ways
run as the agent would, from a process already there), a ``hash:ip`` set
gets 1, 100, 1,000 and 10,000 members added in one batch, emptied untimed
between rounds:

- ``Ipsets.write`` (calicoctl.host.ipsets): a netlink socket opened, the
  members sent in messages of up to 64 KiB, each acknowledged, closed;
- ``ipset -exist restore`` fed ``add`` lines, started as the agent started
  it (subprocess, fork and exec).

Wall time and CPU time (this process's, plus its waited-for children's for
``ipset restore``; kernel work done in a system call counts as the
caller's) per batch, median of the rounds. Target: the client costs at
most the process in CPU at every size. pyroute2's ``IPSet.add`` (one
message and one acknowledgement per member) is shown for scale up to
1,000 members.
"""
import resource
import statistics
import subprocess
import time

SIZES = (1, 100, 1000, 10000)
ROUNDS = {1: 41, 100: 21, 1000: 11, 10000: 7}
PYROUTE2_SIZES = (1, 100, 1000)
TARGET = 1.0
SET = "bench-set"


def _cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _members(count):
    return ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(1, count + 1)]


def _empty():
    subprocess.run(["ipset", "flush", SET], check=True)


def _median_cost(action, argument, rounds):
    """(wall us, CPU us), medians over ``rounds`` calls of action(argument) on an empty set."""
    walls, cpus = [], []
    for _ in range(rounds):
        _empty()
        wall, cpu = time.perf_counter(), _cpu()
        action(argument)
        walls.append((time.perf_counter() - wall) * 1e6)
        cpus.append((_cpu() - cpu) * 1e6)
    return statistics.median(walls), statistics.median(cpus)


def _ipset_restore(text):
    subprocess.run(["ipset", "-exist", "restore"], input=text, text=True, check=True)


def run(report):
    from calicoctl.host.ipsets import Ipsets, SetWrite
    from calicoctl.host.netlink import entered_netns
    from calicoctl.host.netlink.ipset import IpsetSocket
    from tests.harness.netns import Netns

    ns = Netns()
    try:
        with entered_netns(ns.path):
            with IpsetSocket() as sock:
                sock.create(SET, "hash:ip", "inet", maxelem=1048576)
            ipsets = Ipsets()
            for count in SIZES:
                members = _members(count)
                netlink = _median_cost(ipsets.write, [SetWrite(SET, "hash:ip", "inet", members)], ROUNDS[count])
                process = _median_cost(_ipset_restore, "".join("add %s %s\n" % (SET, m) for m in members),
                                       ROUNDS[count])
                report("add %d members, netlink client, CPU" % count, netlink[1], "us",
                       "ipset restore", process[1], target=TARGET)
                report("add %d members, netlink client, wall" % count, netlink[0], "us",
                       "ipset restore", process[0])
            _pyroute2_reference(report)
    finally:
        ns.stop()


def _pyroute2_reference(report):
    from pyroute2 import IPSet
    with IPSet() as ipset:
        def add_each(members):
            for member in members:
                ipset.add(SET, member)
        for count in PYROUTE2_SIZES:
            wall, cpu = _median_cost(add_each, _members(count), 3)
            report("  pyroute2 IPSet.add x %d, CPU / wall" % count, "%.0f / %.0f" % (cpu, wall), "us")
