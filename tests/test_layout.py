"""The house rules of the layout, read from the code's own imports:

- no import cycle among the modules of cluster/ (imports inside functions and under
  TYPE_CHECKING count too: they are cycles put off, not removed);
- no module takes another module's private names (`from x import _y`, `x._y`);
- statemachine/ holds only deterministic state machines: nothing there imports the
  cluster, gRPC, the network, the clock, randomness or threads for its logic.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = {"raftflow": "raftflow", "raft": "raftflow.raft", "statemachine": "raftflow.statemachine",
           "proto": "raftflow.proto", "cluster": "raftflow.cluster"}


def _modules(folder: str) -> dict[str, pathlib.Path]:
    base = FOLDERS[folder]
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        parts = path.relative_to(ROOT / folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((base, *parts))] = path
    return found


ALL = {name: path for folder in FOLDERS for name, path in _modules(folder).items()}


def _imports(path: pathlib.Path, name: str) -> list[tuple[str, str | None, int]]:
    """(module, name taken from it or None, line) for every import in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            out += [(module, alias.name, node.lineno) for alias in node.names]
    return out


def _graph(prefix: str) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in ALL.items():
        if not name.startswith(prefix):
            continue
        targets = set()
        for module, taken, _ in _imports(path, name):
            if taken is not None and f"{module}.{taken}" in ALL:
                module = f"{module}.{taken}"  # `from package import submodule`
            if module.startswith(prefix) and module in ALL and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_cluster():
    graph = _graph("raftflow.cluster")
    assert len(graph) > 30, sorted(graph)
    assert _cycles(graph) == []


def test_no_module_takes_another_modules_private_names():
    taken = []
    for name, path in ALL.items():
        aliases = {}
        for module, imported, line in _imports(path, name):
            if imported and imported.startswith("_") and not imported.startswith("__") and module in ALL:
                taken.append(f"{path.relative_to(ROOT)}:{line} takes {imported} from {module}")
            if imported and f"{module}.{imported}" in ALL:
                aliases[imported] = f"{module}.{imported}"
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                taken.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not taken, "\n".join(taken)


NOT_IN_A_STATE_MACHINE = ("raftflow.cluster", "raftflow.proto", "raftflow.raft", "grpc", "asyncio", "socket",
                          "random", "time", "os", "subprocess")
CLOCK_READS = ("now", "today", "utcnow", "fromtimestamp")  # datetime is there for timedelta only


def test_statemachine_holds_only_deterministic_state_machines():
    offending = []
    for name, path in ALL.items():
        if not name.startswith("raftflow.statemachine"):
            continue
        for module, _, line in _imports(path, name):
            if any(module == banned or module.startswith(banned + ".") for banned in NOT_IN_A_STATE_MACHINE):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in CLOCK_READS:
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno} reads the clock ({node.attr})")
    assert not offending, "\n".join(offending)
    assert not any("linearizability" in name or "history_gen" in name
                   for name in ALL if name.startswith("raftflow.statemachine"))
