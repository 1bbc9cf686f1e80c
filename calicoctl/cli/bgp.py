"""
Usage:
  calicoctl bgp peer add <PEER_IP> as <AS_NUM>
  calicoctl bgp peer remove <PEER_IP>
  calicoctl bgp peer show [--ipv4 | --ipv6]
  calicoctl bgp node-mesh [on|off]
  calicoctl bgp default-node-as [<AS_NUM>]

Description:
  Configure BGP for every node. Global peers are BGP speakers that every
  Calico node peers with. The node-to-node mesh (on by default) makes
  every node peer with every other. The default AS number (64511 unless
  set) applies to nodes started without their own AS number. Without an
  argument, node-mesh and default-node-as print the current setting.

Options:
  --ipv4    Show only the IPv4 peers.
  --ipv6    Show only the IPv6 peers.
"""
from calicoctl import model, validate
from calicoctl.cli import parse
from calicoctl.cli.output import render_table
from calicoctl.errors import NotFound


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["peer"]:
        if args["show"]:
            versions = (4,) if args["--ipv4"] else (6,) if args["--ipv6"] else (4, 6)
            return show_peers(ctx, versions)
        ip = str(validate.parse_ip(args["<PEER_IP>"], what="peer IP address"))
        if args["add"]:
            return add_peer(ctx, model.BGPPeer(ip=ip, as_num=validate.parse_as_number(args["<AS_NUM>"])))
        return remove_peer(ctx, ip)
    if args["node-mesh"]:
        return node_mesh(ctx, True if args["on"] else False if args["off"] else None)
    return default_node_as(ctx, args["<AS_NUM>"])


def show_peers(ctx, versions):
    peers = ctx.datastore.list_bgp_peers()
    for version in versions:
        rows = [[peer.ip, str(peer.as_num)] for peer in peers if peer.version == version]
        if rows:
            ctx.out(render_table(["Global IPv%d BGP Peer" % version, "AS Num"], rows))
        else:
            ctx.out("No global IPv%d BGP peers defined." % version)
        ctx.out()
    return 0


def add_peer(ctx, peer):
    datastore = ctx.datastore
    existing = [p for p in datastore.list_bgp_peers(version=peer.version) if p.ip == peer.ip]
    if existing and existing[0] == peer:
        ctx.out("%s is already a global BGP peer with AS %d; nothing to do." % (peer.ip, peer.as_num))
        return 0
    datastore.add_bgp_peer(peer)
    if existing:
        ctx.out("Changed the AS of global BGP peer %s from %d to %d."
                % (peer.ip, existing[0].as_num, peer.as_num))
    else:
        ctx.out("Added global BGP peer %s with AS %d." % (peer.ip, peer.as_num))
    return 0


def remove_peer(ctx, ip):
    if not ctx.datastore.remove_bgp_peer(ip):
        raise NotFound("%s is not a global BGP peer." % ip)
    ctx.out("Removed global BGP peer %s." % ip)
    return 0


def node_mesh(ctx, enable):
    datastore = ctx.datastore
    current = datastore.get_node_mesh()
    if enable is None:
        ctx.out("on" if current else "off")
        return 0
    word = "on" if enable else "off"
    if current == enable:
        ctx.out("The BGP node-to-node mesh is already %s; nothing to do." % word)
        return 0
    datastore.set_node_mesh(enable)
    ctx.out("Turned the BGP node-to-node mesh %s." % word)
    return 0


def default_node_as(ctx, value):
    datastore = ctx.datastore
    if value is None:
        ctx.out(str(datastore.get_default_as()))
        return 0
    as_num = validate.parse_as_number(value)
    if datastore.get_default_as() == as_num:
        ctx.out("The default node AS is already %d; nothing to do." % as_num)
        return 0
    datastore.set_default_as(as_num)
    ctx.out("Set the default node AS to %d." % as_num)
    return 0
