"""
Usage:
  calicoctl policy explain <FROM> <TO> [--protocol=<PROTOCOL>] [--port=<PORT>]
    [--source-port=<PORT>] [--probe] [--output=<FORMAT>]
  calicoctl policy matrix [<ENDPOINT>...] [--protocol=<PROTOCOL>] [--port=<PORT>]
    [--source-port=<PORT>] [--probe] [--output=<FORMAT>]

Description:
  Say what the profiles in etcd do to traffic between workloads, exactly as
  each host's agent enforces them.

  explain prints ALLOWED or DENIED for a new connection from FROM to TO and
  the steps that decided it, in the order the kernel meets them: the
  control-plane protection where it applies, FROM's outbound side
  (anti-spoofing, each profile in order and the rule that matched, or the
  default), TO's inbound side likewise. matrix prints who reaches whom among
  the endpoints named (every endpoint when none is).

  FROM, TO and each ENDPOINT are a workload's address or an endpoint ID (on
  any host), or a container on this host; TO may be any other address too.
  Two endpoints are compared in IPv4 when both have it, else in IPv6; name
  an address to choose.

  With --probe the traffic is also sent for real, from inside the source
  workload's network namespace (as root, on the source's host): ping, or a
  TCP or UDP connection to the port (a reset or port unreachable counts as
  reached); what the kernel did is set beside what the policy says. matrix
  probes the rows of this host's workloads.

  Exit status: 0 when it could answer, whatever the verdicts; 4 when a probe
  disagrees with the policy; 1 for bad input.

Options:
  --protocol=<PROTOCOL>          icmp (ping; the default), tcp, udp, or another
                                 protocol by name or number.
  --port=<PORT>                  The destination port (needed with tcp and udp).
  --source-port=<PORT>           The source port (default: an ephemeral one).
  --probe                        Send the traffic for real too.
  -o FORMAT --output=<FORMAT>    table (the default) or json.
"""
from calicoctl.cli import parse
from calicoctl.cli.output import parse_output_format, render_json
from calicoctl.errors import ExitCode

POLICY_WORDS = {True: "ALLOWED", False: "DENIED"}


def run(argv, ctx):
    from calicoctl.ops import explain as ops
    from calicoctl.policy_eval import Traffic
    args = parse(__doc__, argv)
    output = parse_output_format(args)
    traffic = Traffic.parse(args["--protocol"], args["--port"], args["--source-port"])
    if args["--probe"]:
        ctx.require_root()
    if args["explain"]:
        verdict = ops.explain_pair(ctx.datastore, ctx.docker, ctx.hostname, ctx.env, args["<FROM>"], args["<TO>"],
                                   traffic, probe=args["--probe"])
        ctx.out(render_json(verdict_to_dict(verdict)) if output == "json" else "\n".join(render_verdict(verdict)))
        return ExitCode.PROBE_DIFFERS if verdict.agrees is False else ExitCode.OK
    matrix = ops.explain_matrix(ctx.datastore, ctx.docker, ctx.hostname, ctx.env, args["<ENDPOINT>"], traffic,
                                probe=args["--probe"])
    ctx.out(render_json(matrix_to_dict(matrix, traffic)) if output == "json"
            else "\n".join(render_matrix(matrix, traffic)))
    return ExitCode.PROBE_DIFFERS if matrix.disagreements else ExitCode.OK


# -- explain --------------------------------------------------------------------------

def render_verdict(verdict):
    """The lines ``policy explain`` prints (pure)."""
    from calicoctl import policy_eval
    explanation = verdict.explanation
    lines = ["%s: %s" % (POLICY_WORDS[explanation.allowed], explanation.packet.describe()),
             "From %s to %s." % (describe_party(verdict.source), describe_party(verdict.destination))]
    sides = {policy_eval.OUTBOUND: "outbound from %s" % verdict.source.label,
             policy_eval.INBOUND: "inbound to %s" % verdict.destination.label}
    for number, step in enumerate(explanation.steps, 1):
        lines.append("  %d. %s: %s" % (number, sides.get(step.side, step.side), step.text))
    if verdict.observed is not None:
        observed = "reached" if verdict.observed.reached else "not reached"
        if verdict.agrees:
            lines.append("Probe: %s (%s), as the policy says." % (observed, verdict.observed.detail))
        else:
            lines.append("Probe: %s (%s), but the policy says %s: the kernel DISAGREES."
                         % (observed, verdict.observed.detail, POLICY_WORDS[explanation.allowed]))
    return lines


def describe_party(party):
    if party.endpoint is None:
        return party.address
    key = party.endpoint.key
    return "%s (endpoint %s on %s)" % (party.label, key.endpoint_id, key.hostname)


def party_to_dict(party, address):
    endpoint = party.endpoint
    key = endpoint.key if endpoint is not None else None
    return {"query": party.query, "address": address,
            "endpoint": key.endpoint_id if key else None, "host": key.hostname if key else None,
            "orchestrator": key.orchestrator_id if key else None, "workload": key.workload_id if key else None,
            "name": party.name}


