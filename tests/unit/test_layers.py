"""ctlib's import graph: no cycles, and each layer imports only itself and the layers below.

Every module under plugins/ctlib is parsed with `ast`; every `import` and `from ... import`
counts wherever it stands (module level, inside a function or class, under `if
TYPE_CHECKING:`), relative imports resolved. A package's `__init__` belongs to that package.

Layers, lowest first (a module may import its own group or a lower layer only):

    foundation   ctlib (the package itself), ctlib.settings, ctlib.http, ctlib.kafka, ctlib.variables
    ct           ctlib.ct        the CT protocol: clients, tree heads, proofs, log list
    lake         ctlib.lake      the data lake: schemas, paths, files, compaction, queries
    decode       ctlib.decode    log entries -> lake rows
    ingest       ctlib.ingest    planning, state and running of log ingestion
    ops | downstream             side by side: neither imports the other
    airflow      ctlib.airflow   task bodies, timetables, preload
    entry points ctlib.score, ctlib.query, ctlib.audit, ctlib.watch (`python -m`)

ctlib.localsvc and ctlib.testing (local stand-ins for services, test data) are outside the
order: they may import any layer, and no other ctlib module may import them.

Imports by name (importlib, as in ctlib.airflow.preload) are not seen. The DAG files, which
may import only ctlib.airflow, are checked in tests/integration/test_dagbag.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.paths import PROJECT_ROOT

PLUGINS = PROJECT_ROOT / "plugins"
PACKAGE = PLUGINS / "ctlib"

# (group, rank): a module belongs to the group that is the longest dotted prefix of its name.
LAYERS: dict[str, int] = {
    "ctlib": 0,
    "ctlib.settings": 0,
    "ctlib.http": 0,
    "ctlib.kafka": 0,
    "ctlib.variables": 0,
    "ctlib.deploy": 0,  # docker-compose.yaml's secrets check: the standard library only
    "ctlib.ct": 1,
    "ctlib.lake": 2,
    "ctlib.decode": 3,
    "ctlib.ingest": 4,
    "ctlib.ops": 5,
    "ctlib.downstream": 5,
    "ctlib.airflow": 6,
    "ctlib.score": 7,
    "ctlib.query": 7,
    "ctlib.audit": 7,
    "ctlib.watch": 7,
}
FOUNDATION = frozenset(group for group, rank in LAYERS.items() if rank == 0)
STAND_INS = ("ctlib.localsvc", "ctlib.testing")

def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PLUGINS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(absolute dotted name, line) of everything `module` imports, at any depth in the file."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise AssertionError(f"{module}:{node.lineno}: relative import beyond the top package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the module pkg.sub; `from mod import name`, mod.
                submodule = f"{source}.{alias.name}"
                yield (submodule if submodule in known else source), node.lineno


def _graph() -> tuple[dict[str, dict[str, int]], list[str]]:
    """module -> {imported ctlib module: first line}, and the ctlib imports that name no module."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    unresolved = []
    for module, path in modules.items():
        for name, line in _imported_names(module, path, known):
            if not _under(name, "ctlib"):
                continue
            if name not in known:
                unresolved.append(f"{module}:{line} imports {name}, which is no module of ctlib")
                continue
            if name != module:
                graph[module].setdefault(name, line)
    return graph, unresolved


def _group(module: str) -> str | None:
    """The layer group of `module` (the package ctlib itself only for itself), or None."""
    matches = [group for group in LAYERS if _under(module, group) and (group != "ctlib" or module == "ctlib")]
    return max(matches, key=len) if matches else None


def _components(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Kosaraju, iterative)."""
    order: list[str] = []
    seen: set[str] = set()
    for root in sorted(graph):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(sorted(graph[root])))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                order.append(node)
                stack.pop()
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(graph[child]))))
    reverse: dict[str, set[str]] = {name: set() for name in graph}
    for node, imports in graph.items():
        for child in imports:
            reverse[child].add(node)
    components, assigned = [], set()
    for root in reversed(order):
        if root in assigned:
            continue
        component, todo = set(), [root]
        assigned.add(root)
        while todo:
            node = todo.pop()
            component.add(node)
            for parent in reverse[node] - assigned:
                assigned.add(parent)
                todo.append(parent)
        if len(component) > 1:
            components.append(component)
    return components


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """One cycle [m0, m1, ..., m0] through the smallest name of a strongly connected component."""
    start = min(component)
    parent: dict[str, str] = {}
    todo = [start]
    while todo:  # breadth first: the shortest way from `start` back to itself
        node = todo.pop(0)
        for child in sorted(graph[node]):
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if child not in parent:
                parent[child] = node
                todo.append(child)
    raise AssertionError(f"no cycle in {sorted(component)}")


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle for each group of modules that import each other, directly or not."""
    return sorted(_cycle_in(graph, component) for component in _components(graph))


def test_the_parser_sees_the_package() -> None:
    graph, unresolved = _graph()
    assert {"ctlib.ct.client", "ctlib.ct.types", "ctlib.ingest.run", "ctlib.settings"} <= set(graph)
    assert "ctlib.ct.types" in graph["ctlib.ct.rfc6962"]  # a module-level import
    assert not unresolved, "\n".join(unresolved)


