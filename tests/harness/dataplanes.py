"""The two policy dataplanes, as tests see them in a simulated host's kernel.

Tests that run on both dataplanes (parametrized over ``DATAPLANES``) say
what they check through ``kernel(host, dataplane)``, a view that answers
the same questions of either one: which addresses the control plane's
protection covers, who is in a tag, whether a profile or an endpoint is
programmed, what the protection's rules are. How each dataplane keeps them
(ipsets and ``felix-*`` chains, or sets and chains of table ``inet calico``)
is this module's business only.

``wipe(host)`` clears what either dataplane programmed between tests;
``make_component`` and ``recorder`` build a policy dataplane driven directly
by a test (snapshot, updates, flush) inside a simulated host, recording what
it writes to the kernel and refusing what the test says the kernel refuses.

No pytest import, so bench/ can use this module too.
"""
import json

from calicoctl.agent.policy.iptables import rules as iptables_rules
from calicoctl.agent.policy.nftables import rules as nftables_rules
from calicoctl.datastore import paths
from calicoctl.errors import CommandFailed
from calicoctl.host import nftables
from calicoctl.host import run as run_mod
from calicoctl.host.iptables import parse_save

DEFAULT = "nftables"
"""What the agent runs when not told (the host supports nftables here)."""
DATAPLANES = ("nftables", "iptables")

# Everything either dataplane can leave in a host's kernel: nftables tables
# (iptables-nft's among them) and ipsets (iptables-nft's rules referring to
# them go first).
WIPE = "nft flush ruleset; ipset destroy 2>/dev/null; true"


def wipe(host):
    """No policy or NAT state of either dataplane left in ``host`` (nor any
    other firewall rule: a simulated host holds nothing else)."""
    result = host.run(["sh", "-c", WIPE], cwd="/")
    assert result.returncode == 0, result.stderr


def agent_args(dataplane):
    """``calico-agent`` / ``calicoctl node`` arguments that choose ``dataplane``."""
    return ["--dataplane=%s" % dataplane]


def kernel(host, dataplane):
    """The view of ``dataplane``'s state in ``host`` (see the module docstring)."""
    return {"iptables": IptablesKernel, "nftables": NftablesKernel}[dataplane](host)


class _Kernel:
    def __init__(self, host):
        self.host = host

    def _run(self, args):
        return self.host.run(args, cwd="/")

    def protected_addresses(self, version):
        """The addresses whose control-plane ports workloads may not reach
        (set() when there is no such set)."""
        return self._members(self.control_plane_set(version)) or set()

    def tag_members(self, tag, version=4):
        """The addresses of ``tag``'s set, or None when it has none."""
        return self._members(self.tag_set(tag, version))

    def profile_rules(self, profile, direction):
        """The rules of ``profile``'s chain for ``direction`` (IPv4 for
        iptables), or None when it is not programmed."""
        return self.chains().get(self.profile_chain(profile, direction))

    def profile_programmed(self, profile):
        return self.profile_chain(profile, "inbound") in self.chains()

    def endpoint_programmed(self, interface):
        return interface in self.endpoints()

    def protection_rules(self, version=4):
        """The rules that match the control plane's set of ``version``."""
        name = self.control_plane_set(version)
        return [rule.strip() for rule in self.rules_text().splitlines() if self.set_reference(name) in rule]


class IptablesKernel(_Kernel):
    """The iptables dataplane: ``felix-*`` chains in iptables' filter tables, ipsets."""

    name = "iptables"
    control_plane_set = staticmethod(iptables_rules.control_plane_set_name)
    tag_set = staticmethod(iptables_rules.tag_set_name)
    profile_chain = staticmethod(iptables_rules.profile_chain)

    @staticmethod
    def set_reference(name):
        return "--match-set %s " % name

    def _members(self, name):
        result = self._run(["ipset", "list", name])
        if result.returncode != 0:
            return None
        lines = result.stdout.splitlines()
        return set(lines[lines.index("Members:") + 1:]) if "Members:" in lines else set()

    def chains(self, version=4):
        """{chain: [rule text]} of one family's filter table."""
        save = "iptables-nft-save" if version == 4 else "ip6tables-nft-save"
        return parse_save(self._run([save, "-t", "filter"]).stdout)

    def rules_text(self):
        """Both families' filter tables as iptables-save prints them."""
        return "".join(self._run([save, "-t", "filter"]).stdout for save in ("iptables-nft-save", "ip6tables-nft-save"))

    def endpoints(self, prefix="cali"):
        """The interfaces whose endpoint has its chains."""
        start = iptables_rules.endpoint_chain("inbound", "")
        return {prefix + name[len(start):] for name in self.chains() if name.startswith(start)}

    def present(self):
        """Any of the dataplane's chains or ipsets is in the kernel."""
        chains = set(self.chains(4)) | set(self.chains(6))
        sets = self._run(["ipset", "list", "-n"]).stdout.split()
        return any(map(iptables_rules.is_owned_chain, chains)) or any(map(iptables_rules.is_owned_ipset, sets))