def verdict_to_dict(verdict):
    """The ``policy explain -o json`` document (docs/json-output.md)."""
    explanation = verdict.explanation
    packet = explanation.packet
    probe = None
    if verdict.observed is not None:
        probe = {"reached": verdict.observed.reached, "detail": verdict.observed.detail,
                 "agrees": verdict.agrees}
    return {
        "verdict": "allowed" if explanation.allowed else "denied",
        "from": party_to_dict(verdict.source, packet.source),
        "to": party_to_dict(verdict.destination, packet.destination),
        "packet": packet_to_dict(packet),
        "steps": [step_to_dict(step) for step in explanation.steps],
        "probe": probe,
    }


def step_to_dict(step):
    return {"side": step.side, "kind": step.kind, "effect": step.effect, "endpoint": step.endpoint,
            "profile": step.profile, "position": step.position, "rule": step.rule, "text": step.text}


def packet_to_dict(packet):
    from calicoctl.agent.policy.iptables.rules import PROTOCOL_NAMES
    protocol = "icmp" if packet.icmp_type is not None else PROTOCOL_NAMES.get(packet.protocol, packet.protocol)
    return {"ip_version": packet.version, "source": packet.source, "destination": packet.destination,
            "protocol": protocol, "port": packet.destination_port, "source_port": packet.source_port}


# -- matrix ------------------------------------------------------------------------------

def _cell(verdict):
    """'yes' / 'no' by policy, '-' without a common IP version; probed: observed / policy."""
    if verdict.explanation is None:
        return "-"
    policy = "yes" if verdict.explanation.allowed else "no"
    if verdict.observed is None:
        return policy
    return "%s/%s%s" % ("yes" if verdict.observed.reached else "no", policy, "" if verdict.agrees else " !")


def render_matrix(matrix, traffic):
    """The lines ``policy matrix`` prints (pure): a numbered row per party,
    a column per party, the demonstration's who-reaches-whom table."""
    parties = matrix.parties
    cells = {(id(v.source), id(v.destination)): _cell(v) for v in matrix.verdicts}
    if matrix.probed_hosts:
        lines = ["Who reaches whom (%s): each cell is what the kernel did / what the policy says, row to "
                 "column; ! marks a difference." % traffic.describe()]
        unprobed = sorted({p.endpoint.key.hostname for p in parties} - set(matrix.probed_hosts))
        if unprobed:
            lines.append("Rows of workloads on %s are not probed (probes start on the source's host)."
                         % ", ".join(unprobed))
    else:
        lines = ["Who reaches whom by policy (%s): row to column." % traffic.describe()]
    heads = [["%d %s" % (number, party.label), party.endpoint.key.hostname,
              party.address or ", ".join(party.endpoint.addresses())]
             for number, party in enumerate(parties, 1)]
    head_widths = [max([len(head[column]) for head in heads] + [0]) for column in range(3)]
    rows = [[cells.get((id(source), id(target)), "-") for target in parties] for source in parties]
    width = max([len(cell) for row in rows for cell in row] + [len(str(len(parties)))]) + 2
    lines.append("")
    lines.append(" " * (sum(head_widths) + 8)
                 + "".join(str(number).ljust(width) for number in range(1, len(parties) + 1)).rstrip())
    for head, row in zip(heads, rows):
        lines.append("  " + "  ".join(text.ljust(size) for text, size in zip(head, head_widths)) + "  "
                     + "".join(cell.ljust(width) for cell in row).rstrip())
    if matrix.disagreements:
        lines.append("")
        lines.append("The kernel disagrees with the policy in %d cell(s)." % len(matrix.disagreements))
    return lines


def matrix_to_dict(matrix, traffic):
    """The ``policy matrix -o json`` document (docs/json-output.md)."""
    cells = []
    for verdict in matrix.verdicts:
        explanation = verdict.explanation
        cell = {"from": verdict.source.endpoint.endpoint_id, "to": verdict.destination.endpoint.endpoint_id,
                "verdict": None, "packet": None, "decided_by": None, "observed": None, "agrees": None}
        if explanation is not None:
            cell.update(verdict="allowed" if explanation.allowed else "denied",
                        packet=packet_to_dict(explanation.packet), decided_by=step_to_dict(explanation.steps[-1]))
        if verdict.observed is not None:
            cell.update(observed={"reached": verdict.observed.reached, "detail": verdict.observed.detail},
                        agrees=verdict.agrees)
        cells.append(cell)
    return {"traffic": traffic.to_dict(),
            "endpoints": [party_to_dict(party, party.address) for party in matrix.parties],
            "probed_hosts": list(matrix.probed_hosts),
            "cells": cells,
            "disagreements": len(matrix.disagreements)}
