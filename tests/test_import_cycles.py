"""No import cycles inside cloudfilm (issue 13), counting imports inside functions too.

Why: a cycle means two modules cannot be understood, tested or moved apart; hiding one
behind a function-level import keeps the knot and only delays the error. Imports under
``if TYPE_CHECKING:`` are for annotations and do not run, so they do not count. The test
also checks the layering: domain/ imports nothing of cloudfilm outside domain/, and
services/ and storage/ never import the HTTP, page, DIMSE or command layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import cloudfilm

PACKAGE_ROOT = Path(cloudfilm.__file__).parent
OUTER_LAYERS = ("cloudfilm.api", "cloudfilm.web", "cloudfilm.dimse", "cloudfilm.commands",
                "cloudfilm.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")
            if "migrations" not in p.parts}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, at any depth (functions included)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the cloudfilm modules it imports (``from pkg import mod`` names mod)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (
                        1 if path.name == "__init__.py" else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_cloudfilm_has_no_import_cycles() -> None:
    assert cycles(edges(all_modules())) == []


def test_inner_layers_never_import_outer_ones() -> None:
    graph = edges(all_modules())
    wrong = []
    for name, targets in graph.items():
        if name.startswith("cloudfilm.domain"):
            wrong += [(name, t) for t in targets if not t.startswith("cloudfilm.domain")]
        elif name.startswith(("cloudfilm.services", "cloudfilm.storage")):
            wrong += [(name, t) for t in targets if t.startswith(OUTER_LAYERS)]
    assert wrong == []


HTTP_LAYERS = ("cloudfilm.api", "cloudfilm.web")
INDEX_PACKAGES = ("sqlalchemy", "cloudfilm.storage.index")


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    """Every dotted name an import statement may bind, relative imports left out (none of
    the HTTP layers' relative imports reach outside their package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level or node.module is None:
        return []
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def test_http_layers_hold_no_sql_and_no_index_rows() -> None:
    """api/ and web/ call services and get plain values: no SQLAlchemy, no index models or
    sessions (issue 13), not even inside a function."""
    wrong = []
    for name, path in all_modules().items():
        if not _within(name, HTTP_LAYERS):
            continue
        for node in _imports(ast.parse(path.read_text(), str(path))):
            wrong += [(name, target) for target in _imported_names(node)
                      if _within(target, INDEX_PACKAGES)]
    assert wrong == []


def test_the_api_never_imports_a_page() -> None:
    """One direction only: pages (web/) build on the API's HTTP plumbing (authentication,
    access checks, URLs); the API never imports web/ (cloudfilm/app.py mounts both)."""
    graph = edges(all_modules())
    wrong = [(name, t) for name, targets in graph.items() if _within(name, ("cloudfilm.api",))
             for t in targets if _within(t, ("cloudfilm.web",))]
    assert wrong == []
    inner = [(name, t) for name, targets in graph.items()
             if not _within(name, (*OUTER_LAYERS, "cloudfilm.app"))
             for t in targets if t == "cloudfilm.app"]
    assert inner == []


def test_the_layer_checks_see_function_level_imports() -> None:
    """The checks above would miss nothing hidden in a function."""
    tree = ast.parse("def f():\n    from sqlalchemy import select\n"
                     "    import cloudfilm.web.pages\n")
    names = [n for node in _imports(tree) for n in _imported_names(node)]
    assert "sqlalchemy" in names and "cloudfilm.web.pages" in names
