"""The key-value layer (calicoctl.datastore.kv) and the agent's watcher on a
real etcd, v2 and v3 (an etcd without the v2 API)."""
import json
import threading
import time

import pytest

from calicoctl.agent.watcher import EtcdWatcher, ResyncNeeded, Snapshot, Update
from calicoctl.datastore.client import DatastoreClient
from calicoctl.datastore.kv import HistoryLost
from tests.harness.util import wait_for
from tests.harness.watching import WatchEvents

DIR = "/calico/v1/test"


@pytest.fixture
def etcd(any_etcd):
    return any_etcd


@pytest.fixture
def kv(etcd):
    return etcd.kv()


def test_get_put_create_swap_delete(kv):
    assert kv.get(DIR + "/a") is None
    kv.put(DIR + "/a", "1")
    first = kv.get(DIR + "/a")
    assert (first.key, first.value, first.expires) == (DIR + "/a", "1", False)
    assert not kv.create(DIR + "/a", "2") and kv.get(DIR + "/a").value == "1"
    assert kv.create(DIR + "/b", "é")
    assert kv.get(DIR + "/b").value == "é"
    # Compare-and-swap on the revision: a stale revision loses.
    assert kv.swap(DIR + "/a", "3", revision=first.revision)
    assert not kv.swap(DIR + "/a", "4", revision=first.revision)
    assert kv.get(DIR + "/a").value == "3" and kv.get(DIR + "/a").revision > first.revision
    assert not kv.swap(DIR + "/absent", "x", revision=first.revision)
    assert kv.swap(DIR + "/a", "5", prev_value="3") and not kv.swap(DIR + "/a", "6", prev_value="3")
    assert not kv.swap(DIR + "/absent", "x", prev_value="")
    assert not kv.delete(DIR + "/a", prev_value="3") and kv.get(DIR + "/a").value == "5"
    assert kv.delete(DIR + "/a", prev_value="5") and kv.get(DIR + "/a") is None
    assert kv.delete(DIR + "/b") and not kv.delete(DIR + "/b")


def test_directories_are_prefixes_that_spare_their_siblings(etcd, kv):
    for key in ("h1/workload/w1/e1", "h1/workload/w2/e1", "h1/config/marker", "h10/config/marker",
                "h1-b/config/marker"):
        kv.put("%s/%s" % (DIR, key), key)
    tree = kv.tree(DIR + "/h1")
    assert sorted(entry.key for entry in tree.entries) == [
        DIR + "/h1/config/marker", DIR + "/h1/workload/w1/e1", DIR + "/h1/workload/w2/e1"]
    assert tree.revision >= max(entry.revision for entry in tree.entries)
    assert kv.children(DIR) == ["h1", "h1-b", "h10"]
    assert kv.children(DIR + "/h1/workload") == ["w1", "w2"]
    assert kv.exists(DIR + "/h1") and not kv.exists(DIR + "/h2")
    # An empty directory exists on v2 only; making one over keys or a key leaves them.
    kv.make_dir(DIR + "/h2")
    assert kv.exists(DIR + "/h2") == (etcd.datastore == "etcdv2")
    kv.make_dir(DIR + "/h1")
    kv.make_dir(DIR + "/h1/config/marker")
    assert kv.get(DIR + "/h1/config/marker").value == "h1/config/marker"
    assert kv.delete_empty_dir(DIR + "/h2") and not kv.exists(DIR + "/h2")
    assert not kv.delete_empty_dir(DIR + "/h1/workload")
    assert kv.delete_tree(DIR + "/h1") and not kv.delete_tree(DIR + "/h1")
    assert sorted(entry.key for entry in kv.tree(DIR).entries) == [
        DIR + "/h1-b/config/marker", DIR + "/h10/config/marker"]
    assert kv.tree("/calico/v1/nothing").entries == ()


