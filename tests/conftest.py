"""Shared fixtures: real git repositories in temp dirs and the real `branchdb` CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
BRANCHDB = str(Path(sys.executable).with_name("branchdb"))


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> Result:
    """Run the installed `branchdb` console script for real."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BRANCHDB_CONFIG", "BRANCHDB_SERVER", "BRANCHDB_PG_URL")
    }
    full_env = {**base, **(env or {})}
    p = subprocess.run(
        [BRANCHDB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=120,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def git(cwd: Path, *args: str) -> str:
    p = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return p.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository on branch main with one commit."""
    root = tmp_path / "app"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "README").write_text("app\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def cli() -> Callable[..., Result]:
    return run


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy tests/fixtures/<name> to *dest* (replacing it)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(FIXTURES / name, dest)
    return dest
