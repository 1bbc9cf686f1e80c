"""
Usage:
  calicoctl status

Description:
  Print the state of this host's calico-agent (pid, uptime, last sync,
  whether it keeps workloads off the control plane) and of its BGP sessions:
  each one's kind (node-to-node mesh, route reflector, route reflector
  client, node specific, global) and state.
"""
from calicoctl.cli import parse


def run(argv, ctx):
    from calicoctl.cli.output import render_table
    from calicoctl.ops import status as status_ops

    parse(__doc__, argv)
    report = status_ops.read_status(ctx.datastore, ctx.hostname)
    for line in status_ops.render_agent_summary(report.agent, report.now, ctx.hostname):
        ctx.out(line)
    if report.rr_cluster_id is not None:
        ctx.out("This host is a BGP route reflector (cluster ID %s)." % report.rr_cluster_id)
    if report.bird_error is not None:
        ctx.out(report.bird_error)
    elif report.bgp_peers is None:
        ctx.out("Could not read BIRD's protocol table; BIRD said:")
        ctx.out(report.bird_output.rstrip())
    else:
        for version in (4, 6):
            ctx.out("IPv%d BGP status" % version)
            peers = [row for row in report.bgp_peers if row.version == version]
            if peers:
                ctx.out(render_table(["Peer address", "Peer type", "State", "Since", "Info"],
                                     [[r.address, r.peer_type, r.state, r.since, r.info] for r in peers]))
            else:
                ctx.out("No IPv%d BGP peers." % version)
            ctx.out()
    if report.unreachable is not None:
        ctx.err(str(report.unreachable))
        return report.unreachable.exit_code
    return 0
