"""
Usage:
  calicoctl datastore migrate [--force]

Description:
  Copy every key under /calico from etcd's v2 API into its v3 API, for
  moving to DATASTORE_TYPE=etcdv3 (etcd 3.4/3.5 with --enable-v2 serve
  both; etcd 3.6 has no v2). The same ETCD_AUTHORITY / ETCD_ENDPOINTS and
  TLS variables are used; DATASTORE_TYPE does not matter here. Keys with a
  TTL (agent status) are left out. Running it again copies only what
  changed. If v3 already holds other data under /calico, nothing is
  copied unless --force is given.

Options:
  --force  Replace what v3 holds under /calico with the v2 data.
"""
from calicoctl.cli import parse
from calicoctl.ops import datastore as ops


def run(argv, ctx):
    args = parse(__doc__, argv)
    ctx.out(render_migration(ops.migrate(ctx.env, force=args["--force"])))
    return 0


def render_migration(plan):
    """One line saying what a migration did (pure)."""
    if not plan.writes and not plan.deletes:
        if not plan.unchanged:
            text = "Nothing to migrate: etcd v2 holds no keys under /calico."
        else:
            text = "Nothing to migrate: etcd v3 already holds the %d keys of v2." % plan.unchanged
    else:
        text = "Copied %d keys from etcd v2 to v3 (%d already there" % (len(plan.writes), plan.unchanged)
        text += ("; removed %d keys only v3 had)." % len(plan.deletes)) if plan.deletes else ")."
    if plan.skipped:
        text += " Left out %d keys with a TTL." % plan.skipped
    return text
