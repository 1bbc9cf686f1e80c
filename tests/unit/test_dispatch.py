"""The agent's dispatcher and shared view (calicoctl.agent.dispatch, indexes), and
the main loop's use of them: keys parsed once, components called only for
the kinds they asked for, directory deletes as leaf deletes, a fresh view
for every snapshot and resync."""
import json

import pytest

from calicoctl import model
from calicoctl.agent.loop import Agent
from calicoctl.agent.component import Component
from calicoctl.agent.config import AgentConfig
from calicoctl.agent.dispatch import Dispatcher
from calicoctl.agent.keys import Key, Kind, parse_key
from calicoctl.agent.routing.ipip import IpipManager
from calicoctl.agent.routing.nat import NatOutgoing
from calicoctl.agent.routing.vxlan import VxlanManager
from calicoctl.agent.watcher import Snapshot, Update
from calicoctl.datastore import paths

HOST = "h1"


def ep_key(host=HOST, endpoint="e1"):
    return paths.endpoint_key(host, "docker", "w-" + endpoint, endpoint)


def ep_json(name="cali1", v4="10.65.0.1/32"):
    return json.dumps({"state": "active", "name": name, "mac": "02:00:00:00:00:01", "profile_ids": ["P"],
                       "ipv4_nets": [v4], "ipv6_nets": [], "ipv4_gateway": None, "ipv6_gateway": None})


POOL = paths.pool_key("10.65.0.0/16")
POOL_JSON = json.dumps({"cidr": "10.65.0.0/16", "masquerade": True})


class Recorder(Component):
    """Remembers what it was given."""

    def __init__(self, *kinds, fail_on=None):
        self.kinds = frozenset(kinds)
        self.views = []
        self.updates = []
        self.fail_on = fail_on

    def on_snapshot(self, view):
        self.views.append(view)

    def on_update(self, key, value):
        if key.path == self.fail_on:
            raise RuntimeError("a bug")
        self.updates.append((key.kind, key.path, value))


@pytest.mark.parametrize("path, kind, parts", [
    (ep_key(), Kind.ENDPOINT, (HOST, "docker", "w-e1", "e1")),
    (paths.profile_rules("P"), Kind.PROFILE, ("P", "rules")),
    (paths.profile_tags("P"), Kind.PROFILE, ("P", "tags")),
    (POOL, Kind.POOL, ("10.65.0.0/16",)),
    (paths.host_ip_addr("h2", 4), Kind.HOST_ADDRESS, ("h2", "ip_addr_v4")),
    (paths.host_peer("h2", "10.0.0.9"), Kind.BGP_PEER, ("h2", 4, "10.0.0.9")),
    (paths.global_peer("fd00::9"), Kind.BGP_PEER, (None, 6, "fd00::9")),
    (paths.BGP_GLOBAL_AS, Kind.BGP_GLOBAL, ()),
    (paths.BGP_NODE_MESH, Kind.BGP_GLOBAL, ()),
    (paths.host_vxlan("h2"), Kind.HOST_VXLAN, ("h2",)),
    (paths.global_config("InterfacePrefix"), Kind.CONFIG, (None, "InterfacePrefix")),
    (paths.control_plane_protection(), Kind.CONFIG, (None, "ControlPlaneProtection")),
    (paths.host_config("h2", "LogLevel"), Kind.CONFIG, ("h2", "LogLevel")),
    (paths.host_dir("h2"), Kind.OTHER, ()),
    (paths.felix_status("h2"), Kind.OTHER, ()),
    ("/calico/v1/Ready", Kind.OTHER, ()),
])
def test_keys_are_parsed_into_kinds(path, kind, parts):
    assert parse_key(path) == Key(path, kind, parts)


def test_components_get_only_their_kinds_and_only_real_changes():
    pools, everything = Recorder(Kind.POOL), Recorder(*Kind)
    dispatcher = Dispatcher(HOST, [pools, everything])
    dispatcher.snapshot({POOL: POOL_JSON, ep_key(): ep_json()})
    assert pools.views == everything.views and len(pools.views) == 1
    dispatcher.update(ep_key(), ep_json(name="cali2"))
    dispatcher.update(POOL, POOL_JSON)                      # unchanged: no call at all
    dispatcher.update(paths.pool_key("10.66.0.0/16"), None)  # never seen: nothing
    assert pools.updates == []
    assert everything.updates == [(Kind.ENDPOINT, ep_key(), ep_json(name="cali2"))]


