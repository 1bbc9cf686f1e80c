"""The one subprocess seam.

Every external program is started here: commands that run to completion
(iptables-restore, ipset, birdc, ...) through ``run`` / ``run_status``, so
failures carry the same rich detail (CommandFailed) and tests can run the
real programs inside a namespace of their own; daemons (the agent, BIRD)
through ``spawn``, which ``calicoctl.host.daemon`` supervises.
"""
import subprocess

from calicoctl.errors import CommandFailed, HostNetworkError


def _not_installed(args):
    return HostNetworkError("%s is not installed (not found on PATH)." % args[0])


def _complete(args, input_text, timeout, env):
    """subprocess.run with our capture settings; its exceptions propagate."""
    return subprocess.run(list(args), input=input_text, capture_output=True, text=True,
                          timeout=timeout, env=env)


def run(args, input_text=None, timeout=30, check=True, env=None):
    """Run args, return stdout (text). Raise CommandFailed on non-zero exit when check."""
    try:
        proc = _complete(args, input_text, timeout, env)
    except FileNotFoundError:
        raise _not_installed(args) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(args, -1, "", "timed out after %ss" % timeout, input_text) from None
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, proc.stdout, proc.stderr, input_text)
    return proc.stdout


def run_status(args, input_text=None, timeout=30, env=None):
    """Run args, return (returncode, stdout, stderr) without raising on failure."""
    try:
        proc = _complete(args, input_text, timeout, env)
    except FileNotFoundError:
        return 127, "", "%s: not found" % args[0]
    except subprocess.TimeoutExpired:
        return -1, "", "timed out after %ss" % timeout
    return proc.returncode, proc.stdout, proc.stderr


def spawn(args, stdin=None, output=None, cwd=None, env=None, new_session=False, pass_fds=()):
    """Start ``args`` without waiting for it; return its subprocess.Popen.

    ``stdin``: None to share ours, ``DEVNULL`` for none; ``output``: a file
    descriptor for its stdout and stderr (None: ours); ``new_session``: no
    controlling terminal, out of our process group; ``pass_fds``: inherited
    (every other descriptor is closed). A missing program raises
    HostNetworkError.
    """
    try:
        return subprocess.Popen(list(args), stdin=stdin, stdout=output, stderr=output, cwd=cwd, env=env,
                                start_new_session=new_session, close_fds=True, pass_fds=tuple(pass_fds))
    except FileNotFoundError:
        raise _not_installed(args) from None


DEVNULL = subprocess.DEVNULL
