"""Pure decisions behind calicoctl node / status / checksystem / diags.

No etcd, no kernel, no processes: what the workflows decide from their
inputs. The effects are tested in tests/functional/test_node_*.py.
"""
import json
import signal
import sys

import pytest

from calicoctl import model
from calicoctl.cli import node as node_cli
from calicoctl.cli import parse
from calicoctl.errors import NotFound, ValidationError
from calicoctl.host import bird as bird_host
from calicoctl.ops import bgp as bgp_ops
from calicoctl.ops import checksystem, diags
from calicoctl.ops import node as node_ops
from calicoctl.ops import status as status_ops

Addr = node_ops.InterfaceAddress


# -- choosing the host IP --------------------------------------------------------

def test_choose_host_ip_prefers_the_default_route_interface():
    addresses = [Addr("lo", "127.0.0.1", 4), Addr("eth1", "10.1.0.5", 4),
                 Addr("eth0", "172.17.8.101", 4, default_route=True), Addr("eth0", "fd00::5", 6)]
    chosen = node_ops.choose_host_ip(addresses)
    assert (chosen.ifname, chosen.address) == ("eth0", "172.17.8.101")


def test_choose_host_ip_never_docker0_loopback_or_workloads():
    addresses = [Addr("lo", "127.0.0.1", 4, default_route=True), Addr("docker0", "172.17.0.1", 4),
                 Addr("cali1234567890a", "169.254.1.1", 4), Addr("caliX", "10.9.9.9", 4),
                 Addr("ens3", "192.0.2.10", 4), Addr("ens4", "169.254.3.3", 4)]
    assert node_ops.choose_host_ip(addresses).address == "192.0.2.10"
    only_bad = [a for a in addresses if a.ifname != "ens3"]
    assert node_ops.choose_host_ip(only_bad) is None
    assert node_ops.choose_host_ip([]) is None


def test_choose_host_ip_without_default_route_takes_first_usable():
    addresses = [Addr("eth0", "10.0.0.2", 4), Addr("eth1", "10.0.1.2", 4)]
    assert node_ops.choose_host_ip(addresses).address == "10.0.0.2"
    assert node_ops.choose_host_ip([Addr("eth0", "fd00::2", 6)], version=6).address == "fd00::2"


def test_choose_host_ip_prefers_the_address_used_to_reach_etcd():
    # A Vagrant VM: the default route leaves through a NAT interface whose
    # address every VM shares; the cluster's network is the other one.
    addresses = [Addr("eth0", "10.0.2.15", 4, default_route=True), Addr("eth1", "172.17.8.102", 4)]
    assert node_ops.choose_host_ip(addresses, route_source="172.17.8.102").address == "172.17.8.102"
    # etcd on loopback says nothing about the cluster network.
    assert node_ops.choose_host_ip(addresses, route_source="127.0.0.1").address == "10.0.2.15"
    assert node_ops.choose_host_ip(addresses, route_source=None).address == "10.0.2.15"


def test_address_warnings_only_for_addresses_not_on_this_host():
    addresses = [Addr("eth0", "10.0.0.2", 4), Addr("eth0", "fd00::2", 6)]
    assert node_ops.calculate_address_warnings("10.0.0.2", "fd00:0::2", addresses) == []
    warnings = node_ops.calculate_address_warnings("10.0.0.3", "fd00::3", addresses)
    assert len(warnings) == 2
    assert "--ip=10.0.0.3" in warnings[0] and "--ip6=fd00::3" in warnings[1]
    assert node_ops.calculate_address_warnings(None, None, addresses) == []


def test_address_choice_detects_only_without_a_given_ip():
    addresses = [Addr("eth0", "10.0.2.15", 4, default_route=True), Addr("eth1", "172.17.8.102", 4)]
    detect = node_ops.NodeSettings(hostname="h1", ip=None, ip6="fd00::9")
    choice = node_ops.choose_addresses(detect, addresses, route_source="172.17.8.102")
    assert (choice.ip, choice.detected.ifname) == ("172.17.8.102", "eth1")
    assert len(choice.warnings) == 1 and "--ip6=fd00::9" in choice.warnings[0]
    given = node_ops.NodeSettings(hostname="h1", ip="10.9.9.9")
    choice = node_ops.choose_addresses(given, addresses, route_source="172.17.8.102")
    assert choice.ip == "10.9.9.9" and choice.detected is None
    assert len(choice.warnings) == 1 and "--ip=10.9.9.9" in choice.warnings[0]


