"""``calicoctl`` entry point: the only place in the CLI that exits the process."""
import sys


def main():
    from calicoctl.cli import main as cli_main
    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
