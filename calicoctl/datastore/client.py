"""Typed reads and writes of Calico's etcd data: ``DatastoreClient``.

It takes a key-value store (``kv.KeyValueStore``, etcd v2 or v3, from
``etcdconn.connect``) and speaks in models (``calicoctl.model``). Its methods come by
concern from ``profiles``, ``workloads`` (endpoints and workloads),
``ipam`` (pools and claims) and ``hosts`` (readiness, BGP, host records,
agent status); ``store`` has what they share: generic reads and the
compare-and-swap ``update_value``.
"""
from calicoctl.datastore.hosts import HostStore
from calicoctl.datastore.ipam import IpamStore
from calicoctl.datastore.profiles import ProfileStore
from calicoctl.datastore.workloads import WorkloadStore


class DatastoreClient(ProfileStore, WorkloadStore, IpamStore, HostStore):
    """Every typed read and write of the datastore, on one key-value store."""
