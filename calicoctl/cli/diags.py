"""
Usage:
  calicoctl diags [--log-dir=<LOG_DIR>]

Description:
  Save diagnostic information about this host into a tarball: logs, this
  host's etcd data, iptables-save, ip6tables-save, ipset list, nft list
  ruleset, the policy dataplane the agent runs, routes, links and
  addresses, BIRD's protocols.

Options:
  --log-dir=<LOG_DIR>  The directory holding the Calico logs [default: /var/log/calico]
"""
from calicoctl.cli import parse
from calicoctl.errors import CalicoError


def run(argv, ctx):
    from calicoctl.ops import diags

    args = parse(__doc__, argv)
    ctx.out("Collecting diagnostics for %s..." % ctx.hostname)
    try:
        datastore = ctx.datastore
    except CalicoError as exc:         # bad etcd settings: still collect the rest
        ctx.err("WARNING: not collecting etcd data: %s" % exc)
        datastore = None
    result = diags.collect_diags(ctx.hostname, args["--log-dir"], datastore=datastore)
    for note in result.notes:
        ctx.err("Note: %s" % note)
    if result.dataplane:
        ctx.out("Policy dataplane: %s." % result.dataplane)
    ctx.out("Diags saved to %s" % result.path)
    return 0
