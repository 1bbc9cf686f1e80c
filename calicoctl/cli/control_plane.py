"""
Usage:
  calicoctl control-plane [show] [--output=<FORMAT>]
  calicoctl control-plane ports (<PORTS> | --default)
  calicoctl control-plane protection (on|off)

Description:
  Keep workloads off the cluster's control plane. While the protection is
  on (the default), no workload can open a TCP connection to the protected
  ports on any Calico host's IPv4 or IPv6 address, on an etcd endpoint or on
  a BGP peer, whatever its profiles allow. The protected ports are 2379,
  2380 and 179 unless set otherwise, always plus the port of every etcd
  endpoint the host's agent uses. The setting is global; 'calicoctl status'
  shows whether it is in force on this host.

Options:
  --default                    Protect the default ports (2379, 2380, 179) again.
  -o FORMAT --output=<FORMAT>  table (the default) or json.

Examples:
  calicoctl control-plane ports 2379,2380,179,4001
  calicoctl control-plane protection off
"""
from calicoctl import model
from calicoctl.cli import parse
from calicoctl.cli.output import parse_output_format, render_json


def run(argv, ctx):
    from calicoctl.ops import control_plane
    args = parse(__doc__, argv)
    if args["ports"]:
        ports = model.CONTROL_PLANE_DEFAULT_PORTS if args["--default"] \
            else model.ControlPlaneProtection.parse_ports(args["<PORTS>"])
        ctx.out(render_change(control_plane.update_protection(ctx.datastore, ports=ports), "ports"))
    elif args["protection"]:
        change = control_plane.update_protection(ctx.datastore, enabled=bool(args["on"]))
        ctx.out(render_change(change, "protection"))
    else:
        view = control_plane.read_protection(ctx.datastore)
        if parse_output_format(args) == "json":
            ctx.out(render_json(setting_to_dict(view)))
        else:
            for line in render_setting(view):
                ctx.out(line)
    return 0


def setting_to_dict(view):
    """The ``control-plane show -o json`` document (pure)."""
    setting = view.setting
    return {"enabled": setting.enabled, "ports": list(setting.ports),
            "default_ports": setting.ports == model.CONTROL_PLANE_DEFAULT_PORTS,
            "stored": view.stored, "problem": view.problem}


def render_ports(setting):
    text = ", ".join(str(port) for port in setting.ports)
    if setting.ports == model.CONTROL_PLANE_DEFAULT_PORTS:
        text += " (the default)"
    return text


def render_setting(view):
    """Lines for ``control-plane show`` (pure)."""
    setting = view.setting
    if setting.enabled:
        lines = ["Control-plane protection is on%s." % ("" if view.stored else " (the default)")]
    else:
        lines = ["Control-plane protection is OFF: workloads may reach etcd and BGP wherever their "
                 "profiles allow."]
    lines.append("Protected TCP ports: %s, plus the port of every etcd endpoint each host's agent uses."
                 % render_ports(setting))
    lines.append("Protected addresses: every Calico host's IPv4 and IPv6 address, the etcd endpoints "
                 "and the BGP peers.")
    if view.problem is not None:
        lines.append("WARNING: the stored setting is not valid (%s); the agents protect the default "
                     "ports until it is replaced." % view.problem)
    return lines


def render_change(change, what):
    """The confirmation line for ``ports`` / ``protection`` (pure)."""
    after = change.after
    if what == "ports":
        if not change.changed:
            return "The protected control-plane ports are already %s; nothing to do." % render_ports(after)
        text = "Protected control-plane ports set to %s." % render_ports(after)
    else:
        word = "on" if after.enabled else "off"
        if not change.changed:
            return "Control-plane protection is already %s; nothing to do." % word
        text = "Control-plane protection switched %s." % word
        if not after.enabled:
            text = text[:-1] + ": workloads may now reach etcd and BGP wherever their profiles allow."
    if change.before.problem is not None:
        text += " (This replaced a stored setting that was not valid.)"
    return text