@pytest.mark.slow
def test_put_many_and_ttl(kv):
    kv.put_many([("%s/many/%03d" % (DIR, n), str(n)) for n in range(250)])
    assert len(kv.tree(DIR + "/many").entries) == 250
    kv.put(DIR + "/ttl", "gone soon", ttl=2)
    assert kv.get(DIR + "/ttl").expires
    wait_for(lambda: kv.get(DIR + "/ttl") is None, timeout=10, interval=0.2, message="the key expiring")


@pytest.mark.slow
def test_claims_expire_unless_confirmed(etcd):
    """IP claims made with a TTL (v2) or a lease (v3) go away by themselves
    unless confirmed; a confirmed claim stays."""
    datastore = DatastoreClient(etcd.kv())
    assert datastore.claim_ip("10.0.0.0/24", "10.0.0.1", owner="a", ttl=2)
    assert datastore.claim_ip("10.0.0.0/24", "10.0.0.2", owner="b", ttl=2)
    assert not datastore.claim_ip("10.0.0.0/24", "10.0.0.1", owner="c", ttl=2)
    assert datastore.confirm_claim("10.0.0.0/24", "10.0.0.1", "a")
    assert not datastore.confirm_claim("10.0.0.0/24", "10.0.0.2", "intruder")
    wait_for(lambda: datastore.get_claim("10.0.0.0/24", "10.0.0.2") is None, timeout=10, interval=0.2,
             message="the unconfirmed claim expiring")
    assert datastore.get_claim("10.0.0.0/24", "10.0.0.1") == "a"
    assert datastore.list_claim_pools(4) == ["10.0.0.0/24"]
    assert datastore.release_ip("10.0.0.0/24", "10.0.0.1", owner="a")
    assert datastore.remove_empty_claims_dir("10.0.0.0/24")


class CountingKV:
    """Forwards to a real store, counting snapshots and watched events."""

    def __init__(self, kv):
        self.kv = kv
        self.keys_per_event = kv.keys_per_event
        self.trees = 0
        self.watches = 0
        self.events = 0

    def tree(self, directory):
        self.trees += 1
        return self.kv.tree(directory)

    def watch(self, directory, revision, timeout):
        self.watches += 1
        for event in self.kv.watch(directory, revision, timeout):
            self.events += 1
            yield event


def start_watcher(kv, emit, **kwargs):
    return EtcdWatcher(kv, emit, watch_timeout=kwargs.pop("watch_timeout", 2.0), retry_interval=0.2,
                       **kwargs).start()


@pytest.mark.slow
def test_watcher_snapshot_then_updates(kv):
    kv.put(DIR + "/before", "0")
    counting = CountingKV(kv)
    emitted = WatchEvents()
    watcher = start_watcher(counting, emitted, watch_timeout=1.0)
    try:
        snapshot = emitted.next(Snapshot)
        assert snapshot.items == {DIR + "/before": "0"}
        # Past one quiet watch timeout: the watch is issued again.
        wait_for(lambda: counting.watches >= 2, timeout=10, interval=0.05, message="a second watch")
        kv.put(DIR + "/a", "1")
        assert emitted.next(Update) == Update(DIR + "/a", "1")
        kv.delete(DIR + "/a")
        assert emitted.next(Update) == Update(DIR + "/a", None)
        kv.put(DIR + "/t", json.dumps({"x": 1}), ttl=2)
        assert emitted.next(Update) == Update(DIR + "/t", '{"x": 1}')
        assert emitted.next(Update, timeout=15) == Update(DIR + "/t", None)   # expired
    finally:
        watcher.stop()


