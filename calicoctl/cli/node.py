"""
Usage:
  calicoctl node [--ip=<IP>] [--ip6=<IP6>] [--as=<AS_NUM>] [--log-dir=<LOG_DIR>] [--detach=<DETACH>]
  calicoctl node stop [--force]
  calicoctl node bgp peer add <PEER_IP> as <AS_NUM>
  calicoctl node bgp peer remove <PEER_IP>
  calicoctl node bgp peer show [--ipv4 | --ipv6]

Description:
  Start the Calico node agent on this host, stop it, and configure this
  node's own BGP peers.

Options:
  --ip=<IP>              This host's IPv4 address, as other hosts reach it
                         (detected from the interfaces when absent).
  --ip6=<IP6>            This host's IPv6 address, if it peers over IPv6.
  --as=<AS_NUM>          This node's AS number (default: the global default AS).
  --log-dir=<LOG_DIR>    Where the agent writes its logs [default: /var/log/calico]
  --detach=<DETACH>      "true": run the agent as a background daemon;
                         "false": run it in the foreground [default: true]
  --force                Stop the node even if it has endpoints: they are
                         removed and their IP addresses released.
  --ipv4                 Show IPv4 information only.
  --ipv6                 Show IPv6 information only.
"""
from calicoctl import validate
from calicoctl.cli import parse
from calicoctl.errors import CalicoError, ValidationError


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["bgp"]:
        return _bgp(args, ctx)
    if args["stop"]:
        return _stop(args, ctx)
    return _start(args, ctx)


# -- start ---------------------------------------------------------------------

def _parse_start_options(args):
    """Validate every start option; report all problems at once."""
    problems = []
    values = {}
    for option, key, version in (("--ip", "ip", 4), ("--ip6", "ip6", 6)):
        text = args[option]
        values[key] = None
        if text is not None:
            try:
                values[key] = str(validate.parse_ip(text, version, "IPv%d address for %s" % (version, option)))
            except ValidationError as exc:
                problems.append(str(exc))
    values["as_num"] = None
    if args["--as"] is not None:
        try:
            values["as_num"] = validate.parse_as_number(args["--as"])
        except ValidationError as exc:
            problems.append(str(exc))
    detach = (args["--detach"] or "").strip().lower()
    if detach not in ("true", "false"):
        problems.append("Invalid --detach=%s: expected true or false." % args["--detach"])
    values["detach"] = detach == "true"
    values["log_dir"] = args["--log-dir"]
    if not values["log_dir"]:
        problems.append("Invalid --log-dir: empty.")
    if problems:
        raise ValidationError("\n".join(problems))
    return values


def _start(args, ctx):
    import os
    from calicoctl.ops import checksystem
    from calicoctl.ops import node as node_ops

    options = _parse_start_options(args)
    ctx.require_root()
    hostname = ctx.hostname

    running = node_ops.find_running_agent()
    if running is not None:
        ctx.out("Calico node is already running on %s (calico-agent pid %d); nothing to do. "
                "Use 'calicoctl node stop' first to restart it with other settings." % (hostname, running))
        return 0

    backend = ctx.env.get("CALICO_AGENT_IPTABLES_BACKEND") or "nft"
    for result in checksystem.run_checks(fix=False, backend=backend):
        if not result.ok:
            ctx.err("WARNING: %s" % result.message)

    os.makedirs(options["log_dir"], exist_ok=True)
    addresses = node_ops.read_interface_addresses()
    ip = options["ip"]
    if ip is None:
        chosen = node_ops.choose_host_ip(addresses, route_source=_etcd_route_source(ctx.env))
        if chosen is None:
            ctx.err("Could not find an IPv4 address for this host (only loopback, docker0 or "
                    "workload interfaces have one); give it with --ip.")
            return 1
        ip = chosen.address
        ctx.out("No IP provided. Using detected IP %s (on %s)." % (ip, chosen.ifname))
    for warning in node_ops.calculate_address_warnings(options["ip"], options["ip6"], addresses):
        ctx.err(warning)

    settings = node_ops.NodeSettings(hostname=hostname, ip=ip, ip6=options["ip6"],
                                     as_num=options["as_num"], log_dir=options["log_dir"])
    registered = node_ops.register_node(ctx.datastore, settings)
    if registered.previous_ip:
        ctx.err("WARNING: hostname %s was registered with IP %s, now %s. If another host uses this "
                "name, give each host a unique one (hostname or CALICO_HOSTNAME): hosts sharing a "
                "name overwrite each other's configuration." % (hostname, registered.previous_ip, ip))
    for cidr in registered.created_pools:
        ctx.out("Created default IP pool %s." % cidr)

    if not options["detach"]:
        return _run_foreground(settings, ctx)

    ctx.stdout.write("Starting calico-agent (logs in %s), waiting for it to sync with etcd"
                     % settings.log_dir)
    ctx.stdout.flush()

    def progress(_seconds):
        ctx.stdout.write(".")
        ctx.stdout.flush()
    try:
        started = node_ops.start_agent(settings, ctx.env, report=progress)
    finally:
        ctx.out()
    ctx.out("Calico node is running on %s (IPv4 %s%s): calico-agent pid %d, in sync after %.1f s." % (
        hostname, ip, ", IPv6 %s" % settings.ip6 if settings.ip6 else "", started.pid, started.seconds))
    return 0


