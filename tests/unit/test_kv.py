"""The key-value layer's pure parts: DATASTORE_TYPE, v2 trees and watch
results, v3 watch messages, and when the watcher gives up replaying."""
import base64

import pytest

from calicoctl.agent.watcher import EtcdWatcher, fallen_behind
from calicoctl.datastore import etcdconn, kv_v2, kv_v3
from calicoctl.datastore.kv import Entry, Event, HistoryLost, KeyValueStore, Tree
from calicoctl.errors import DatastoreError, ValidationError


def b64(text):
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("env, kind", [({}, "etcdv3"), ({"DATASTORE_TYPE": ""}, "etcdv3"),
                                       ({"DATASTORE_TYPE": "etcdv2"}, "etcdv2"),
                                       ({"DATASTORE_TYPE": " etcdv3 "}, "etcdv3")])
def test_datastore_type(env, kind):
    assert etcdconn.datastore_type(env) == kind


@pytest.mark.parametrize("text", ["etcd", "v3", "ETCDV3", "kubernetes"])
def test_wrong_datastore_type_names_the_variable(text):
    with pytest.raises(ValidationError, match="DATASTORE_TYPE") as caught:
        etcdconn.datastore_type({"DATASTORE_TYPE": text})
    assert "etcdv3 or etcdv2" in str(caught.value) and "\n" not in str(caught.value)


def test_connect_picks_the_implementation_without_contacting_etcd():
    assert etcdconn.connect({"DATASTORE_TYPE": "etcdv2"}).datastore_type == "etcdv2"
    assert etcdconn.connect({}).datastore_type == "etcdv3"


def test_v2_tree_leaves_skip_directories():
    raw = {"key": "/calico", "dir": True, "nodes": [
        {"key": "/calico/v1", "dir": True, "nodes": [
            {"key": "/calico/v1/Ready", "value": "true", "modifiedIndex": 4},
            {"key": "/calico/v1/host", "dir": True}]},
        {"key": "/calico/bgp", "dir": True, "nodes": [
            {"key": "/calico/bgp/x", "value": "1", "modifiedIndex": 7, "ttl": 30}]}]}
    assert sorted(kv_v2.collect_leaves(raw), key=lambda e: e.key) == [
        Entry("/calico/bgp/x", "1", 7, expires=True), Entry("/calico/v1/Ready", "true", 4)]


def test_v2_watch_responses_become_events():
    def message(action, key, value=None, is_dir=False, index=10):
        node = {"key": key, "modifiedIndex": index, "createdIndex": 3}
        if is_dir:
            node["dir"] = True
        if value is not None:
            node["value"] = value
        return {"action": action, "node": node, "prevNode": {"key": key, "value": "old", "modifiedIndex": 3}}
    # ``current`` is the index the response was opened at, or the event's own when later (a live event).
    assert kv_v2.parse_event(message("set", "/calico/a", "1"), 15) == Event("/calico/a", "1", 10, 15)
    assert kv_v2.parse_event(message("compareAndSwap", "/calico/a", ""), 4) == Event("/calico/a", "", 10, 10)
    assert kv_v2.parse_event(message("delete", "/calico/d", is_dir=True), 0) == Event("/calico/d", None, 10, 10)
    assert kv_v2.parse_event(message("expire", "/calico/t", index=12), 0) == Event("/calico/t", None, 12, 12)
    assert kv_v2.parse_event(message("compareAndDelete", "/calico/c"), 0) == Event("/calico/c", None, 10, 10)
    assert kv_v2.parse_event(message("set", "/calico/newdir", is_dir=True), 0) == Event(None, None, 10, 10)


def v3_store():
    return kv_v3.EtcdV3(etcdconn.parse_settings({}))


def test_v3_watch_message_events():
    message = {"result": {"header": {"revision": "40", "cluster_id": "9"}, "events": [
        {"kv": {"key": b64("/calico/a"), "value": b64('{"x": "é"}'), "mod_revision": "31"}},
        {"type": "DELETE", "kv": {"key": b64("/calico/b"), "mod_revision": "32"}}]}}
    assert list(v3_store()._watch_events(message)) == [
        Event("/calico/a", '{"x": "é"}', 31, 40), Event("/calico/b", None, 32, 40)]
    assert list(v3_store()._watch_events({"result": {"header": {"revision": "5"}, "created": True}})) == []


@pytest.mark.parametrize("result", [
    {"header": {"revision": "90"}, "compact_revision": "50", "canceled": True},
    {"header": {"revision": "90"}, "canceled": True, "cancel_reason": "mvcc: required revision is a future revision"},
])
def test_v3_compaction_or_cancel_loses_history(result):
    with pytest.raises(HistoryLost):
        list(v3_store()._watch_events({"result": result}))


