"""
Usage:
  calicoctl ipam show [--ip=<IP>] [--output=<FORMAT>]

Description:
  Show each IP pool with its size (the addresses it can assign), the
  addresses claimed in it and those still free. With --ip, say who holds
  that address: the claim's owner (a container on a host, a Docker network
  of the calico-ipam driver, another orchestrator's workload), the
  endpoints that carry it and the hosts whose address it is; or that it is
  free.

Options:
  --ip=<IP>                    The address to look up.
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl import validate
from calicoctl.cli import parse
from calicoctl.cli.output import parse_output_format, render_json, render_table

# Orchestrators whose endpoints belong to a network of their first profile's name.
NETWORK_ORCHESTRATORS = ("libnetwork", "cni")


def run(argv, ctx):
    from calicoctl.ops import ipam as ops
    args = parse(__doc__, argv)
    output = parse_output_format(args)
    if args["--ip"] is not None:
        report = ops.read_address(ctx.datastore, validate.parse_ip(args["--ip"]))
        ctx.out(render_json(address_to_dict(report)) if output == "json" else "\n".join(render_address(report)))
        return 0
    usage = ops.read_usage(ctx.datastore)
    if output == "json":
        ctx.out(render_json({"pools": [usage_to_dict(item) for item in usage]}))
        return 0
    for version in (4, 6):
        rows = [[item.cidr + ("" if item.pool is not None else " (removed)"), item.size, item.claimed, item.free]
                for item in usage if (":" in item.cidr) == (version == 6)]
        ctx.out(render_table(["IPv%d pool" % version, "Size", "Claimed", "Free"], rows))
    return 0


def usage_to_dict(item):
    return {"cidr": item.cidr, "ip_version": 6 if ":" in item.cidr else 4, "removed": item.pool is None,
            "size": item.size, "claimed": item.claimed, "free": item.free}


def describe_owner(claim):
    if claim.kind == "container":
        return "container %s on host %s" % (claim.workload, claim.host)
    if claim.kind == "docker network":
        return "the calico-ipam Docker driver on host %s" % claim.host
    if claim.kind == "workload":
        return "%s workload %s on host %s" % (claim.orchestrator, claim.workload, claim.host)
    if claim.kind == "unnamed":
        return "an unnamed owner (the original calicoctl's claim)"
    return "%r" % claim.text


def network_of(endpoint):
    """The network an endpoint of a network plugin (Docker's, CNI's) belongs
    to: its first profile, named after it; None for other endpoints."""
    if endpoint.key.orchestrator_id in NETWORK_ORCHESTRATORS and endpoint.profile_ids:
        return endpoint.profile_ids[0]
    return None


def render_address(report):
    """The lines ``ipam show --ip`` prints (pure)."""
    where = "in pool %s" % report.pool if report.pool else "in no Calico pool"
    if report.free:
        return ["%s is %s and free." % (report.ip, where)]
    lines = ["%s is %s." % (report.ip, where)]
    if report.claim is not None:
        lines.append("Claimed by %s." % describe_owner(report.claim))
    elif report.pool is not None:
        lines.append("Not claimed.")
    for endpoint, name in report.endpoints:
        key = endpoint.key
        network = network_of(endpoint)
        lines.append("Endpoint %s of %s workload %s%s on host %s has it (%s)." % (
            key.endpoint_id, key.orchestrator_id, key.workload_id, " (%s)" % name if name else "", key.hostname,
            "network %s" % network if network else "profiles: %s" % (", ".join(endpoint.profile_ids) or "none")))
    for host in report.hosts:
        lines.append("It is host %s's address." % host)
    return lines


def address_to_dict(report):
    claim = report.claim
    return {
        "ip": report.ip,
        "pool": report.pool,
        "free": report.free,
        "claim": None if claim is None else {
            "kind": claim.kind, "owner": claim.text, "host": claim.host,
            "orchestrator": claim.orchestrator, "workload": claim.workload},
        "endpoints": [{"endpoint": endpoint.key.endpoint_id, "host": endpoint.key.hostname,
                       "orchestrator": endpoint.key.orchestrator_id, "workload": endpoint.key.workload_id,
                       "name": name, "profiles": list(endpoint.profile_ids), "network": network_of(endpoint)}
                      for endpoint, name in report.endpoints],
        "hosts": list(report.hosts),
    }
