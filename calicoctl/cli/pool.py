"""
Usage:
  calicoctl pool (add|remove) <CIDRS>... [--ipip] [--nat-outgoing] [--vxlan]
  calicoctl pool range add <START_IP> <END_IP> [--ipip] [--nat-outgoing] [--vxlan]
  calicoctl pool show [--ipv4 | --ipv6] [--output=<FORMAT>]

Description:
  Configure the IP pools that workload addresses come from. Adding a pool
  that exists already sets its flags to the ones given. A pool may not
  overlap another pool, and a pool that still has addresses in use cannot
  be removed. range add covers START_IP..END_IP with the fewest CIDRs.

Options:
  --ipip          Carry traffic between hosts in IP-in-IP (IPv4 pools only).
  --nat-outgoing  Masquerade traffic leaving the pool for other destinations.
  --vxlan         Carry traffic between hosts in VXLAN.
  --ipv4          Show only the IPv4 pools.
  --ipv6          Show only the IPv6 pools.
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl import model, validate
from calicoctl.cli import parse, parse_versions
from calicoctl.cli.output import parse_output_format, render_json, render_table
from calicoctl.ops import policy
from calicoctl.ops import pool as ops


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["show"]:
        output, versions = parse_output_format(args), parse_versions(args)
        pools = ops.list_pools(ctx.datastore)
        if output == "json":
            ctx.out(render_json({"pools": [pool_to_dict(pool) for pool in pools if pool.version in versions]}))
        else:
            show_pools(ctx, pools, versions)
        return 0
    if args["range"]:
        start = validate.parse_ip(args["<START_IP>"], what="range start")
        end = validate.parse_ip(args["<END_IP>"], what="range end")
        cidrs = policy.calculate_range_cidrs(start, end)
    else:
        cidrs = [validate.parse_cidr(text) for text in args["<CIDRS>"]]
    if args["remove"]:
        removed = ops.remove_pools(ctx.datastore, cidrs)
        ctx.out("Removed pool%s %s." % ("s" if len(removed.cidrs) > 1 else "", ", ".join(removed.cidrs)))
        return 0
    wanted = [build_pool(cidr, args) for cidr in cidrs]
    ctx.out(render_pool_changes(ops.add_pools(ctx.datastore, wanted)))
    return 0


def build_pool(cidr, args):
    """The pool a CIDR and the flags ask for (pure); each CIDR keeps its own IP version."""
    pool = model.IPPool(cidr=str(cidr), ipip="tunl0" if args["--ipip"] else None,
                        masquerade=bool(args["--nat-outgoing"]), vxlan=bool(args["--vxlan"]))
    return policy.check_pool_flags(pool)


def render_pool_changes(changes):
    """One confirmation line for a pool add (pure)."""
    def describe(pool):
        options = pool.options()
        return pool.cidr + (" (%s)" % ", ".join(options) if options else "")
    parts = []
    for action, verb in (("add", "Added pool"), ("update", "Updated pool"),
                         ("same", "Pool already configured as asked:")):
        pools = [describe(c.pool) for c in changes if c.action == action]
        if pools:
            parts.append("%s%s %s" % (verb, "s" if len(pools) > 1 and action != "same" else "",
                                      ", ".join(pools)))
    text = "; ".join(parts) + "."
    if all(change.action == "same" for change in changes):
        text += " Nothing to do."
    return text


def pool_to_dict(pool):
    return {"cidr": pool.cidr, "ip_version": pool.version, "ipip": bool(pool.ipip),
            "nat_outgoing": pool.masquerade, "vxlan": pool.vxlan}


def show_pools(ctx, pools, versions):
    tables = []
    for version in versions:
        rows = [[pool.cidr, ",".join(pool.options())] for pool in pools if pool.version == version]
        tables.append(render_table(["IPv%d CIDR" % version, "Options"], rows))
    ctx.out("\n".join(tables))