def test_every_module_has_a_layer() -> None:
    orphans = [m for m in _graph()[0] if _group(m) is None and not any(_under(m, s) for s in STAND_INS)]
    assert not orphans, f"modules in no layer (add them to LAYERS): {orphans}"


def test_no_import_cycle() -> None:
    graph = _graph()[0]
    report = []
    for component in _components(graph):
        cycle = _cycle_in(graph, component)
        steps = "".join(f"\n    {a}:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:]))
        report.append(f"modules in a cycle: {', '.join(sorted(component))}\n  for instance:{steps}")
    assert not report, "import cycles:\n" + "\n".join(report)


def _layer_violations(graph: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """(importer, imported, line) of every import that goes up the layers or sideways."""
    found = []
    for importer, imports in sorted(graph.items()):
        source = _group(importer)
        if source is None:  # a stand-in: may import any layer
            continue
        for imported, line in sorted(imports.items()):
            if any(_under(imported, s) for s in STAND_INS):
                continue  # test_no_stand_in_in_production_code reports these
            target = _group(imported)
            assert target is not None, imported
            if target == source or target in FOUNDATION and source in FOUNDATION:
                continue  # the same group; foundation modules may import each other
            if LAYERS[target] < LAYERS[source]:
                continue
            found.append((importer, imported, line))
    return found


def test_layers_import_only_downwards() -> None:
    bad = [
        f"{importer}:{line} imports {imported} ({_group(importer)} may not import {_group(imported)})"
        for importer, imported, line in _layer_violations(_graph()[0])
    ]
    assert not bad, "layer violations:\n  " + "\n  ".join(bad)


def _stand_in_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"{importer}:{line} imports {imported}"
        for importer, imports in sorted(graph.items())
        if not any(_under(importer, s) for s in STAND_INS)
        for imported, line in sorted(imports.items())
        if any(_under(imported, s) for s in STAND_INS)
    ]


def test_no_stand_in_in_production_code() -> None:
    bad = _stand_in_imports(_graph()[0])
    assert not bad, "only ctlib.localsvc and ctlib.testing may import the stand-ins:\n  " + "\n  ".join(bad)


def test_the_checks_catch_what_they_should(tmp_path: Path) -> None:
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []
    two = {"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"d": 1}, "d": {"e": 1}, "e": {"c": 1}}
    assert _cycles(two) == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert _group("ctlib.ct.client") == "ctlib.ct"
    assert _group("ctlib.downstream.enrich.cache") == "ctlib.downstream"
    assert _group("ctlib.settings") == "ctlib.settings"
    assert _group("ctlib.localsvc.broker") is None
    assert _group("ctlib") == "ctlib"

    graph = {
        "ctlib.ct.loglist": {"ctlib.ingest.schedule": 3, "ctlib.settings": 4},  # up: caught
        "ctlib.ops.health": {"ctlib.downstream.scoring": 5, "ctlib.ingest.state": 6},  # sideways: caught
        "ctlib.lake.query": {"ctlib.ops.health": 7},  # up: caught
        "ctlib.settings": {"ctlib.http": 1},  # within the foundation
        "ctlib.ingest.run": {"ctlib.testing.ctlog": 8},  # a stand-in
        "ctlib.testing.ctlog": {"ctlib.ct.merkle": 9, "ctlib.localsvc": 10},
    }
    assert _layer_violations(graph) == [
        ("ctlib.ct.loglist", "ctlib.ingest.schedule", 3),
        ("ctlib.lake.query", "ctlib.ops.health", 7),
        ("ctlib.ops.health", "ctlib.downstream.scoring", 5),
    ]
    assert _stand_in_imports(graph) == ["ctlib.ingest.run:8 imports ctlib.testing.ctlog"]

    # Imports at any depth, relative ones resolved, `from package import submodule` as the submodule.
    source = tmp_path / "mod.py"
    source.write_text(
        "import ctlib.http\n"
        "from . import merkle, LEAF\n"
        "from ..lake.layout import CERTS_SCHEMA\n"
        "def f():\n"
        "    from .sth import verify_sth\n"
        "class C:\n"
        "    def g(self):\n"
        "        if True:\n"
        "            import ctlib.kafka as k\n"
    )
    known = {"ctlib.ct", "ctlib.ct.merkle", "ctlib.ct.sth", "ctlib.lake.layout"}
    assert sorted(_imported_names("ctlib.ct.mod", source, known)) == [
        ("ctlib.ct", 2), ("ctlib.ct.merkle", 2), ("ctlib.ct.sth", 5), ("ctlib.http", 1),
        ("ctlib.kafka", 9), ("ctlib.lake.layout", 3)]
    package = tmp_path / "__init__.py"
    package.write_text("from .sth import verify_sth\n")
    assert list(_imported_names("ctlib.ct", package, known)) == [("ctlib.ct.sth", 1)]
