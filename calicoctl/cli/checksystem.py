"""
Usage:
  calicoctl checksystem [--fix]

Description:
  Check that this host can run Calico: the kernel features the agent uses
  (tested by trying them: ip(6)tables filter table, ipsets, the set match,
  veth pairs), IP forwarding, the tools on PATH and Docker; while the agent
  serves the Docker plugins, that Docker finds and uses them.

Options:
  --fix  Enable IPv4 and IPv6 forwarding if they are off.
"""
from calicoctl.cli import parse


def run(argv, ctx):
    from calicoctl.ops import checksystem

    args = parse(__doc__, argv)
    ctx.require_root()
    results = checksystem.run_checks(fix=args["--fix"], docker_version=ctx.docker.server_api_version,
                                     backend=checksystem.backend_from_env(ctx.env),
                                     plugin_probe=lambda: checksystem.probe_docker_plugins(ctx.docker))
    for result in results:
        if result.fixed:
            ctx.out("FIXED: %s" % result.message)
        elif not result.ok:
            ctx.err("ERROR: %s: %s" % (result.name, result.message))
        elif result.noteworthy:
            ctx.out("%s: %s" % (result.name, result.message))
    failed = [result for result in results if not result.ok]
    if failed:
        ctx.err("System check failed: %d of %d checks did not pass." % (len(failed), len(results)))
        return 1
    ctx.out("System check passed (%d checks): this host can run Calico." % len(results))
    return 0
