"""DatastoreClient's compare-and-swap updates against a real etcd.

Each update returns an Update: the value its compute function was last
given (what the write was decided from) and the value stored now. The ops
workflows build what they report from these, so they must hold under a
concurrent writer too.
"""
import json
from dataclasses import replace

import pytest

from calicoctl import model
from calicoctl.datastore import etcdconn, paths
from calicoctl.datastore.client import DatastoreClient
from calicoctl.errors import NotFound

KEY = "/calico/v1/test/value"


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3."""
    return any_etcd


@pytest.fixture
def datastore(etcd):
    return DatastoreClient(etcdconn.connect(etcd.env))


def test_update_value_returns_old_and_new(datastore):
    created = datastore.update_value(KEY, lambda old: "1", create=True)
    assert (created.old, created.new, created.changed) == (None, "1", True)
    kept = datastore.update_value(KEY, lambda old: old)
    assert (kept.old, kept.new, kept.changed) == ("1", "1", False)
    changed = datastore.update_value(KEY, lambda old: old + "2")
    assert (changed.old, changed.new, changed.changed) == ("1", "12", True)
    with pytest.raises(NotFound):
        datastore.update_value(KEY + "-absent", lambda old: "x")


def test_old_is_what_the_last_attempt_saw(datastore, etcd):
    datastore.update_value(KEY, lambda old: "a", create=True)
    seen = []

    def compute(old):
        seen.append(old)
        if len(seen) == 1:
            etcd.kv().put(KEY, "b")      # another writer gets in first
        return old + "+"
    update = datastore.update_value(KEY, compute)
    assert seen == ["a", "b"]
    assert (update.old, update.new) == ("b", "b+")
    assert etcd.kv().get(KEY).value == "b+"


def test_profile_updates_return_models(datastore):
    datastore.create_profile(model.Profile.new("WEB"))
    tags = datastore.update_profile_tags("WEB", lambda current: current + ("DB",))
    assert (tags.old, tags.new, tags.changed) == (("WEB",), ("WEB", "DB"), True)
    assert not datastore.update_profile_tags("WEB", lambda current: current).changed

    rules = datastore.update_profile_rules("WEB", lambda stored: stored.text)
    assert not rules.changed and rules.old == rules.new
    assert rules.new.entries("inbound")[0].describe() == "allow from tag WEB"
    emptied = datastore.update_profile_rules("WEB", lambda stored: stored.replaced("inbound", ()))
    assert emptied.changed
    assert len(emptied.old.entries("inbound")) == 1 and emptied.new.entries("inbound") == ()
    with pytest.raises(NotFound):
        datastore.update_profile_tags("NOPE", lambda current: current)


def test_endpoint_update_returns_both_endpoints(datastore, etcd):
    ep_key = model.EndpointKey("host1", "docker", "wl1", "e1")
    etcd.kv().put(paths.endpoint_key("host1", "docker", "wl1", "e1"), json.dumps({
        "state": "active", "name": "calie1", "mac": "ee:ee:ee:ee:ee:01", "profile_ids": ["A"],
        "ipv4_nets": ["192.168.0.1/32"], "ipv6_nets": [], "ipv4_gateway": None, "ipv6_gateway": None}))
    update = datastore.update_endpoint(ep_key, lambda ep: replace(ep, profile_ids=ep.profile_ids + ("B",)))
    assert update.old.profile_ids == ("A",) and update.new.profile_ids == ("A", "B") and update.changed
    assert not datastore.update_endpoint(ep_key, lambda ep: ep).changed


def test_control_plane_update_returns_stored_text(datastore):
    first = datastore.update_control_plane_protection(lambda text: model.ControlPlaneProtection(enabled=False))
    assert first.old is None and json.loads(first.new)["enabled"] is False
    second = datastore.update_control_plane_protection(lambda text: None)
    assert second.old == second.new == first.new and not second.changed