def test_address_choice_refused_when_nothing_identifies_the_host():
    with pytest.raises(NotFound) as error:
        node_ops.choose_addresses(node_ops.NodeSettings(hostname="h1", ip=None),
                                  [Addr("lo", "127.0.0.1", 4), Addr("docker0", "172.17.0.1", 4)])
    assert "give it with --ip" in str(error.value)
    # A given address needs no usable interface (it only draws a warning).
    assert node_ops.choose_addresses(node_ops.NodeSettings(hostname="h1", ip="10.0.0.1"), []).ip == "10.0.0.1"


# -- defaults -------------------------------------------------------------------

def test_default_pools_only_for_versions_without_any():
    assert [p.cidr for p in node_ops.calculate_missing_pools([])] == [
        "192.168.0.0/16", "fd80:24e2:f998:72d6::/64"]
    assert [p.cidr for p in node_ops.calculate_missing_pools([model.IPPool("10.0.0.0/8")])] == [
        "fd80:24e2:f998:72d6::/64"]
    both = [model.IPPool("10.0.0.0/8"), model.IPPool("fd00::/64")]
    assert node_ops.calculate_missing_pools(both) == []
    assert all(not p.ipip and not p.masquerade for p in node_ops.calculate_missing_pools([]))


def test_agent_command_runs_this_python():
    settings = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", log_dir="/tmp/l", run_dir="/tmp/r")
    assert node_ops.calculate_agent_command(settings) == [
        sys.executable, "-m", "calicoctl.agent", "--hostname=h1", "--log-dir=/tmp/l", "--run-dir=/tmp/r"]
    without = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", docker_plugins=False)
    assert node_ops.calculate_agent_command(without)[-1] == "--no-docker-plugins"
    chosen = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1", dataplane="iptables")
    assert node_ops.calculate_agent_command(chosen)[-1] == "--dataplane=iptables"


def test_a_running_node_switches_only_to_another_dataplane_it_was_asked_for():
    def running(dataplane):
        return status_ops.AgentStatus(pid=1, started=0.0, time=0.0, in_sync=True, dataplane=dataplane)
    assert node_ops.calculate_dataplane_switch("iptables", running("nftables")) == "nftables"
    assert node_ops.calculate_dataplane_switch("nftables", running("nftables")) is None
    assert node_ops.calculate_dataplane_switch(None, running("nftables")) is None       # not asked: keep it
    assert node_ops.calculate_dataplane_switch("iptables", running(None)) is None       # an older agent
    assert node_ops.calculate_dataplane_switch("iptables", None) is None


def test_agent_inherits_the_plugin_sockets_by_fd():
    from calicoctl.agent.__main__ import parse_args
    settings = node_ops.NodeSettings(hostname="h1", ip="10.0.0.1")
    command = node_ops.calculate_agent_command(settings, plugin_fds={"calico-ipam": 6, "calico": 5})
    assert command[-1] == "--plugin-fds=calico:5,calico-ipam:6"
    assert parse_args(command[3:]).plugin_fds == {"calico": 5, "calico-ipam": 6}
    assert parse_args(command[3:-1]).plugin_fds == {}
    with pytest.raises(SystemExit):
        parse_args(["--plugin-fds=calico"])


