"""
Usage:
  calicoctl container <CONTAINER> ip (add|remove) <IP> [--interface=<INTERFACE>]
  calicoctl container <CONTAINER> endpoint-id show [--output=<FORMAT>]
  calicoctl container add <CONTAINER> <IP> [--interface=<INTERFACE>]
  calicoctl container remove <CONTAINER>

Description:
  Add or remove Calico networking for Docker containers on this host, and
  manage their IP addresses. <CONTAINER> is a container name or (short) ID.
  Every command except endpoint-id show must run as root. The <IP> of
  container add is an address, or ipv4, ipv6 or the CIDR of a pool (or of a
  range inside one) to have a free address of it assigned.

Options:
  --interface=<INTERFACE>  The name of the interface inside the container
                           [default: eth1]
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl.cli import parse


def run(argv, ctx):
    args = parse(__doc__, argv)
    from calicoctl.ops import container as ops

    container = args["<CONTAINER>"]
    if args["endpoint-id"]:
        from calicoctl.cli.output import parse_output_format, render_json
        output = parse_output_format(args)
        endpoint_ids = ops.find_endpoint_ids(ctx.datastore, ctx.docker, ctx.hostname, container)
        if output == "json":
            ctx.out(render_json({"container": container, "host": ctx.hostname, "endpoint_ids": endpoint_ids}))
        else:
            for endpoint_id in endpoint_ids:
                ctx.out(endpoint_id)
        return 0

    ctx.require_root()
    if args["ip"]:
        if args["add"]:
            result = ops.add_ip(ctx.datastore, ctx.docker, ctx.hostname, container, args["<IP>"],
                                args["--interface"])
            if result.changed:
                ctx.out("IP %s added to container %s." % (result.ip, container))
            else:
                ctx.out("IP %s is already on container %s; nothing to do." % (result.ip, container))
        else:
            result = ops.remove_ip(ctx.datastore, ctx.docker, ctx.hostname, container, args["<IP>"],
                                   args["--interface"])
            if result.note:
                ctx.out("IP %s is not on container %s; %s." % (result.ip, container, result.note))
            else:
                ctx.out("IP %s removed from container %s." % (result.ip, container))
        return 0

    if args["add"]:
        result = ops.add_container(ctx.datastore, ctx.docker, ctx.hostname, container, args["<IP>"],
                                   args["--interface"])
        ip = (result.endpoint.ipv4_nets + result.endpoint.ipv6_nets)[0].split("/")[0]
        ctx.out("Container %s has Calico networking: %s on %s, endpoint %s."
                % (container, ip, result.interface, result.endpoint.endpoint_id))
        return 0

    result = ops.remove_container(ctx.datastore, ctx.docker, ctx.hostname, container)
    if result.removed_by_docker:
        ctx.out("Container %s is gone: its Calico networking was released when Docker removed it." % container)
        return 0
    released = " (released %s)" % ", ".join(result.released) if result.released else ""
    ctx.out("Removed Calico networking from container %s%s." % (container, released))
    return 0
