"""Command-line front end: top-level parsing and dispatch.

``main(argv, env)`` parses the command word, imports only that command's
module (start-up time matters: docs/decisions.md, "A fast command line"),
runs it and maps errors to
exit codes. It never exits the process; ``calicoctl.__main__`` does.
"""
import importlib

from calicoctl.errors import CalicoError, ExitCode

USAGE = """Override the host:port of the ETCD server by setting the environment variable
ETCD_AUTHORITY [default: 127.0.0.1:2379] (or ETCD_ENDPOINTS for a cluster).
Speak etcd's v2 API instead of v3 with DATASTORE_TYPE=etcdv2 [default: etcdv3].

Usage: calicoctl <command> [<args>...]

    status            Print current status information
    node              Configure the main calico/node agent on this host
    container         Configure containers and their addresses
    cni               Install the CNI plugins for a network (Podman, containerd)
    profile           Configure endpoint profiles
    endpoint          Configure the endpoints assigned to existing containers
    pool              Configure ip-pools
    bgp               Configure global bgp
    control-plane     Keep workloads off etcd and BGP (show, ports, protection)
    policy            Explain who may reach whom, and why (explain, matrix)
    ipam              Show the IP pools' use and who holds an address
    checksystem       Check for incompatibilities on the host system
    diags             Save diagnostic information
    datastore         Copy the etcd v2 data into etcd v3 (migrate)
    version           Display the version of calicoctl

See 'calicoctl <command> --help' to read about a specific subcommand.
"""

# Command word -> module under calicoctl.cli. Explicit, so a typo in a
# command module is a bug report, not a usage screen.
COMMANDS = {
    "status": "status",
    "node": "node",
    "container": "container",
    "cni": "cni",
    "profile": "profile",
    "endpoint": "endpoint",
    "pool": "pool",
    "bgp": "bgp",
    "control-plane": "control_plane",
    "policy": "policy",
    "ipam": "ipam",
    "checksystem": "checksystem",
    "diags": "diags",
    "datastore": "datastore",
    "version": "version",
}


def main(argv, env=None, stdout=None, stderr=None, stdin=None):
    """Run calicoctl with ``argv`` (without the program name); return the exit code."""
    from calicoctl.cli.context import Context
    ctx = Context(env=env, stdout=stdout, stderr=stderr, stdin=stdin)
    if not argv or argv[0] in ("-h", "--help"):
        ctx.out(USAGE.rstrip())
        return ExitCode.OK if argv else ExitCode.REFUSED
    module_name = COMMANDS.get(argv[0])
    if module_name is None:
        ctx.err(USAGE.rstrip())
        return ExitCode.REFUSED
    module = importlib.import_module("calicoctl.cli." + module_name)
    try:
        return module.run(argv, ctx)
    except CalicoError as exc:
        ctx.err(str(exc))
        return exc.exit_code
    except UsageExit as exc:
        return exc.report(ctx)
    except KeyboardInterrupt:
        ctx.err("Interrupted.")
        return 130
    except Exception:  # noqa: BLE001 - a bug: show everything we know
        import traceback        # only here: importing it costs every command 2-4 ms
        ctx.err("Unexpected error (this is a bug in calicoctl):")
        ctx.err(traceback.format_exc().rstrip())
        return ExitCode.BUG
    finally:
        ctx.close()


class UsageExit(Exception):
    """docopt's verdict: print the usage (to stdout for --help, stderr otherwise)."""

    def __init__(self, text, code):
        super().__init__(text)
        self.text = text
        self.code = code

    def report(self, ctx):
        if self.text:
            (ctx.out if self.code == ExitCode.OK else ctx.err)(self.text)
        return self.code


def parse(doc, argv):
    """docopt on a command module's usage text, raising UsageExit instead of exiting.

    ``--help``/``-h`` anywhere shows the module's usage text on stdout.
    """
    from docopt import docopt, DocoptExit
    if "--help" in argv or "-h" in argv:
        raise UsageExit(doc.strip("\n"), ExitCode.OK)
    try:
        return docopt(doc, argv=argv, default_help=False)
    except DocoptExit:
        # Just the usage: docopt-ng's message would add its own diagnosis
        # ("found unmatched (duplicate?) arguments [...]") in its terms.
        raise UsageExit(usage_section(doc), ExitCode.REFUSED) from None


def usage_section(doc):
    """The "Usage:" paragraph of a command's usage text (pure)."""
    return doc[doc.index("Usage:"):].split("\n\n", 1)[0].rstrip()


def parse_versions(args):
    """The IP versions ``--ipv4`` / ``--ipv6`` ask for (both when neither is given)."""
    return (4,) if args["--ipv4"] else (6,) if args["--ipv6"] else (4, 6)