def test_agent_environment_finds_the_package_and_keeps_the_rest():
    import os
    import calicoctl
    root = os.path.dirname(os.path.dirname(os.path.abspath(calicoctl.__file__)))
    env = node_ops.calculate_agent_environment({"ETCD_AUTHORITY": "10.0.0.1:2379", "PYTHONPATH": "/x"})
    assert env["ETCD_AUTHORITY"] == "10.0.0.1:2379"
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/x"]
    again = node_ops.calculate_agent_environment(env)
    assert again["PYTHONPATH"] == env["PYTHONPATH"]
    # systemd's notification socket is for calicoctl node, the unit's process.
    assert "NOTIFY_SOCKET" not in node_ops.calculate_agent_environment({"NOTIFY_SOCKET": "/run/systemd/notify"})


def test_foreground_exit_status():
    assert node_ops.calculate_foreground_exit(0, [signal.SIGTERM]) == 0
    assert node_ops.calculate_foreground_exit(-signal.SIGTERM, [signal.SIGTERM]) == 0
    assert node_ops.calculate_foreground_exit(1, [signal.SIGTERM]) == 1
    assert node_ops.calculate_foreground_exit(1, []) == 1
    assert node_ops.calculate_foreground_exit(-signal.SIGKILL, []) == 137
    assert node_ops.calculate_foreground_exit(0, []) == 0


# -- option validation ------------------------------------------------------------

def start_options(argv):
    return node_cli._parse_start_options(parse(node_cli.__doc__, argv.split()))


def test_start_options_defaults():
    options = start_options("node")
    assert options == {"ip": None, "ip6": None, "as_num": None, "detach": True,
                       "log_dir": "/var/log/calico", "docker_plugins": True, "dataplane": None,
                       "reflector": None}


def test_start_options_valid_values_normalised():
    options = start_options("node --ip=10.0.0.1 --ip6=FD00:0::1 --as=64512 --detach=False "
                            "--log-dir=/tmp/x --docker-plugins=FALSE --dataplane=iptables")
    assert options == {"ip": "10.0.0.1", "ip6": "fd00::1", "as_num": 64512, "detach": False,
                       "log_dir": "/tmp/x", "docker_plugins": False, "dataplane": "iptables", "reflector": None}


@pytest.mark.parametrize("value, cluster_id", [("244.0.0.1", "244.0.0.1"), ("none", None), ("None", None)])
def test_start_options_route_reflector_role(value, cluster_id):
    assert start_options("node --rr-cluster-id=%s" % value)["reflector"] == bgp_ops.ReflectorRole(cluster_id)


@pytest.mark.parametrize("argv, fragment", [
    ("node --ip=fd00::1", "--ip"),
    ("node --ip=10.0.0", "--ip"),
    ("node --ip6=10.0.0.1", "--ip6"),
    ("node --as=abcde", "AS number"),
    ("node --as=99999999999999999999999", "AS number"),
    ("node --as=-1", "AS number"),
    ("node --detach=yes", "--detach"),
    ("node --docker-plugins=off", "--docker-plugins"),
    ("node --dataplane=ebpf", "--dataplane"),
    ("node --rr-cluster-id=244.0.0", "Invalid route reflector cluster ID '244.0.0'"),
    ("node --rr-cluster-id=0.0.0.0", "cluster ID"),
])
def test_start_options_rejected(argv, fragment):
    with pytest.raises(ValidationError) as error:
        start_options(argv)
    assert fragment in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_start_options_every_problem_reported():
    with pytest.raises(ValidationError) as error:
        start_options("node --ip=x --ip6=y --as=z --detach=w")
    assert len(str(error.value).splitlines()) == 4


# -- agent status -----------------------------------------------------------------

STATUS_JSON = ('{"pid": 42, "started": 1000.0, "time": 1100.5, "in_sync": true, '
               '"last_sync": 1090, "local_endpoints": 3}')


def test_parse_agent_status():
    status = status_ops.parse_agent_status(STATUS_JSON)
    assert status == status_ops.AgentStatus(pid=42, started=1000.0, time=1100.5, in_sync=True,
                                            last_sync=1090.0, local_endpoints=3)
    syncing = status_ops.parse_agent_status('{"pid": 7, "started": 1, "time": 2, "in_sync": false, '
                                            '"last_sync": null, "local_endpoints": 0}')
    assert syncing.in_sync is False and syncing.last_sync is None