def _run_foreground(settings, ctx):
    from calicoctl.ops import node as node_ops

    def synced(status):
        if status is None:
            ctx.err("WARNING: calico-agent has not synced with etcd yet; still waiting.")
        else:
            ctx.out("Calico node is running on %s in the foreground (calico-agent pid %d)."
                    % (settings.hostname, status.pid))
        ctx.stdout.flush()

    ctx.out("Running calico-agent in the foreground (logs in %s); stop it with SIGTERM or Ctrl-C."
            % settings.log_dir)
    ctx.stdout.flush()
    code = node_ops.run_agent_foreground(settings, ctx.env, on_synced=synced)
    if code == 0:
        ctx.out("Calico node stopped.")
    else:
        ctx.err("calico-agent exited with status %d; see its logs in %s." % (code, settings.log_dir))
    return code


# -- stop ----------------------------------------------------------------------

def _stop(args, ctx):
    from calicoctl.ops import node as node_ops

    ctx.require_root()
    result = node_ops.stop_node(ctx.datastore, ctx.hostname, force=args["--force"])
    if result.agent_pid is None:
        ctx.out("calico-agent was not running.")
    elif result.agent_outcome == "killed":
        ctx.out("calico-agent (pid %d) did not stop on SIGTERM and was killed." % result.agent_pid)
    else:
        ctx.out("Stopped calico-agent (pid %d)." % result.agent_pid)
    if result.endpoints_removed:
        ctx.out("Removed %d endpoint(s) and released %d IP address(es)." % (
            len(result.endpoints_removed), len(result.claims_released)))
    ctx.out("Node stopped and all configuration for %s removed." % ctx.hostname)
    return 0


# -- node bgp peer ---------------------------------------------------------------

def _bgp(args, ctx):
    from calicoctl import model
    from calicoctl.cli import parse_versions
    from calicoctl.cli.output import render_peer_tables
    from calicoctl.ops import bgp as bgp_ops

    hostname = ctx.hostname
    if args["show"]:
        peers = bgp_ops.list_peers(ctx.datastore, hostname=hostname)
        for line in render_peer_tables(peers, parse_versions(args),
                                       heading=lambda version: "Node specific IPv%d BGP Peer" % version,
                                       missing=lambda version: "No IPv%d BGP peers defined for node %s."
                                       % (version, hostname)):
            ctx.out(line)
        return 0

    ip = str(validate.parse_ip(args["<PEER_IP>"], what="peer IP address"))
    if args["remove"]:
        bgp_ops.remove_peer(ctx.datastore, ip, hostname=hostname)
        ctx.out("Removed BGP peer %s from node %s." % (ip, hostname))
        return 0
    peer = model.BGPPeer(ip=ip, as_num=validate.parse_as_number(args["<AS_NUM>"]))
    change = bgp_ops.add_peer(ctx.datastore, peer, hostname=hostname)
    if not change.changed:
        ctx.out("%s is already a BGP peer of node %s with AS %d; nothing to do." % (ip, hostname, peer.as_num))
    elif change.previous is not None:
        ctx.out("Changed the AS of BGP peer %s of node %s from %d to %d."
                % (ip, hostname, change.previous.as_num, peer.as_num))
    else:
        ctx.out("Added BGP peer %s with AS %d to node %s." % (ip, peer.as_num, hostname))
    return 0


def _etcd_route_source(env):
    """Our address on the way to the first etcd endpoint, when it is given as an IP."""
    import ipaddress
    from calicoctl.datastore import etcdconn
    from calicoctl.ops import node as node_ops
    try:
        host = etcdconn.parse_settings(env).endpoints[0].host
        ipaddress.ip_address(host)
    except (CalicoError, ValueError):
        return None
    return node_ops.read_route_source(host)
