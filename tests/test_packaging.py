"""Guards on the public surface: packaging, import direction, documented commands."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from support import REPO, run


def test_every_package_folder_is_listed() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for prefix, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([prefix, *rel.parts]))
    assert found == listed


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
    return names


def test_daemon_never_imports_the_cli() -> None:
    assert not {m for m in _imports("daemon") if m.startswith("branchdb.cli")}
    banned = {"daemon", "cli"}
    assert not {
        m for m in _imports("daemon") | _imports("cli") if m.split(".")[0] in banned
    }


def test_every_cli_command_has_help_and_is_documented(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    top = run(tmp_path, "--help")
    assert top.code == 0
    commands = re.findall(r"^    ([a-z]+) ", top.out, flags=re.M)
    assert len(commands) >= 11
    for cmd in commands:
        r = run(tmp_path, cmd, "--help")
        assert r.code == 0 and r.out.strip(), cmd
        assert f"`branchdb {cmd}" in readme, f"README does not document `{cmd}`"
        for flag in set(re.findall(r"(--[a-z][a-z-]+)", r.out)) - {"--help"}:
            assert flag in readme, f"README does not mention {cmd} {flag}"


def test_version() -> None:
    r = run(REPO, "--version")
    assert r.code == 0 and re.fullmatch(r"branchdb \d+\.\d+\.\d+\n", r.out)


def test_fast_dispatch_knows_every_command(tmp_path: Path) -> None:
    from branchdb.cli.main import COMMANDS

    top = run(tmp_path, "--help")
    assert set(re.findall(r"^    ([a-z]+) ", top.out, flags=re.M)) == COMMANDS
