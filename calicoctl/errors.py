"""Typed errors and the exit code each maps to.

Everything below the CLI raises one of these; ``calicoctl.cli.main`` prints
the message as one line on stderr and returns ``exit_code``. Anything else
that escapes is a bug and gets a traceback.
"""


class ExitCode:
    """Process exit statuses (docs/decisions.md, "Exit codes and messages")."""
    OK = 0
    REFUSED = 1          # bad input, not found, in use, conflicts
    NOT_ROOT = 2
    UNREACHABLE = 3      # etcd or Docker cannot be reached
    PROBE_DIFFERS = 4    # policy explain/matrix --probe: the kernel did not do what the policy says
    BUG = 70             # unexpected exception: a traceback was printed


class CalicoError(Exception):
    """Base of every expected failure; the message is shown to the user."""
    exit_code = ExitCode.REFUSED


class ValidationError(CalicoError):
    """The user gave a malformed value (name, CIDR, IP, port, AS number...)."""


class NotFound(CalicoError):
    """A named object (profile, endpoint, container, pool, peer) does not exist."""


class HostNotReady(NotFound):
    """This host lacks what the request needs in etcd (its IPv4/IPv6 address):
    ``calicoctl node`` has not run, or ran without ``--ip6``."""


class AlreadyExists(CalicoError):
    """Creating something that is already there, where that is a refusal."""


class Conflict(CalicoError):
    """The request clashes with existing state (IP taken, pool overlap, in use)."""


class NotRoot(CalicoError):
    exit_code = ExitCode.NOT_ROOT


class DatastoreUnavailable(CalicoError):
    """etcd cannot be reached (every configured endpoint failed)."""
    exit_code = ExitCode.UNREACHABLE


class DatastoreError(CalicoError):
    """etcd answered, but not in a way we can work with."""


class DockerUnavailable(CalicoError):
    exit_code = ExitCode.UNREACHABLE


class DockerError(CalicoError):
    """Docker answered with an error we pass on to the user."""


class HostNetworkError(CalicoError):
    """A netlink / iptables / sysctl operation on this host failed."""


class CommandFailed(CalicoError):
    """An external program (iptables-restore, ipset, birdc...) failed.

    Carries everything needed to diagnose it.
    """

    def __init__(self, args, returncode, stdout="", stderr="", input_text=None):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.input_text = input_text
        first_line = (stderr or stdout or "").strip().splitlines()
        detail = first_line[0] if first_line else "no output"
        super().__init__("%s exited with %s: %s" % (args[0], returncode, detail))


class AgentError(CalicoError):
    """The node agent failed to start, to sync, or to stop."""
