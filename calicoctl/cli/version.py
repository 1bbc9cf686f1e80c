"""
Usage:
  calicoctl version

Description:
  Display the version of calicoctl.
"""
from calicoctl import __version__
from calicoctl.cli import parse


def run(argv, ctx):
    parse(__doc__, argv)
    ctx.out(__version__)
    return 0
