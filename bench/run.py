"""Run the benchmarks: ``bench/run.py [SUBSTRING]``.

Imports every ``bench/bench_*.py`` (or only those whose name contains
SUBSTRING) and calls its ``run(report)``. Each module sets up and tears down
what it needs. ``report`` prints one aligned line per figure, with the ratio
against a reference measured in the same run: this machine is noisy, so
only such ratios mean anything (never an absolute timed assertion).

Exit status: 0 when every module ran (a figure over its target is printed
as OVER but does not fail the run), 1 when a module raised.
"""
import importlib.util
import os
import sys
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def format_value(value, unit):
    return "%.1f %s" % (value, unit) if isinstance(value, float) else "%s %s" % (value, unit)


def render_report_line(name, value, unit, reference_name=None, reference_value=None, target=None):
    """One aligned line: figure, reference, ratio and the verdict against the target (pure)."""
    line = "%-44s %14s" % (name, format_value(value, unit))
    if reference_name is not None and reference_value:
        ratio = value / reference_value
        line += "   vs %-30s %14s   ratio %5.2f" % (reference_name, format_value(reference_value, unit), ratio)
        if target is not None:
            line += "   target <= %.2f %s" % (target, "ok" if ratio <= target else "OVER")
    return line


def report(name, value, unit, reference_name=None, reference_value=None, target=None):
    print(render_report_line(name, value, unit, reference_name, reference_value, target), flush=True)


def find_modules(substring=None):
    names = sorted(name[:-3] for name in os.listdir(BENCH_DIR)
                   if name.startswith("bench_") and name.endswith(".py"))
    return [name for name in names if not substring or substring in name]


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH_DIR, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)      # bench modules use tests/harness
    substring = argv[0] if argv else None
    names = find_modules(substring)
    if not names:
        print("no benchmark matches %r" % substring, file=sys.stderr)
        return 1
    failed = []
    for name in names:
        print("== %s" % name, flush=True)
        try:
            load(name).run(report)
        except Exception:  # noqa: BLE001 - a failed bench must not stop the others
            traceback.print_exc()
            failed.append(name)
    if failed:
        print("failed: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