def test_watcher_held_up_during_a_burst_does_not_ask_once_per_event(etcd, kv):
    """A watcher held up while 300 writes land does not replay them one
    request each. v2 (one long poll per event) sees it is 300 revisions
    behind and catches up with one snapshot; v3 already has them all in its
    one watch stream and reads them from there."""
    counting = CountingKV(kv)
    emitted = WatchEvents()
    watcher = start_watcher(counting, emitted, catch_up_limit=50, watch_timeout=10.0)
    try:
        assert not emitted.next(Snapshot).catch_up
        emitted.hold.clear()                 # the agent is busy with the next update...
        kv.put(DIR + "/first", "x")
        emitted.next(Update)
        for n in range(300):                  # one revision each
            kv.put("%s/burst/%03d" % (DIR, n), str(n))
        emitted.hold.set()                   # ...and comes back 300 revisions behind
        if etcd.datastore == "etcdv2":
            snapshot = emitted.next(Snapshot)
            assert len([key for key in snapshot.items if "/burst/" in key]) == 300
            assert snapshot.catch_up          # the agent applies only what differs
            assert counting.trees == 2
            assert counting.events <= 3, "replayed %d events instead of taking a snapshot" % counting.events
        else:
            seen = {emitted.next(Update).key for _ in range(300)}
            assert len(seen) == 300 and counting.trees == 1 and counting.watches == 1
        kv.put(DIR + "/after", "y")           # and it watches on
        assert emitted.next(Update) == Update(DIR + "/after", "y")
    finally:
        watcher.stop()


def test_watch_resumed_far_behind_takes_a_snapshot(kv):
    """Resuming a watch 300 revisions back (v2 and v3 alike) stops after the
    first event: a snapshot is cheaper than the replay."""
    revision = kv.tree(DIR).revision
    for n in range(300):
        kv.put("%s/burst/%03d" % (DIR, n), str(n))
    counting = CountingKV(kv)
    watcher = EtcdWatcher(counting, lambda item: None, watch_timeout=2.0, catch_up_limit=50)
    with pytest.raises(ResyncNeeded, match="revisions behind"):
        watcher._watch(revision)
    assert counting.events == 1


def test_v3_watch_from_a_compacted_revision_resyncs(etcd, kv):
    if etcd.datastore != "etcdv3":
        pytest.skip("v2 has no compaction (its history is the last 1000 events)")
    kv.put(DIR + "/old", "1")
    old = kv.tree(DIR).revision
    kv.put(DIR + "/new", "2")
    latest = kv.tree(DIR).revision
    etcd.server.call("/v3/kv/compaction", {"revision": latest})
    with pytest.raises(HistoryLost, match="compacted"):
        list(kv.watch(DIR, old, timeout=2))
    emitted = WatchEvents()
    watcher = start_watcher(kv, emitted)
    try:
        assert emitted.next(Snapshot).items == {DIR + "/old": "1", DIR + "/new": "2"}
    finally:
        watcher.stop()


class CountingHttp:
    """Counts the requests and streams a store's HTTP client makes."""

    def __init__(self, kv):
        self.requests = self.streams = 0
        request, stream = kv.http.request, kv.http.stream

        def counted_request(*args, **kwargs):
            self.requests += 1
            return request(*args, **kwargs)

        def counted_stream(*args, **kwargs):
            self.streams += 1
            return stream(*args, **kwargs)
        kv.http.request, kv.http.stream = counted_request, counted_stream


def watch_in_thread(kv, revision, count, pause_after=0, pause=0.0):
    """Start taking ``count`` events from ``revision`` on in a thread (for
    ``pause`` seconds after the ``pause_after``-th, as a busy agent would);
    returns (events, thread)."""
    events = []

    def take():
        try:
            for event in kv.watch(DIR, revision, timeout=10):
                events.append(event)
                if len(events) == pause_after:
                    time.sleep(pause)
                if len(events) == count:
                    return
        except Exception as exc:  # noqa: BLE001 - the test shows it
            events.append(exc)
    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return events, thread


def assert_in_order(events, keys, values=None):
    assert not [event for event in events if isinstance(event, Exception)]
    assert [event.key for event in events] == keys
    if values is not None:
        assert [event.value for event in events] == values
    revisions = [event.revision for event in events]
    assert revisions == sorted(set(revisions))


