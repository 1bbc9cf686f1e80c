"""How the node's processes are found on a host: the run directory and what
lives in it, and the words of the agent's command line.

Shared by the agent (which creates the files) and the workflows that start,
stop and report on it (calicoctl.ops), so it lives in neither package. The
CNI plugin binaries (calicoctl/cni_client.py) cannot import it and spell
their socket's path themselves; a unit test checks it is the same.
"""

RUN_DIR = "/var/run/calico"
"""The run directory: the default of the agent's ``--run-dir``, where
``calicoctl`` looks for it (gone at reboot)."""
MODULE = "calicoctl.agent"
"""``python -m MODULE`` runs the agent."""
PID_FILE = "agent.pid"
STATUS_FILE = "agent-status.json"
BIRD_SOCKET = "bird.ctl"
"""BIRD's control socket, where ``birdc`` asks it."""
BIRD_PID_FILE = "bird.pid"
BIRD_CONFIG = "bird.cfg"
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
