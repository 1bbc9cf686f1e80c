"""
Usage:
  calicoctl node [--ip=<IP>] [--ip6=<IP6>] [--as=<AS_NUM>] [--log-dir=<LOG_DIR>] [--detach=<DETACH>]
                 [--docker-plugins=<PLUGINS>] [--dataplane=<DATAPLANE>] [--rr-cluster-id=<CLUSTER_ID>]
                 [--force]
  calicoctl node stop [--force]
  calicoctl node bgp peer add <PEER_IP> as <AS_NUM>
  calicoctl node bgp peer remove <PEER_IP>
  calicoctl node bgp peer show [--ipv4 | --ipv6] [--output=<FORMAT>]

Description:
  Start the Calico node agent on this host, stop it, and configure this
  node's own BGP peers. With --rr-cluster-id, this host becomes a BGP route
  reflector (or, with "none", an ordinary node again); on a node that runs
  already, that is all that changes, and its BGP sessions follow at once.
  Route reflectors are used while the node-to-node mesh is off.

Options:
  --ip=<IP>              This host's IPv4 address, as other hosts reach it
                         (detected from the interfaces when absent).
  --ip6=<IP6>            This host's IPv6 address, if it peers over IPv6.
  --as=<AS_NUM>          This node's AS number (default: the global default AS).
  --log-dir=<LOG_DIR>    Where the agent writes its logs [default: /var/log/calico]
  --detach=<DETACH>      "true": run the agent as a background daemon;
                         "false": run it in the foreground [default: true]
  --docker-plugins=<PLUGINS>  "true": the agent serves Docker's network driver
                         calico and IPAM driver calico-ipam (docker network
                         create --driver calico --ipam-driver calico-ipam);
                         "false": it does not [default: true]
  --dataplane=<DATAPLANE>  How the agent programs policy: "nftables" (one
                         nftables table, endpoints as set elements) or
                         "iptables" (Felix's chains and ipsets). Default:
                         nftables where the kernel and libnftables support
                         it, else iptables. On a running node with the
                         other one, the agent restarts with this one, which
                         removes what the other programmed.
  --rr-cluster-id=<CLUSTER_ID>  Make this host a BGP route reflector with this
                         cluster ID (an IPv4 address, e.g. 244.0.0.1; give
                         redundant reflectors the same one); "none": an
                         ordinary node again. Absent: the host keeps its role.
  --force                With node stop: stop the node even if it has
                         endpoints: they are removed and their IP addresses
                         released. With a cluster ID of none: make this host
                         an ordinary node even if it is the last route
                         reflector, the mesh is off and no BGP peer is set
                         (hosts would then learn no routes from each other).
  --ipv4                 Show IPv4 information only.
  --ipv6                 Show IPv6 information only.
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl import validate
from calicoctl.cli import parse
from calicoctl.errors import ValidationError


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
    plugins = (args["--docker-plugins"] or "").strip().lower()
    if plugins not in ("true", "false"):
        problems.append("Invalid --docker-plugins=%s: expected true or false." % args["--docker-plugins"])
    values["docker_plugins"] = plugins == "true"
    values["dataplane"] = args["--dataplane"]
    if values["dataplane"] is not None and values["dataplane"] not in ("nftables", "iptables"):
        problems.append("Invalid --dataplane=%s: expected nftables or iptables." % values["dataplane"])
    values["log_dir"] = args["--log-dir"]
    if not values["log_dir"]:
        problems.append("Invalid --log-dir: empty.")
    values["reflector"] = None
    cluster_id = args["--rr-cluster-id"]
    if cluster_id is not None:
        from calicoctl.ops import bgp as bgp_ops
        try:
            values["reflector"] = bgp_ops.ReflectorRole(
                None if cluster_id.strip().lower() == "none" else validate.parse_cluster_id(cluster_id))
        except ValidationError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError("\n".join(problems))
    return values


def _start(args, ctx):
    from calicoctl.ops import node as node_ops

    options = _parse_start_options(args)
    ctx.require_root()
    settings = node_ops.NodeSettings(hostname=ctx.hostname, ip=options["ip"], ip6=options["ip6"],
                                     as_num=options["as_num"], log_dir=options["log_dir"],
                                     docker_plugins=options["docker_plugins"], reflector=options["reflector"],
                                     dataplane=options["dataplane"])
    listener = _StartPrinter(ctx, options["detach"])
    try:
        result = node_ops.start_node(ctx.datastore, settings, ctx.env, listener, detach=options["detach"],
                                     force=args["--force"])
    finally:
        if listener.line_open:          # the "waiting..." line, however the wait ended
            ctx.out()
    if result.switched_from is not None:
        ctx.out("Switched the policy dataplane from %s to %s." % (result.switched_from, settings.dataplane))
    if result.running_pid is not None:
        if result.reflector is not None:
            for line in render_reflector_change(settings.hostname, result.reflector):
                ctx.out(line)
            if result.reflector.changed:
                ctx.out("calico-agent (pid %d) reconfigures BIRD now; the other settings are unchanged."
                        % result.running_pid)
            return 0
        ctx.out("Calico node is already running on %s (calico-agent pid %d); nothing to do. "
                "Use 'calicoctl node stop' first to restart it with other settings."
                % (settings.hostname, result.running_pid))
        return 0
    if result.started is None:
        if result.exit_code == 0:
            ctx.out("Calico node stopped.")
        else:
            ctx.err("calico-agent exited with status %d; see its logs in %s." % (result.exit_code, settings.log_dir))
        return result.exit_code
    registered = result.settings        # with the detected IP
    ctx.out("Calico node is running on %s (IPv4 %s%s): calico-agent pid %d, in sync after %.1f s." % (
        registered.hostname, registered.ip, ", IPv6 %s" % registered.ip6 if registered.ip6 else "",
        result.started.pid, result.started.seconds))
    return 0


class _StartPrinter:
    """Prints each step ``node_ops.start_node`` reports (its listener)."""

    def __init__(self, ctx, detach):
        self.ctx = ctx
        self.detach = detach
        self.line_open = False      # "waiting for it to sync" was written without its newline
        self.hostname = None

    def checks_failed(self, results):
        for result in results:
            self.ctx.err("WARNING: %s" % result.message)

    def address_chosen(self, choice):
        if choice.detected is not None:
            self.ctx.out("No IP provided. Using detected IP %s (on %s)." % (choice.ip, choice.detected.ifname))
        for warning in choice.warnings:
            self.ctx.err(warning)

    def registered(self, settings, result):
        ctx = self.ctx
        self.hostname = settings.hostname
        if result.previous_ip:
            ctx.err("WARNING: hostname %s was registered with IP %s, now %s. If another host uses this "
                    "name, give each host a unique one (hostname or CALICO_HOSTNAME): hosts sharing a "
                    "name overwrite each other's configuration." % (settings.hostname, result.previous_ip, settings.ip))
        for cidr in result.created_pools:
            ctx.out("Created default IP pool %s." % cidr)
        if result.reflector is not None:
            for line in render_reflector_change(settings.hostname, result.reflector):
                ctx.out(line)
        if self.detach:
            ctx.stdout.write("Starting calico-agent (logs in %s), waiting for it to sync with etcd" % settings.log_dir)
            self.line_open = True
        else:
            ctx.out("Running calico-agent in the foreground (logs in %s); stop it with SIGTERM or Ctrl-C."
                    % settings.log_dir)
        ctx.stdout.flush()

    def waiting(self, _seconds):
        self.ctx.stdout.write(".")
        self.ctx.stdout.flush()

    def synced(self, status):
        if status is None:
            self.ctx.err("WARNING: calico-agent has not synced with etcd yet; still waiting.")
        else:
            self.ctx.out("Calico node is running on %s in the foreground (calico-agent pid %d)."
                         % (self.hostname, status.pid))
        self.ctx.stdout.flush()


def render_reflector_change(hostname, change):
    """Lines saying what ``--rr-cluster-id`` did (an ops.bgp.ReflectorChange; pure)."""
    if not change.changed:
        if change.after is None:
            return ["%s is not a route reflector; nothing to do." % hostname]
        return ["%s is already a route reflector with cluster ID %s; nothing to do." % (hostname, change.after)]
    if change.after is None:
        lines = ["%s is no longer a route reflector (it was one with cluster ID %s)." % (hostname, change.before)]
    elif change.before is None:
        lines = ["%s is now a route reflector with cluster ID %s." % (hostname, change.after)]
    else:
        lines = ["%s is now a route reflector with cluster ID %s (was %s)." % (hostname, change.after, change.before)]
    if change.node_mesh:
        lines.append("The node-to-node mesh is on, so route reflectors are not used until "
                     "'calicoctl bgp node-mesh off'.")
    return lines


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
    from calicoctl.cli.output import parse_output_format, peers_to_dict, render_json, render_peer_tables
    from calicoctl.ops import bgp as bgp_ops

    hostname = ctx.hostname
    if args["show"]:
        peers = bgp_ops.list_peers(ctx.datastore, hostname=hostname)
        if parse_output_format(args) == "json":
            ctx.out(render_json(dict(host=hostname, **peers_to_dict(peers, parse_versions(args)))))
            return 0
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
