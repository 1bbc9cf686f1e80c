"""The agent's start-up configuration, declared in one place.

``AgentConfig`` holds what the process is started with: identity and
directories from the command line, tunables from the environment. Settings
that live in etcd (``InterfacePrefix``, ``DefaultEndpointToHostAction``) are
not here: they change at run time and the components read them from the key
stream like any other data.

Components may add fields, always with a default, so a config built by an
older caller (or a test) stays valid.
"""
import socket
from dataclasses import dataclass, field, fields
from typing import Optional

from calicoctl.errors import ValidationError
from calicoctl.host.plugin_server import PLUGIN_DIR
from calicoctl.identity import RUN_DIR

DEFAULT_LOG_DIR = "/var/log/calico"
DATAPLANES = ("auto", "nftables", "iptables")

# Environment variables that tune the agent: variable -> AgentConfig field,
# whose type (int, float or str) parses the value. Read only by
# ``from_environment``, i.e. in the composition root.
ENV_TUNABLES = {
    "CALICO_AGENT_TAG_IPSETS": "tag_ipset_budget",
    "CALICO_AGENT_IPTABLES_BACKEND": "iptables_backend",
    "CALICO_AGENT_STATUS_INTERVAL": "status_interval",
    "CALICO_AGENT_REFRESH_INTERVAL": "refresh_interval",
    "CALICO_AGENT_LOG_LEVEL": "log_level",
    "CALICO_AGENT_RESTORE_CHUNK": "restore_chunk_chains",
    "CALICO_AGENT_PLUGIN_RECONCILE_INTERVAL": "plugin_reconcile_interval",
}


@dataclass
class AgentConfig:
    hostname: str
    log_dir: str = DEFAULT_LOG_DIR
    run_dir: str = RUN_DIR
    log_level: str = "INFO"
    """Level of agent.log (DEBUG adds per-cycle timings)."""

    # -- status reporting (docs/etcd-layout.md, "Agent status") --------------------
    status_interval: float = 10.0
    """Seconds between status reports while nothing else happens."""
    status_ttl: int = 30
    """TTL of the status key in etcd."""

    # -- policy dataplane -----------------------------------------------------------
    dataplane: str = "auto"
    """'nftables', 'iptables', or 'auto': nftables where this host can
    program it (libnftables and the kernel's nf_tables), else iptables
    (calicoctl.agent.policy, ``choose_dataplane``)."""
    iptables_backend: str = "nft"
    """'nft' (iptables-nft-restore) or 'legacy'; see calicoctl.host.iptables."""
    tag_ipset_budget: int = 100
    """How many tags get their own pair of ipsets (one per IP family). The
    kernel allows 256 sets per network namespace, shared with every other
    user; tags past the budget are matched through chain trees instead
    (calicoctl.agent.policy.iptables.rules, "Tags")."""
    refresh_interval: float = 600.0
    """Seconds between full re-reads of iptables/ipsets to repair drift
    (0 disables); the hook rules are checked every ``hook_check_interval``."""
    hook_check_interval: float = 5.0
    restore_chunk_chains: int = 400
    """Most chains written by one iptables-restore (nf_tables' restore is
    quadratic in the chains of one input; see calicoctl.host.iptables)."""

    # -- routes ---------------------------------------------------------------------
    link_poll_interval: float = 5.0
    """Seconds between interface listings, a safety net under netlink events."""

    # -- etcd -----------------------------------------------------------------------
    watch_timeout: float = 60.0
    """Seconds a watch request waits before it is re-issued."""
    etcd_retry_interval: float = 1.0
    etcd_endpoints: tuple = ()
    """((host, port), ...) of the etcd the agent uses (from ETCD_AUTHORITY /
    ETCD_ENDPOINTS): workloads may reach none of them (the control plane)."""
    etcd_resolve_interval: float = 60.0
    """Seconds between lookups of etcd endpoints given by host name."""

    # -- Docker plugins (calicoctl.agent.plugins) -------------------------------------
    docker_plugins: bool = True
    """Serve the calico network driver and the calico-ipam IPAM driver."""
    plugin_dir: str = PLUGIN_DIR
    """Where Docker looks for plugin sockets."""
    plugin_reconcile_interval: float = 30.0
    """Seconds between reconciliations of the plugins' state with Docker."""
    plugin_fds: dict = field(default_factory=dict)
    """{plugin name: file descriptor of its socket, already listening}: bound
    by ``calicoctl node`` before anything slow, inherited (``--plugin-fds``)."""

    extra: dict = field(default_factory=dict)
    """Free-form settings for components that need one without a field yet."""

    @classmethod
    def from_environment(cls, env, hostname=None, log_dir=None, run_dir=None, dataplane=None):
        """Build from the command line values and an environment mapping.

        Raises ValidationError for a tunable that does not parse.
        """
        config = cls(hostname=hostname or env.get("CALICO_HOSTNAME") or socket.gethostname(),
                     log_dir=log_dir or DEFAULT_LOG_DIR, run_dir=run_dir or RUN_DIR,
                     dataplane=dataplane or "auto")
        if config.dataplane not in DATAPLANES:
            raise ValidationError("Invalid dataplane %r: expected %s." % (config.dataplane, " or ".join(DATAPLANES)))
        types = {f.name: f.type for f in fields(cls)}
        for variable, name in ENV_TUNABLES.items():
            text = env.get(variable)
            if text in (None, ""):
                continue
            kind = types[name]
            try:
                value = {"int": int, "float": float}.get(getattr(kind, "__name__", kind), str)(text)
            except ValueError:
                raise ValidationError("Invalid %s=%r." % (variable, text)) from None
            setattr(config, name, value)
        if config.iptables_backend not in ("nft", "legacy"):
            raise ValidationError("Invalid CALICO_AGENT_IPTABLES_BACKEND=%r: expected nft or legacy."
                                  % config.iptables_backend)
        if config.tag_ipset_budget < 0:
            raise ValidationError("Invalid CALICO_AGENT_TAG_IPSETS: must be 0 or more.")
        return config


def describe(config: Optional[AgentConfig]):
    """One log line naming the settings that matter when reading a log."""
    return ("hostname=%s log_dir=%s run_dir=%s dataplane=%s iptables=%s tag_ipsets=%d"
            % (config.hostname, config.log_dir, config.run_dir, config.dataplane, config.iptables_backend,
               config.tag_ipset_budget))
