"""
Usage:
  calicoctl endpoint show [--host=<HOSTNAME>] [--orchestrator=<ORCHESTRATOR_ID>]
    [--workload=<WORKLOAD_ID>] [--endpoint=<ENDPOINT_ID>] [--detailed] [--output=<FORMAT>]
  calicoctl endpoint <ENDPOINT_ID> profile (append|remove|set) [--host=<HOSTNAME>]
    [--orchestrator=<ORCHESTRATOR_ID>] [--workload=<WORKLOAD_ID>] [<PROFILES>...]
  calicoctl endpoint <ENDPOINT_ID> profile show [--host=<HOSTNAME>]
    [--orchestrator=<ORCHESTRATOR_ID>] [--workload=<WORKLOAD_ID>] [--output=<FORMAT>]

Description:
  Show endpoints (a workload's network interfaces, on any host) and the
  profiles applied to them. Profiles are evaluated in the order given;
  append adds at the end, set replaces the whole list (an empty list
  leaves the endpoint with no policy, so all its traffic is dropped).
  An endpoint ID is normally unique; when it is not, pick one with the
  filters --host, --orchestrator and --workload.

Options:
  --host=<HOSTNAME>                  Only endpoints on this host.
  --orchestrator=<ORCHESTRATOR_ID>   Only endpoints of this orchestrator.
  --workload=<WORKLOAD_ID>           Only endpoints of this workload.
  --endpoint=<ENDPOINT_ID>           Only the endpoint with this ID.
  --detailed                         One row per endpoint (JSON always has one
                                     entry per endpoint).
  -o FORMAT --output=<FORMAT>        table (the default) or json.
"""
from calicoctl import validate
from calicoctl.cli import parse
from calicoctl.cli.output import parse_output_format, render_json, render_table
from calicoctl.errors import ValidationError
from calicoctl.ops import endpoint as ops
from calicoctl.ops import policy


def run(argv, ctx):
    args = parse(__doc__, argv)
    filters = parse_filters(args)
    if args["show"] and not args["profile"]:
        if args["--endpoint"] is not None:
            validate.parse_name(args["--endpoint"], "endpoint ID")
        output = parse_output_format(args)
        endpoints = ops.list_endpoints(ctx.datastore, filters, args["--endpoint"])
        if output == "json":
            ctx.out(render_json({"endpoints": [endpoint_to_dict(endpoint) for endpoint in endpoints]}))
        else:
            show_endpoints(ctx, endpoints, args["--detailed"])
        return 0
    endpoint_id = validate.parse_name(args["<ENDPOINT_ID>"], "endpoint ID")
    if args["show"]:
        output = parse_output_format(args)
        profile_ids = ops.read_profiles(ctx.datastore, endpoint_id, filters)
        if output == "json":
            ctx.out(render_json({"endpoint": endpoint_id, "profiles": list(profile_ids)}))
        else:
            show_profiles(ctx, endpoint_id, profile_ids)
        return 0
    action = ops.APPEND if args["append"] else ops.REMOVE if args["remove"] else ops.SET
    names = policy.check_profile_names(args["<PROFILES>"])
    if not names and action != ops.SET:
        raise ValidationError("Name at least one profile to %s." % action)
    ctx.out(render_profiles_edit(ops.edit_profiles(ctx.datastore, endpoint_id, filters, action, names)))
    return 0


def parse_filters(args):
    """--host/--orchestrator/--workload -> keyword arguments for the datastore (pure)."""
    filters = {}
    for option, keyword, what in (("--host", "hostname", "hostname"),
                                  ("--orchestrator", "orchestrator_id", "orchestrator ID"),
                                  ("--workload", "workload_id", "workload ID")):
        if args.get(option) is not None:
            filters[keyword] = validate.parse_name(args[option], what)
    return filters


def show_endpoints(ctx, endpoints, detailed):
    if detailed:
        rows = [[ep.key.hostname, ep.key.orchestrator_id, ep.key.workload_id, ep.key.endpoint_id,
                 "\n".join(ep.ipv4_nets + ep.ipv6_nets), ep.mac or "", ",".join(ep.profile_ids), ep.state]
                for ep in endpoints]
        ctx.out(render_table(["Hostname", "Orchestrator ID", "Workload ID", "Endpoint ID",
                              "Addresses", "MAC", "Profiles", "State"], rows))
    else:
        ctx.out(render_table(["Hostname", "Orchestrator ID", "Number of Workloads", "Number of Endpoints"],
                             calculate_summary_rows(endpoints)))
    ctx.out()


def endpoint_to_dict(endpoint):
    """One endpoint in ``endpoint show -o json`` (pure)."""
    key = endpoint.key
    return {"host": key.hostname, "orchestrator": key.orchestrator_id, "workload": key.workload_id,
            "endpoint": key.endpoint_id, "state": endpoint.state, "interface": endpoint.name,
            "mac": endpoint.mac, "profiles": list(endpoint.profile_ids),
            "ipv4_nets": list(endpoint.ipv4_nets), "ipv6_nets": list(endpoint.ipv6_nets),
            "ipv4_gateway": endpoint.ipv4_gateway, "ipv6_gateway": endpoint.ipv6_gateway}


def calculate_summary_rows(endpoints):
    """One row per (host, orchestrator): workload and endpoint counts (pure)."""
    groups = {}
    for ep in endpoints:
        workloads, count = groups.setdefault((ep.key.hostname, ep.key.orchestrator_id), (set(), [0]))
        workloads.add(ep.key.workload_id)
        count[0] += 1
    return [[host, orch, len(workloads), count[0]]
            for (host, orch), (workloads, count) in sorted(groups.items())]


def show_profiles(ctx, endpoint_id, profile_ids):
    if not profile_ids:
        ctx.out("Endpoint %s has no profiles." % endpoint_id)
        return
    # Listed in evaluation order, not sorted: the order decides.
    ctx.out(render_table(["Name"], [[name] for name in profile_ids]))


def render_profiles_edit(edit):
    """The confirmation line for append/remove/set (pure)."""
    endpoint_id, change = edit.endpoint_id, edit.change

    def plural(items):
        return "profile%s %s" % ("s" if len(items) > 1 else "", ", ".join(items))
    if edit.action == ops.APPEND:
        if not change.added:
            return "Endpoint %s already has %s; nothing to do." % (endpoint_id, plural(change.already))
        text = "Appended %s to endpoint %s." % (plural(change.added), endpoint_id)
        if change.already:
            text += " (%s already there.)" % ", ".join(change.already)
        return text
    if edit.action == ops.REMOVE:
        return "Removed %s from endpoint %s." % (plural(change.removed), endpoint_id)
    if not change.changed:
        return "Endpoint %s already has exactly these profiles; nothing to do." % endpoint_id
    if not change.profile_ids:
        return "Endpoint %s now has no profiles (all its traffic is dropped)." % endpoint_id
    return "Set the profiles of endpoint %s to %s." % (endpoint_id, ", ".join(change.profile_ids))
