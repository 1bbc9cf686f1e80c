"""
Usage:
  calicoctl status

Description:
  Print the state of this host's calico-agent (pid, uptime, last sync,
  whether it keeps workloads off the control plane) and of its BGP sessions.
"""
from calicoctl.cli import parse
from calicoctl.errors import DatastoreUnavailable


def run(argv, ctx):
    from calicoctl.cli.output import render_table
    from calicoctl.ops import status as status_ops

    parse(__doc__, argv)
    hostname = ctx.hostname
    unreachable = None
    try:
        state = status_ops.read_agent_state(ctx.datastore, hostname)
    except DatastoreUnavailable as exc:
        # The local half still tells the user something useful.
        unreachable = exc
        state = status_ops.read_agent_state(None, hostname)
    for line in status_ops.render_agent_summary(state, status_ops.now(), hostname):
        ctx.out(line)

    rows, raw, error = status_ops.query_bird_protocols()
    if error is not None:
        ctx.out(error)
    elif rows is None:
        ctx.out("Could not read BIRD's protocol table; BIRD said:")
        ctx.out(raw.rstrip())
    else:
        for version in (4, 6):
            ctx.out("IPv%d BGP status" % version)
            peers = [row for row in rows if row.version == version]
            if peers:
                ctx.out(render_table(["Peer address", "Peer type", "State", "Since", "Info"],
                                     [[r.address, r.peer_type, r.state, r.since, r.info] for r in peers]))
            else:
                ctx.out("No IPv%d BGP peers." % version)
            ctx.out()
    if unreachable is not None:
        ctx.err(str(unreachable))
        return unreachable.exit_code
    return 0