class NftablesKernel(_Kernel):
    """The nftables dataplane: table ``inet calico``."""

    name = "nftables"
    tag_set = staticmethod(nftables_rules.tag_set)
    profile_chain = staticmethod(nftables_rules.profile_chain)

    @staticmethod
    def control_plane_set(version):
        return nftables_rules.CONTROL_PLANE_SET[version]

    @staticmethod
    def set_reference(name):
        return "@%s " % name

    def _set(self, name):
        result = self._run(["nft", "-j", "list", "set", nftables_rules.FAMILY, nftables_rules.TABLE, name])
        if result.returncode != 0:
            return None
        return [item["set"] for item in json.loads(result.stdout)["nftables"] if "set" in item][0]

    def _members(self, name):
        found = self._set(name)
        return None if found is None else {str(element) for element in found.get("elem", ())}

    def rules_text(self):
        """The table's rules as nft prints them, set elements left out ("" without the table)."""
        return self._run(["nft", "-t", "list", "table", nftables_rules.FAMILY, nftables_rules.TABLE]).stdout

    def chains(self):
        """{chain: [rule text]} of the table."""
        chains, current = {}, None
        for line in (line.strip() for line in self.rules_text().splitlines()):
            if line.startswith("chain ") and line.endswith("{"):
                current = chains.setdefault(line.split()[1], [])
            elif line == "}":
                current = None
            elif current is not None and line and not line.startswith("type "):
                current.append(line)
        return chains

    def endpoints(self):
        """The interfaces whose endpoint is in the table (each has a MAC or the any-MAC mark)."""
        interfaces = set()
        for name in (nftables_rules.EP_MAC, nftables_rules.EP_ANY_MAC):
            for element in (self._set(name) or {}).get("elem", ()):
                interfaces.add(element["concat"][0] if isinstance(element, dict) else element)
        return interfaces

    def present(self):
        """The dataplane's table is in the kernel."""
        return self._run(["nft", "list", "table", nftables_rules.FAMILY, nftables_rules.TABLE]).returncode == 0


# -- a policy dataplane driven by the test --------------------------------------------

class Recorder:
    """What a directly driven dataplane writes to the kernel: every change
    goes through for real and is remembered, except those containing
    ``refuse``, which the "kernel" refuses (as a kernel without some feature)."""

    def __init__(self, refuse=None):
        self.refuse = refuse
        self.writes = []

    def take(self):
        """The texts written since the last take (restore inputs, nft batches)."""
        writes, self.writes = self.writes, []
        return writes


class IptablesRecorder(Recorder):
    """A runner for ``IptablesTable`` / ``Ipsets`` (writes: restore inputs)."""

    def __call__(self, args, input_text=None, **kwargs):
        if input_text is not None:
            self.writes.append(input_text)
            if self.refuse and self.refuse in input_text:
                raise CommandFailed(args, 1, "", "refused by the test", input_text)
        return run_mod.run(args, input_text=input_text, **kwargs)


class NftablesRecorder(Recorder):
    """Makes the libnftables context (``nft``) the dataplane uses."""

    def nft(self, netns):
        return _RecordedNftables(netns, self)


class _RecordedNftables(nftables.Nftables):
    def __init__(self, netns, recorder):
        super().__init__(netns)
        self.recorder = recorder

    def run(self, commands, flags=0):
        if self.recorder.refuse and self.recorder.refuse in commands:
            raise nftables.NftError("nftables refused the change: Operation not supported", commands)
        if not commands.startswith("list "):
            self.recorder.writes.append(commands)
        return super().run(commands, flags)


def endpoint_key(hostname, name):
    """The etcd key of endpoint ``ep-<name>`` of workload ``w-<name>`` on ``hostname``."""
    return paths.endpoint_key(hostname, "docker", "w-" + name, "ep-" + name)


def endpoint_json(gateway, interface, ips, profiles, mac=None, ips6=()):
    """An active endpoint's JSON as ``calicoctl container add`` writes it."""
    return json.dumps({"state": "active", "name": interface, "mac": mac, "profile_ids": list(profiles),
                       "ipv4_nets": ["%s/32" % ip for ip in ips], "ipv6_nets": ["%s/128" % ip for ip in ips6],
                       "ipv4_gateway": gateway, "ipv6_gateway": None})


def profile_items(name, inbound, outbound=({"action": "allow"},), tags=None):
    """{key: value} of profile ``name``'s rules and tags (by default: its own name)."""
    return {paths.profile_rules(name): json.dumps({"id": name, "inbound_rules": list(inbound),
                                                   "outbound_rules": list(outbound)}),
            paths.profile_tags(name): json.dumps(list(tags if tags is not None else [name]))}


def recorder(dataplane, refuse=None):
    """A Recorder for ``make_component``'s dataplane."""
    return {"iptables": IptablesRecorder, "nftables": NftablesRecorder}[dataplane](refuse)


def make_component(dataplane, host, config, recorder=None, resolve=None, **kwargs):
    """The policy dataplane ``dataplane`` for ``config``, programming ``host``'s kernel.

    :param recorder: from ``recorder(dataplane)``, to see or refuse its writes.
    :param kwargs: for the component's constructor (``cleanup``, ``budget``...).
    """
    if dataplane == "nftables":
        from calicoctl.agent.policy.nftables.dataplane import NftablesDataplane
        made = recorder or NftablesRecorder()
        return NftablesDataplane(config, nft=made.nft(host.netns_path), resolve=resolve, **kwargs)
    from calicoctl.agent.policy.iptables.dataplane import PolicyDataplane
    tables, ipsets = iptables_access(host, runner=recorder)
    return PolicyDataplane(config, tables=tables, ipsets=ipsets, resolve=resolve, **kwargs)


def iptables_access(host, runner=None):
    """({version: IptablesTable}, RecordingIpsets) acting inside ``host``
    (the ipsets adapter remembers what it was asked: ``calls``)."""
    from calicoctl.host.iptables import IptablesTable
    from tests.harness.netns import RecordingIpsets
    prefix = ["nsenter", "-t", str(host.pid), "-n", "--"]
    return {v: IptablesTable(v, prefix=prefix, runner=runner) for v in (4, 6)}, RecordingIpsets(host.netns_path)
