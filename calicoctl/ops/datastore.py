"""``calicoctl datastore migrate``: copy the v2 store's /calico into v3.

Both stores live in the same etcd (3.4 and 3.5 serve the v2 API next to
v3 when started with ``--enable-v2``); they are separate keyspaces, so
this copies key by key, with the same paths (docs/etcd-layout.md).

- Keys with a TTL (agent status, claims of a command still running) are
  left out: they would expire anyway, and their writers write them again.
- Idempotent: keys v3 already holds with the same value are not written,
  so a second run (or a run after an interrupted one) writes nothing new.
- v3 keys under /calico that differ from v2 (another value, or a key v2
  does not have) are not overwritten without ``force``: nothing is written
  then. With ``force`` v3 ends up holding exactly the v2 data.
"""
from dataclasses import dataclass

from calicoctl.datastore import etcdconn, paths
from calicoctl.errors import Conflict


@dataclass(frozen=True)
class MigrationPlan:
    writes: tuple
    """(key, value) to write into v3."""
    deletes: tuple
    """v3 keys v2 does not have (removed only with force)."""
    conflicts: tuple
    """v3 keys that hold something else than v2, or that v2 does not have."""
    unchanged: int
    skipped: int
    """v2 keys left out because they expire."""


def calculate_migration(source, target, force=False):
    """Pure: the plan from v2 entries ``source`` to v3 entries ``target``."""
    wanted = {entry.key: entry.value for entry in source if not entry.expires}
    present = {entry.key: entry.value for entry in target if not entry.expires}
    conflicts = tuple(sorted(key for key, value in present.items() if wanted.get(key) != value))
    writes = tuple(sorted((key, value) for key, value in wanted.items()
                          if present.get(key) != value and (force or key not in present)))
    deletes = tuple(sorted(key for key in present if key not in wanted)) if force else ()
    return MigrationPlan(writes=writes, deletes=deletes, conflicts=conflicts,
                         unchanged=sum(1 for key, value in wanted.items() if present.get(key) == value),
                         skipped=sum(1 for entry in source if entry.expires))


def migrate(env, force=False):
    """Copy v2's /calico into v3 (see the module docstring); returns the MigrationPlan carried out.

    Raises Conflict, writing nothing, when v3 holds different data and
    ``force`` is not set.
    """
    source = etcdconn.connect(env, kind="etcdv2")
    target = etcdconn.connect(env, kind="etcdv3")
    plan = calculate_migration(source.tree(paths.ROOT).entries, target.tree(paths.ROOT).entries, force)
    if plan.conflicts and not force:
        raise Conflict("The v3 store already holds other data under %s (%d keys, e.g. %s): nothing "
                       "was copied; use --force to replace it with the v2 data."
                       % (paths.ROOT, len(plan.conflicts), plan.conflicts[0]))
    target.put_many(plan.writes)
    for key in plan.deletes:
        target.delete(key)
    return plan