@pytest.mark.parametrize("text", [None, "", "not json", "[]", '{"pid": "42"}', '{"pid": true}',
                                  '{"pid": 1, "started": "x", "time": 1}', '{"pid": 1}'])
def test_parse_agent_status_rejects_garbage(text):
    assert status_ops.parse_agent_status(text) is None


def test_in_sync_needs_matching_pid():
    status = status_ops.parse_agent_status(STATUS_JSON)
    assert node_ops.is_in_sync_for(status, 42)
    assert not node_ops.is_in_sync_for(status, 43)
    assert not node_ops.is_in_sync_for(None, 42)


def test_agent_summary_running_and_not():
    status = status_ops.parse_agent_status(STATUS_JSON)
    running = status_ops.AgentState(pid=42, local=status, reported=status)
    lines = status_ops.render_agent_summary(running, now=1102, hostname="h1")
    assert lines[0] == "calico-agent is running on h1 (pid 42), up 1m 42s."
    assert "in sync with etcd, last full sync 12s ago" in lines[1]
    assert "3 local endpoint(s)" in lines[1]
    assert lines[2:] == ["Control-plane protection: not reported by this agent.",     # an older agent
                         "Docker plugins: not served (calicoctl node --docker-plugins=false)."]
    hung = status_ops.render_agent_summary(running, now=1100.5 + 95, hostname="h1")
    assert hung[-1] == "WARNING: the agent has not reported for 1m 35s (it reports every 10 s): is it hung?"
    no_key = status_ops.AgentState(pid=42, local=status, reported=None)
    assert "WARNING" in status_ops.render_agent_summary(no_key, 1102, "h1")[-1]
    stopped = status_ops.AgentState(pid=None)
    assert status_ops.render_agent_summary(stopped, 1102, "h1") == ["calico-agent is not running on h1."]
    silent = status_ops.AgentState(pid=9)
    assert "not reported yet" in status_ops.render_agent_summary(silent, 1102, "h1")[0]


def test_agent_summary_shows_the_docker_plugins():
    data = json.loads(STATUS_JSON)
    data["docker_plugins"] = {"sockets": ["/run/docker/plugins/calico.sock",
                                          "/run/docker/plugins/calico-ipam.sock"], "problem": None}
    status = status_ops.parse_agent_status(json.dumps(data))
    lines = status_ops.render_agent_summary(status_ops.AgentState(pid=42, local=status, reported=status),
                                            now=1102, hostname="h1")
    assert "Docker plugins: network driver calico and IPAM driver calico-ipam on " \
           "/run/docker/plugins/calico.sock, /run/docker/plugins/calico-ipam.sock." in lines
    data["docker_plugins"] = {"sockets": [], "problem": "cannot serve the Docker plugins: busy"}
    status = status_ops.parse_agent_status(json.dumps(data))
    lines = status_ops.render_agent_summary(status_ops.AgentState(pid=42, local=status, reported=status),
                                            now=1102, hostname="h1")
    assert "WARNING: Docker plugins: cannot serve the Docker plugins: busy." in lines


def test_agent_summary_shows_the_cni_plugins_socket():
    data = json.loads(STATUS_JSON)
    for cni, line in (({"socket": "/var/run/calico/cni.sock", "problem": None},
                       "CNI plugins: calico and calico-ipam served on /var/run/calico/cni.sock."),
                      ({"socket": None, "problem": "cannot serve the CNI plugins: busy"},
                       "WARNING: CNI plugins: cannot serve the CNI plugins: busy.")):
        data["cni"] = cni
        status = status_ops.parse_agent_status(json.dumps(data))
        assert line in status_ops.render_agent_summary(status_ops.AgentState(pid=42, local=status, reported=status),
                                                       now=1102, hostname="h1")
    data.pop("cni")          # an agent from before the CNI plugins: nothing said
    status = status_ops.parse_agent_status(json.dumps(data))
    assert not any("CNI" in line for line in status_ops.render_agent_summary(
        status_ops.AgentState(pid=42, local=status, reported=status), now=1102, hostname="h1"))


