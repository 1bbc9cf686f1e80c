"""``calicoctl`` entry point: the only place in the CLI that exits the process."""
import gc
import sys


def main():
    # One short command per process: the cyclic garbage collector would only
    # walk the objects the libraries create while they are imported (a sixth
    # of a `container add`), and again at exit; freezing spares the exit.
    gc.disable()
    from calicoctl.cli import main as cli_main
    code = cli_main(sys.argv[1:])
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