def test_a_deleted_directory_is_a_deletion_of_each_leaf_below_it():
    everything = Recorder(*Kind)
    dispatcher = Dispatcher(HOST, [everything])
    dispatcher.snapshot({ep_key(endpoint="a"): ep_json(), ep_key(endpoint="b"): ep_json("cali2"),
                         paths.host_vxlan(HOST): "{}", POOL: POOL_JSON})
    dispatcher.update(paths.host_workloads_dir(HOST), None)
    assert sorted(everything.updates) == [(Kind.ENDPOINT, ep_key(endpoint="a"), None),
                                          (Kind.ENDPOINT, ep_key(endpoint="b"), None)]
    assert set(dispatcher.indexes.items) == {paths.host_vxlan(HOST), POOL}
    assert dispatcher.indexes.local.endpoints == {}


def test_each_snapshot_and_resync_hands_every_component_one_fresh_view():
    first, second = Recorder(Kind.POOL), Recorder(Kind.ENDPOINT)
    dispatcher = Dispatcher(HOST, [first, second])
    dispatcher.snapshot({POOL: POOL_JSON})
    old = dispatcher.indexes
    dispatcher.update(ep_key(), ep_json())
    assert dispatcher.resync()
    new = dispatcher.indexes
    assert first.views == second.views == [old, new] and new is not old
    assert new.items == {POOL: POOL_JSON, ep_key(): ep_json()}
    dispatcher.update(POOL, None)
    assert POOL not in new.items and new.tunnels.pools == {}
    assert POOL in old.items and old.tunnels.pools        # a replaced view is left alone


def test_each_endpoint_value_is_parsed_once_for_every_index(monkeypatch):
    parses = []
    original = model.Endpoint.from_json.__func__

    def counting(cls, key, value):
        parses.append(key)
        return original(cls, key, value)
    monkeypatch.setattr(model.Endpoint, "from_json", classmethod(counting))
    config = AgentConfig(hostname=HOST)
    from calicoctl.agent.policy.iptables.dataplane import PolicyDataplane
    dataplane = PolicyDataplane(config, tables={4: None, 6: None}, ipsets=object())
    ipip = IpipManager(config)
    dispatcher = Dispatcher(HOST, [dataplane, ipip])
    dispatcher.snapshot({ep_key(): ep_json(), POOL: json.dumps({"cidr": "10.65.0.0/16", "ipip": "tunl0"})})
    assert dataplane.index.local_endpoint("cali1") is dispatcher.indexes.local.endpoint_for("cali1")
    assert [e.nets for e in ipip.index.endpoint_list()] == [("10.65.0.1/32",)]
    assert len(parses) == 1
    dispatcher.resync()                       # same values: not parsed again
    assert len(parses) == 1
    dispatcher.update(ep_key(), ep_json(v4="10.65.0.2/32"))
    assert len(parses) == 2


class Datastore:
    def __init__(self):
        self.writes = []

    def write_host_vxlan(self, hostname, tunnel):
        self.writes.append((hostname, tunnel))


def test_tunnel_components_share_one_index_and_see_their_own_writes():
    config = AgentConfig(hostname=HOST)
    vxlan, ipip, nat = VxlanManager(config, Datastore()), IpipManager(config), NatOutgoing(config)
    dispatcher = Dispatcher(HOST, [vxlan, ipip, nat])
    dispatcher.snapshot({POOL: POOL_JSON})
    assert vxlan.index is ipip.index is nat.index is dispatcher.indexes.tunnels
    vxlan._publish("172.17.8.101", "02:00:00:00:00:aa")
    echo = model.VxlanTunnel(ip="172.17.8.101", mac="02:00:00:00:00:aa", vni=4096).to_json()
    assert dispatcher.indexes.items[paths.host_vxlan(HOST)] == echo
    vxlan._dirty = False
    dispatcher.update(paths.host_vxlan(HOST), echo)           # the watch's echo
    assert not vxlan._dirty
    vxlan._publish("172.17.8.101", "02:00:00:00:00:aa")       # known: not written twice
    assert len(vxlan._datastore.writes) == 1


class Reporter:
    def __init__(self):
        self.reports = []

    def report(self, status):
        self.reports.append(status)


def test_the_agent_resynchronises_from_a_fresh_view_after_a_failed_update():
    broken = Recorder(Kind.ENDPOINT, fail_on=ep_key(endpoint="bad"))
    agent = Agent(AgentConfig(hostname=HOST), [broken], lambda emit: None, Reporter())
    agent._handle([Snapshot({POOL: POOL_JSON}, 1)])
    assert agent.in_sync and len(broken.views) == 1
    agent._handle([Update(ep_key(endpoint="bad"), ep_json())])
    assert agent._resync_due is not None
    agent._resync_from_view("test")
    assert len(broken.views) == 2 and broken.views[1] is not broken.views[0]
    assert broken.views[1].items == {POOL: POOL_JSON, ep_key(endpoint="bad"): ep_json()}
    assert agent.in_sync and agent._resync_due is None


