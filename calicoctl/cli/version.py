"""
Usage:
  calicoctl version [--output=<FORMAT>]

Description:
  Display the version of calicoctl.

Options:
  -o FORMAT --output=<FORMAT>  table (the default) or json.
"""
from calicoctl import __version__
from calicoctl.cli import parse
from calicoctl.cli.output import parse_output_format, render_json


def run(argv, ctx):
    args = parse(__doc__, argv)
    if parse_output_format(args) == "json":
        ctx.out(render_json({"version": __version__}))
    else:
        ctx.out(__version__)
    return 0
