"""branchdb and drizzle-orm's real migrator agree about what is applied (libsql)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from nodetools import require_node, run_drizzle_migrator
from support import FIXTURES, git, run, tables

pytestmark = pytest.mark.node

DRIZZLE = FIXTURES / "drizzle"
CONFIG = '[project]\nname = "shop"\n[migrations]\ndir = "drizzle"\nformat = "auto"\n'


def use_stage(repo: Path, stage: int) -> None:
    dest = repo / "drizzle"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(DRIZZLE / f"sqlite-stage{stage}", dest)


def ledger(path: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            'SELECT hash, created_at FROM "__drizzle_migrations" ORDER BY rowid'
        )
        return [(h, int(c)) for h, c in rows]
    finally:
        con.close()


def test_drizzle_migrator_after_branchdb_applies_nothing(repo: Path) -> None:
    require_node()
    (repo / "branchdb.toml").write_text(CONFIG)
    use_stage(repo, 2)
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["applied"] == ["0000_init.sql", "0001_products.sql"]
    path = Path(data["url"].removeprefix("file:"))
    before = ledger(path)
    assert len(before) == 2
    rows = run_drizzle_migrator("libsql", repo / "drizzle", data["url"])
    assert [(r["hash"], int(r["created_at"])) for r in rows] == before
    # The feature branch adds 0002; drizzle applies it, then branchdb agrees.
    use_stage(repo, 3)
    rows = run_drizzle_migrator("libsql", repo / "drizzle", data["url"])
    assert len(rows) == 3
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []
    assert ledger(path) == [(x["hash"], int(x["created_at"])) for x in rows]


def test_branchdb_after_drizzle_migrator_applies_only_the_rest(
    repo: Path, tmp_path: Path
) -> None:
    require_node()
    (repo / "branchdb.toml").write_text(CONFIG)
    prod = tmp_path / "prod.db"
    run_drizzle_migrator("libsql", DRIZZLE / "sqlite-stage2", f"file:{prod}")
    con = sqlite3.connect(prod)
    con.execute("INSERT INTO users (email, name) VALUES ('a@example.com', 'A')")
    con.commit()
    con.close()
    assert run(repo, "snapshot", "create", "prod", "--source", str(prod)).code == 0
    use_stage(repo, 3)
    git(repo, "checkout", "-q", "-b", "feature/coupons")
    r = run(repo, "up", "--from", "prod", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["applied"] == ["0002_nickname_coupons.sql"]
    path = Path(data["url"].removeprefix("file:"))
    assert "coupons" in tables(path)
    rows = run_drizzle_migrator("libsql", repo / "drizzle", data["url"])
    assert len(rows) == 3 and ledger(path) == [
        (x["hash"], int(x["created_at"])) for x in rows
    ]
    con = sqlite3.connect(path)
    assert con.execute("SELECT email FROM users").fetchall() == [("a@example.com",)]
    con.close()


def test_example_app_quickstart(tmp_path: Path) -> None:
    """The README's first command: `branchdb up` in examples/shop."""
    repo = tmp_path / "checkout"
    shutil.copytree(FIXTURES.parent.parent / "examples" / "shop", repo)
    git(repo, "init", "-q", "-b", "main")
    r = run(repo, "up")
    assert r.code == 0, r.err
    assert r.out.startswith("main: created (fresh), 2 migrations applied")
    url = r.out.strip().splitlines()[-1]
    assert {"users", "orders", "products", "__drizzle_migrations"} <= tables(
        Path(url.removeprefix("file:"))
    )
