"""How the agent is recognised on a host: its files in the run directory and
the words of its command line (shared by the agent and the workflows that
start, stop and report on it, calicoctl.ops)."""

MODULE = "calicoctl.agent"
"""``python -m MODULE`` runs the agent."""
PID_FILE = "agent.pid"
STATUS_FILE = "agent-status.json"
MARKERS = (MODULE, "calico-agent")
"""Arguments that identify an agent process in /proc/<pid>/cmdline."""
CNI_SOCKET = "cni.sock"
"""Where the CNI plugin binaries reach the agent (calicoctl/cni_client.py)."""
PLUGIN_FDS_OPTION = "--plugin-fds"
"""``--plugin-fds=calico:5,calico-ipam:6``: the Docker plugins' sockets the
agent inherits, already listening (``calicoctl node`` binds them first)."""


def render_plugin_fds(fds):
    """{plugin name: fd} -> the ``--plugin-fds`` argument."""
    return "%s=%s" % (PLUGIN_FDS_OPTION, ",".join("%s:%d" % item for item in sorted(fds.items())))


def parse_plugin_fds(text):
    """The value of ``--plugin-fds`` -> {plugin name: fd}; ValueError if garbled."""
    fds = {}
    for item in filter(None, text.split(",")):
        name, _, fd = item.rpartition(":")
        if not name or not fd.isdigit():
            raise ValueError("expected <plugin>:<fd>, not %r" % item)
        fds[name] = int(fd)
    return fds
