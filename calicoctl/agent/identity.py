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
