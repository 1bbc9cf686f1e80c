from calicoctl import model, rulemodel, validate
from calicoctl.cli import UsageExit, parse, usage_section
from calicoctl.cli.output import parse_output_format, render_json, render_table
from calicoctl.errors import ValidationError
from calicoctl.ops import policy
from calicoctl.ops import profile as ops

# The usage text (docopt parses it) with the rule grammar, which rule add
# and rule remove share, written once.
RULE_GRAMMAR = """\
    (allow|deny) [(
      (tcp|udp) [(from [(ports <SRCPORTS>)] [(tag <SRCTAG>)] [(cidr <SRCCIDR>)])]
                [(to   [(ports <DSTPORTS>)] [(tag <DSTTAG>)] [(cidr <DSTCIDR>)])] |
      (icmp|icmpv6) [(type <ICMPTYPE> [(code <ICMPCODE>)])]
                [(from [(tag <SRCTAG>)] [(cidr <SRCCIDR>)])]
                [(to   [(tag <DSTTAG>)] [(cidr <DSTCIDR>)])] |
      [(from [(tag <SRCTAG>)] [(cidr <SRCCIDR>)])]
      [(to   [(tag <DSTTAG>)] [(cidr <DSTCIDR>)])]
    )]"""
__doc__ = """
Usage:
  calicoctl profile show [--detailed] [--output=<FORMAT>]
  calicoctl profile add <PROFILE>
  calicoctl profile remove <PROFILE> [--no-check]
  calicoctl profile <PROFILE> tag show [--output=<FORMAT>]
  calicoctl profile <PROFILE> tag (add|remove) <TAG>
  calicoctl profile <PROFILE> rule add (inbound|outbound) [--at=<POSITION>]
%(rule)s
  calicoctl profile <PROFILE> rule remove (inbound|outbound) (--at=<POSITION>|
%(rule)s)
  calicoctl profile <PROFILE> rule show [--output=<FORMAT>]
  calicoctl profile <PROFILE> rule json
  calicoctl profile <PROFILE> rule update

Description:
  Manage security profiles. An endpoint in a profile gets the profile's
  rules; a profile's tags name groups that rules can refer to (from tag X).
  A new profile has one tag (its name), accepts inbound traffic from
  endpoints carrying that tag, and allows all outbound traffic.

  rule add inserts a rule; rules are evaluated in order and the first
  match decides. rule remove deletes a rule by position or by its exact
  text. rule update replaces all the rules with JSON read from stdin (the
  format rule json prints); every rule is checked before anything is
  written.

  Ports are a comma-separated list of ports and ranges, e.g. 22,80:90.
  ICMP types are numbers from 0 to 254, codes from 0 to 255.

  rule show marks rules that Felix rejects (written by another tool):
  one of them makes the agent drop all traffic of the profile's
  endpoints. rule remove --at and rule update can repair them.

Options:
  --detailed       Also list the endpoints that use each profile.
  --no-check       Remove the profile even while endpoints still use it.
  --at=<POSITION>  1-based position of the rule: where to insert it
                   (default: after the last rule), or which one to remove.
  -o FORMAT --output=<FORMAT>  table (the default) or json.
""" % {"rule": RULE_GRAMMAR}


def run(argv, ctx):
    args = parse_args(argv)
    # "tag" also counts the words of a rule ("from tag X"), so test "rule" first.
    if args["rule"]:
        return run_rule_command(ctx, validate.parse_name(args["<PROFILE>"], "profile name"), args)
    if args["tag"]:
        return run_tag_command(ctx, validate.parse_name(args["<PROFILE>"], "profile name"), args)
    if args["show"]:
        return show_profiles(ctx, args["--detailed"], parse_output_format(args))
    name = validate.parse_name(args["<PROFILE>"], "profile name")
    if args["add"]:
        change = ops.add_profile(ctx.datastore, name)
        ctx.out(("Created profile %s." if change.changed else "Profile %s already exists; nothing to do.") % name)
        return 0
    ops.remove_profile(ctx.datastore, name, check_in_use=not args["--no-check"])
    ctx.out("Removed profile %s." % name)
    return 0