def test_v3_another_cluster_loses_history_and_errors_are_datastore_errors():
    store = v3_store()
    store._cluster_id = "1"
    with pytest.raises(HistoryLost, match="cluster ID"):
        list(store._watch_events({"result": {"header": {"revision": "3", "cluster_id": "2"}}}))
    with pytest.raises(DatastoreError):
        list(store._watch_events({"error": {"grpc_code": 14, "message": "transport is closing"}}))


def test_v3_prefix_range_covers_exactly_the_directory():
    assert kv_v3.range_end("/calico/v1/host/h1/") == "/calico/v1/host/h10"
    request = kv_v3._prefix_range("/calico/v1/host/h1")
    assert base64.b64decode(request["key"]).decode() == "/calico/v1/host/h1/"
    # A sibling with a longer name ("h1-b", "h10") sorts outside the range.
    end = base64.b64decode(request["range_end"]).decode()
    for sibling in ("/calico/v1/host/h1-b/x", "/calico/v1/host/h10/x", "/calico/v1/host/h1"):
        assert not ("/calico/v1/host/h1/" <= sibling < end)
    assert "/calico/v1/host/h1/workload/x" < end


def test_fallen_behind():
    assert not fallen_behind(Event("/k", "v", 100, 300), 200)
    assert fallen_behind(Event("/k", "v", 100, 301), 200)
    assert not fallen_behind(Event(None, None, 5, 5), 0)


def entries(mapping, expiring=()):
    return [Entry(key, value, 1, expires=key in expiring) for key, value in mapping.items()]


def test_migration_plan_copies_what_v3_lacks_and_leaves_out_ttls():
    from calicoctl.ops.datastore import calculate_migration
    source = entries({"/calico/a": "1", "/calico/b": "2", "/calico/status": "{}"}, expiring={"/calico/status"})
    plan = calculate_migration(source, entries({"/calico/a": "1"}))
    assert plan.writes == (("/calico/b", "2"),) and plan.deletes == () and plan.conflicts == ()
    assert (plan.unchanged, plan.skipped) == (1, 1)
    again = calculate_migration(source, entries({"/calico/a": "1", "/calico/b": "2", "/calico/lease": "x"},
                                                expiring={"/calico/lease"}))
    assert again.writes == () and again.conflicts == () and again.unchanged == 2


def test_migration_plan_names_conflicts_and_force_replaces():
    from calicoctl.ops.datastore import calculate_migration
    source = entries({"/calico/a": "1", "/calico/b": "2"})
    target = entries({"/calico/a": "other", "/calico/only-v3": "x"})
    plan = calculate_migration(source, target)
    assert plan.conflicts == ("/calico/a", "/calico/only-v3")
    assert plan.writes == (("/calico/b", "2"),) and plan.deletes == ()
    forced = calculate_migration(source, target, force=True)
    assert forced.writes == (("/calico/a", "1"), ("/calico/b", "2")) and forced.deletes == ("/calico/only-v3",)


def test_render_migration():
    from calicoctl.cli.datastore import render_migration
    from calicoctl.ops.datastore import MigrationPlan
    assert render_migration(MigrationPlan((), (), (), 0, 0)) == \
        "Nothing to migrate: etcd v2 holds no keys under /calico."
    assert render_migration(MigrationPlan((), (), (), 4, 1)) == \
        "Nothing to migrate: etcd v3 already holds the 4 keys of v2. Left out 1 keys with a TTL."
    assert render_migration(MigrationPlan((("/k", "v"),), ("/x",), ("/x",), 2, 0)) == \
        "Copied 1 keys from etcd v2 to v3 (2 already there; removed 1 keys only v3 had)."


class SizedStore(KeyValueStore):
    """A store whose tree has ``size`` keys."""
    keys_per_event = 30

    def __init__(self, size):
        self.size = size

    def tree(self, directory):
        return Tree(tuple(Entry("/calico/k%d" % n, "v", n + 1) for n in range(self.size)), self.size)


def test_the_catch_up_limit_is_what_a_snapshot_costs_in_events():
    seen = []
    for size, fixed, limit in ((3000, None, 100), (300, None, 20), (3000, 50, 50)):
        watcher = EtcdWatcher(SizedStore(size), seen.append, catch_up_limit=fixed)
        watcher._snapshot()
        assert watcher._limit == limit
        assert fallen_behind(Event("/k", "v", 1, 1 + limit + 1), watcher._limit)
    assert [len(item.items) for item in seen] == [3000, 300, 3000]
