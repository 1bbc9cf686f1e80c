"""A bare network namespace for kernel tests, and reading it with the system's tools.

``Netns`` is held open by a ``sleep`` started with ``unshare --net`` (killed
on ``stop``); ``path`` is what calicoctl's netlink code takes as ``netns``.
``run`` executes a command inside it, so results can be read back with
iproute2, ``ipset`` and iptables, independently of the code under test.
``RecordingIpsets`` is the real ipset adapter for a namespace that also
remembers what it was asked to do.
"""
import json
import os
import subprocess

from calicoctl.host.ipsets import Ipsets
from tests.harness.util import kill_pid, netns_inode, wait_for


class Netns:
    """A network namespace held by a sleeping process (killed by ``stop``)."""

    def __init__(self):
        own = netns_inode(os.getpid())
        self.process = subprocess.Popen(["setpriv", "--pdeathsig", "SIGKILL", "--", "unshare", "--net", "--",
                                         "sleep", "infinity"], stdin=subprocess.DEVNULL)
        wait_for(lambda: os.readlink("/proc/%d/exe" % self.process.pid).endswith("sleep")
                 and netns_inode(self.process.pid) != own, timeout=10, interval=0.01)
        self.path = "/proc/%d/ns/net" % self.process.pid
        self.run("ip link set lo up")

    def run(self, command, check=True, input=None):
        """Run ``command`` (a string split on spaces, or a list) inside the namespace."""
        args = command.split() if isinstance(command, str) else list(command)
        return subprocess.run(["nsenter", "-t", str(self.process.pid), "-n", "--"] + args,
                              capture_output=True, text=True, check=check, input=input)

    def ip_json(self, command):
        out = self.run("ip -j " + command).stdout
        return json.loads(out) if out.strip() else []

    def links(self):
        return {link["ifname"]: link for link in self.ip_json("link show")}

    def ipsets(self):
        """{name: (type, family, members)} as ``ipset save`` prints them."""
        return parse_ipset_save(self.run("ipset save").stdout)

    def stop(self):
        kill_pid(self.process.pid, popen=self.process)


def parse_ipset_save(text):
    """``ipset save`` output -> {name: (type, family, set of members)}."""
    sets = {}
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["create"]:
            family = words[words.index("family") + 1] if "family" in words else "inet"
            sets[words[1]] = (words[2], family, set())
        elif words[:1] == ["add"]:
            sets[words[1]][2].add(words[2])
    return sets


class RecordingIpsets(Ipsets):
    """The real adapter (netlink, in ``netns``), remembering what it was asked.

    :ivar calls: every SetWrite written and every set name destroyed, in order.
    :ivar refuse: names of sets whose writes fail, as if the kernel refused
        them (they are not sent).
    """

    def __init__(self, netns):
        super().__init__(netns)
        self.calls = []
        self.refuse = set()

    def write(self, writes):
        self.calls += writes
        failed = {write.name: "refused by the test" for write in writes if write.name in self.refuse}
        failed.update(super().write([write for write in writes if write.name not in self.refuse]))
        return failed

    def destroy(self, names):
        self.calls += names
        return super().destroy(names)
