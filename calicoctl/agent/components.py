"""Which components the agent runs (each engineer adds theirs here).

A component subclasses ``component.Component``, lists the ``keys.Kind``
of the keys it wants in ``kinds`` and reads the rest from the view it gets
in ``on_snapshot``. Order matters only for ``flush``: components are flushed
in list order each cycle, so the policy dataplane (chains before routes: a
workload must never be reachable before its policy is in place) comes first.
"""


def build_components(config, datastore, env=None):
    """The agent's components for ``config`` (an AgentConfig), in flush order.

    :param datastore: the DatastoreClient components write through (the
        VXLAN component publishes this host's tunnel endpoint).
    :param env: the agent's environment (Docker and etcd settings); with it
        the agent also serves the CNI plugins, follows Docker to keep
        workloads networked and, unless ``config.docker_plugins`` is false,
        serves the Docker plugins.
    """
    from calicoctl.agent.routing.routes import InterfaceWatcher, WorkloadRoutes

    # Shared by the iptables dataplane and routes: one view of the interfaces.
    # (What they read of etcd, they share through the dispatcher's indexes.)
    links = InterfaceWatcher(poll_interval=config.link_poll_interval)
    components = [
        _policy_dataplane(config, links),
        WorkloadRoutes(config, links=links),
    ]
    components += _multihost_components(config, datastore)
    if env is not None:
        components.append(_cni(config, env))
        components.append(_lifecycle(config, env))
        if config.docker_plugins:
            components.append(_docker_plugins(config, env))
    return components


def choose_dataplane(requested, nftables_problem):
    """(dataplane, why): the one to run for ``requested`` (AgentConfig.dataplane)
    given ``nftables_problem()`` (None when this host can program nftables)."""
    if requested != "auto":
        return requested, "asked for"
    problem = nftables_problem()
    if problem is None:
        return "nftables", "the default where the host supports it"
    return "iptables", "nftables is not usable here: %s" % problem


def _policy_dataplane(config, links):
    """The policy dataplane ``config.dataplane`` asks for; each removes, once
    it has written its own state, whatever the other one programmed."""
    import logging

    from calicoctl.host import nftables
    name, why = choose_dataplane(config.dataplane, nftables.probe)
    logging.getLogger(__name__).info("Policy dataplane: %s (%s)", name, why)
    config.dataplane = name
    if name == "nftables":
        from calicoctl.agent.policy.iptables.dataplane import remove_iptables_policy
        from calicoctl.agent.policy.nftables.dataplane import NftablesDataplane
        return NftablesDataplane(config, cleanup=remove_iptables_policy)
    from calicoctl.agent.policy.iptables.dataplane import PolicyDataplane
    from calicoctl.agent.policy.nftables.dataplane import remove_nftables_policy
    cleanup = remove_nftables_policy if nftables.probe() is None else None
    return PolicyDataplane(config, links=links, cleanup=cleanup)


def _lifecycle(config, env):
    """Workloads through docker restart, reboot and docker rm (its own
    thread, Docker client and etcd connection)."""
    from calicoctl.agent.lifecycle import WorkloadLifecycle
    from calicoctl.datastore import etcdconn
    from calicoctl.datastore.client import DatastoreClient
    from calicoctl.host.docker import DockerAdapter

    return WorkloadLifecycle(config, docker_factory=lambda: DockerAdapter(env),
                             datastore_factory=lambda: DatastoreClient(etcdconn.connect(env)))


def _cni(config, env):
    """The CNI plugins' back end on <run-dir>/cni.sock (threads of its own,
    with an etcd connection of its own)."""
    from calicoctl.agent.cni import CniServer
    from calicoctl.datastore import etcdconn
    from calicoctl.datastore.client import DatastoreClient
    from calicoctl.ops.cni_plugin import CniPlugin

    return CniServer(config, lambda: CniPlugin(DatastoreClient(etcdconn.connect(env)), config.hostname))


def _docker_plugins(config, env):
    """Docker's network and IPAM drivers on their sockets (threads of their
    own, with a Docker client and an etcd connection of their own)."""
    from calicoctl.agent.plugins import DockerPlugins
    from calicoctl.datastore import etcdconn
    from calicoctl.datastore.client import DatastoreClient
    from calicoctl.host.docker import DockerAdapter
    from calicoctl.ops.network import DockerPlugin

    return DockerPlugins(config, lambda: DockerPlugin(DatastoreClient(etcdconn.connect(env)),
                                                      DockerAdapter(env), config.hostname))


def _multihost_components(config, datastore):
    """Between hosts: tunnels for VXLAN/IPIP pools, NAT-outgoing, and BIRD
    last (it learns the routes the components before it installed)."""
    from calicoctl.agent.bgp.bird import BirdManager
    from calicoctl.agent.routing.ipip import IpipManager
    from calicoctl.agent.routing.nat import NatOutgoing
    from calicoctl.agent.routing.vxlan import VxlanManager

    ipip = IpipManager(config)
    if config.dataplane == "nftables":
        from calicoctl.agent.routing.nat_nftables import NftablesNatOutgoing
        nat = NftablesNatOutgoing(config, cleanup=lambda: NatOutgoing(config).apply_sets(None))
    else:
        nat = NatOutgoing(config)
    return [
        VxlanManager(config, datastore),
        ipip,
        nat,
        BirdManager(config, ipip_tunnelled=ipip.routes_itself),
    ]
