"""The one subprocess seam.

Every external program (iptables-restore, ipset, birdc, ...) is run through
``run`` so failures carry the same rich detail (CommandFailed) and tests can
run the real programs inside a namespace of their own.
"""
import subprocess

from calicoctl.errors import CommandFailed, HostNetworkError


def run(args, input_text=None, timeout=30, check=True, env=None):
    """Run args, return stdout (text). Raise CommandFailed on non-zero exit when check."""
    try:
        proc = subprocess.run(list(args), input=input_text, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except FileNotFoundError:
        raise HostNetworkError("%s is not installed (not found on PATH)." % args[0]) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(args, -1, "", "timed out after %ss" % timeout, input_text) from None
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, proc.stdout, proc.stderr, input_text)
    return proc.stdout


def run_status(args, input_text=None, timeout=30, env=None):
    """Run args, return (returncode, stdout, stderr) without raising on failure."""
    try:
        proc = subprocess.run(list(args), input=input_text, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except FileNotFoundError:
        return 127, "", "%s: not found" % args[0]
    except subprocess.TimeoutExpired:
        return -1, "", "timed out after %ss" % timeout
    return proc.returncode, proc.stdout, proc.stderr
