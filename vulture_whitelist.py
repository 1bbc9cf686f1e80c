"""Names the dead-code check (vulture, ``make lint``) cannot see being used.

Read by vulture only, never imported. Every entry is used dynamically or
is data that only some readers look at; anything else vulture reports is
dead and goes.
"""
from types import SimpleNamespace

_ = SimpleNamespace()

_.used_dynamically(
    # pytest calls hooks and fixtures by name and reads marks from module globals.
    _.pytest_configure,
    _.pytest_collection_modifyitems,
    _.root_required,        # also requested as a parameter by fixtures, for its skip
    _.mesh_restored,
    _.etcd_v3_server,       # requested by name through request.getfixturevalue
    _.pytestmark,
    # requests reads these attributes of the Session the v3 client is given.
    _.trust_env,
    _.verify,
    # tarfile reads these TarInfo attributes when it writes the busybox image.
    _.mtime,
    _.linkname,
    # Dataclass fields: part of what a function returns; not every caller reads each.
    _.scope,                # calicoctl.host.netlink.RouteInfo
    _.deleted_interfaces,   # calicoctl.ops.container.RemoveResult
    _.ca_key,               # tests.harness.etcd.TlsMaterial
    # http.server / socketserver call these by name (tests/functional/test_docker_adapter.py).
    _.do_GET,
    _.log_message,
    _.daemon_threads,
)
