"""The sanitize package's docstring is its map: every module listed, one-way imports."""

from __future__ import annotations

import ast
import re

from support import REPO

PKG = REPO / "daemon" / "sanitize"
PREFIX = "branchdb.daemon.sanitize"


def _doc_block(intro: str) -> list[str]:
    """The lines of the literal block (``::``) after the paragraph starting *intro*."""
    doc = ast.get_docstring(ast.parse((PKG / "__init__.py").read_text())) or ""
    start = doc.index(intro)
    lines = doc[doc.index("::\n", start) + 3 :].splitlines()
    block = []
    for line in lines[1:] if lines and not lines[0].strip() else lines:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


def _files() -> set[str]:
    """Every module and sub-package as the docstring writes it (``pg/stream.py``)."""
    out = set()
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel != "__init__.py":
            out.add(rel.removesuffix("__init__.py"))
    return out


def _modules() -> dict[str, ast.Module]:
    """Dotted name relative to the package (``pg.stream``) → parsed module."""
    return {
        path.relative_to(PKG).with_suffix("").as_posix().replace("/", "."): ast.parse(
            path.read_text()
        )
        for path in PKG.rglob("*.py")
        if path.name != "__init__.py"
    }


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
    """(module, name) of every import in *tree*, nested ones included."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
    return out


def _levels() -> list[set[str]]:
    return [set(re.split(r"\s{3,}", line)[0].split()) for line in _doc_block("Dep")]


def _level(module: str, levels: list[set[str]]) -> int:
    for i, names in enumerate(levels):
        if module in names or module.split(".")[0] in names:
            return i
    raise AssertionError(f"{module} is on no line of the docstring's dependency list")


def test_the_docstring_lists_exactly_the_modules() -> None:
    listed = {line.split()[0] for line in _doc_block("Modules")}
    files = _files()
    assert files - listed == set(), "modules missing from sanitize/__init__.py"
    assert listed - files == set(), "sanitize/__init__.py lists modules that are gone"


def test_imports_point_down_the_docstrings_list() -> None:
    levels = _levels()
    modules = _modules()
    wrong = []
    for name, tree in modules.items():
        mine = _level(name, levels)
        for module, alias in _imports(tree):
            if not module.startswith(PREFIX):
                continue
            rel = module.removeprefix(PREFIX).lstrip(".")
            target = f"{rel}.{alias}".lstrip(".") if rel else alias
            target = target if target in modules else rel
            theirs = _level(target, levels)
            same_package = "." in name and name.split(".")[0] == target.split(".")[0]
            if theirs < mine or (theirs == mine and not same_package):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_backend_no_private_names_no_database_below_the_dialects() -> None:
    levels = _levels()
    dialects = _level("pg", levels)
    for name, tree in _modules().items():
        for module, alias in _imports(tree):
            assert not module.startswith(
                ("branchdb.daemon.backends", "branchdb.daemon.api", "branchdb.cli")
            ), f"{name} imports {module}"
            if module.startswith(PREFIX):
                assert not alias.startswith("_"), f"{name} imports {module}.{alias}"
            if _level(name, levels) > dialects:
                assert module.split(".")[0] not in ("psycopg", "sqlite3"), (
                    f"{name} imports {module}: only the dialects touch a database"
                )


def test_modules_stay_small() -> None:
    sizes = {
        p.relative_to(PKG).as_posix(): len(p.read_text().splitlines())
        for p in PKG.rglob("*.py")
    }
    assert {k: v for k, v in sizes.items() if v > 400} == {}