def parse_args(argv):
    """docopt against only the usage patterns that can match ``argv``.

    The rule grammar makes docopt take ~20 ms per parse; most commands do
    not need it, and start-up time is benchmarked. A usage error still
    shows the whole usage text.
    """
    words = [word for word in argv if not word.startswith("-")][2:4]

    def wanted(block):
        if words == ["rule", "add"]:
            return " rule add " in block
        if words == ["rule", "remove"]:
            return " rule remove " in block
        return " rule add " not in block and " rule remove " not in block

    try:
        return _Args(parse(select_usage(__doc__, wanted), argv))
    except UsageExit as exc:
        if exc.code == 0:
            raise UsageExit(__doc__.strip("\n"), 0) from None
        raise UsageExit(usage_section(__doc__), exc.code) from None


class _Args(dict):
    """docopt's result; words of patterns left out of the parse read as None."""

    def __missing__(self, key):
        return None


def select_usage(doc, wanted):
    """``doc`` with only the usage patterns (blocks of lines) for which wanted(block) holds."""
    head, _, rest = doc.partition("Usage:\n")
    usage, blank, tail = rest.partition("\n\n")
    blocks = []
    for line in usage.split("\n"):
        if line.lstrip().startswith("calicoctl ") or not blocks:
            blocks.append(line)
        else:
            blocks[-1] += "\n" + line
    kept = [block for block in blocks if wanted(block)]
    return head + "Usage:\n" + "\n".join(kept) + blank + tail


# -- profiles -------------------------------------------------------------------

def show_profiles(ctx, detailed, output="table"):
    profiles = ops.list_profiles(ctx.datastore, with_endpoints=detailed)
    if output == "json":
        ctx.out(render_json({"profiles": [profile_to_dict(profile, detailed) for profile in profiles]}))
        return 0
    if not detailed:
        ctx.out(render_table(["Name"], [[profile.name] for profile in profiles]))
        return 0
    rows = []
    for profile in profiles:
        if not profile.endpoints:
            rows.append([profile.name, "", "", "", "", ""])
        for ep in profile.endpoints:
            rows.append([profile.name, ep.key.hostname, ep.key.orchestrator_id, ep.key.workload_id,
                         ep.key.endpoint_id, ep.state])
    ctx.out(render_table(["Name", "Host", "Orchestrator ID", "Workload ID", "Endpoint ID", "State"], rows))
    return 0


def profile_to_dict(profile, detailed):
    """One profile in ``profile show -o json``; its endpoints with --detailed (pure)."""
    data = {"name": profile.name}
    if detailed:
        data["endpoints"] = [{"host": ep.key.hostname, "orchestrator": ep.key.orchestrator_id,
                              "workload": ep.key.workload_id, "endpoint": ep.key.endpoint_id, "state": ep.state}
                             for ep in profile.endpoints]
    return data


# -- tags -----------------------------------------------------------------------

def run_tag_command(ctx, name, args):
    if args["show"]:
        tags = ops.read_tags(ctx.datastore, name)
        if parse_output_format(args) == "json":
            ctx.out(render_json({"profile": name, "tags": list(tags)}))
        else:
            for tag in tags:
                ctx.out(tag)
        return 0
    tag = validate.parse_name(args["<TAG>"], "tag")
    if args["add"]:
        if ops.add_tag(ctx.datastore, name, tag).changed:
            ctx.out("Added tag %s to profile %s." % (tag, name))
        else:
            ctx.out("Profile %s already has tag %s; nothing to do." % (name, tag))
        return 0
    ops.remove_tag(ctx.datastore, name, tag)
    ctx.out("Removed tag %s from profile %s." % (tag, name))
    return 0


# -- rules ------------------------------------------------------------------------

