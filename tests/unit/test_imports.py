"""The shape of calicoctl's import graph, read from the source with ``ast``.

- No import cycle: a cycle means two modules that cannot be understood (or
  tested) one without the other, and one of them imports the other half
  built. Imports inside functions count: they only hide the cycle.
- The workflows (``calicoctl/ops/``) never import the node agent
  (``calicoctl/agent/``): the agent runs the workflows, not the reverse.

``from x import y`` where ``x.y`` is a module counts as importing ``x.y``;
otherwise as importing ``x``. Importing a module counts as importing it,
not every package above it.
"""
import ast
import os

from tests.harness.util import REPO_ROOT

TOP = "calicoctl"


def module_files(root, top):
    """{module name: path} for every module of the package ``top`` under ``root``."""
    modules = {}
    for directory, dirs, names in os.walk(os.path.join(root, top)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            if not name.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(directory, name), root)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = os.path.join(directory, name)
    return modules


def imported_names(module, path, known):
    """The modules of ``known`` that ``module`` (at ``path``) imports, anywhere in it."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            candidates = []
            for alias in node.names:
                submodule = "%s.%s" % (base, alias.name) if base else alias.name
                candidates.append(submodule if submodule in known else base)
        else:
            continue
        for name in candidates:
            # The nearest module that exists: ``import a.b.c`` of a missing c is a.b.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root=REPO_ROOT, top=TOP):
    """{module: set of the package's modules it imports}."""
    files = module_files(root, top)
    return {module: imported_names(module, path, files) for module, path in files.items()}


def find_cycles(graph):
    """One cycle (a list of modules, the first repeated at the end) per
    strongly connected group of modules that import each other."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(start):
        # Tarjan's algorithm, iterative so that a deep graph cannot overflow.
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_within(graph, group) for group in groups]


def cycle_within(graph, group):
    """A shortest cycle through the first (by name) module of ``group``."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        following = []
        for path in paths:
            for target in sorted(graph[path[-1]] & group):
                if target == start:
                    return path + [start]
                if target not in seen:
                    seen.add(target)
                    following.append(path + [target])
        paths = following
    raise AssertionError("not a cycle: %s" % sorted(group))


def write_package(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nimport pkg.b\n",
        "pkg/b.py": "def f():\n    from pkg import c\n",
        "pkg/c.py": "from pkg.sub.d import NAME\nfrom .sub import e\n",
        "pkg/sub/__init__.py": "from . import d\n",
        "pkg/sub/d.py": "NAME = 1\nfrom pkg import missing\n",
        "pkg/sub/e.py": "from .. import a\nfrom pkg.sub import e\n",
    })
    assert import_graph(str(tmp_path), "pkg") == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.sub.d", "pkg.sub.e"},
        "pkg.sub": {"pkg.sub.d"},
        "pkg.sub.d": {"pkg"},
        "pkg.sub.e": {"pkg.a"},
    }


def test_cycles_are_found_and_named():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"a"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles_in_calicoctl():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_workflows_never_import_the_agent():
    offenders = {module: sorted(name for name in imported if name.startswith(TOP + ".agent"))
                 for module, imported in import_graph().items() if module.startswith(TOP + ".ops")}
    offenders = {module: names for module, names in offenders.items() if names}
    assert offenders == {}, "calicoctl/ops imports calicoctl/agent: %s" % offenders
