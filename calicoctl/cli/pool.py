"""
Usage:
  calicoctl pool (add|remove) <CIDRS>... [--ipip] [--nat-outgoing] [--vxlan]
  calicoctl pool range add <START_IP> <END_IP> [--ipip] [--nat-outgoing] [--vxlan]
  calicoctl pool show [--ipv4 | --ipv6]

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
"""
from calicoctl import model, validate
from calicoctl.cli import parse
from calicoctl.cli.output import render_table
from calicoctl.errors import Conflict, NotFound
from calicoctl.ops import policy


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["show"]:
        versions = (4,) if args["--ipv4"] else (6,) if args["--ipv6"] else (4, 6)
        return show_pools(ctx, versions)
    if args["range"]:
        start = validate.parse_ip(args["<START_IP>"], what="range start")
        end = validate.parse_ip(args["<END_IP>"], what="range end")
        cidrs = policy.calculate_range_cidrs(start, end)
        return add_pools(ctx, cidrs, args)
    cidrs = [validate.parse_cidr(text) for text in args["<CIDRS>"]]
    if args["add"]:
        return add_pools(ctx, cidrs, args)
    return remove_pools(ctx, cidrs)


def build_pool(cidr, args):
    """The pool a CIDR and the flags ask for (pure); each CIDR keeps its own IP version."""
    pool = model.IPPool(cidr=str(cidr), ipip="tunl0" if args["--ipip"] else None,
                        masquerade=bool(args["--nat-outgoing"]), vxlan=bool(args["--vxlan"]))
    return policy.check_pool_flags(pool)


def add_pools(ctx, cidrs, args):
    wanted = [build_pool(cidr, args) for cidr in cidrs]
    datastore = ctx.datastore
    changes = policy.calculate_pool_changes(datastore.list_pools(), wanted)
    for change in changes:
        if change.action != "same":
            datastore.write_pool(change.pool)
    ctx.out(render_pool_changes(changes))
    return 0


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


def remove_pools(ctx, cidrs):
    datastore = ctx.datastore
    configured = {pool.cidr for pool in datastore.list_pools()}
    targets = []
    for cidr in cidrs:
        text = str(cidr)
        if text not in configured:
            raise NotFound("%s is not a configured pool; nothing removed." % text)
        if text not in targets:
            targets.append(text)
    for cidr in targets:
        claimed = datastore.list_claims(cidr)
        if claimed:
            raise Conflict("Pool %s still has addresses in use (%s); nothing removed."
                           % (cidr, policy.render_short_list(claimed)))
    for cidr in targets:
        # Dropping the (empty) claims directory first fails if a claim
        # appeared since the check, which keeps the pool in place.
        if not datastore.remove_empty_claims_dir(cidr):
            raise Conflict("Pool %s got an address in use just now (%s); not removed."
                           % (cidr, policy.render_short_list(datastore.list_claims(cidr))))
        datastore.remove_pool(cidr)
    ctx.out("Removed pool%s %s." % ("s" if len(targets) > 1 else "", ", ".join(targets)))
    return 0


def show_pools(ctx, versions):
    pools = ctx.datastore.list_pools()
    tables = []
    for version in versions:
        rows = [[pool.cidr, ",".join(pool.options())] for pool in pools if pool.version == version]
        tables.append(render_table(["IPv%d CIDR" % version, "Options"], rows))
    ctx.out("\n".join(tables))
    return 0
