"""
Usage:
  calicoctl status [--output=<FORMAT>]

Description:
  Print the state of this host's calico-agent (pid, uptime, last sync,
  whether it keeps workloads off the control plane) and of its BGP sessions:
  each one's kind (node-to-node mesh, route reflector, route reflector
  client, node specific, global) and state.

Options:
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl.cli import parse


def run(argv, ctx):
    from calicoctl.cli.output import parse_output_format, render_json
    from calicoctl.ops import status as status_ops

    args = parse(__doc__, argv)
    output = parse_output_format(args)
    report = status_ops.read_status(lambda: ctx.datastore, ctx.hostname)
    if output == "json":
        ctx.out(render_json(status_to_dict(report, ctx.hostname)))
    else:
        for line in render_status(report, ctx.hostname):
            ctx.out(line)
    if report.unreachable is not None:
        ctx.err(str(report.unreachable))
        return report.unreachable.exit_code
    return 0


def render_status(report, hostname):
    """The lines ``calicoctl status`` prints (pure)."""
    from calicoctl.cli.output import render_table
    from calicoctl.ops import status as status_ops
    lines = status_ops.render_agent_summary(report.agent, report.now, hostname)
    if report.rr_cluster_id is not None:
        lines.append("This host is a BGP route reflector (cluster ID %s)." % report.rr_cluster_id)
    if report.bird_error is not None:
        return lines + [report.bird_error]
    if report.bgp_peers is None:
        return lines + ["Could not read BIRD's protocol table; BIRD said:", report.bird_output.rstrip()]
    for version in (4, 6):
        lines.append("IPv%d BGP status" % version)
        peers = [row for row in report.bgp_peers if row.version == version]
        if peers:
            lines.append(render_table(["Peer address", "Peer type", "State", "Since", "Info"],
                                      [[r.address, r.peer_type, r.state, r.since, r.info] for r in peers]))
        else:
            lines.append("No IPv%d BGP peers." % version)
        lines.append("")
    return lines


def status_to_dict(report, hostname):
    """The ``status -o json`` document (pure): the agent as its files and etcd
    report it, and the BGP sessions as BIRD reports them."""
    agent = report.agent
    status = agent.local if agent.local is not None else agent.reported
    bgp = {"peers": None, "error": report.bird_error, "bird_output": None}
    if report.bird_error is None and report.bgp_peers is None:
        bgp["bird_output"] = report.bird_output
    elif report.bgp_peers is not None:
        bgp["peers"] = [{"address": row.address, "ip_version": row.version, "type": row.peer_type,
                         "state": row.state, "since": row.since, "info": row.info} for row in report.bgp_peers]
    return {"hostname": hostname, "time": report.now, "rr_cluster_id": report.rr_cluster_id,
            "agent": {"running": agent.running, "pid": agent.pid, "status": agent_status_to_dict(status),
                      "reported_in_etcd": agent.reported is not None},
            "bgp": bgp,
            "etcd_error": str(report.unreachable) if report.unreachable is not None else None}


def agent_status_to_dict(status):
    """The agent's own report (its status JSON, read), or None."""
    if status is None:
        return None
    control_plane, plugins, cni = status.control_plane, status.docker_plugins, status.cni_plugins
    return {
        "pid": status.pid, "started": status.started, "time": status.time, "in_sync": status.in_sync,
        "last_sync": status.last_sync, "local_endpoints": status.local_endpoints,
        "control_plane": None if control_plane is None else {
            "enabled": control_plane.enabled, "active": control_plane.active, "ports": list(control_plane.ports),
            "ipv4_addresses": control_plane.ipv4_addresses, "ipv6_addresses": control_plane.ipv6_addresses,
            "problem": control_plane.problem},
        "docker_plugins": None if plugins is None else {"sockets": list(plugins.sockets), "problem": plugins.problem},
        "cni": None if cni is None else {"socket": cni.sockets[0] if cni.sockets else None, "problem": cni.problem},
        "dataplane": status.dataplane,
        "refused_rules": [{"profile": refused.profile, "direction": refused.direction, "position": refused.position,
                           "rule": refused.rule, "error": refused.error} for refused in status.refused_rules],
    }