def run_rule_command(ctx, name, args):
    if args["show"]:
        stored = ops.read_rules(ctx.datastore, name)
        if parse_output_format(args) == "json":
            ctx.out(render_json(rules_to_dict(stored)))
            return 0
        return show_rules(ctx, stored)
    if args["json"]:
        ctx.out(ops.read_rules(ctx.datastore, name).pretty_text())
        ctx.out()
        return 0
    if args["update"]:
        return update_rules(ctx, name)
    direction = "inbound" if args["inbound"] else "outbound"
    position = policy.parse_position(args["--at"]) if args["--at"] is not None else None
    if args["add"]:
        rule = parse_rule_args(args).check_writable()
        edit = ops.add_rule(ctx.datastore, name, direction, rule, position)
        if edit.changed:
            ctx.out("Added %s rule %d to profile %s: %s" % (direction, edit.position, name, edit.rule.describe()))
        else:
            ctx.out("Profile %s already has this %s rule (at %d); nothing to do." % (name, direction, edit.position))
        return 0
    if position is not None:
        edit = ops.remove_rule_at(ctx.datastore, name, direction, position)
    else:
        rule = parse_rule_args(args).check_writable()
        edit = ops.remove_rule_matching(ctx.datastore, name, direction, rule)
    ctx.out("Removed %s rule %d from profile %s: %s" % (direction, edit.position, name, edit.rule.describe()))
    if not edit.stored.accepted:
        ctx.out(render_rejection(edit.stored))
    return 0


def show_rules(ctx, stored):
    if not stored.accepted:
        ctx.out(render_rejection(stored))
    for direction in rulemodel.DIRECTIONS:
        ctx.out("%s rules:" % direction.capitalize())
        if direction in stored.unreadable:
            ctx.out("     (unreadable: %s)" % stored.problems[0])
        for index, entry in enumerate(stored.entries(direction), 1):
            ctx.out(" %3d %s" % (index, entry.describe()))
    return 0


def rules_to_dict(stored):
    """``profile <P> rule show -o json`` (pure): every rule as stored, with
    Felix's verdict; a direction whose list is not a list is null."""
    data = {"profile": stored.profile, "accepted": stored.accepted, "problems": list(stored.problems)}
    for direction in rulemodel.DIRECTIONS:
        data[direction + "_rules"] = None if direction in stored.unreadable else [
            {"position": index, "rule": entry.data, "text": entry.describe(), "problem": entry.problem}
            for index, entry in enumerate(stored.entries(direction), 1)]
    return data


def render_rejection(stored):
    """The warning ``rule show`` starts with when Felix rejects the rules (pure)."""
    return ("Felix rejects these rules (%s), so the agent drops all traffic of this profile's endpoints; "
            "fix them with 'rule remove --at' or 'rule update'." % "; ".join(stored.problems))


def update_rules(ctx, name):
    text = ctx.stdin.read()
    if not text.strip():
        raise ValidationError("No rules JSON on stdin (expected the format 'rule json' prints).")
    rules = model.Rules.from_user_json(text, name)
    replacement = ops.replace_rules(ctx.datastore, name, rules)
    if replacement.changed:
        ctx.out("Updated the rules of profile %s (%d inbound, %d outbound)."
                % (name, len(replacement.rules.inbound_rules), len(replacement.rules.outbound_rules)))
    else:
        ctx.out("The rules of profile %s are already as given; nothing to do." % name)
    return 0


def parse_rule_args(args):
    """docopt arguments of rule add/remove -> model.Rule (pure).

    Raises ValidationError naming the bad value.
    """
    values = {"action": "allow" if args["allow"] else "deny"}
    for protocol in ("tcp", "udp", "icmp", "icmpv6"):
        if args.get(protocol):
            values["protocol"] = protocol
    if args.get("<ICMPTYPE>") is not None:
        values["icmp_type"] = validate.parse_icmp_value(args["<ICMPTYPE>"], "ICMP type")
    if args.get("<ICMPCODE>") is not None:
        values["icmp_code"] = validate.parse_icmp_value(args["<ICMPCODE>"], "ICMP code", highest=255)
    for side in ("src", "dst"):
        upper = side.upper()
        if args.get("<%sPORTS>" % upper) is not None:
            values[side + "_ports"] = tuple(validate.parse_port_list(args["<%sPORTS>" % upper]))
        if args.get("<%sTAG>" % upper) is not None:
            values[side + "_tag"] = validate.parse_name(args["<%sTAG>" % upper], "tag")
        if args.get("<%sCIDR>" % upper) is not None:
            values[side + "_net"] = str(validate.parse_cidr(args["<%sCIDR>" % upper]))
    return model.Rule(**values)
