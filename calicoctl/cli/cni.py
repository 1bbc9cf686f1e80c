"""
Usage:
  calicoctl cni install <NETWORK> [--subnet=<CIDR>...] [--conf-dir=<DIR>] [--bin-dir=<DIR>]
  calicoctl cni uninstall <NETWORK> [--conf-dir=<DIR>]

Description:
  Make a CNI network on Calico for container runtimes that network through
  CNI plugins (Podman, containerd/nerdctl, ...). install writes
  <DIR>/<NETWORK>.conflist and puts the calico and calico-ipam plugins in
  the bin directory; the network is the profile of its name (created with
  the default rules of `profile add` if it does not exist). The plugins
  hand their work to this host's agent: run `calicoctl node` first.
  Running install again rewrites both. uninstall removes the
  configuration (the plugins and the profile stay).

Options:
  --subnet=<CIDR>    Take addresses from CIDR, which must lie in a Calico
                     pool; one IPv4 and one IPv6 subnet give both (without
                     it: an IPv4 address from any pool).
  --conf-dir=<DIR>   The runtime's CNI configuration directory [default: /etc/cni/net.d].
  --bin-dir=<DIR>    The runtime's CNI plugin directory [default: /opt/cni/bin].
"""
from calicoctl.cli import parse
from calicoctl.ops import cni as ops


def run(argv, ctx):
    args = parse(__doc__, argv)
    if args["uninstall"]:
        ctx.out(render_uninstall(ops.uninstall(args["<NETWORK>"], conf_dir=args["--conf-dir"])))
        return 0
    result = ops.install(ctx.datastore, args["<NETWORK>"], args["--subnet"], conf_dir=args["--conf-dir"],
                         bin_dir=args["--bin-dir"])
    ctx.out(render_install(result))
    return 0


def render_install(result):
    """What install did, in two lines (pure)."""
    addresses = " and ".join(result.subnets) if result.subnets else "any IPv4 pool"
    return ("Installed CNI network %s (addresses from %s) in %s; plugins %s.\n"
            "Its profile %s %s." % (result.network, addresses, result.conf_path, ", ".join(result.binaries),
                                    result.network, "was created" if result.created_profile else "exists"))


def render_uninstall(result):
    if not result.removed:
        return "Nothing to remove: %s does not exist." % result.conf_path
    return "Removed %s (the plugins and profile %s stay)." % (result.conf_path, result.network)
