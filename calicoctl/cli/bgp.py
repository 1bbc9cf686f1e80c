"""
Usage:
  calicoctl bgp peer add <PEER_IP> as <AS_NUM>
  calicoctl bgp peer remove <PEER_IP>
  calicoctl bgp peer show [--ipv4 | --ipv6] [--output=<FORMAT>]
  calicoctl bgp node-mesh [--output=<FORMAT>]
  calicoctl bgp node-mesh (on|off) [--force]
  calicoctl bgp default-node-as [--output=<FORMAT>]
  calicoctl bgp default-node-as <AS_NUM>

Description:
  Configure BGP for every node. Global peers are BGP speakers that every
  Calico node peers with. The node-to-node mesh (on by default) makes
  every node peer with every other. With the mesh off, nodes peer through
  the route reflectors instead (hosts made one with 'calicoctl node
  --rr-cluster-id=<IPv4>'), which 'bgp peer show' lists. The default AS
  number (64511 unless set) applies to nodes started without their own AS
  number. Without an argument, node-mesh and default-node-as print the
  current setting.

Options:
  --ipv4    Show only the IPv4 peers.
  --ipv6    Show only the IPv6 peers.
  --force   Turn the mesh off even with no route reflector and no BGP peer,
            when hosts would learn no routes from each other.
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl import model, validate
from calicoctl.cli import parse, parse_versions
from calicoctl.cli.output import parse_output_format, peers_to_dict, render_json, render_peer_tables, render_table
from calicoctl.ops import bgp as ops


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["peer"]:
        if args["show"]:
            versions = parse_versions(args)
            peers, reflectors = ops.list_peers(ctx.datastore), ops.list_route_reflectors(ctx.datastore)
            if parse_output_format(args) == "json":
                ctx.out(render_json(dict(peers_to_dict(peers, versions),
                                         route_reflectors=reflectors_to_dict(reflectors, versions),
                                         node_mesh=ops.read_node_mesh(ctx.datastore))))
                return 0
            for line in render_peer_tables(peers, versions,
                                           heading=lambda version: "Global IPv%d BGP Peer" % version,
                                           missing=lambda version: "No global IPv%d BGP peers defined." % version):
                ctx.out(line)
            for line in render_reflectors(reflectors, versions,
                                          ops.read_node_mesh(ctx.datastore)):
                ctx.out(line)
            return 0
        ip = str(validate.parse_ip(args["<PEER_IP>"], what="peer IP address"))
        if args["add"]:
            peer = model.BGPPeer(ip=ip, as_num=validate.parse_as_number(args["<AS_NUM>"]))
            ctx.out(render_peer_change(ops.add_peer(ctx.datastore, peer)))
            return 0
        ops.remove_peer(ctx.datastore, ip)
        ctx.out("Removed global BGP peer %s." % ip)
        return 0
    if args["node-mesh"]:
        return node_mesh(ctx, True if args["on"] else False if args["off"] else None, args["--force"],
                         parse_output_format(args))
    return default_node_as(ctx, args["<AS_NUM>"], parse_output_format(args))


def render_peer_change(change):
    peer = change.peer
    if not change.changed:
        return "%s is already a global BGP peer with AS %d; nothing to do." % (peer.ip, peer.as_num)
    if change.previous is not None:
        return "Changed the AS of global BGP peer %s from %d to %d." % (peer.ip, change.previous.as_num,
                                                                       peer.as_num)
    return "Added global BGP peer %s with AS %d." % (peer.ip, peer.as_num)


def render_reflectors(reflectors, versions, node_mesh):
    """The route reflectors (model.BgpHost) with an address of one of
    ``versions``, as lines for ``bgp peer show`` (pure)."""
    rows = [[host.hostname] + [host.ip(version) or "" for version in versions] + [host.rr_cluster_id]
            for host in reflectors if any(host.ip(version) for version in versions)]
    if not rows:
        return ["No route reflectors (make one with 'calicoctl node --rr-cluster-id=<IPv4>')."]
    lines = [render_table(["Route reflector"] + ["IPv%d address" % version for version in versions]
                          + ["Cluster ID"], rows)]
    if node_mesh:
        lines.append("The node-to-node mesh is on, so the route reflectors are not used until "
                     "'calicoctl bgp node-mesh off'.")
    return lines


def reflectors_to_dict(reflectors, versions):
    """The route reflectors in ``bgp peer show -o json`` (pure): those with an
    address of one of ``versions``."""
    return [{"host": host.hostname, "ipv4": host.ipv4 if 4 in versions else None,
             "ipv6": host.ipv6 if 6 in versions else None, "cluster_id": host.rr_cluster_id}
            for host in reflectors if any(host.ip(version) for version in versions)]


def node_mesh(ctx, enable, force=False, output="table"):
    if enable is None:
        enabled = ops.read_node_mesh(ctx.datastore)
        ctx.out(render_json({"node_mesh": enabled}) if output == "json" else "on" if enabled else "off")
        return 0
    word = "on" if enable else "off"
    if ops.set_node_mesh(ctx.datastore, enable, force=force).changed:
        ctx.out("Turned the BGP node-to-node mesh %s." % word)
    else:
        ctx.out("The BGP node-to-node mesh is already %s; nothing to do." % word)
    return 0


def default_node_as(ctx, value, output="table"):
    if value is None:
        as_num = ops.read_default_as(ctx.datastore)
        ctx.out(render_json({"as_num": as_num}) if output == "json" else str(as_num))
        return 0
    as_num = validate.parse_as_number(value)
    if ops.set_default_as(ctx.datastore, as_num).changed:
        ctx.out("Set the default node AS to %d." % as_num)
    else:
        ctx.out("The default node AS is already %d; nothing to do." % as_num)
    return 0
