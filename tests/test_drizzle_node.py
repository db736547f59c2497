"""The Node harness alone: drizzle-orm's REAL migrators on the drizzle-kit fixtures.

These pin down drizzle's bookkeeping (``__drizzle_migrations``: ``hash`` is the
sha256 of the .sql file, ``created_at`` the journal entry's ``when``) that
branchdb's drizzle format must reproduce.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from nodetools import require_node, run_drizzle_migrator
from pgcluster import Cluster
from support import FIXTURES

pytestmark = pytest.mark.node

DRIZZLE = FIXTURES / "drizzle"


def expected_ledger(folder: Path) -> list[tuple[str, int]]:
    """(sha256 of the .sql file, journal ``when``) per journal entry, in order."""
    journal = json.loads((folder / "meta" / "_journal.json").read_text())
    out = []
    for entry in journal["entries"]:
        sql = folder / f"{entry['tag']}.sql"
        digest = hashlib.sha256(sql.read_text(encoding="utf-8").encode()).hexdigest()
        assert digest == hashlib.sha256(sql.read_bytes()).hexdigest()
        out.append((digest, entry["when"]))
    return out


def test_fixture_stages_are_a_linear_history() -> None:
    """Stage N+1 extends stage N with exactly one new migration, unchanged before it."""
    for dialect in ("sqlite", "pg"):
        prev: list[tuple[str, int]] = []
        for n in (1, 2, 3):
            ledger = expected_ledger(DRIZZLE / f"{dialect}-stage{n}")
            assert len(ledger) == n
            assert ledger[: n - 1] == prev
            prev = ledger
        assert expected_ledger(DRIZZLE / dialect) == prev
        whens = [w for _, w in prev]
        assert whens == sorted(whens)


def test_libsql_migrator_on_stage2(tmp_path: Path) -> None:
    require_node()
    db = tmp_path / "shop.db"
    folder = DRIZZLE / "sqlite-stage2"

    rows = run_drizzle_migrator("libsql", folder, f"file:{db}")

    assert [(r["hash"], r["created_at"]) for r in rows] == expected_ledger(folder)
    assert len(rows) == 2
    con = sqlite3.connect(db)
    try:
        names = {
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        indexes = {
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        ledger = con.execute(
            "SELECT id, hash, created_at, typeof(created_at)"
            " FROM __drizzle_migrations ORDER BY rowid"
        ).fetchall()
    finally:
        con.close()
    assert {"users", "orders", "products", "__drizzle_migrations"} <= names
    assert "coupons" not in names
    assert {"users_email_unique", "products_name_idx"} <= indexes
    # drizzle's SQLite ledger: `id SERIAL PRIMARY KEY` is not a rowid alias, so id
    # stays NULL; created_at (numeric affinity) holds the journal `when` as integer.
    assert [(i, h, c, t) for i, h, c, t in ledger] == [
        (None, h, w, "integer") for h, w in expected_ledger(folder)
    ]


def test_libsql_migrator_applies_only_newer_entries(tmp_path: Path) -> None:
    """Main (stages 1-2) then the feature branch (1-3): only 0002 is applied."""
    require_node()
    url = f"file:{tmp_path / 'shop.db'}"
    run_drizzle_migrator("libsql", DRIZZLE / "sqlite-stage2", url)
    rows = run_drizzle_migrator("libsql", DRIZZLE / "sqlite-stage3", url)
    assert [(r["hash"], r["created_at"]) for r in rows] == expected_ledger(
        DRIZZLE / "sqlite-stage3"
    )


@pytest.mark.postgres
def test_pg_migrator_on_stage3(pg_cluster: Cluster) -> None:
    require_node()
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS drizzle_harness")
        c.execute("CREATE DATABASE drizzle_harness")
    url = pg_cluster.url("drizzle_harness")
    try:
        run_drizzle_migrator("pg", DRIZZLE / "pg-stage2", url)
        rows = run_drizzle_migrator("pg", DRIZZLE / "pg-stage3", url)
        assert [(r["id"], r["hash"], r["created_at"]) for r in rows] == [
            (i, h, w)
            for i, (h, w) in enumerate(expected_ledger(DRIZZLE / "pg-stage3"), 1)
        ]
        with psycopg.connect(url) as c:
            tables = {
                (s, t)
                for s, t in c.execute(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema IN ('public', 'drizzle')"
                )
            }
            nickname = c.execute(
                "SELECT 1 FROM information_schema.columns"
                " WHERE table_name = 'users' AND column_name = 'nickname'"
            ).fetchall()
        assert tables == {
            ("drizzle", "__drizzle_migrations"),
            ("public", "users"),
            ("public", "orders"),
            ("public", "products"),
            ("public", "coupons"),
        }
        assert nickname == [(1,)]
    finally:
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS drizzle_harness WITH (FORCE)")
