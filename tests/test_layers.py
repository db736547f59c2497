"""The layer picture of docs/architecture.md, checked on every import.

Imports are read from the source (ast), lazy ones inside functions included; only
``if TYPE_CHECKING:`` blocks are left out (annotations, never executed). A cycle
anywhere in the package is a failure, and so is an import against the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"branchdb.daemon": ROOT / "daemon", "branchdb.cli": ROOT / "cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([prefix, *parts])] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The package module *name* refers to (a module, or the package holding it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out = {_resolve(n) for n in found if n.startswith("branchdb.")}
    return {m for m in out if m is not None and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_is_read() -> None:
    # Guards the reader itself: known edges, lazy ones included, must be seen.
    assert "branchdb.daemon.core.engine" in GRAPH["branchdb.cli.commands"]  # lazy
    assert "branchdb.daemon.gc.collector" in GRAPH["branchdb.cli.client"]  # lazy
    # TYPE_CHECKING imports are annotations only: not edges.
    assert "branchdb.daemon.core.engine" not in GRAPH["branchdb.cli.client"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def _importers(prefix: str) -> dict[str, set[str]]:
    return {
        m: {i for i in deps if i == prefix or i.startswith(prefix + ".")}
        for m, deps in GRAPH.items()
    }


def _inside(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_nothing_outside_the_api_imports_it() -> None:
    bad = {
        m: sorted(deps)
        for m, deps in _importers("branchdb.daemon.api").items()
        # The CLI's `serve` and token commands are the API's own adapters; the
        # dashboard is served by the API's app and shares its tokens and work.
        if deps
        and not _inside(
            m, "branchdb.daemon.api", "branchdb.daemon.ui", "branchdb.cli.commands"
        )
    }
    assert bad == {}


def test_only_the_app_imports_the_dashboard() -> None:
    bad = {
        m: sorted(deps)
        for m, deps in _importers("branchdb.daemon.ui").items()
        if deps and not _inside(m, "branchdb.daemon.ui", "branchdb.daemon.api.app")
    }
    assert bad == {}
    assert "branchdb.daemon.ui" in GRAPH["branchdb.daemon.api.app"]  # lazy, seen


def test_the_core_imports_no_service_part() -> None:
    service = (
        "branchdb.daemon.api",
        "branchdb.daemon.gc",
        "branchdb.daemon.review",
        "branchdb.daemon.vcs",
        "branchdb.daemon.views",
        "branchdb.cli",
    )
    bad = {
        m: sorted(d for d in deps if _inside(d, *service))
        for m, deps in GRAPH.items()
        if _inside(m, "branchdb.daemon.core")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_daemon_never_imports_the_cli() -> None:
    bad = {
        m: sorted(d for d in deps if _inside(d, "branchdb.cli"))
        for m, deps in GRAPH.items()
        if _inside(m, "branchdb.daemon")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_lower_layers_import_no_engine() -> None:
    # backends, migrations, sanitize and store are called by the engine: never back.
    lower = (
        "branchdb.daemon.backends",
        "branchdb.daemon.migrations",
        "branchdb.daemon.sanitize",
        "branchdb.daemon.store",
    )
    upper = ("branchdb.daemon.core.engine", "branchdb.daemon.core.context")
    bad = {
        m: sorted(d for d in deps if _inside(d, *upper))
        for m, deps in GRAPH.items()
        if _inside(m, *lower)
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_review_sits_above_the_engine() -> None:
    # Schema review takes a context like gc does: nothing below it imports it, and
    # it imports no service part (the API, gc, the CLI, git).
    below = (
        "branchdb.daemon.core",
        "branchdb.daemon.backends",
        "branchdb.daemon.migrations",
        "branchdb.daemon.sanitize",
        "branchdb.daemon.store",
        "branchdb.daemon.gc",
        "branchdb.daemon.vcs",
    )
    bad = {
        m: sorted(d for d in deps if _inside(d, "branchdb.daemon.review"))
        for m, deps in GRAPH.items()
        if _inside(m, *below)
    }
    assert {m: d for m, d in bad.items() if d} == {}
    up = (
        "branchdb.daemon.api",
        "branchdb.daemon.gc",
        "branchdb.cli",
        "branchdb.daemon.vcs",
    )
    bad = {
        m: sorted(d for d in deps if _inside(d, *up))
        for m, deps in GRAPH.items()
        if _inside(m, "branchdb.daemon.review")
    }
    assert {m: d for m, d in bad.items() if d} == {}