def test_describe_duration():
    assert status_ops.describe_duration(5.9) == "5s"
    assert status_ops.describe_duration(72) == "1m 12s"
    assert status_ops.describe_duration(3700) == "1h 1m"
    assert status_ops.describe_duration(90000) == "1d 1h"
    assert status_ops.describe_duration(-3) == "0s"


# -- BIRD's protocol table --------------------------------------------------------

BIRD_OUTPUT = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     20:40:10.440
kernel1    Kernel     master4    up     20:40:10.440
Mesh_10_0_0_2 BGP        ---        up     20:40:11.002  Established
Node_10_0_0_3 BGP        ---        start  20:40:10.440  Active        Socket: Connection refused
Global_fd00__3 BGP        ---        start  2024-05-01 10:00:00  Idle
Mesh_fd80_24e2_f998_72d6__2 BGP   ---    up     2024-05-01    Established
direct1    Direct     ---        up     20:40:10.440
"""


def peer_rows(text):
    return status_ops.calculate_peer_rows(bird_host.parse_protocols(text))


def test_peer_rows_keep_our_peers_only():
    rows = peer_rows(BIRD_OUTPUT)
    assert [(r.address, r.peer_type, r.state, r.since, r.info) for r in rows] == [
        ("10.0.0.2", "node-to-node mesh", "up", "20:40:11.002", "Established"),
        ("10.0.0.3", "node specific", "start", "20:40:10.440", "Active Socket: Connection refused"),
        ("fd00::3", "global", "start", "2024-05-01 10:00:00", "Idle"),
        ("fd80:24e2:f998:72d6::2", "node-to-node mesh", "up", "2024-05-01", "Established"),
    ]
    assert [r.version for r in rows] == [4, 4, 6, 6]


def test_peer_rows_without_table():
    assert peer_rows("BIRD 2.0.12 ready.\nAccess restricted\n") is None
    header_only = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n"
    assert peer_rows(header_only) == []


@pytest.mark.parametrize("name, address", [
    ("Mesh_172_17_8_102", "172.17.8.102"), ("Node_fd00__1", "fd00::1"),
    ("Global_2001_db8__1_2", "2001:db8::1:2"), ("Mesh_bogus", None), ("device1", None),
    ("Node_1_2_3", None),
])
def test_session_names_read_back(name, address):
    session = bird_host.parse_session_name(name)
    assert (session[1] if session else None) == address
    if session is not None:
        assert bird_host.session_name(*session) == name


def test_reflector_sessions_have_their_own_kinds():
    text = ("Name       Proto      Table      State  Since         Info\n"
            "Reflector_172_17_8_101 BGP ---      up     20:40:11.002  Established\n"
            "Client_fd00_8__103 BGP    ---        start  20:40:10.440  Connect\n")
    assert [(r.address, r.peer_type, r.state) for r in peer_rows(text)] == [
        ("172.17.8.101", "route reflector", "up"), ("fd00:8::103", "route reflector client", "start")]


# -- route reflectors: refusals and messages -------------------------------------------

@pytest.mark.parametrize("mesh, reflectors, global_peers, node_peers, cut_off", [
    (False, [], [], False, True),
    (True, [], [], False, False),
    (False, ["rr"], [], False, False),
    (False, [], ["10.0.0.1"], False, False),
    (False, [], [], True, False),
])
def test_routes_cut_off(mesh, reflectors, global_peers, node_peers, cut_off):
    assert bgp_ops.calculate_routes_cut_off(mesh, reflectors, global_peers, node_peers) is cut_off


def test_render_reflector_change():
    change = bgp_ops.ReflectorChange
    assert node_cli.render_reflector_change("h1", change(None, "244.0.0.1", node_mesh=False)) == [
        "h1 is now a route reflector with cluster ID 244.0.0.1."]
    assert node_cli.render_reflector_change("h1", change("1.1.1.1", "244.0.0.1", node_mesh=True)) == [
        "h1 is now a route reflector with cluster ID 244.0.0.1 (was 1.1.1.1).",
        "The node-to-node mesh is on, so route reflectors are not used until 'calicoctl bgp node-mesh off'."]
    assert node_cli.render_reflector_change("h1", change("244.0.0.1", None, node_mesh=False)) == [
        "h1 is no longer a route reflector (it was one with cluster ID 244.0.0.1)."]
    assert "nothing to do" in node_cli.render_reflector_change("h1", change(None, None))[0]
    assert "already a route reflector" in node_cli.render_reflector_change("h1", change("2.2.2.2", "2.2.2.2"))[0]


def test_render_reflectors_for_peer_show():
    from calicoctl.cli import bgp as bgp_cli
    reflectors = [model.BgpHost("h1", ipv4="172.17.8.101", ipv6="fd00::1", rr_cluster_id="244.0.0.1"),
                  model.BgpHost("h2", ipv4="172.17.8.102", rr_cluster_id="244.0.0.1")]
    table = "\n".join(bgp_cli.render_reflectors(reflectors, (4, 6), node_mesh=False))
    assert "| Route reflector | IPv4 address | IPv6 address | Cluster ID |" in table
    assert "| h2              | 172.17.8.102 |              | 244.0.0.1  |" in table
    only_v6 = bgp_cli.render_reflectors(reflectors, (6,), node_mesh=True)
    assert "| h1              | fd00::1      | 244.0.0.1  |" in only_v6[0] and "h2" not in only_v6[0]
    assert "mesh is on" in only_v6[1]
    assert bgp_cli.render_reflectors([], (4, 6), node_mesh=False) == [
        "No route reflectors (make one with 'calicoctl node --rr-cluster-id=<IPv4>')."]


# -- checksystem / diags ------------------------------------------------------------

def test_parse_api_version():
    assert checksystem.parse_api_version("1.41") == (1, 41)
    assert checksystem.parse_api_version("1.9") < checksystem.MIN_DOCKER_API
    assert checksystem.parse_api_version("") is None
    assert checksystem.parse_api_version(None) is None


def test_check_docker_outcomes():
    from calicoctl.errors import DockerUnavailable

    def unreachable():
        raise DockerUnavailable("no daemon")
    assert checksystem.check_docker(lambda: "1.41").ok
    old = checksystem.check_docker(lambda: "1.12")
    assert not old.ok and "too old" in old.message
    down = checksystem.check_docker(unreachable)
    assert not down.ok and "no daemon" in down.message


def test_check_tools_names_what_is_missing():
    present = {"iptables-nft", "ip6tables-nft", "iptables-nft-restore", "ip6tables-nft-restore",
               "iptables-nft-save", "ip6tables-nft-save", "ipset"}
    result = checksystem.check_tools("nft", which=lambda tool: "/usr/sbin/" + tool if tool in present else None)
    assert not result.ok
    assert result.message.endswith("(not found on PATH): bird, birdc.")
    legacy = checksystem.check_tools("legacy", which=lambda tool: "/usr/sbin/" + tool if tool in present else None)
    assert "iptables-legacy-restore" in legacy.message and "nft" not in legacy.message
    assert checksystem.check_tools(which=lambda tool: "/bin/" + tool).ok


def test_diags_commands_and_etcd_scope():
    names = [name for name, _ in diags.calculate_commands("/run/x")]
    for expected in ("iptables-save.txt", "ip6tables-save.txt", "ipset-list.txt", "ip-route-v4.txt",
                     "ip-route-v6.txt", "ip-link.txt", "ip-addr.txt"):
        assert expected in names
    assert len(names) == len(set(names))
    commands = dict(diags.calculate_commands("/run/x"))
    assert "/run/x/bird.ctl" in commands["bird-protocols.txt"]
    prefixes = diags.calculate_etcd_prefixes("h1")
    assert "/calico/v1/host/h1" in prefixes and "/calico/bgp/v1/host/h1" in prefixes
    assert not any(p.startswith("/calico/v1/host/") and not p.endswith("/h1") for p in prefixes)
    assert diags.render_etcd_dump([("/a", "1"), ("/b", "")]) == "/a = 1\n/b = \n"