def test_a_catch_up_snapshot_reaches_components_as_the_updates_that_differ():
    everything = Recorder(*Kind)
    dispatcher = Dispatcher(HOST, [everything])
    gone, changed, same = ep_key(endpoint="gone"), ep_key(endpoint="changed"), ep_key(endpoint="same")
    dispatcher.snapshot({POOL: POOL_JSON, gone: ep_json(), changed: ep_json(), same: ep_json()})
    view = dispatcher.indexes
    later = {POOL: POOL_JSON, changed: ep_json(name="cali2"), same: ep_json(), ep_key(endpoint="new"): ep_json()}
    assert dispatcher.catch_up(later)
    assert dispatcher.indexes is view and len(everything.views) == 1      # nobody started over
    assert sorted(everything.updates) == sorted([
        (Kind.ENDPOINT, gone, None), (Kind.ENDPOINT, changed, ep_json(name="cali2")),
        (Kind.ENDPOINT, ep_key(endpoint="new"), ep_json())])
    assert view.items == later


def test_the_agent_applies_a_catch_up_snapshot_as_updates_but_a_first_or_later_one_whole():
    recorder = Recorder(Kind.ENDPOINT)
    agent = Agent(AgentConfig(hostname=HOST), [recorder], lambda emit: None, Reporter())
    agent._handle([Snapshot({POOL: POOL_JSON}, 1, catch_up=True)])      # nothing to diff against yet
    assert agent.in_sync and len(recorder.views) == 1
    agent._handle([Update(ep_key(endpoint="skipped"), ep_json()),
                   Snapshot({POOL: POOL_JSON, ep_key(): ep_json()}, 5, catch_up=True)])
    assert len(recorder.views) == 1
    assert recorder.updates == [(Kind.ENDPOINT, ep_key(), ep_json())]
    agent._handle([Snapshot({POOL: POOL_JSON}, 9)])                      # after an error: whole
    assert len(recorder.views) == 2 and recorder.views[1].items == {POOL: POOL_JSON}


def test_the_agent_gathers_a_burst_into_one_cycle_but_takes_a_change_after_quiet_at_once(monkeypatch):
    import threading
    import time

    from calicoctl.agent import loop as agent_loop
    monkeypatch.setattr(agent_loop, "BURST_CYCLE", 1.0)
    agent = Agent(AgentConfig(hostname=HOST), [], lambda emit: None, Reporter())
    agent.queue.put("first")
    assert agent._take_batch(0.1) == ["first"]            # no flush yet: nothing to wait for
    agent._last_flush = time.monotonic()                  # a cycle just ended: a burst is on
    agent.queue.put("second")
    later = threading.Timer(0.05, agent.queue.put, args=("third",))
    later.start()
    try:
        assert agent._take_batch(0.1) == ["second", "third"]
    finally:
        later.cancel()


def test_the_gathering_window_grows_with_slow_cycles_of_a_burst_within_bounds():
    from calicoctl.agent import loop as agent_loop
    assert agent_loop.gathering_window(0.001, 50) == agent_loop.BURST_CYCLE      # a quick cycle
    assert agent_loop.gathering_window(0.05, 50) == 0.05 * agent_loop.GATHER_PER_CYCLE
    assert agent_loop.gathering_window(30.0, 50) == agent_loop.MAX_GATHER         # a starved agent, bounded
    assert agent_loop.gathering_window(0.0125, 2) == agent_loop.BURST_CYCLE
    assert agent_loop.gathering_window(0.5, 1) == agent_loop.BURST_CYCLE          # a lone change: no burst


def test_the_agent_widens_its_window_after_a_slow_flush_in_a_burst():
    import time

    from calicoctl.agent import loop as agent_loop

    class Slow(Recorder):
        def flush(self):
            time.sleep(0.1)
    agent = Agent(AgentConfig(hostname=HOST), [Slow(Kind.ENDPOINT)], lambda emit: None, Reporter())
    agent._handle([Snapshot({POOL: POOL_JSON}, 1)])
    assert agent._gather == agent_loop.BURST_CYCLE          # one item: not a burst
    agent._handle([Update(ep_key(endpoint="a"), ep_json()), Update(ep_key(endpoint="b"), ep_json())])
    assert agent._gather >= 0.4          # GATHER_PER_CYCLE x at least 0.1 s
