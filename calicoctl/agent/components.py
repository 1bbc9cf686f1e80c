"""Which components the agent runs (each engineer adds theirs here).

Order matters only for ``flush``: components are flushed in list order each
cycle, so the policy dataplane (chains before routes: a workload must never
be reachable before its policy is in place) comes first.
"""


def build_components(config, datastore, plugin_factory=None):
    """The agent's components for ``config`` (an AgentConfig), in flush order.

    :param datastore: the DatastoreClient components write through (the
        VXLAN component publishes this host's tunnel endpoint).
    :param plugin_factory: builds the Docker plugins' workflows
        (ops.network.DockerPlugin); None, or ``config.docker_plugins``
        false, serves no plugin.
    """
    from calicoctl.agent.dataplane import PolicyDataplane
    from calicoctl.agent.routes import InterfaceWatcher, WorkloadRoutes
    from calicoctl.agent.state import EndpointParser

    # Shared by the policy and routes components: one view of the
    # interfaces, one parse of each endpoint.
    links = InterfaceWatcher(poll_interval=config.link_poll_interval)
    parser = EndpointParser()
    components = [
        PolicyDataplane(config, links=links, parser=parser),
        WorkloadRoutes(config, links=links, parser=parser),
    ]
    components += _multihost_components(config, datastore)
    if plugin_factory is not None and config.docker_plugins:
        from calicoctl.agent.plugins import DockerPlugins
        components.append(DockerPlugins(config, plugin_factory))
    return components


def _multihost_components(config, datastore):
    """Between hosts: tunnels for VXLAN/IPIP pools, NAT-outgoing, and BIRD
    last (it learns the routes the components before it installed)."""
    from calicoctl.agent.bird import BirdManager
    from calicoctl.agent.ipip import IpipManager
    from calicoctl.agent.nat import NatOutgoing
    from calicoctl.agent.vxlan import VxlanManager

    ipip = IpipManager(config)
    return [
        VxlanManager(config, datastore),
        ipip,
        NatOutgoing(config),
        BirdManager(config, ipip_tunnelled=ipip.routes_itself),
    ]
