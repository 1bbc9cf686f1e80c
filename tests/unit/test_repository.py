"""Rules of the repository itself, checked by reading its source.

- External systems are reached only through ``calicoctl/host/``: no other
  module imports subprocess, pyroute2 or docker-py.
- No module in ``calicoctl/`` is longer than about 550 lines.
- Only system tests import from ``tests/system/``; what others share lives
  in ``tests/harness/``.
- The repository explains itself: no tracked file points at notes outside
  it (the project's own ``docs/`` are the place for them).
"""
import ast
import os
import re
import subprocess

from tests.harness.util import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "calicoctl")
SEAM = os.path.join(PACKAGE, "host")
SEAM_ONLY = {"subprocess", "pyroute2", "docker"}
MAX_MODULE_LINES = 560


def python_files(root):
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def imported_modules(path):
    """The absolute names of every module ``path`` imports (anywhere in it)."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imported_top_names(path):
    return {name.split(".")[0] for name in imported_modules(path)}


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    import subprocess\n    from pyroute2 import IPRoute\n"
                      "    from docker.errors import NotFound\n    from . import sibling\n")
    assert imported_top_names(str(sample)) == {"os", "subprocess", "pyroute2", "docker"}


def test_subprocess_pyroute2_and_docker_only_under_host():
    offenders = {}
    for path in python_files(PACKAGE):
        if path.startswith(SEAM + os.sep):
            continue
        found = imported_top_names(path) & SEAM_ONLY
        if found:
            offenders[os.path.relpath(path, REPO_ROOT)] = sorted(found)
    assert offenders == {}, "import these only in calicoctl/host/: %s" % offenders


def test_modules_stay_short():
    long_ones = set()
    for path in python_files(PACKAGE):
        with open(path) as handle:
            if sum(1 for _ in handle) > MAX_MODULE_LINES:
                long_ones.add(os.path.relpath(path, REPO_ROOT))
    assert long_ones == set(), "split these by concern"


def test_only_system_tests_import_from_tests_system():
    offenders = []
    for top in ("tests/unit", "tests/functional", "tests/harness", "bench", "scripts", "calicoctl"):
        for path in python_files(os.path.join(REPO_ROOT, top)):
            names = imported_modules(path)
            if any(name == "tests.system" or name.startswith("tests.system.") for name in names):
                offenders.append(os.path.relpath(path, REPO_ROOT))
    assert offenders == []


# Written with escapes so that this file does not match itself.
OUTSIDE_POINTER = re.compile(
    r"\.\./shared|(?<![\w.-])shared/(design|seed)|/wor[k]/|"
    r"\b(reference|measurements|field|style|seed-demo|BRIEF)\.md\b|"
    r"(?<!docs/)\bdecisions\.md\b|[(]brief\b")


def test_the_pointer_pattern_catches_outside_notes():
    for text in ["see ../" + "sha" + "red/design", "(reference" + ".md §2)", 'decisions' + '.md "Containers"',
                 "(" + 'brief, "Agent contracts")', "/wor" + "k/sha" + "red/seed-demo" + ".md"]:
        assert OUTSIDE_POINTER.search(text), text
    for text in ['docs/decisions' + '.md, "Containers"', "retry briefly", "a shared/exclusive lock",
                 "docs/etcd-layout.md"]:
        assert not OUTSIDE_POINTER.search(text), text


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
        return [name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):      # not a git checkout: walk the tree
        found = []
        for directory, dirs, names in os.walk(REPO_ROOT):
            dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__")]
            found += [os.path.relpath(os.path.join(directory, name), REPO_ROOT) for name in names]
        return found


def test_no_file_points_outside_the_repository():
    offenders = []
    for name in tracked_files():
        try:
            with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as handle:
                text = handle.read()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_POINTER.search(line):
                offenders.append("%s:%d: %s" % (name, number, line.strip()))
    assert offenders == [], "\n".join(offenders)


ARCHITECTURE = os.path.join(REPO_ROOT, "docs", "architecture.md")
# A file name as the page writes one: from the repository's root (calicoctl/,
# tests/, docs/...), from calicoctl/ (agent/, ops/...), from calicoctl/agent/
# (its list of files), or bare inside a package's own diagram (plan.py).
NAMED_FILE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|md))\b")


def named_files(text):
    return set(NAMED_FILE.findall(text))


def resolve_named(name):
    """True if ``name`` (as docs/architecture.md writes it) is a file of the repository."""
    for base in (REPO_ROOT, PACKAGE, os.path.join(PACKAGE, "agent")):
        if os.path.isfile(os.path.join(base, name)):
            return True
    if "/" not in name:       # a bare name inside a package's diagram
        return any(os.path.basename(path) == name for path in python_files(PACKAGE))
    return False


def test_the_architecture_names_only_files_that_exist():
    with open(ARCHITECTURE) as handle:
        names = named_files(handle.read())
    assert "agent/loop.py" in names and "calicoctl/errors.py" in names
    assert sorted(name for name in names if not resolve_named(name)) == []


def test_the_architecture_names_every_module_of_the_agent():
    """Each of calicoctl/agent/'s modules is named by its path under agent/
    (or, inside a package the page draws as a diagram, by its file name)."""
    with open(ARCHITECTURE) as handle:
        text = handle.read()
    names = named_files(text)
    agent = os.path.join(PACKAGE, "agent")
    missing = []
    for path in python_files(agent):
        relative = os.path.relpath(path, agent)
        if os.path.basename(path) == "__init__.py":
            continue
        directory = os.path.dirname(relative)
        named = relative in names or \
            (directory and "agent/%s/" % directory in text and os.path.basename(path) in names)
        if not named:
            missing.append(relative)
    assert missing == [], "docs/architecture.md does not name these agent modules"
