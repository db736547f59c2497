"""Helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    p = subprocess.run(
        [BRANCHDB, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=input,
        timeout=120,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def git(cwd: Path, *args: str) -> str:
    p = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return p.stdout.strip()


def tables(path: Path) -> set[str]:
    """Names of the tables in the SQLite file *path*."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}
    finally:
        con.close()


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy tests/fixtures/<name> to *dest* (replacing it)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(FIXTURES / name, dest)
    return dest