def test_v2_live_events_come_on_one_stream(etcd_v2):
    """Caught up, the v2 watch takes a burst on one streamed response, not a
    request per event."""
    kv, writer = etcd_v2.kv(), etcd_v2.kv()
    counting = CountingHttp(kv)
    events, thread = watch_in_thread(kv, kv.tree(DIR).revision + 1, 301)
    time.sleep(0.3)
    writer.put(DIR + "/first", "0")
    wait_for(lambda: events, timeout=10, message="the first event")
    time.sleep(0.3)                       # the stream is open before the burst
    keys = ["%s/burst/%03d" % (DIR, n) for n in range(300)]
    for key in keys:
        writer.put(key, key)
    thread.join(30)
    assert_in_order(events, [DIR + "/first"] + keys, ["0"] + keys)
    assert counting.requests + counting.streams <= 5, (counting.requests, counting.streams)


@pytest.mark.slow
def test_v2_stream_etcd_drops_for_a_slow_reader_goes_on_without_a_gap(etcd_v2):
    """A reader that stops reading while large values pour in (more than
    the sockets' buffers hold) fills etcd's buffer of 100 events: etcd ends
    the stream, and the watch goes on from the next index (history, then a
    new stream), missing and repeating nothing."""
    kv, writer = etcd_v2.kv(), etcd_v2.kv()
    counting = CountingHttp(kv)
    events, thread = watch_in_thread(kv, kv.tree(DIR).revision + 1, 402, pause_after=2, pause=4.0)
    time.sleep(0.3)
    writer.put(DIR + "/first", "0")       # a live event: the watch streams from here on
    wait_for(lambda: events, timeout=10, message="the first event")
    time.sleep(0.3)
    writer.put(DIR + "/second", "0")      # on the stream; the reader pauses after it
    wait_for(lambda: len(events) == 2, timeout=10, message="the second event")
    big = "x" * 64000
    keys = ["%s/burst/%03d" % (DIR, n) for n in range(400)]
    for key in keys:
        writer.put(key, big)
    thread.join(60)
    assert_in_order(events, [DIR + "/first", DIR + "/second"] + keys)
    assert counting.streams >= 2, "etcd never ended the stream: nothing tested"
    assert counting.requests >= 1       # the events etcd dropped came back from its history


def test_v2_watch_from_a_cleared_index_loses_history(etcd_v2):
    kv = etcd_v2.kv()
    revision = kv.tree(DIR).revision + 1
    for n in range(1010):                 # etcd's v2 history holds the last 1000 events
        kv.put(DIR + "/k", str(n))
    with pytest.raises(HistoryLost, match="cleared"):
        list(kv.watch(DIR, revision, timeout=2))


def test_empty_values_compare_too(kv):
    """Claims the reference made hold "": v2 has no empty prevValue, yet
    compare-and-delete must work on them."""
    kv.put(DIR + "/anon", "")
    assert not kv.delete(DIR + "/anon", prev_value="someone")
    assert kv.swap(DIR + "/anon", "", prev_value="")
    assert kv.delete(DIR + "/anon", prev_value="") and kv.get(DIR + "/anon") is None


@pytest.mark.slow
def test_watcher_reports_lost_etcd_and_resyncs_when_it_is_back(any_etcd):
    """etcd restarted under a watch (the v3 stream breaks, the v2 poll
    fails): Lost, then a fresh snapshot once etcd answers, and updates again."""
    from calicoctl.agent.watcher import Lost
    server = any_etcd.server
    kv = any_etcd.kv()
    emitted = WatchEvents()
    watcher = start_watcher(kv, emitted)
    try:
        emitted.next(Snapshot)
        server.stop()
        assert isinstance(emitted.next(Lost, timeout=15), Lost)
        server.start()
        snapshot = emitted.next(Snapshot, timeout=15)
        assert snapshot.items == {}           # wiped before the test: nothing was missed
        kv.put(DIR + "/later", "2")
        assert emitted.next(Update) == Update(DIR + "/later", "2")
    finally:
        watcher.stop()
